"""Registry authentication on the client side: credentials, challenges, tokens.

- `CredentialStore`: docker's ~/.docker/config.json ("auths" -> {"auth": base64(user:pass)}),
  written atomically with mode 0600; other keys of the file are preserved.
- `parse_challenges`: the WWW-Authenticate header (RFC 7235) of a 401 answer.
- `Authenticator`: remembers each host's challenge, fetches bearer tokens from
  the realm (GET realm?service=&scope=..., with basic credentials when we have
  them; "token" or "access_token" in the answer), caches them per scope set
  until they expire, or answers Basic challenges with the stored credentials.
- `RegistryError` and `error_from_body`: a registry's {"errors": [...]} body
  becomes "code: message" the way docker prints it ("manifest unknown: ...").
- `RepoSession`: requests to one repository on one endpoint with the right
  Authorization header; a 401 teaches it the challenge and it retries once.
  Credentials and tokens go only to the endpoint's own host (not to a host a
  Location or redirect points at).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.dockerconfig import (  # noqa: F401 - part of this module's interface
    DOCKER_HUB_KEY,
    HUB_NAMES,
    ConfigFile,
    credentials_key,
    hostname,
)
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    import aiohttp

DOCKER_HUB_NAMES = HUB_NAMES
MAX_TOKEN_BODY = 1 << 20
MAX_ERROR_BODY = 64 << 10


class RegistryError(DockyardError):
    """An error answered by a registry (or a token server), or a broken answer.

    `code` is the registry's error code (MANIFEST_UNKNOWN, UNAUTHORIZED, ...) when it
    sent one; `status` follows the registry's HTTP status for 4xx answers.
    """

    def __init__(self, message: str, *, code: str = "", status: int = 500):
        super().__init__(message)
        self.code = code
        self.status = status


class VerificationError(RegistryError):
    """Content whose digest or size does not match what was asked for."""


def error_from_body(status: int, body: bytes, fallback: str = "") -> RegistryError:
    """The registry's own words: "<code lower case, _ as space>: <message>"."""
    errors: list = []
    try:
        doc = json.loads(body) if body else None
        if isinstance(doc, dict):
            errors = doc.get("errors") or []
            if not errors and isinstance(doc.get("details") or doc.get("message"), str):
                errors = [{"code": "", "message": doc.get("details") or doc.get("message")}]
    except ValueError:
        pass
    parts = []
    code = ""
    for e in errors if isinstance(errors, list) else []:
        if not isinstance(e, dict):
            continue
        code = code or str(e.get("code") or "")
        text = str(e.get("code") or "").lower().replace("_", " ")
        msg = str(e.get("message") or "")
        parts.append(f"{text}: {msg}" if text and msg else text or msg)
    if parts:
        message = "; ".join(parts)
    elif fallback:
        message = fallback
    elif status == 401:
        message, code = "unauthorized: authentication required", "UNAUTHORIZED"
    elif status == 403:
        message, code = "denied: requested access to the resource is denied", "DENIED"
    else:
        message = f"unexpected status from registry: {status}"
    return RegistryError(message, code=code, status=status if 400 <= status < 500 else 500)


# --------------------------------------------------------------------------- credentials


