"""Where the daemon is and how to reach it: host strings, TLS, HTTP connections.

Hosts are docker's: `unix:///path/to.sock` or `tcp://host:port` (TLS when a
TLSConfig is given). The default is /run/dockyard/dockyard.sock, overridden by
the argument or DOCKYARD_HOST. TLS settings come from the environment like
docker's DOCKER_TLS / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH:

  DOCKYARD_TLS=1          TLS, server certificate not verified
  DOCKYARD_TLS_VERIFY=1   TLS, server certificate verified against ca.pem
  DOCKYARD_CERT_PATH=dir  ca.pem, cert.pem, key.pem (default ~/.docker)

Only the standard library's http.client is used (no aiohttp, no requests), and
ssl is touched only for TLS, so the CLI starts fast.
"""

from __future__ import annotations

import http.client
import os
import socket

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
HOST_ENV = "DOCKYARD_HOST"
PLAIN_TCP_PORT = 2375
TLS_TCP_PORT = 2376


class CannotConnect(DockyardError):
    """The daemon's socket is missing, refuses connections or is not ours to use.

    Not an "Error response from daemon": the CLI prints the message as it is."""

    status = 0


ERRORS_BY_STATUS: dict[int, type[DockyardError]] = {
    400: InvalidArgument, 404: NotFound, 409: Conflict}


def error_for(status: int, message: str) -> DockyardError:
    """The DockyardError for an HTTP error status; `.status` is the daemon's status."""
    err = ERRORS_BY_STATUS.get(status, DockyardError)(message)
    err.status = status
    return err


class TLSConfig:
    """Client-side TLS: the CA to verify the daemon with, and our certificate."""

    def __init__(self, ca_cert: str | None = None, client_cert: str | None = None,
                 client_key: str | None = None, verify: bool = True) -> None:
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.verify = verify

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TLSConfig | None:
        """The TLS settings the environment asks for, or None for plain connections.

        Like the docker CLI, any non-empty DOCKYARD_TLS_VERIFY means "verify"."""
        env = os.environ if env is None else env
        verify = bool(env.get("DOCKYARD_TLS_VERIFY"))
        if not verify and not env.get("DOCKYARD_TLS"):
            return None
        path = env.get("DOCKYARD_CERT_PATH") or os.path.expanduser("~/.docker")

        def pem(name: str) -> str | None:
            p = os.path.join(path, name)
            return p if os.path.exists(p) else None

        return cls(ca_cert=pem("ca.pem"), client_cert=pem("cert.pem"),
                   client_key=pem("key.pem"), verify=verify)

    def ssl_context(self):  # -> ssl.SSLContext (ssl is imported only when used)
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            if self.ca_cert:
                ctx.load_verify_locations(self.ca_cert)
            else:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            try:
                ctx.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as e:
                raise InvalidArgument(f"could not load client certificate "
                                      f"{self.client_cert}: {e}") from None
        return ctx


class Endpoint:
    """A parsed host string: `unix` with a path, or `tcp` with host and port."""

    def __init__(self, url: str, scheme: str, path: str = "", hostname: str = "",
                 port: int = 0) -> None:
        self.url = url
        self.scheme = scheme
        self.path = path
        self.hostname = hostname
        self.port = port


def resolve_host(host: str | None) -> str:
    return host or os.environ.get(HOST_ENV) or DEFAULT_HOST


def parse_host(url: str, tls: bool = False) -> Endpoint:
    """`unix:///run/x.sock`, `tcp://10.0.0.1:2376`, `tcp://[::1]:2375` -> Endpoint."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidArgument(f"invalid host {url!r}: expected unix:// or tcp://")
    scheme = scheme.lower()
    if scheme == "unix":
        if not rest:
            raise InvalidArgument(f"invalid host {url!r}: no socket path")
        return Endpoint(url, "unix", path=rest)
    if scheme in ("tcp", "http", "https"):
        rest = rest.split("/", 1)[0]
        port = TLS_TCP_PORT if tls or scheme == "https" else PLAIN_TCP_PORT
        if rest.startswith("["):  # [v6]:port
            hostname, _, tail = rest[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        else:
            hostname, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise InvalidArgument(f"invalid host {url!r}: bad port {port_text!r}")
            port = int(port_text)
        return Endpoint(url, "tcp", hostname=hostname or "127.0.0.1", port=port)
    raise InvalidArgument(f"invalid host {url!r}: unsupported scheme {scheme!r}")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path: str, timeout: float | None = None, blocksize: int = 65536) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=blocksize)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class TCPHTTPConnection(http.client.HTTPConnection):
    """http.client over TCP, wrapped in TLS when an ssl context is given."""

    def __init__(self, hostname: str, port: int, timeout: float | None = None,
                 ssl_context=None, blocksize: int = 65536) -> None:
        super().__init__(hostname, port, timeout=timeout, blocksize=blocksize)
        self.ssl_context = ssl_context

    def connect(self) -> None:
        s = socket.create_connection((self.host, self.port), self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                s = self.ssl_context.wrap_socket(s, server_hostname=self.host)
            except BaseException:
                s.close()
                raise
        self.sock = s


def connect_error(endpoint: Endpoint, err: OSError) -> DockyardError:
    """docker's wording for a daemon that cannot be reached."""
    if isinstance(err, PermissionError):
        return CannotConnect(f"permission denied while trying to connect to the Dockyard "
                             f"daemon socket at {endpoint.url}: {err.strerror or err}")
    if type(err).__name__.startswith("SSL"):
        return CannotConnect(f"TLS handshake with {endpoint.url} failed: {err}")
    return CannotConnect(f"Cannot connect to the Dockyard daemon at {endpoint.url}. "
                         f"Is the dockyard daemon running?")


def new_connection(endpoint: Endpoint, ssl_context=None,
                   timeout: float | None = None) -> http.client.HTTPConnection:
    """A connected HTTPConnection (TLS over TCP with `ssl_context`), or CannotConnect."""
    conn: http.client.HTTPConnection
    if endpoint.scheme == "unix":
        conn = UnixHTTPConnection(endpoint.path, timeout=timeout)
    else:
        conn = TCPHTTPConnection(endpoint.hostname, endpoint.port, timeout=timeout,
                                 ssl_context=ssl_context)
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        raise connect_error(endpoint, e) from None
    return conn
