"""`dockyard registry serve` against the distribution spec and real peers.

The server runs as a subprocess (`python -m dockyard.cli.main registry serve`)
on a free loopback port with a temporary root. Peers: Debian's skopeo and the
Distribution registry (/usr/bin/docker-registry).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from dockyard.devtools.distribution import BINARY as DISTRIBUTION_BINARY
from dockyard.devtools.distribution import DistributionRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Server:
    root: Path
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        argv = [sys.executable, "-m", "dockyard.cli.main", "registry", "serve",
                "--addr", self.host, "--root", str(self.root), *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_http(self.url + "/v2/", self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, sig)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kw)

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        r = self("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data)
        assert r.status_code == 201, r.text
        return d

    def push_image(self, repo: str, tag: str, layer: bytes = b"layer") -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.push_blob(repo, config),
                       "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": self.push_blob(repo, layer),
                        "size": len(layer)}]}).encode()
        r = self("PUT", f"/v2/{repo}/manifests/{tag}", data=manifest,
                 headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"], manifest


def start_server(tmp: Path, *args: str) -> Server:
    return Server(tmp / "root", list(args)).start()


def code(r: requests.Response) -> str:
    return r.json()["errors"][0]["code"]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path)
    yield s
    s.stop()


# ----------------------------------------------------------------- base and blobs


def test_base_and_api_header(reg: Server) -> None:
    r = reg("GET", "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_monolithic_upload_get_head_range(reg: Server) -> None:
    data = os.urandom(100_000)
    d = reg.push_blob("lib/mono", data)
    r = reg("GET", f"/v2/lib/mono/blobs/{d}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    r = reg("HEAD", f"/v2/lib/mono/blobs/{d}")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(data))
    assert r.content == b""
    r = reg("GET", f"/v2/lib/mono/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = reg("GET", f"/v2/lib/mono/blobs/{d}", headers={"Range": "bytes=99990-"})
    assert r.status_code == 206 and r.content == data[99990:]
    r = reg("GET", f"/v2/lib/mono/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = reg("GET", f"/v2/lib/mono/blobs/{d}", headers={"Range": "bytes=200000-"})
    assert r.status_code == 416 and code(r) == "RANGE_INVALID"
    # the blob is linked to its repository only
    r = reg("GET", f"/v2/other/blobs/{d}")
    assert r.status_code == 404 and code(r) == "BLOB_UNKNOWN"


def test_blob_errors_and_delete(reg: Server) -> None:
    d = reg.push_blob("del/me", b"x" * 10)
    assert code(reg("GET", "/v2/del/me/blobs/sha256:zz")) == "DIGEST_INVALID"
    assert reg("GET", "/v2/del/me/blobs/md5:abc").status_code == 400
    assert code(reg("GET", "/v2/Upper/blobs/" + d)) == "NAME_INVALID"
    assert code(reg("GET", "/v2/a__-b/blobs/" + d)) == "NAME_INVALID"
    assert reg("DELETE", f"/v2/del/me/blobs/{d}").status_code == 202
    r = reg("HEAD", f"/v2/del/me/blobs/{d}")
    assert r.status_code == 404
    assert code(reg("DELETE", f"/v2/del/me/blobs/{d}")) == "BLOB_UNKNOWN"


def test_bad_digest_on_monolithic_and_session(reg: Server) -> None:
    wrong = sha(b"something else")
    r = reg("POST", "/v2/bad/digest/blobs/uploads/", params={"digest": wrong}, data=b"payload")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = reg("POST", "/v2/bad/digest/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    r = reg("PUT", loc, params={"digest": wrong}, data=b"payload")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = reg("GET", loc)  # the upload is gone
    assert r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert reg("HEAD", f"/v2/bad/digest/blobs/{wrong}").status_code == 404
    assert not os.listdir(reg.root / "uploads") and not os.listdir(reg.root / "tmp")


def test_chunked_upload(reg: Server) -> None:
    data = os.urandom(3000)
    r = reg("POST", "/v2/chunky/blobs/uploads/")
    assert r.status_code == 202 and r.headers["Range"] == "0-0"
    loc, uid = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    assert uid in loc
    r = reg("PATCH", loc, data=data[:1000], headers={"Content-Range": "0-999",
                                                     "Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-999"
    # out of order: 416 with the current range
    r = reg("PATCH", loc, data=data[2000:], headers={"Content-Range": "2000-2999"})
    assert r.status_code == 416 and r.headers["Range"] == "0-999"
    assert code(r) == "RANGE_INVALID"
    r = reg("GET", loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-999"
    # Content-Range disagreeing with the body
    r = reg("PATCH", loc, data=data[1000:1500], headers={"Content-Range": "1000-1999"})
    assert r.status_code in (400, 416)
    assert reg("GET", loc).headers["Range"] == "0-999"
    # a streamed chunk without Content-Range (what docker does)
    r = reg("PATCH", loc, data=iter([data[1000:1500], data[1500:2000]]))
    assert r.status_code == 202 and r.headers["Range"] == "0-1999"
    d = sha(data)
    r = reg("PUT", loc, params={"digest": d}, data=data[2000:],
            headers={"Content-Range": "2000-2999"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    assert reg("GET", f"/v2/chunky/blobs/{d}").content == data
    assert code(reg("PATCH", loc, data=b"x")) == "BLOB_UPLOAD_UNKNOWN"


def test_upload_delete_and_unknown(reg: Server) -> None:
    loc = reg("POST", "/v2/cancel/blobs/uploads/").headers["Location"]
    assert reg("PATCH", loc, data=b"abc").status_code == 202
    assert reg("DELETE", loc).status_code == 204
    assert reg("GET", loc).status_code == 404
    r = reg("GET", "/v2/cancel/blobs/uploads/0123456789abcdef0123456789abcdef")
    assert code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = reg("GET", "/v2/cancel/blobs/uploads/../../etc")
    assert r.status_code in (400, 404)
    # an upload belongs to its repository
    loc = reg("POST", "/v2/mine/blobs/uploads/").headers["Location"]
    assert code(reg("GET", loc.replace("/mine/", "/theirs/"))) == "BLOB_UPLOAD_UNKNOWN"


def test_cross_repo_mount(reg: Server) -> None:
    d = reg.push_blob("src/repo", b"shared layer")
    r = reg("POST", "/v2/dst/repo/blobs/uploads/", params={"mount": d, "from": "src/repo"})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"] == f"/v2/dst/repo/blobs/{d}"
    assert reg("GET", f"/v2/dst/repo/blobs/{d}").content == b"shared layer"
    missing = sha(b"nope")
    r = reg("POST", "/v2/dst/repo/blobs/uploads/", params={"mount": missing, "from": "src/repo"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]


def test_max_blob_size(tmp_path: Path) -> None:
    s = start_server(tmp_path, "--max-blob-size", "1k")
    try:
        r = s("POST", "/v2/big/blobs/uploads/", params={"digest": sha(b"x" * 2000)},
              data=b"x" * 2000)
        assert r.status_code == 413 and code(r) == "SIZE_INVALID"
        loc = s("POST", "/v2/big/blobs/uploads/").headers["Location"]
        r = s("PATCH", loc, data=iter([b"x" * 600, b"x" * 600]))
        assert r.status_code == 413
        assert s("GET", loc).headers["Range"] == "0-0"
        s.push_blob("big", b"x" * 1024)
    finally:
        s.stop()


# ----------------------------------------------------------------- manifests


def test_manifests_by_tag_and_digest(reg: Server) -> None:
    digest, body = reg.push_image("app/web", "v1")
    for ref in ("v1", digest):
        r = reg("GET", f"/v2/app/web/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        h = reg("HEAD", f"/v2/app/web/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body))
    # negotiation: a client that only takes Docker schema 2 does not get an OCI manifest
    r = reg("GET", "/v2/app/web/manifests/v1",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status_code == 404 and code(r) == "MANIFEST_UNKNOWN"
    assert code(reg("GET", "/v2/app/web/manifests/v2")) == "MANIFEST_UNKNOWN"
    assert code(reg("GET", "/v2/nope/manifests/v1")) == "NAME_UNKNOWN"
    assert code(reg("GET", "/v2/app/web/manifests/-bad")) == "TAG_INVALID"
    # by digest, the body must match
    r = reg("PUT", f"/v2/app/web/manifests/{sha(b'other')}", data=body,
            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = reg("PUT", f"/v2/app/web/manifests/{digest}", data=body,
            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    # an index over it, then delete by digest
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    r = reg("PUT", "/v2/app/web/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201
    assert reg("GET", "/v2/app/web/manifests/multi").headers["Content-Type"] == OCI_INDEX
    assert reg("DELETE", f"/v2/app/web/manifests/{digest}").status_code == 202
    assert code(reg("GET", f"/v2/app/web/manifests/{digest}")) == "MANIFEST_UNKNOWN"
    assert code(reg("GET", "/v2/app/web/manifests/v1")) == "MANIFEST_UNKNOWN"
    assert code(reg("DELETE", f"/v2/app/web/manifests/{digest}")) == "MANIFEST_UNKNOWN"


def test_manifest_validation(reg: Server) -> None:
    _, body = reg.push_image("val/repo", "ok")
    doc = json.loads(body)
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": sha(b"absent"), "size": 6})
    r = reg("PUT", "/v2/val/repo/manifests/broken", data=json.dumps(doc),
            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and code(r) == "MANIFEST_BLOB_UNKNOWN"
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(b"x"), "size": 1}]}
    r = reg("PUT", "/v2/val/repo/manifests/idx", json=index, headers={"Content-Type": OCI_INDEX})
    assert code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = reg("PUT", "/v2/val/repo/manifests/junk", data=b"not json",
            headers={"Content-Type": OCI_MANIFEST})
    assert code(r) == "MANIFEST_INVALID"
    both = {**json.loads(body), "manifests": []}
    r = reg("PUT", "/v2/val/repo/manifests/both", json=both, headers={"Content-Type": OCI_MANIFEST})
    assert code(r) == "MANIFEST_INVALID"
    r = reg("PUT", "/v2/val/repo/manifests/" + "t" * 129, data=body,
            headers={"Content-Type": OCI_MANIFEST})
    assert code(r) == "TAG_INVALID"
    r = reg("PUT", "/v2/val/repo/manifests/huge", data=b" " * (4 << 20) + body,
            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413
    # the tag is untouched by the failures
    assert reg("GET", "/v2/val/repo/manifests/ok").content == body


def test_tags_and_catalog_pagination(reg: Server) -> None:
    for repo in ("c/one", "c/two", "c/three"):
        reg.push_image(repo, "latest")
    for t in ("b", "a", "d", "c"):
        reg.push_image("c/one", t)
    r = reg("GET", "/v2/c/one/tags/list")
    assert r.json() == {"name": "c/one", "tags": ["a", "b", "c", "d", "latest"]}
    r = reg("GET", "/v2/c/one/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/c/one/tags/list?n=2&last=b>; rel="next"'
    r = reg("GET", "/v2/c/one/tags/list", params={"n": 2, "last": "b"})
    assert r.json()["tags"] == ["c", "d"] and "Link" in r.headers
    r = reg("GET", "/v2/c/one/tags/list", params={"n": 2, "last": "d"})
    assert r.json()["tags"] == ["latest"] and "Link" not in r.headers
    assert reg("GET", "/v2/c/one/tags/list", params={"n": 0}).json()["tags"] == []
    assert code(reg("GET", "/v2/c/one/tags/list", params={"n": "x"})) == \
        "PAGINATION_NUMBER_INVALID"
    assert code(reg("GET", "/v2/c/none/tags/list")) == "NAME_UNKNOWN"
    r = reg("GET", "/v2/_catalog")
    assert r.json() == {"repositories": ["c/one", "c/three", "c/two"]}
    r = reg("GET", "/v2/_catalog", params={"n": 1, "last": "c/one"})
    assert r.json() == {"repositories": ["c/three"]}
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=c%2Fthree>; rel="next"'


def test_kill_9_mid_chunk_leaves_consistent_store(tmp_path: Path) -> None:
    s = start_server(tmp_path)
    try:
        loc = s("POST", "/v2/crash/blobs/uploads/").headers["Location"]
        assert s("PATCH", loc, data=b"a" * 100).status_code == 202
        # a chunk that never finishes: headers promise more than we send
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: {s.host}\r\n"
                     f"Content-Length: 1000000\r\n\r\n".encode() + b"b" * 50_000)
        time.sleep(0.5)
        mono = socket.create_connection(("127.0.0.1", s.port))
        mono.sendall(f"POST /v2/crash/blobs/uploads/?digest={sha(b'z')} HTTP/1.1\r\n"
                     f"Host: {s.host}\r\nContent-Length: 1000000\r\n\r\n".encode() + b"z" * 1000)
        time.sleep(0.5)
        s.stop(signal.SIGKILL)
        sock.close()
        mono.close()
        s.start()  # the same root
        r = s("GET", loc)
        assert r.status_code == 204 and r.headers["Range"] == "0-99"
        assert not os.listdir(s.root / "tmp")
        data = b"a" * 100 + b"c" * 10
        r = s("PUT", loc, params={"digest": sha(data)}, data=b"c" * 10)
        assert r.status_code == 201, r.text
        assert s("GET", f"/v2/crash/blobs/{sha(data)}").content == data
    finally:
        s.stop()


# ----------------------------------------------------------------- auth


def _htpasswd(tmp: Path) -> Path:
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) missing")
    path = tmp / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), "alice", "s3cret"], check=True,
                   capture_output=True)
    return path


def test_htpasswd_basic_auth(tmp_path: Path) -> None:
    s = start_server(tmp_path, "--htpasswd", str(_htpasswd(tmp_path)))
    try:
        r = s("GET", "/v2/")
        assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert s("GET", "/v2/", auth=("alice", "wrong")).status_code == 401
        assert s("GET", "/v2/", auth=("bob", "s3cret")).status_code == 401
        assert s("GET", "/v2/", auth=("alice", "s3cret")).status_code == 200
        r = s("POST", "/v2/x/blobs/uploads/", params={"digest": sha(b"1")}, data=b"1",
              auth=("alice", "s3cret"))
        assert r.status_code == 201
    finally:
        s.stop()


def test_token_auth(tmp_path: Path) -> None:
    s = start_server(tmp_path, "--htpasswd", str(_htpasswd(tmp_path)), "--token-auth")
    try:
        r = s("GET", "/v2/")
        assert r.status_code == 401
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{s.url}/token",service="')
        r = s("HEAD", "/v2/tok/blobs/" + sha(b"1"))
        assert 'scope="repository:tok:pull"' in r.headers["WWW-Authenticate"]
        assert s("GET", "/token", params={"scope": "repository:tok:pull"},
                 auth=("alice", "bad")).status_code == 401
        r = s("GET", "/token", params={"service": "dockyard-registry",
                                       "scope": "repository:tok:pull"}, auth=("alice", "s3cret"))
        assert r.status_code == 200
        pull = {"Authorization": "Bearer " + r.json()["token"]}
        assert s("GET", "/v2/", headers=pull).status_code == 200
        assert s("GET", "/v2/tok/tags/list", headers=pull).status_code == 404  # allowed, absent
        r = s("POST", "/v2/tok/blobs/uploads/", headers=pull)
        assert r.status_code == 401 and 'error="insufficient_scope"' in \
            r.headers["WWW-Authenticate"]
        forged = pull["Authorization"][:-4] + "AAAA"
        assert s("GET", "/v2/", headers={"Authorization": forged}).status_code == 401
        token = s("GET", "/token", params={"scope": "repository:tok:pull,push"},
                  auth=("alice", "s3cret")).json()["token"]
        r = s("POST", "/v2/tok/blobs/uploads/", params={"digest": sha(b"1")}, data=b"1",
              headers={"Authorization": "Bearer " + token})
        assert r.status_code == 201
        # anonymous tokens carry no access when there are users
        anon = s("GET", "/token", params={"scope": "repository:tok:pull"}).json()["token"]
        r = s("GET", "/v2/tok/tags/list", headers={"Authorization": "Bearer " + anon})
        assert r.status_code == 401
    finally:
        s.stop()


# ----------------------------------------------------------------- real peers


def _tar_rootfs(rootfs: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, os.path.relpath(full, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def make_oci_layout(dest: Path, tag: str) -> str:
    """An OCI layout with a one-layer busybox image tagged `tag`; returns the manifest digest."""
    from dockyard.devtools.busybox import make_rootfs

    with tempfile.TemporaryDirectory() as d:
        layer_tar = _tar_rootfs(make_rootfs(os.path.join(d, "rootfs")))
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "dockyard test"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha(layer), "size": len(layer)}],
    }).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / sha(blob).split(":")[1]).write_bytes(blob)
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return sha(manifest)


def skopeo(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["skopeo", "--insecure-policy", *args], check=False, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"skopeo {' '.join(args)}: {r.stderr}"
    return r


NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture
def oci_image(tmp_path: Path) -> tuple[Path, str]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo missing")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static missing")
    layout = tmp_path / "layout"
    return layout, make_oci_layout(layout, "v1")


def test_skopeo_round_trip(reg: Server, oci_image: tuple[Path, str], tmp_path: Path) -> None:
    layout, digest = oci_image
    skopeo("copy", *NO_TLS, f"oci:{layout}:v1", f"docker://{reg.host}/skopeo/busybox:v1")
    r = reg("HEAD", "/v2/skopeo/busybox/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == digest
    out = tmp_path / "out"
    skopeo("copy", *NO_TLS, f"docker://{reg.host}/skopeo/busybox:v1", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    layer = json.loads((out / "blobs/sha256" / digest.split(":")[1]).read_bytes())["layers"][0]
    assert (out / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes() == \
        (layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{reg.host}/skopeo/busybox").stdout)
    assert tags["Tags"] == ["v1"]
    skopeo("delete", "--tls-verify=false", f"docker://{reg.host}/skopeo/busybox@{digest}")
    assert reg("GET", "/v2/skopeo/busybox/manifests/v1").status_code == 404


def test_skopeo_with_token_auth(tmp_path: Path, oci_image: tuple[Path, str]) -> None:
    layout, digest = oci_image
    s = start_server(tmp_path, "--htpasswd", str(_htpasswd(tmp_path)), "--token-auth")
    try:
        r = subprocess.run(["skopeo", "--insecure-policy", "copy", *NO_TLS,
                            "--dest-creds", "alice:wrong", f"oci:{layout}:v1",
                            f"docker://{s.host}/auth/busybox:v1"], check=False,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0
        skopeo("copy", *NO_TLS, "--dest-creds", "alice:s3cret", f"oci:{layout}:v1",
               f"docker://{s.host}/auth/busybox:v1")
        raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret",
                     f"docker://{s.host}/auth/busybox:v1").stdout
        assert sha(raw.encode()) == digest
    finally:
        s.stop()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[str]:
    if not os.access(DISTRIBUTION_BINARY, os.X_OK):
        pytest.skip("docker-registry missing")
    with DistributionRegistry(str(tmp_path / "distribution")) as registry:
        yield registry.host


def test_distribution_round_trip(reg: Server, distribution: str,
                                 oci_image: tuple[Path, str]) -> None:
    layout, digest = oci_image
    skopeo("copy", *NO_TLS, f"oci:{layout}:v1", f"docker://{reg.host}/peer/busybox:v1")
    skopeo("copy", *NO_TLS, "--preserve-digests", f"docker://{reg.host}/peer/busybox:v1",
           f"docker://{distribution}/peer/busybox:v1")
    r = requests.head(f"http://{distribution}/v2/peer/busybox/manifests/v1",
                      headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert r.headers["Docker-Content-Digest"] == digest
    skopeo("copy", *NO_TLS, "--preserve-digests", f"docker://{distribution}/peer/busybox:v1",
           f"docker://{reg.host}/back/busybox:v2")
    r = reg("GET", "/v2/back/busybox/manifests/v2", headers={"Accept": OCI_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == digest and sha(r.content) == digest
    # the blobs came back through the other registry intact
    layer = json.loads(r.content)["layers"][0]["digest"]
    assert reg("GET", f"/v2/back/busybox/blobs/{layer}").content == \
        (layout / "blobs/sha256" / layer.split(":")[1]).read_bytes()
