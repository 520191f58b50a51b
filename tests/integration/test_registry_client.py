"""The registry client against real peers on 127.0.0.1.

- Debian's Distribution registry (/usr/bin/docker-registry): push a small
  busybox image built here, pull it back, skip existing blobs, mount across
  repositories, htpasswd basic auth, and token auth with a token server of ours.
- aiohttp servers of our own for what a good registry never does: cut a blob
  download half way (the pull resumes with Range), lie about a blob (nothing
  is stored), answer a manifest with both `manifests` and `layers`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from dockyard.devtools.busybox import make_rootfs
from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.registry.client import (
    CredentialStore,
    RegistryClient,
    RegistryError,
    VerificationError,
)
from dockyard.registry.progress import JSONRenderer, Progress

REGISTRY = "/usr/bin/docker-registry"
HTPASSWD = "/usr/bin/htpasswd"

pytestmark = pytest.mark.skipif(not os.path.exists(REGISTRY),
                                reason="docker-registry (Debian package) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the real registry


class Registry:
    """A Distribution registry on 127.0.0.1:<free port> with filesystem storage."""

    def __init__(self, workdir: Path, auth: dict | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = workdir / "registry.log"
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if auth:
            config["auth"] = auth
        (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen([REGISTRY, "serve", str(workdir / "config.yml")],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: it answers
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("registry did not start:\n" + self.log.read_text())
                time.sleep(0.05)

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request in the access log so far."""
        text = self.log.read_text(errors="replace")
        return re.findall(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1"', text)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path / "registry-open")
    yield r
    r.stop()


@pytest.fixture
def basic_registry(tmp_path):
    (tmp_path / "registry-basic").mkdir()
    htpasswd = tmp_path / "registry-basic" / "htpasswd"
    subprocess.run([HTPASSWD, "-Bbc", str(htpasswd), "alice", "s3cret"], check=True,
                   capture_output=True)
    r = Registry(tmp_path / "registry-basic",
                 {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}})
    yield r
    r.stop()


# --------------------------------------------------------------------------- a small image


