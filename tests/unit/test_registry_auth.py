"""Registry client pieces without a real registry: challenges, tokens, credentials,
endpoints, error words, progress renderers, and `dockyard login`/`logout`.

Fake registries here are small aiohttp apps on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import stat
import sys

import pytest
from aiohttp import web

from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.registry.auth_client import (
    DOCKER_HUB_KEY,
    CredentialStore,
    RegistryError,
    credentials_key,
    error_from_body,
    parse_challenges,
)
from dockyard.registry.client import RegistryClient, is_loopback
from dockyard.registry.progress import (
    JSONRenderer,
    PlainRenderer,
    Progress,
    TTYRenderer,
    human_size,
    progress_bar,
)

# --------------------------------------------------------------------------- challenges


def test_parse_bearer_challenge_with_commas_in_quoted_scope():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/busybox:pull,push"')
    [c] = parse_challenges([header])
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull,push"}


def test_parse_basic_and_several_challenges():
    cs = parse_challenges(['Basic realm="basic-realm"', 'bearer realm=http://x/t, error=invalid'])
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params == {"realm": "basic-realm"}
    assert cs[1].params == {"realm": "http://x/t", "error": "invalid"}
    [c] = parse_challenges(['Bearer realm="a\\"b"'])
    assert c.params["realm"] == 'a"b'
    assert parse_challenges([""]) == []


def test_registry_error_words():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                   "detail": {"Tag": "nope"}}]}).encode()
    e = error_from_body(404, body)
    assert str(e) == "manifest unknown: manifest unknown"
    assert (e.code, e.status) == ("MANIFEST_UNKNOWN", 404)
    e = error_from_body(401, json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                     "message": "authentication required"}]})
                        .encode())
    assert str(e) == "unauthorized: authentication required"
    assert str(error_from_body(401, b"")) == "unauthorized: authentication required"
    assert str(error_from_body(401, b'{"details":"incorrect username or password"}')) \
        == "incorrect username or password"
    e = error_from_body(502, b"<html>bad gateway</html>")
    assert e.status == 500 and "502" in str(e)


# --------------------------------------------------------------------------- credentials


def test_credentials_round_trip_and_docker_keys(tmp_path):
    store = CredentialStore(str(tmp_path / "cfg"))
    assert store.get("docker.io") is None
    store.set("docker.io", "alice", "pa:ss")
    store.set("127.0.0.1:5000", "bob", "pw")
    path = tmp_path / "cfg" / "config.json"
    doc = json.loads(path.read_text())
    assert doc["auths"][DOCKER_HUB_KEY] == {"auth": base64.b64encode(b"alice:pa:ss").decode()}
    assert "127.0.0.1:5000" in doc["auths"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY):
        assert store.get(name) == ("alice", "pa:ss")
    assert store.get("http://127.0.0.1:5000/v2/") == ("bob", "pw")

    docker_auth = pytest.importorskip("docker.auth")
    cfg = docker_auth.load_config(str(path))
    assert cfg.resolve_authconfig("docker.io")["password"] == "pa:ss"
    assert cfg.resolve_authconfig("127.0.0.1:5000")["username"] == "bob"

    assert store.remove("docker.io") is True
    assert store.remove("docker.io") is False
    assert store.get("docker.io") is None
    assert store.get("127.0.0.1:5000") == ("bob", "pw")


def test_credentials_keep_other_keys_and_read_url_entries(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "auths": {"https://reg.example.com": {"auth": base64.b64encode(b"u:p").decode()}},
        "psFormat": "table {{.ID}}", "HttpHeaders": {"X-A": "b"}}))
    store = CredentialStore(str(tmp_path))
    assert store.get("reg.example.com") == ("u", "p")
    store.set("reg.example.com", "u2", "p2")
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table {{.ID}}" and doc["HttpHeaders"] == {"X-A": "b"}
    assert list(doc["auths"]) == ["reg.example.com"]
    assert store.get("reg.example.com") == ("u2", "p2")
    assert [n for n in os.listdir(tmp_path) if n != "config.json"] == []  # no temp file left


def test_credentials_key():
    assert credentials_key("docker.io") == DOCKER_HUB_KEY
    assert credentials_key("https://index.docker.io/v1/") == DOCKER_HUB_KEY
    assert credentials_key("Registry.Example.com:5000") == "registry.example.com:5000"


# --------------------------------------------------------------------------- endpoints


def test_endpoints_like_dockerd():
    c = RegistryClient(mirrors=["http://127.0.0.1:5001", "mirror.example.com"],
                       insecure=["reg.lan:5000", "10.0.0.0/8"])
    hub = c.endpoints("docker.io")
    assert [e.url for e in hub] == ["http://127.0.0.1:5001", "https://mirror.example.com",
                                    "https://registry-1.docker.io"]
    assert [e.mirror for e in hub] == [True, True, False]
    assert [e.url for e in c.endpoints("docker.io", pull=False)] == \
        ["https://registry-1.docker.io"]
    assert [e.url for e in c.endpoints("localhost:5000")] == ["http://localhost:5000"]
    assert [e.url for e in c.endpoints("127.0.0.2:80")] == ["http://127.0.0.2:80"]
    lan = c.endpoints("reg.lan:5000")
    assert [(e.url, e.verify_tls) for e in lan] == [("https://reg.lan:5000", False),
                                                     ("http://reg.lan:5000", True)]
    assert [e.url for e in c.endpoints("10.1.2.3:5000")] == ["https://10.1.2.3:5000",
                                                            "http://10.1.2.3:5000"]
    [q] = c.endpoints("quay.io")
    assert (q.url, q.verify_tls) == ("https://quay.io", True)
    assert is_loopback("[::1]:5000") and is_loopback("localhost")
    assert not is_loopback("example.com:5000")


# --------------------------------------------------------------------------- progress


def test_progress_bar_and_sizes():
    assert human_size(1_234_567) == "1.235MB"
    assert human_size(999) == "999B"
    bar = progress_bar(1_200_000, 3_400_000)
    assert bar.startswith("[=================>")
    assert bar.endswith("]    1.2MB/3.4MB")
    assert progress_bar(5, 0).strip() == "5B"


def test_tty_renderer_redraws_in_place():
    out = io.StringIO()
    p = Progress(TTYRenderer(out), interval=0)
    p.status("latest: Pulling from library/busybox")
    p.layer_started("aaaaaaaaaaaa", "Pulling fs layer")
    p.layer_started("bbbbbbbbbbbb", "Pulling fs layer")
    p.bytes("aaaaaaaaaaaa", "Downloading", 10, 100)
    p.layer_done("aaaaaaaaaaaa", "Pull complete")
    p.status("Digest: sha256:" + "0" * 64)
    text = out.getvalue()
    assert text.startswith("latest: Pulling from library/busybox\n")
    # the first layer's line is two up from the bottom when it is updated
    assert "\x1b[2A\x1b[2K\raaaaaaaaaaaa: Downloading [=====>" in text
    assert "\x1b[2A\x1b[2K\raaaaaaaaaaaa: Pull complete\r\x1b[2B" in text
    assert "\x1b[1A\x1b[2K\rbbbbbbbbbbbb: Pulling fs layer" in text
    assert text.endswith("Digest: sha256:" + "0" * 64 + "\n")


def test_plain_renderer_prints_status_changes_only():
    out = io.StringIO()
    p = Progress(PlainRenderer(out), interval=0)
    p.layer_started("aaaaaaaaaaaa", "Pulling fs layer")
    p.bytes("aaaaaaaaaaaa", "Downloading", 10, 100)
    p.status("Verifying Checksum", "aaaaaaaaaaaa")
    p.status("Verifying Checksum", "aaaaaaaaaaaa")
    p.layer_done("aaaaaaaaaaaa", "Download complete")
    assert out.getvalue().splitlines() == ["aaaaaaaaaaaa: Pulling fs layer",
                                           "aaaaaaaaaaaa: Verifying Checksum",
                                           "aaaaaaaaaaaa: Download complete"]


def test_json_renderer_engine_api_shape():
    r = JSONRenderer()
    p = Progress(r, interval=0)
    p.status("latest: Pulling from library/busybox")
    p.layer_started("abc", "Pulling fs layer")
    p.bytes("abc", "Downloading", 50, 100)
    p.error("manifest unknown: manifest unknown")
    assert r.messages[0] == {"status": "latest: Pulling from library/busybox"}
    assert r.messages[1] == {"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"}
    m = r.messages[2]
    assert m["progressDetail"] == {"current": 50, "total": 100} and m["id"] == "abc"
    assert m["progress"].startswith("[=========================>")
    assert r.messages[3] == {"errorDetail": {"message": "manifest unknown: manifest unknown"},
                             "error": "manifest unknown: manifest unknown"}


# --------------------------------------------------------------------------- fake registries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeAuthRegistry:
    """A registry that demands Bearer tokens (or Basic), with its token endpoint."""

    def __init__(self, scheme: str = "bearer", token_key: str = "token"):
        self.scheme = scheme
        self.token_key = token_key
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = {"alice": "wonderland"}
        self.valid_tokens: set[str] = set()
        self.token_requests: list[dict] = []
        self.log: list[tuple[str, str | None]] = []
        self.config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers",' \
                      b'"diff_ids":[]}}'
        self.layer = b"not really a tar, but the client does not care"
        cfg = formats.descriptor(formats.DOCKER_CONFIG, dg.of_bytes(self.config),
                                 len(self.config))
        lay = formats.descriptor(formats.DOCKER_LAYER_GZIP, dg.of_bytes(self.layer),
                                 len(self.layer))
        self.manifest = formats.make_manifest(cfg, [lay])
        self.blobs = {cfg["digest"]: self.config, lay["digest"]: self.layer}

    def _challenge(self, scope: str) -> str:
        if self.scheme == "basic":
            return 'Basic realm="fake"'
        return (f'Bearer realm="http://{self.host}/token",service="fake-registry",'
                f'scope="{scope}"')

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.scheme == "basic":
            if not header.startswith("Basic "):
                return False
            u, _, p = base64.b64decode(header[6:]).decode().partition(":")
            return self.users.get(u) == p
        return header.startswith("Bearer ") and header[7:] in self.valid_tokens

    async def token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            u, _, p = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(u) != p:
                return web.json_response({"errors": [{"code": "UNAUTHORIZED",
                                                      "message": "bad credentials"}]},
                                         status=401)
            user = u
        self.token_requests.append({"user": user, "scope": request.query.getall("scope", []),
                                    "service": request.query.get("service"),
                                    "account": request.query.get("account")})
        if user is None:
            return web.json_response({"details": "anonymous access denied"}, status=401)
        tok = f"tok-{len(self.token_requests)}"
        self.valid_tokens.add(tok)
        return web.json_response({self.token_key: tok, "expires_in": 300})

    async def v2(self, request: web.Request) -> web.StreamResponse:
        self.log.append((request.path, request.headers.get("Authorization")))
        scope = "repository:x/y:pull"
        if request.path != "/v2/" and self._authorized(request):
            kind, ref = request.path.split("/")[-2:]
            if kind == "manifests":
                return web.Response(body=self.manifest,
                                    headers={"Content-Type": formats.DOCKER_MANIFEST})
            if kind == "blobs" and ref in self.blobs:
                return web.Response(body=self.blobs[ref])
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN",
                                                  "message": "blob unknown"}]}, status=404)
        if request.path == "/v2/" and self._authorized(request):
            return web.json_response({})
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401, headers={"WWW-Authenticate": self._challenge(scope)})

    async def run(self, coro_fn):
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_route("*", "/v2/{tail:.*}", self.v2)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            return await coro_fn()
        finally:
            await runner.cleanup()


@pytest.mark.parametrize("token_key", ["token", "access_token"])
def test_bearer_flow_fetches_one_token_and_retries_once(tmp_path, token_key):
    fake = FakeAuthRegistry(token_key=token_key)
    creds = CredentialStore(str(tmp_path / "cfg"))
    creds.set(fake.host, "alice", "wonderland")
    client = RegistryClient(credentials=creds)
    store = ContentStore(str(tmp_path / "store"))
    pulled = asyncio.run(fake.run(lambda: client.pull(f"{fake.host}/x/y:latest", store)))
    assert pulled.manifest_bytes == fake.manifest
    assert store.exists(pulled.layers[0]["digest"])
    assert len(fake.token_requests) == 1, "one token for the whole pull"
    assert fake.token_requests[0] == {"user": "alice", "scope": ["repository:x/y:pull"],
                                      "service": "fake-registry", "account": "alice"}
    # the first request had no token, the retry had one; the rest used the cached one
    assert fake.log[0][1] is None
    assert all(a == "Bearer tok-1" for _, a in fake.log[1:])

    # the registry forgets the token: the client learns it on a 401 and gets a new one
    fake.valid_tokens.clear()
    store2 = ContentStore(str(tmp_path / "store2"))
    asyncio.run(fake.run(lambda: client.pull(f"{fake.host}/x/y:latest", store2)))
    assert len(fake.token_requests) == 2


def test_bearer_without_credentials_shows_the_token_server_words(tmp_path):
    fake = FakeAuthRegistry()
    store = ContentStore(str(tmp_path / "store"))
    with pytest.raises(RegistryError) as e:
        asyncio.run(fake.run(lambda: RegistryClient().pull(f"{fake.host}/x/y", store)))
    assert str(e.value) == "anonymous access denied"
    assert list(store.list()) == []


def test_basic_challenge_sends_credentials(tmp_path):
    fake = FakeAuthRegistry(scheme="basic")
    creds = CredentialStore(str(tmp_path / "cfg"))
    store = ContentStore(str(tmp_path / "store"))
    with pytest.raises(RegistryError) as e:
        asyncio.run(fake.run(lambda: RegistryClient(credentials=creds)
                             .pull(f"{fake.host}/x/y", store)))
    assert str(e.value) == "unauthorized: authentication required"
    creds.set(fake.host, "alice", "wonderland")
    pulled = asyncio.run(fake.run(lambda: RegistryClient(credentials=creds)
                                  .pull(f"{fake.host}/x/y", store)))
    assert pulled.config_bytes == fake.config
    creds.set(fake.host, "alice", "nope")
    store2 = ContentStore(str(tmp_path / "store2"))
    with pytest.raises(RegistryError):
        asyncio.run(fake.run(lambda: RegistryClient(credentials=creds)
                             .pull(f"{fake.host}/x/y", store2)))


def test_login_checks_bearer_and_basic(tmp_path):
    bearer = FakeAuthRegistry()
    asyncio.run(bearer.run(lambda: RegistryClient().login(bearer.host, "alice", "wonderland")))
    assert bearer.token_requests[-1]["scope"] == []
    with pytest.raises(RegistryError) as e:
        asyncio.run(bearer.run(lambda: RegistryClient().login(bearer.host, "alice", "x")))
    assert str(e.value) == "unauthorized: bad credentials"
    basic = FakeAuthRegistry(scheme="basic")
    asyncio.run(basic.run(lambda: RegistryClient().login(basic.host, "alice", "wonderland")))
    with pytest.raises(RegistryError) as e:
        asyncio.run(basic.run(lambda: RegistryClient().login(basic.host, "alice", "x")))
    assert "401" in str(e.value)


# --------------------------------------------------------------------------- CLI


class FakeDaemon:
    """An Engine API stand-in on a Unix socket for `dockyard login`: /_ping, and POST /auth
    that accepts `users` (the real daemon asks the registry; see test_image_cli.py)."""

    def __init__(self, sock: str, users: dict[str, str]) -> None:
        import http.server
        import socketserver
        import threading

        self.host = f"unix://{sock}"
        self.requests: list[dict] = []
        daemon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Api-Version", "1.41")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(200 if self.path == "/_ping" else 404, {})

            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                daemon.requests.append({"path": self.path, **doc})
                if users.get(doc.get("username")) == doc.get("password"):
                    self._answer(200, {"Status": "Login Succeeded", "IdentityToken": ""})
                else:
                    self._answer(401, {"message": f"login attempt to http://"
                                                  f"{doc['serveraddress']}/v2/ failed with "
                                                  "status: 401 Unauthorized"})

        self.server = socketserver.ThreadingUnixStreamServer(sock, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_daemon(tmp_path):
    d = FakeDaemon(str(tmp_path / "d.sock"), {"alice": "wonderland"})
    yield d
    d.close()


class Ctx:
    def __init__(self, config_dir: str, host: str | None = None):
        self.config_dir = config_dir
        self.data_root = "/nonexistent"
        self.host = host


def test_cli_login_password_stdin_and_logout(tmp_path, monkeypatch, capsys, fake_daemon):
    from dockyard.cli.login import login, logout

    registry = "127.0.0.1:5000"
    ctx = Ctx(str(tmp_path / "docker"), fake_daemon.host)
    monkeypatch.setattr(sys, "stdin", io.StringIO("wonderland\n"))
    rc = login(["-u", "alice", "--password-stdin", registry], ctx)
    out = capsys.readouterr()
    assert rc == 0 and out.out.endswith("Login Succeeded\n")
    assert "stored unencrypted" in out.err
    assert CredentialStore(ctx.config_dir).get(registry) == ("alice", "wonderland")
    assert fake_daemon.requests == [{"path": "/v1.41/auth", "username": "alice",
                                     "password": "wonderland", "serveraddress": registry}]

    # with stored credentials and no flags, they are checked again
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rc = login([registry], ctx)
    out = capsys.readouterr()
    assert rc == 0
    assert out.out == "Authenticating with existing credentials...\nLogin Succeeded\n"
    assert len(fake_daemon.requests) == 2

    assert logout([registry], ctx) == 0
    assert capsys.readouterr().out == f"Removing login credentials for {registry}\n"
    assert CredentialStore(ctx.config_dir).get(registry) is None
    assert logout([], ctx) == 0
    assert capsys.readouterr().out == f"Removing login credentials for {DOCKER_HUB_KEY}\n"


def test_cli_login_errors(tmp_path, monkeypatch, capsys, fake_daemon):
    from dockyard.cli.login import login

    ctx = Ctx(str(tmp_path / "docker"), fake_daemon.host)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert login(["127.0.0.1:1"], ctx) == 1
    assert "Cannot perform an interactive login from a non TTY device" in capsys.readouterr().err
    assert login(["--password-stdin", "127.0.0.1:1"], ctx) == 1
    assert "Must provide --username with --password-stdin" in capsys.readouterr().err
    assert login(["-p", "x", "--password-stdin", "-u", "a", "127.0.0.1:1"], ctx) == 1
    assert "mutually exclusive" in capsys.readouterr().err
    assert login(["--bogus"], ctx) == 125

    rc = login(["-u", "alice", "-p", "bad", "127.0.0.1:5000"], ctx)
    err = capsys.readouterr().err
    assert rc == 1 and "Error response from daemon: login attempt to" in err
    assert not os.path.exists(os.path.join(ctx.config_dir, "config.json"))

    # no daemon: docker's words, not an answer from a daemon
    ctx = Ctx(str(tmp_path / "docker"), f"unix://{tmp_path}/none.sock")
    assert login(["-u", "alice", "-p", "wonderland", "127.0.0.1:5000"], ctx) == 1
    assert capsys.readouterr().err.endswith("Is the dockyard daemon running?\n")
