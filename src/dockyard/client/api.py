"""`Client`: the one Engine API client the CLI and Compose use.

    c = Client()                      # DOCKYARD_HOST or unix:///run/dockyard/dockyard.sock
    c.get("/images/json", params={"all": True})
    for msg in c.stream_json("POST", "/images/create", params={"fromImage": "busybox"}):
        ...
    with c.hijack("POST", f"/containers/{cid}/attach", params={"stream": 1, "stdout": 1}) as s:
        for stream, data in demux(s): ...

Paths are given unversioned; the client prefixes /v1.xx, negotiated like the
docker CLI does: one GET /_ping, then min(API_VERSION, the daemon's
Api-Version). An explicit `version` (or DOCKYARD_API_VERSION) skips that.
HTTP errors raise DockyardError subclasses by status with the daemon's
message; a daemon that cannot be reached raises CannotConnect.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from dockyard import __version__
from dockyard.client.transport import (
    CannotConnect,
    TLSConfig,
    connect_error,
    error_for,
    new_connection,
    parse_host,
    resolve_host,
)
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from typing import Any, Self

    from dockyard.client.hijack import HijackedStream

API_VERSION = "1.41"      # the newest Engine API version we speak
FALLBACK_VERSION = "1.24"  # what a daemon whose ping has no Api-Version gets
USER_AGENT = f"Dockyard-Client/{__version__} ({sys.platform})"
CHUNK = 65536


def _vtuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def query(params: dict[str, Any] | None) -> str:
    """URL query like the docker client's: None dropped, bools 1/0, dicts as JSON
    (filters), lists as repeated keys."""
    if not params:
        return ""
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            items.append((key, "1" if value else "0"))
        elif isinstance(value, dict):
            items.append((key, json.dumps(value, separators=(",", ":"))))
        elif isinstance(value, list | tuple):
            items.extend((key, str(v)) for v in value)
        else:
            items.append((key, str(value)))
    return urllib.parse.urlencode(items)


def error_message(raw: bytes, status: int) -> str:
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    except ValueError:
        pass
    return raw.decode(errors="replace").strip() or f"HTTP status {status}"


def check_message(msg: Any) -> None:
    """Raise the error a progress-stream message carries ({"error"} / {"errorDetail"})."""
    if not isinstance(msg, dict):
        return
    detail = msg.get("errorDetail")
    if not detail and not msg.get("error"):
        return
    detail = detail if isinstance(detail, dict) else {}
    message = detail.get("message") or msg.get("error") or "unknown error"
    code = detail.get("code")
    raise error_for(code if isinstance(code, int) and code >= 400 else 500, str(message))


def iter_json(chunks: Iterable[bytes]) -> Iterator[Any]:
    """JSON values from a byte stream of concatenated (usually newline-separated) JSON."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf = ""
    for chunk in chunks:
        buf += text.decode(chunk)
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= len(buf):
                break
            try:
                value, pos = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                break  # incomplete: wait for more
            yield value
        buf = buf[pos:]
    buf += text.decode(b"", final=True)
    if buf.strip():
        raise DockyardError(f"invalid JSON in the daemon's stream: {buf[:80]!r}")


