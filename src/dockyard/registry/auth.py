"""Authentication for the registry server: htpasswd basic auth and bearer tokens.

Basic: an htpasswd file with bcrypt entries (`htpasswd -B`); a valid user may
do everything.

Token: clients are challenged with
`WWW-Authenticate: Bearer realm="<realm>",service="<service>",scope="..."` and
fetch a token from `GET <realm>?service=&scope=` (basic credentials checked
against the htpasswd file when there is one; without one every request is
granted). Tokens are compact JWTs signed with HMAC-SHA256 by a per-process
key; they carry `access` claims like Docker's token spec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import bcrypt

from dockyard.errors import ConfigError
from dockyard.registry.storage import DistributionError

TOKEN_TTL = 300


@dataclass(frozen=True)
class Scope:
    type: str       # "repository" or "registry"
    name: str       # repository name, or "catalog"
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        parts = text.split(":")
        if len(parts) < 3:
            return None
        # the name may hold a port-less host part with ':'? not in names we serve
        typ, actions = parts[0], parts[-1]
        name = ":".join(parts[1:-1])
        return cls(typ, name, tuple(a for a in actions.split(",") if a))


def load_htpasswd(path: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("htpasswd", f"cannot read {path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith(("$2y$", "$2a$", "$2b$")):
            raise ConfigError("htpasswd", f"{path}:{n}: only bcrypt entries are supported "
                                          "(htpasswd -B)")
        users[user] = hashed.encode()
    return users


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Authenticator:
    """Decides whether a request may do what it asks; raises UNAUTHORIZED otherwise."""

    def __init__(self, htpasswd: str | None = None, token: bool = False,
                 realm: str | None = None, service: str = "dockyard-registry") -> None:
        self.users = load_htpasswd(htpasswd) if htpasswd else None
        self.token = token
        self.realm = realm
        self.service = service
        self.key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], float] = {}  # bcrypt is slow; cache successes

    @property
    def enabled(self) -> bool:
        return self.token or self.users is not None

    # ------------------------------------------------------------ basic
    def check_password(self, user: str, password: str) -> bool:
        if self.users is None:
            return True
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        if self._verified.get(key, 0) > time.monotonic():
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            ok = False
        if ok:
            self._verified[key] = time.monotonic() + 60
        return ok

    # ------------------------------------------------------------ tokens
    def issue(self, subject: str, scopes: list[Scope]) -> tuple[str, int]:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {"iss": "dockyard", "sub": subject, "aud": self.service, "iat": now,
                  "nbf": now - 5, "exp": now + TOKEN_TTL, "jti": secrets.token_hex(8),
                  "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)}
                             for s in scopes]}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = hmac.new(self.key, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}", TOKEN_TTL

    def verify_token(self, token: str) -> dict | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            expect = hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expect, _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        now = time.time()
        if not isinstance(claims, dict) or claims.get("aud") != self.service:
            return None
        if not (claims.get("nbf", 0) <= now < claims.get("exp", 0)):
            return None
        return claims

    def grant(self, user: str | None, wanted: list[Scope]) -> list[Scope]:
        """What a token for `user` (None: anonymous) may carry of what was asked."""
        if self.users is not None and user is None:
            return []
        return [s for s in wanted if s.type in ("repository", "registry")]

    # ------------------------------------------------------------ checks
    def _challenge(self, host: str, scheme: str, scopes: list[Scope],
                   error: str | None = None) -> DistributionError:
        if self.token:
            realm = self.realm or f"{scheme}://{host}/token"
            value = f'Bearer realm="{realm}",service="{self.service}"'
            if scopes:
                value += ',scope="' + " ".join(str(s) for s in scopes) + '"'
            if error:
                value += f',error="{error}"'
        else:
            value = f'Basic realm="{self.realm or "dockyard-registry"}"'
        detail = [{"Type": s.type, "Name": s.name, "Action": a}
                  for s in scopes for a in s.actions] or None
        return DistributionError("UNAUTHORIZED", "authentication required", detail,
                                 headers={"WWW-Authenticate": value})

    def check(self, authorization: str | None, host: str, scheme: str,
              scopes: list[Scope]) -> None:
        """Allow the request, or raise UNAUTHORIZED with the right challenge."""
        if not self.enabled:
            return
        if not authorization:
            raise self._challenge(host, scheme, scopes)
        if not self.token:
            creds = _basic_credentials(authorization)
            if creds is None or not self.check_password(*creds):
                raise self._challenge(host, scheme, scopes)
            return
        kind, _, token = authorization.partition(" ")
        claims = self.verify_token(token.strip()) if kind.lower() == "bearer" else None
        if claims is None:
            raise self._challenge(host, scheme, scopes, "invalid_token" if token else None)
        granted: dict[tuple[str, str], set[str]] = {}
        for a in claims.get("access") or []:
            if isinstance(a, dict):
                key = (str(a.get("type")), str(a.get("name")))
                granted.setdefault(key, set()).update(str(x) for x in a.get("actions") or [])
        for s in scopes:
            have = granted.get((s.type, s.name), set())
            if "*" not in have and not set(s.actions) <= have:
                raise self._challenge(host, scheme, scopes, "insufficient_scope")

    def allowed(self, authorization: str | None, scope: Scope) -> bool:
        """Like check() for one scope, answering instead of raising (cross-repo mount)."""
        try:
            self.check(authorization, "", "http", [scope])
        except DistributionError:
            return False
        return True

    def token_request(self, authorization: str | None, scopes: list[str]) -> dict:
        """Answer a token request; raises UNAUTHORIZED for bad credentials."""
        user = None
        if authorization:
            creds = _basic_credentials(authorization)
            if creds is None or not self.check_password(*creds):
                raise DistributionError("UNAUTHORIZED", "invalid credentials",
                                        headers={"WWW-Authenticate":
                                                 f'Basic realm="{self.service}"'})
            user = creds[0]
        wanted = [s for s in (Scope.parse(x) for text in scopes for x in text.split(" ") if x) if s]
        token, ttl = self.issue(user or "", self.grant(user, wanted))
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