def is_loopback(host: str) -> bool:
    name = strip_port(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


CredentialStore = ConfigFile  # docker's config.json (dockyard/dockerconfig.py)


# --------------------------------------------------------------------------- challenges

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# unquoted values are taken up to the next comma (realms are URLs, not tokens)
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*,?')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


@dataclass
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """Parse WWW-Authenticate header values into challenges (several may share a header)."""
    out: list[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            m = _SCHEME.match(header, pos)
            if not m:
                break
            challenge = Challenge(m.group(1).lower())
            pos = m.end()
            while pos < len(header):
                p = _PARAM.match(header, pos)
                if not p:
                    break
                value = p.group(2) if p.group(2) is not None else p.group(3)
                challenge.params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
                pos = p.end()
            out.append(challenge)
    return out


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Per-host challenges, cached bearer tokens and credentials for one client.

    `creds_for(host)` returns (user, password) or None; the client decides which
    credentials a host gets (a mirror does not get docker.io's).
    """

    def __init__(self, creds_for, user_agent: str):
        self._creds_for = creds_for
        self.user_agent = user_agent
        self._challenges: dict[str, list[Challenge]] = {}
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._fetching: dict[tuple, object] = {}

    def knows(self, host: str) -> bool:
        return host in self._challenges

    def set_challenges(self, host: str, challenges: list[Challenge]) -> None:
        self._challenges[host] = challenges

    def forget_tokens(self, host: str) -> None:
        for key in [k for k in self._tokens if k[0] == host]:
            del self._tokens[key]

    async def authorization(self, session: aiohttp.ClientSession, host: str,
                            scopes: list[str], *, ssl: bool = True) -> str | None:
        """The Authorization header value for a request to `host`, or None."""
        challenges = self._challenges.get(host) or []
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        creds = self._creds_for(host)
        if bearer is not None:
            wanted = sorted(set(scopes))
            key = (host, bearer.params.get("realm", ""), tuple(wanted))
            tok = self._tokens.get(key)
            if tok is None or tok.expires <= time.monotonic():
                tok = await self._fetch_shared(key, session, bearer, wanted, creds, ssl)
            return f"Bearer {tok.value}"
        if any(c.scheme == "basic" for c in challenges) and creds:
            return basic_header(*creds)
        return None

    async def _fetch_shared(self, key: tuple, session: aiohttp.ClientSession,
                            bearer: Challenge, scopes: list[str],
                            creds: tuple[str, str] | None, ssl: bool) -> _Token:
        """One token request per scope set at a time; concurrent callers share it."""
        import asyncio

        running = self._fetching.get(key)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._fetching[key] = fut
        try:
            tok = await self.fetch_token(session, bearer, scopes, creds, ssl=ssl)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(e)
                fut.exception()  # marked retrieved
            raise
        finally:
            del self._fetching[key]
        self._tokens[key] = tok
        fut.set_result(tok)
        return tok

    async def fetch_token(self, session: aiohttp.ClientSession, challenge: Challenge,
                          scopes: list[str], creds: tuple[str, str] | None, *,
                          ssl: bool = True) -> _Token:
        import aiohttp

        realm = challenge.params.get("realm")
        if not realm or not realm.lower().startswith(("http://", "https://")):
            raise RegistryError(f"bearer challenge without a usable realm: {realm!r}")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        for scope in scopes:
            params.append(("scope", scope))
        headers = {"User-Agent": self.user_agent}
        if creds:
            params.append(("account", creds[0]))
            headers["Authorization"] = basic_header(*creds)
        try:
            async with session.get(realm, params=params, headers=headers,
                                   ssl=None if ssl else False) as resp:
                body = await read_body(resp, MAX_TOKEN_BODY)
                if resp.status != 200:
                    raise error_from_body(resp.status, body)
        except aiohttp.ClientError as e:
            raise RegistryError(f"fetching a token from {realm}: {e}") from None
        if len(body) > MAX_TOKEN_BODY:
            raise RegistryError(f"token answer from {realm} is too large")
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"token answer from {realm} is not JSON") from None
        value = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token answer from {realm} has no token")
        expires_in = doc.get("expires_in")
        if not isinstance(expires_in, int) or expires_in < 60:
            expires_in = 60  # the Distribution spec's minimum and default
        # renew a little before it runs out
        return _Token(value, time.monotonic() + expires_in - 10)


async def read_body(resp: aiohttp.ClientResponse, limit: int = MAX_ERROR_BODY) -> bytes:
    """Up to limit + 1 bytes of a body (so a caller can tell it was too long)."""
    data = b""
    while len(data) <= limit:
        more = await resp.content.read(limit + 1 - len(data))
        if not more:
            break
        data += more
    return data


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def repository_scope(name: str, actions: str) -> str:
    return f"repository:{name}:{actions}"


def add_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@dataclass
class Endpoint:
    url: str            # "https://registry-1.docker.io", "http://127.0.0.1:5000"
    host: str           # host[:port]: which credentials, challenges and tokens apply
    verify_tls: bool = True
    mirror: bool = False

    @property
    def ssl(self) -> bool | None:
        return None if self.verify_tls else False


class RepoSession:
    """One repository on one endpoint, within one HTTP session: authorised requests."""

    def __init__(self, session: aiohttp.ClientSession, auth: Authenticator, ep: Endpoint,
                 name: str, actions: str):
        self.auth = auth
        self.session = session
        self.ep = ep
        self.name = name
        self.scope = repository_scope(name, actions)

    def url(self, path: str) -> str:
        return f"{self.ep.url}/v2/{self.name}/{path}"

    def location(self, resp: aiohttp.ClientResponse) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"registry answered {resp.status} without a Location")
        return urllib.parse.urljoin(self.ep.url + "/", loc)

    async def ping(self) -> None:
        async with self.session.get(f"{self.ep.url}/v2/", ssl=self.ep.ssl) as resp:
            if resp.status == 401:
                challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                if challenges:
                    self.auth.set_challenges(self.ep.host, challenges)

    @asynccontextmanager
    async def request(self, method: str, url: str, *, headers: dict | None = None,
                      data: bytes | None = None,
                      scopes: list[str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request with the right Authorization; on a 401, learn the challenge, retry once."""
        scopes = scopes or [self.scope]
        same_host = hostname(url) == self.ep.host
        auth = self.auth
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            if same_host:
                value = await auth.authorization(self.session, self.ep.host, scopes,
                                                 ssl=self.ep.verify_tls)
                if value:
                    hdrs["Authorization"] = value
            resp = await self.session.request(method, url, headers=hdrs, data=data,
                                              ssl=self.ep.ssl)
            if resp.status == 401 and attempt == 0 and same_host:
                challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                body = await read_body(resp)
                resp.release()
                if not challenges:
                    raise error_from_body(401, body)
                auth.set_challenges(self.ep.host, challenges)
                auth.forget_tokens(self.ep.host)
                if "Authorization" in hdrs and not any(c.scheme == "bearer" for c in challenges):
                    raise error_from_body(401, body)  # our basic credentials were refused
                continue
            try:
                yield resp
            finally:
                resp.release()
            return