def _tar_gz(files: dict[str, bytes] | None = None, root: str | None = None) -> tuple[bytes, str]:
    """A gzip layer (deterministic) and its diffID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if root:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = os.path.join(dirpath, name)
                    info = tar.gettarinfo(full, os.path.relpath(full, root))
                    info.mtime = 0
                    if info.isreg():
                        with open(full, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
        for name, data in (files or {}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), dg.of_bytes(data)


def build_image(store: ContentStore, tmp: Path, marker: str = "") -> dict:
    """busybox rootfs layer + a small layer, a config, a docker v2s2 manifest, in `store`."""
    rootfs = make_rootfs(str(tmp / f"rootfs{marker}"))
    layers = [_tar_gz(root=rootfs),
              _tar_gz({"etc/hello": f"hello {marker}\n".encode()})]
    descs = []
    for blob, _ in layers:
        descs.append(formats.descriptor(formats.DOCKER_LAYER_GZIP, store.put(blob), len(blob)))
    config = formats.encode_config(formats.new_config([d for _, d in layers],
                                                      architecture="amd64",
                                                      created="2024-01-01T00:00:00Z"))
    config_desc = formats.descriptor(formats.DOCKER_CONFIG, store.put(config), len(config))
    manifest = formats.make_manifest(config_desc, descs)
    return {"manifest": manifest, "media_type": formats.DOCKER_MANIFEST,
            "blobs": [config_desc, *descs], "layers": descs, "config": config_desc,
            "digest": dg.of_bytes(manifest)}


def run(coro):
    return asyncio.run(coro)


def push(client: RegistryClient, ref: str, image: dict, store: ContentStore,
         **kw) -> tuple[str, list[dict]]:
    renderer = JSONRenderer()
    digest = run(client.push(ref, manifest=image["manifest"], media_type=image["media_type"],
                             blobs=image["blobs"], content=store, progress=Progress(renderer),
                             **kw))
    return digest, renderer.messages


def statuses(messages: list[dict]) -> dict[str, str]:
    """The last status of each id."""
    out = {}
    for m in messages:
        if "id" in m:
            out[m["id"]] = m["status"]
    return out


def uploads(reg: Registry, since: int = 0) -> list[tuple[str, str]]:
    return [(m, p) for m, p in reg.requests()[since:]
            if "/blobs/uploads/" in p and m in ("PUT", "PATCH")]


# --------------------------------------------------------------------------- tests: Distribution


def test_push_then_pull_round_trip(registry, tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    client = RegistryClient(credentials=CredentialStore(str(tmp_path / "cfg")))
    digest, messages = push(client, f"{registry.host}/test/one:v1", image, src)
    assert digest == image["digest"]
    assert set(statuses(messages).values()) == {"Pushed"}
    assert messages[-1]["status"] == f"v1: digest: {digest} size: {len(image['manifest'])}"

    dst = ContentStore(str(tmp_path / "dst"))
    renderer = JSONRenderer()
    pulled = run(RegistryClient().pull(f"{registry.host}/test/one:v1", dst,
                                       progress=Progress(renderer)))
    assert pulled.manifest_digest == digest
    assert pulled.manifest_bytes == image["manifest"]
    assert pulled.config_digest == image["config"]["digest"]
    assert pulled.config_bytes == src.read(image["config"]["digest"])
    assert [x["digest"] for x in pulled.layers] == [x["digest"] for x in image["layers"]]
    for desc in image["blobs"]:
        assert dst.exists(desc["digest"])
        assert dst.read(desc["digest"], 64 << 20) == src.read(desc["digest"], 64 << 20)
    assert dst.read(digest) == image["manifest"]
    assert renderer.messages[0]["status"] == "v1: Pulling from test/one"
    assert renderer.messages[-1]["status"] == f"Digest: {digest}"
    assert set(statuses(renderer.messages).values()) == {"Download complete"}

    # by digest, into a store that has everything: nothing is downloaded again
    before = len(registry.requests())
    renderer = JSONRenderer()
    again = run(RegistryClient().pull(f"{registry.host}/test/one@{digest}", dst,
                                      progress=Progress(renderer)))
    assert again.manifest_digest == digest
    assert set(statuses(renderer.messages).values()) == {"Already exists"}
    assert not [p for m, p in registry.requests()[before:] if "/blobs/" in p]


def test_second_push_uploads_nothing_and_other_repo_mounts(registry, tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    client = RegistryClient()
    push(client, f"{registry.host}/test/one:v1", image, src)
    n = len(registry.requests())
    assert len(uploads(registry)) >= 3

    digest, messages = push(RegistryClient(), f"{registry.host}/test/one:v1", image, src)
    assert digest == image["digest"]
    assert uploads(registry, n) == []
    assert set(statuses(messages).values()) == {"Layer already exists"}
    heads = [p for m, p in registry.requests()[n:] if m == "HEAD"]
    assert len(heads) == 3

    # a fresh client told where the blobs are
    n = len(registry.requests())
    mount_from = {d["digest"]: "test/one" for d in image["blobs"]}
    digest, messages = push(RegistryClient(), f"{registry.host}/test/two:v2", image, src,
                            mount_from=mount_from)
    assert uploads(registry, n) == []
    assert set(statuses(messages).values()) == {"Mounted from test/one"}
    posts = [p for m, p in registry.requests()[n:] if m == "POST"]
    assert len(posts) == 3 and all("mount=" in p and "from=test" in p for p in posts)

    # the same client remembers where it pushed them
    n = len(registry.requests())
    _, messages = push(client, f"{registry.host}/test/three:v3", image, src)
    assert uploads(registry, n) == []
    assert set(statuses(messages).values()) == {"Mounted from test/one"}

    dst = ContentStore(str(tmp_path / "dst"))
    pulled = run(RegistryClient().pull(f"{registry.host}/test/three:v3", dst))
    assert pulled.manifest_digest == image["digest"]


def test_chunked_upload(registry, tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    client = RegistryClient(chunk_size=100_000)  # the busybox layer is ~1 MB
    n = len(registry.requests())
    digest, _ = push(client, f"{registry.host}/test/chunked:latest", image, src)
    patches = [p for m, p in uploads(registry, n) if m == "PATCH"]
    assert len(patches) >= 5
    dst = ContentStore(str(tmp_path / "dst"))
    assert run(RegistryClient().pull(f"{registry.host}/test/chunked", dst)).manifest_digest \
        == digest
    for desc in image["blobs"]:
        assert dst.exists(desc["digest"])


def test_pull_errors_use_the_registry_words(registry, tmp_path):
    dst = ContentStore(str(tmp_path / "dst"))
    with pytest.raises(RegistryError) as e:
        run(RegistryClient().pull(f"{registry.host}/test/missing:nope", dst))
    assert str(e.value).startswith("manifest unknown: ")
    assert e.value.status == 404
    assert list(dst.list()) == []


def test_basic_auth_and_login(basic_registry, tmp_path):
    from dockyard.devtools.daemon import DockyardDaemon

    with DockyardDaemon(tmp_path / "daemon") as daemon:  # login checks through POST /auth
        _basic_auth_and_login(basic_registry, tmp_path, daemon.host)
        assert daemon.stop() == []


def _basic_auth_and_login(basic_registry, tmp_path, host_url):
    from dockyard.cli.login import login, logout

    class Ctx:
        config_dir = str(tmp_path / "docker-config")
        data_root = str(tmp_path / "root")
        host = host_url

    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    host = basic_registry.host
    creds = CredentialStore(Ctx.config_dir)
    with pytest.raises(RegistryError) as e:
        push(RegistryClient(credentials=creds), f"{host}/private/img:1", image, src)
    assert str(e.value) == "unauthorized: authentication required"

    with pytest.raises(RegistryError):
        run(RegistryClient().login(host, "alice", "wrong"))
    assert login(["-u", "alice", "-p", "wrong", host], Ctx) == 1
    assert not os.path.exists(os.path.join(Ctx.config_dir, "config.json"))

    assert login(["-u", "alice", "--password", "s3cret", host], Ctx) == 0
    path = os.path.join(Ctx.config_dir, "config.json")
    assert os.stat(path).st_mode & 0o777 == 0o600
    docker_auth = pytest.importorskip("docker.auth")
    cfg = docker_auth.load_config(path)
    assert cfg.resolve_authconfig(host)["username"] == "alice"
    assert cfg.resolve_authconfig(host)["password"] == "s3cret"

    digest, _ = push(RegistryClient(credentials=creds), f"{host}/private/img:1", image, src)
    dst = ContentStore(str(tmp_path / "dst"))
    pulled = run(RegistryClient(credentials=creds).pull(f"{host}/private/img:1", dst))
    assert pulled.manifest_digest == digest

    assert logout([host], Ctx) == 0
    assert host not in json.loads(Path(path).read_text())["auths"]
    with pytest.raises(RegistryError) as e:
        run(RegistryClient(credentials=creds).pull(f"{host}/private/img:1", dst))
    assert "unauthorized" in str(e.value)


# --------------------------------------------------------------------------- token auth


class TokenServer:
    """A docker token server (aiohttp, its own thread): RS256 JWTs with an x5c chain."""

    def __init__(self, workdir: Path, users: dict[str, str]):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test token")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = workdir / "token.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.users = users
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.requests: list[dict] = []
        self._serialization = serialization

    def jwt(self, service: str, access: list[dict], subject: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        der = self.cert.public_bytes(self._serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": "dockyard-test-issuer", "sub": subject, "aud": service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(sig)}"

    async def handle(self, request):
        from aiohttp import web

        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            u, _, p = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(u) != p:
                return web.json_response({"details": "incorrect username or password"},
                                         status=401)
            user = u
        scopes = request.query.getall("scope", [])
        self.requests.append({"user": user, "scopes": scopes,
                              "service": request.query.get("service")})
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            allowed = actions.split(",") if user else ["pull"]
            access.append({"type": kind, "name": name,
                           "actions": [a for a in actions.split(",") if a in allowed]})
        token = self.jwt(request.query.get("service", ""), access, user or "")
        return web.json_response({"access_token": token, "expires_in": 300})


@pytest.fixture
def token_registry(tmp_path):
    import threading

    from aiohttp import web

    pytest.importorskip("cryptography")
    work = tmp_path / "registry-token"
    work.mkdir()
    ts = TokenServer(work, {"bob": "hunter2"})
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/token", ts.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", ts.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    reg = Registry(work, {"token": {"realm": ts.realm, "service": "dockyard-test",
                                    "issuer": "dockyard-test-issuer",
                                    "rootcertbundle": str(ts.cert_path)}})
    yield reg, ts
    reg.stop()
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_bearer_token_flow(token_registry, tmp_path):
    reg, ts = token_registry
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    creds = CredentialStore(str(tmp_path / "cfg"))

    # anonymous: the token server grants pull only, so the push is refused
    with pytest.raises(RegistryError) as e:
        push(RegistryClient(credentials=creds), f"{reg.host}/team/app:1", image, src)
    assert "unauthorized" in str(e.value) or "denied" in str(e.value)

    with pytest.raises(RegistryError) as e:
        run(RegistryClient().login(reg.host, "bob", "wrong"))
    assert "incorrect username or password" in str(e.value)
    run(RegistryClient().login(reg.host, "bob", "hunter2"))
    creds.set(reg.host, "bob", "hunter2")

    ts.requests.clear()
    client = RegistryClient(credentials=creds)
    digest, _ = push(client, f"{reg.host}/team/app:1", image, src)
    assert digest == image["digest"]
    assert ts.requests and all(r["user"] == "bob" for r in ts.requests)
    assert all(r["service"] == "dockyard-test" for r in ts.requests)
    assert ["repository:team/app:pull,push"] in [r["scopes"] for r in ts.requests]
    assert len(ts.requests) <= 2, "tokens are cached per scope"

    # a mount needs pull on the source repository too
    n = len(reg.requests())
    _, messages = push(client, f"{reg.host}/team/other:1", image, src)
    assert uploads(reg, n) == []
    assert set(statuses(messages).values()) == {"Mounted from team/app"}
    assert any(sorted(r["scopes"]) == ["repository:team/app:pull",
                                       "repository:team/other:pull,push"] for r in ts.requests)

    # anonymous pull works (the token server grants pull to everyone)
    dst = ContentStore(str(tmp_path / "dst"))
    pulled = run(RegistryClient().pull(f"{reg.host}/team/app:1", dst))
    assert pulled.manifest_digest == digest
    for desc in image["blobs"]:
        assert dst.exists(desc["digest"])


# --------------------------------------------------------------------------- fake registries


class FakeRegistry:
    """An aiohttp registry serving fixed manifests and blobs, with misbehaviours."""

    def __init__(self):
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.lie: dict[str, bytes] = {}       # digest -> other bytes served instead
        self.cut_once: set[str] = set()       # digests whose first download breaks half way
        self.ignore_range = False             # answer Range requests with the whole blob
        self.log: list[tuple[str, str, str | None]] = []
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"

    async def handle(self, request):
        from aiohttp import web

        self.log.append((request.method, request.path, request.headers.get("Range")))
        parts = request.path.split("/")
        if request.path == "/v2/":
            return web.json_response({})
        kind, ref = parts[-2], parts[-1]
        if kind == "manifests" and ref in self.manifests:
            data, mt = self.manifests[ref]
            return web.Response(body=data, headers={"Content-Type": mt})
        if kind == "blobs" and ref in self.blobs:
            data = self.lie.get(ref, self.blobs[ref])
            start = 0
            rng = None if self.ignore_range else request.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
            resp = web.StreamResponse(status=206 if rng else 200)
            resp.content_length = len(data) - start
            if rng:
                resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            await resp.prepare(request)
            if ref in self.cut_once:
                self.cut_once.discard(ref)
                await resp.write(data[start:len(data) // 2])
                request.transport.close()
                return resp
            await resp.write(data[start:])
            await resp.write_eof()
            return resp
        code = "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN"
        return web.json_response({"errors": [{"code": code, "message": f"unknown {ref}"}]},
                                 status=404)

    def serve(self, image: dict, store: ContentStore, tag: str = "latest") -> None:
        self.manifests[tag] = (image["manifest"], image["media_type"])
        self.manifests[image["digest"]] = self.manifests[tag]
        for d in image["blobs"]:
            self.blobs[d["digest"]] = store.read(d["digest"], 64 << 20)


async def with_fake(fake: FakeRegistry, coro_fn):
    from aiohttp import web

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    try:
        return await coro_fn()
    finally:
        await runner.cleanup()


def test_broken_download_resumes_with_range(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    big = image["layers"][0]
    fake = FakeRegistry()
    fake.serve(image, src)
    fake.cut_once.add(big["digest"])
    dst = ContentStore(str(tmp_path / "dst"))

    pulled = run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y", dst)))
    assert pulled.manifest_digest == image["digest"]
    assert dst.read(big["digest"], 64 << 20) == src.read(big["digest"], 64 << 20)
    gets = [rng for m, p, rng in fake.log if p.endswith(big["digest"])]
    assert gets[0] is None
    assert gets[1] == f"bytes={big['size'] // 2}-"


def test_pull_resumes_an_ingest_left_by_an_earlier_pull(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    big = image["layers"][0]
    dst = ContentStore(str(tmp_path / "dst"))
    # what a pull killed half way leaves behind
    w = dst.writer(f"pull-{big['digest'].replace(':', '-')}", big["digest"], big["size"])
    w.write(src.read(big["digest"], 64 << 20)[:300_000])
    w.close()
    fake = FakeRegistry()
    fake.serve(image, src)
    run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y", dst)))
    assert dst.exists(big["digest"])
    assert [rng for m, p, rng in fake.log if p.endswith(big["digest"])] == ["bytes=300000-"]

    # a server that ignores Range: the ingest starts over and still verifies
    dst2 = ContentStore(str(tmp_path / "dst2"))
    w = dst2.writer(f"pull-{big['digest'].replace(':', '-')}", big["digest"], big["size"])
    w.write(b"garbage that a restart must drop")
    w.close()
    fake.ignore_range = True
    run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y", dst2)))
    assert dst2.read(big["digest"], 64 << 20) == src.read(big["digest"], 64 << 20)


def test_lying_blob_is_refused_and_not_stored(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    small = image["layers"][1]
    fake = FakeRegistry()
    fake.serve(image, src)
    good = fake.blobs[small["digest"]]
    fake.lie[small["digest"]] = bytes(len(good))  # same size, other bytes
    dst = ContentStore(str(tmp_path / "dst"))
    with pytest.raises(VerificationError) as e:
        run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y", dst)))
    assert small["digest"] in str(e.value)
    assert not dst.exists(small["digest"])
    assert not dst.exists(image["digest"])  # the manifest is stored last, so not at all
    assert os.listdir(dst.ingest_dir) == [] or all(
        not n.endswith(small["digest"].split(":")[1]) for n in os.listdir(dst.ingest_dir))

    fake.lie[small["digest"]] = good + b"more"  # longer than its descriptor
    with pytest.raises(VerificationError):
        run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y", dst)))
    assert not dst.exists(small["digest"])


def test_hostile_manifests_are_refused(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    fake = FakeRegistry()
    fake.serve(image, src)
    doc = json.loads(image["manifest"])
    doc["manifests"] = []
    fake.manifests["both"] = (json.dumps(doc).encode(), formats.DOCKER_MANIFEST)
    fake.manifests["huge"] = (b" " * (5 << 20) + image["manifest"], formats.DOCKER_MANIFEST)
    # asked by digest, answered with something else
    fake.manifests[image["digest"]] = (image["manifest"] + b" ", formats.DOCKER_MANIFEST)
    dst = ContentStore(str(tmp_path / "dst"))
    client = RegistryClient()
    for ref, words in (("both", "both manifests and layers"), ("huge", "too large"),
                       (f"@{image['digest']}", "digest mismatch")):
        target = f"{fake.host}/x/y{'' if ref.startswith('@') else ':'}{ref}"
        with pytest.raises(Exception) as e:
            run(with_fake(fake, lambda t=target: client.pull(t, dst)))
        assert words in str(e.value)
    assert list(dst.list()) == []


def test_index_resolves_to_the_platform_manifest(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    index = formats.make_index([
        formats.descriptor(formats.DOCKER_MANIFEST, "sha256:" + "1" * 64, 10,
                           platform={"os": "linux", "architecture": "arm64"}),
        formats.descriptor(formats.DOCKER_MANIFEST, image["digest"], len(image["manifest"]),
                           platform={"os": "linux", "architecture": "amd64"}),
    ])
    fake = FakeRegistry()
    fake.serve(image, src)
    fake.manifests["multi"] = (index, formats.OCI_INDEX)
    dst = ContentStore(str(tmp_path / "dst"))
    pulled = run(with_fake(fake, lambda: RegistryClient().pull(f"{fake.host}/x/y:multi", dst)))
    assert pulled.manifest_digest == image["digest"]
    assert pulled.index_digest == dg.of_bytes(index)
    assert pulled.repo_digest == pulled.index_digest
    assert dst.read(pulled.index_digest) == index


def test_mirror_is_tried_first_then_falls_back(tmp_path):
    src = ContentStore(str(tmp_path / "src"))
    image = build_image(src, tmp_path)
    mirror = FakeRegistry()
    mirror.serve(image, src, tag="latest")
    empty = FakeRegistry()
    dst = ContentStore(str(tmp_path / "dst"))

    async def both():
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", empty.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", empty.port).start()
        try:
            client = RegistryClient(mirrors=[f"http://{empty.host}", f"http://{mirror.host}"])
            return await with_fake(mirror, lambda: client.pull("busybox", dst))
        finally:
            await runner.cleanup()

    pulled = run(both())
    assert pulled.manifest_digest == image["digest"]
    assert pulled.endpoint == f"http://{mirror.host}"
    assert ("GET", "/v2/library/busybox/manifests/latest", None) in empty.log