class ResponseStream:
    """A streaming response body on its own connection: iterate for chunks, or
    read(n) like a file; closing it closes the connection."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def read(self, n: int = -1) -> bytes:
        return self.resp.read() if n is None or n < 0 else self.resp.read1(n)

    read1 = read

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                data = self.resp.read1(CHUNK)
                if not data:
                    return
                yield data
        finally:
            self.close()

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    def __init__(self, host: str | None = None, tls: TLSConfig | None = None,
                 version: str | None = None, timeout: float | None = None) -> None:
        self.host = resolve_host(host)
        self.tls = tls if tls is not None else TLSConfig.from_env()
        self.endpoint = parse_host(self.host, tls=self.tls is not None)
        if self.endpoint.scheme == "unix":
            self.tls = None
        self.timeout = timeout
        self._version = version or os.environ.get("DOCKYARD_API_VERSION") or None
        self._ssl = None
        self._conn: http.client.HTTPConnection | None = None
        self.ping_headers: dict[str, str] = {}

    # -- connections ------------------------------------------------------------------------
    def _new_conn(self) -> http.client.HTTPConnection:
        if self.tls is not None and self._ssl is None:
            self._ssl = self.tls.ssl_context()
        return new_connection(self.endpoint, self._ssl, self.timeout)

    @property
    def _host_header(self) -> str:
        if self.endpoint.scheme == "unix":
            return "api.moby.localhost"
        return f"{self.endpoint.hostname}:{self.endpoint.port}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- versions ---------------------------------------------------------------------------
    def ping(self) -> dict[str, str]:
        """GET /_ping; the daemon's headers (lower-case names). Errors raise, except
        that a failing ping still reports its headers like docker's does."""
        _, resp = self._send("GET", "/_ping", None, {}, shared=True)
        self.ping_headers = {k.lower(): v for k, v in resp.getheaders()}
        raw = resp.read()
        if resp.status >= 400 and not self.ping_headers.get("api-version"):
            raise error_for(resp.status, error_message(raw, resp.status))
        return self.ping_headers

    @property
    def api_version(self) -> str:
        """The API version used in paths; negotiated with one ping on first use."""
        if self._version is None:
            server = self.ping().get("api-version") or FALLBACK_VERSION
            self._version = min(API_VERSION, server, key=_vtuple)
        return self._version

    def url(self, path: str, params: dict[str, Any] | None = None,
            versioned: bool = True) -> str:
        if not path.startswith("/"):
            path = "/" + path
        q = query(params)
        prefix = f"/v{self.api_version}" if versioned else ""
        return prefix + path + ("?" + q if q else "")

    # -- requests ---------------------------------------------------------------------------
    def _send(self, method: str, url: str, body: Any, headers: dict[str, str],
              shared: bool) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request; the shared keep-alive connection is retried once if the
        daemon had closed it. Returns the response, whatever its status."""
        headers = {"User-Agent": USER_AGENT, "Host": self._host_header, **headers}
        for attempt in (0, 1):
            fresh = not shared or self._conn is None or self._conn.sock is None
            if fresh:
                conn = self._new_conn()
                if shared:
                    self.close()
                    self._conn = conn
            else:
                conn = self._conn  # type: ignore[assignment]
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                resendable = body is None or isinstance(body, bytes)
                if fresh or attempt or not resendable:
                    raise DockyardError(f"error during connect to {self.host}: {e}") from None
                continue
            except TimeoutError:
                conn.close()
                raise DockyardError(f"timed out waiting for the daemon at {self.host}") from None
            except (http.client.HTTPException, OSError) as e:
                conn.close()
                raise DockyardError(f"error talking to the daemon at {self.host}: {e}") from None
            return conn, resp
        raise AssertionError("unreachable")

    @staticmethod
    def _encode(body: Any, headers: dict[str, str]) -> Any:
        if body is None or isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        if isinstance(body, dict | list):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(body).encode()
        return body  # a file object or an iterable of bytes: sent chunked

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                stream: bool = False) -> http.client.HTTPResponse | ResponseStream:
        """One API request; raises the DockyardError for status >= 400. With `stream`
        the exchange gets its own connection and a ResponseStream is returned."""
        h = dict(headers or {})
        payload = self._encode(body, h)
        url = self.url(path, params)
        conn, resp = self._send(method, url, payload, h, shared=not stream)
        if resp.status >= 400:
            raw = resp.read()
            if stream:
                resp.close()
                conn.close()
            raise error_for(resp.status, error_message(raw, resp.status))
        if stream:
            if conn.sock is not None:
                conn.sock.settimeout(None)  # streams may idle for long (logs -f, events)
            return ResponseStream(conn, resp)
        return resp

    def call(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """A request whose answer is JSON (or nothing): returns it parsed."""
        resp = self.request(method, path, params, body, headers)
        raw = resp.read()  # type: ignore[union-attr]
        if not raw:
            return None
        ctype = resp.getheader("Content-Type", "")  # type: ignore[union-attr]
        if "json" in ctype or raw[:1] in (b"{", b"["):
            try:
                return json.loads(raw)
            except ValueError:
                raise DockyardError(f"invalid JSON from the daemon: {raw[:80]!r}") from None
        return raw.decode(errors="replace")

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("GET", path, params, **kw)

    def post(self, path: str, params: dict[str, Any] | None = None, body: Any = None,
             **kw: Any) -> Any:
        return self.call("POST", path, params, body, **kw)

    def put(self, path: str, params: dict[str, Any] | None = None, body: Any = None,
            **kw: Any) -> Any:
        return self.call("PUT", path, params, body, **kw)

    def delete(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("DELETE", path, params, **kw)

    def head(self, path: str, params: dict[str, Any] | None = None) -> dict[str, str]:
        resp = self.request("HEAD", path, params)
        resp.read()  # type: ignore[union-attr]
        return {k.lower(): v for k, v in resp.getheaders()}  # type: ignore[union-attr]

    # -- streams ----------------------------------------------------------------------------
    def raw_stream(self, method: str, path: str, params: dict[str, Any] | None = None,
                   body: Any = None, headers: dict[str, str] | None = None) -> ResponseStream:
        """A streaming exchange (save's tar, logs, a build): the body may be bytes, a file
        object or an iterable of bytes (sent with chunked transfer encoding)."""
        return self.request(method, path, params, body, headers, stream=True)  # type: ignore

    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: Any = None, headers: dict[str, str] | None = None) -> Iterator[Any]:
        """The JSON messages of a progress stream (pull, push, load, build, events); an
        {"error"}/{"errorDetail"} message raises. The request is sent now, so HTTP
        errors raise here rather than on iteration."""
        stream = self.raw_stream(method, path, params, body, headers)
        return _checked(stream)

    def hijack(self, method: str, path: str, body: Any = None,
               params: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> HijackedStream:
        """attach / exec start: the raw bidirectional stream after `101 UPGRADED`."""
        from dockyard.client.hijack import hijack

        h = {"User-Agent": USER_AGENT, **(headers or {})}
        payload = self._encode(body, h)
        if payload is not None and not isinstance(payload, bytes):
            raise DockyardError("a hijacked request's body must be JSON or bytes")
        url = self.url(path, params)
        conn = self._new_conn()
        sock, conn.sock = conn.sock, None
        conn.close()
        try:
            return hijack(sock, method, url, self._host_header, payload, h)  # type: ignore
        except OSError as e:
            if isinstance(e, ConnectionRefusedError | FileNotFoundError):
                raise connect_error(self.endpoint, e) from None
            raise DockyardError(f"error talking to the daemon at {self.host}: {e}") from None


def _checked(stream: ResponseStream) -> Iterator[Any]:
    with stream:
        for msg in iter_json(stream):
            check_message(msg)
            yield msg


__all__ = ["API_VERSION", "CannotConnect", "Client", "ResponseStream", "TLSConfig",
           "check_message", "iter_json", "query"]
