"""`dockyard daemon` against the official docker CLI (v28) and the docker SDK: the system
and image endpoints, plus raw HTTP over the Unix socket for errors and versions.

One daemon per module (its own data root and socket under a temp dir), one
`dockyard registry serve` on a free loopback port for push/pull. No dockerd.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import __version__
from dockyard.devtools.busybox import make_rootfs
from dockyard.devtools.netconfig import private_network_config

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing")


# -- helpers ----------------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def http_request(sock: str, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = UnixHTTPConnection(sock)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dockyard(*args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard.cli.main", *args]


def _terminate(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Daemon:
    def __init__(self, root: Path, *extra: str, settings: dict | None = None) -> None:
        """`settings`: more daemon.json keys."""
        self.root = root
        self.sock = str(root / "d.sock")
        self.data_root = str(root / "data")
        self.pidfile = root / "d.pid"
        config = root / "daemon.json"
        config.write_text(json.dumps({"debug": False, "insecure-registries": [],
                                      **private_network_config(root), **(settings or {})}))
        self.log = open(root / "daemon.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            _dockyard("daemon", "-H", f"unix://{self.sock}", "--data-root", self.data_root,
                      "--exec-root", str(root / "exec"),
                      "--pidfile", str(self.pidfile), "--config-file", str(config), *extra),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if http_request(self.sock, "GET", "/_ping")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dockyard daemon did not start: " + self.logs())
            time.sleep(0.05)

    def logs(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def stop(self) -> int:
        code = _terminate(self.proc)
        self.log.close()
        return code


class Registry:
    def __init__(self, root: Path, *args: str) -> None:
        self.host = f"127.0.0.1:{_free_port()}"
        self.proc = subprocess.Popen(_dockyard("registry", "serve", "--addr", self.host,
                                               "--root", str(root), *args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        host, port = self.host.split(":")
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("dockyard registry did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        _terminate(self.proc)


class DockerCLI:
    def __init__(self, daemon: Daemon, config_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env = {**env, "DOCKER_HOST": f"unix://{daemon.sock}",
                    "DOCKER_CONFIG": str(config_dir)}

    def __call__(self, *args: str, check: bool = True, input: bytes | str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], check=False, env=self.env, capture_output=True,
                           timeout=timeout, input=input.encode() if isinstance(input, str) else input)
        r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout}"
                                 f"\n{r.stderr}")
        return r

    @classmethod
    def in_workdir(cls, daemon: Daemon, workdir: Path) -> DockerCLI:
        """A CLI with its own config directory under the module's workdir."""
        config = workdir / "docker-config"
        config.mkdir(exist_ok=True)
        return cls(daemon, config)

    def remove_all_containers(self, volumes: bool = False) -> None:
        """The end of a module: whatever containers a failed test left go."""
        ids = self("ps", "-aq", check=False).stdout.split()
        if ids:
            self("rm", "-f", *(["-v"] if volumes else []), *ids, check=False)


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyd")


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    d = Daemon(workdir)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> DockerCLI:
    return DockerCLI.in_workdir(daemon, workdir)


@pytest.fixture(scope="module")
def rootfs_tar(workdir: Path) -> Path:
    root = make_rootfs(str(workdir / "rootfs"))
    out = workdir / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return out


@pytest.fixture(scope="module")
def busybox(docker: DockerCLI, rootfs_tar: Path) -> str:
    """busybox:dyk, imported through the daemon; returns its image id."""
    r = docker("import", "-c", 'CMD ["sh"]', "-c", "ENV A=1", "-m", "from a tar",
               str(rootfs_tar), "busybox:dyk")
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    return image_id


@pytest.fixture(scope="module")
def registry(workdir: Path) -> Iterator[Registry]:
    r = Registry(workdir / "registry")
    yield r
    r.stop()


def _image_id(docker: DockerCLI, ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


# -- the docker CLI -----------------------------------------------------------------------

def test_docker_version(docker: DockerCLI) -> None:
    out = docker("version").stdout
    assert "Dockyard Engine" in out
    fmt = docker("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} "
                 "{{.Server.MinAPIVersion}} {{.Client.APIVersion}}").stdout.split()
    assert fmt == [__version__, "1.41", "1.24", "1.41"]  # the client negotiated down


def test_docker_info(docker: DockerCLI, daemon: Daemon, busybox: str) -> None:
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == daemon.data_root
    assert info["ServerVersion"] == __version__
    assert info["Images"] >= 1 and info["Containers"] == 0
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0
    assert info["OSType"] == "linux" and info["OperatingSystem"]
    assert info["Name"] == socket.gethostname()
    text = docker("info").stdout
    assert "Storage Driver: overlay2" in text


def test_import_list_and_filters(docker: DockerCLI, busybox: str) -> None:
    table = docker("images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:3] == ["busybox", "dyk", busybox[7:19]] for line in table[1:])
    assert busybox[7:19] in docker("images", "-q").stdout.split()
    rows = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert f"busybox:dyk {busybox[7:19]}" in rows
    only = docker("images", "--filter", "reference=busybox:dyk", "-q").stdout.split()
    assert only == [busybox[7:19]]
    assert docker("images", "--filter", "reference=nothing*", "-q").stdout.strip() == ""
    assert docker("images", "busybox", "-q").stdout.split() == [busybox[7:19]]
    dangling = docker("images", "--filter", "dangling=true", "-q").stdout.split()
    assert busybox[7:19] not in dangling
    bad = docker("images", "--filter", "nonsense=1", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr.lower()


def test_inspect_and_history(docker: DockerCLI, busybox: str) -> None:
    [doc] = json.loads(docker("image", "inspect", "busybox:dyk").stdout)
    assert doc["Id"] == busybox
    assert doc["RepoTags"] == ["busybox:dyk"]
    assert doc["Config"]["Cmd"] == ["sh"]
    assert "A=1" in doc["Config"]["Env"]
    assert doc["Comment"] == "from a tar"
    assert len(doc["RootFS"]["Layers"]) == 1
    assert doc["GraphDriver"]["Name"] == "overlay2"
    assert docker("inspect", "--format", "{{.Os}}", "busybox:dyk").stdout.strip() == "linux"
    hist = docker("history", "busybox:dyk").stdout.splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"]
    assert hist[1].startswith(busybox[7:19])
    missing = docker("image", "inspect", "nope:nope", check=False)
    assert missing.returncode != 0 and "No such image: nope:nope" in missing.stderr


def test_tag_and_rmi(docker: DockerCLI, busybox: str) -> None:
    docker("tag", "busybox:dyk", "dyk/other:t1")
    docker("tag", busybox[7:19], "dyk/other:t2")
    assert _image_id(docker, "dyk/other:t1") == busybox
    out = docker("rmi", "dyk/other:t1").stdout
    assert out.strip() == "Untagged: dyk/other:t1"
    conflict = docker("rmi", busybox[7:19], check=False)  # still named twice
    assert conflict.returncode != 0 and "must be forced" in conflict.stderr
    docker("rmi", "dyk/other:t2")
    assert _image_id(docker, "busybox:dyk") == busybox
    gone = docker("rmi", "dyk/other:t9", check=False)
    assert gone.returncode != 0 and "No such image" in gone.stderr
    bad = docker("tag", "busybox:dyk", "Bad:Name", check=False)
    assert bad.returncode != 0


def test_save_load_round_trip(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    docker("tag", "busybox:dyk", "dyk/saved:v1")
    archive = workdir / "saved.tar"
    docker("save", "-o", str(archive), "dyk/saved:v1")
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    docker("rmi", "dyk/saved:v1")
    out = docker("load", "-i", str(archive)).stdout
    assert "Loaded image: dyk/saved:v1" in out
    assert _image_id(docker, "dyk/saved:v1") == busybox
    # the pipe: docker save | docker load
    data = subprocess.run([DOCKER, "save", "dyk/saved:v1", "busybox:dyk"], env=docker.env,
                          capture_output=True, check=True).stdout
    docker("rmi", "dyk/saved:v1")
    out = docker("load", input=data).stdout
    assert "Loaded image: dyk/saved:v1" in out and "Loaded image: busybox:dyk" in out
    assert docker("load", "-q", input=data).stdout.count("Loaded image") == 2
    docker("rmi", "dyk/saved:v1")
    bad = docker("load", input=b"not a tar at all" * 64, check=False)
    assert bad.returncode != 0


def test_prune_dangling(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    # an untagged image of its own: the rootfs plus one file
    extra = workdir / "extra.tar"
    with tarfile.open(extra, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    dangling = docker("import", str(extra)).stdout.strip()
    assert dangling[7:19] in docker("images", "-q", "--filter", "dangling=true").stdout
    out = docker("image", "prune", "-f").stdout
    assert f"deleted: {dangling}" in out
    assert "Total reclaimed space" in out
    assert docker("image", "inspect", dangling, check=False).returncode != 0
    assert _image_id(docker, "busybox:dyk") == busybox  # tagged images stay


def test_push_pull_with_our_registry(docker: DockerCLI, busybox: str,
                                     registry: Registry) -> None:
    ref = f"{registry.host}/dyk/busybox:v1"
    docker("tag", "busybox:dyk", ref)
    out = docker("push", ref).stdout
    assert "The push refers to repository" in out and "v1: digest: sha256:" in out
    docker("rmi", ref)
    out = docker("pull", ref).stdout
    assert "Digest: sha256:" in out and out.strip().endswith(ref)
    assert _image_id(docker, ref) == busybox
    digests = docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}").stdout
    assert f"{registry.host}/dyk/busybox sha256:" in digests
    missing = docker("pull", f"{registry.host}/dyk/absent:v1", check=False)
    assert missing.returncode != 0 and "Error response from daemon" in missing.stderr
    unpushed = docker("push", f"{registry.host}/dyk/never:v1", check=False)
    assert unpushed.returncode != 0
    docker("rmi", ref)

    # a layer the daemon lacks: docker's progress, once each, digest last
    fresh = f"{registry.host}/dyk/fresh:v1"
    docker("run", "--name", "freshlayer", "busybox:dyk", "sh", "-c", "echo new > /new")
    try:
        docker("commit", "freshlayer", fresh)
    finally:
        docker("rm", "freshlayer")
    docker("push", fresh)
    docker("rmi", fresh)
    lines = docker("pull", fresh).stdout.splitlines()
    layer = next(x.split(":")[0] for x in lines if x.endswith(": Pulling fs layer"))
    mine = [x.split(": ", 1)[1] for x in lines if x.startswith(layer + ":")]
    assert mine[0] == "Pulling fs layer" and mine[-1] == "Pull complete", mine
    assert mine.count("Download complete") == 1 and mine.count("Pull complete") == 1, mine
    digest_at = next(i for i, x in enumerate(lines) if x.startswith("Digest: "))
    assert digest_at > lines.index(f"{layer}: Pull complete")
    docker("rmi", fresh)


def test_pull_all_tags(docker: DockerCLI, busybox: str, registry: Registry,
                       daemon: Daemon) -> None:
    repo = f"{registry.host}/dyk/alltags"
    for tag in ("a", "b", "c"):
        docker("tag", "busybox:dyk", f"{repo}:{tag}")
        docker("push", f"{repo}:{tag}")
        docker("rmi", f"{repo}:{tag}")
    out = docker("pull", "-a", repo).stdout
    assert out.strip().endswith(repo) and out.count("Pulling from dyk/alltags") == 3
    tags = docker("images", repo, "--format", "{{.Tag}}").stdout.split()
    assert sorted(tags) == ["a", "b", "c"]
    for tag in tags:
        docker("rmi", f"{repo}:{tag}")
    ours = subprocess.run(_dockyard("-H", f"unix://{daemon.sock}", "pull", "-a", repo),
                          capture_output=True, text=True, timeout=60, check=False)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip().endswith(repo)
    assert sorted(docker("images", repo, "--format", "{{.Tag}}").stdout.split()) == \
        ["a", "b", "c"]
    bad = docker("pull", "-a", f"{repo}:a", check=False)
    assert bad.returncode != 0 and "tag can't be used with --all-tags/-a" in bad.stderr
    for tag in ("a", "b", "c"):
        docker("rmi", f"{repo}:{tag}")


def test_login_and_push_with_auth(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    import bcrypt

    htpasswd = workdir / "htpasswd"
    htpasswd.write_text("dyk:" + bcrypt.hashpw(b"pw-123", bcrypt.gensalt(rounds=4)).decode()
                        + "\n")
    reg = Registry(workdir / "registry-auth", "--htpasswd", str(htpasswd))
    ref = f"{reg.host}/auth/busybox:v1"
    try:
        docker("tag", "busybox:dyk", ref)
        denied = docker("push", ref, check=False)
        assert denied.returncode != 0
        bad = docker("login", "-u", "dyk", "--password-stdin", reg.host, input="wrong\n",
                     check=False)
        assert bad.returncode != 0
        ok = docker("login", "-u", "dyk", "--password-stdin", reg.host, input="pw-123\n")
        assert "Login Succeeded" in ok.stdout
        assert "digest: sha256:" in docker("push", ref).stdout  # X-Registry-Auth
        docker("rmi", ref)
        docker("pull", ref)
        assert _image_id(docker, ref) == busybox
    finally:
        docker("logout", reg.host, check=False)
        docker("rmi", ref, check=False)
        reg.stop()


# -- the docker SDK ---------------------------------------------------------------------------

def test_docker_sdk_images(daemon: Daemon, busybox: str, registry: Registry) -> None:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{daemon.sock}", version="auto")
    try:
        assert client.version()["ApiVersion"] == "1.41"
        assert client.ping() is True
        assert any(i.id == busybox for i in client.images.list())
        assert [i.id for i in client.images.list(name="busybox")] == [busybox]
        image = client.images.get("busybox:dyk")
        assert image.id == busybox and "busybox:dyk" in image.tags
        assert image.history()[0]["Id"] == busybox
        repo = f"{registry.host}/sdk/busybox"
        assert image.tag(repo, "s1")
        out = client.images.push(repo, tag="s1")
        assert "s1: digest: sha256:" in out
        client.images.remove(f"{repo}:s1")
        pulled = client.images.pull(repo, tag="s1")
        assert pulled.id == busybox
        data = b"".join(image.save())
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [busybox]
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            client.images.get("absent:latest")
        pruned = client.images.prune(filters={"dangling": True})
        assert "SpaceReclaimed" in pruned
        client.images.remove(f"{repo}:s1")
    finally:
        client.close()


# -- raw HTTP -----------------------------------------------------------------------------

def test_ping_headers(daemon: Daemon) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = http_request(daemon.sock, method, "/_ping")
        assert status == 200
        assert headers["api-version"] == "1.41"
        assert headers["ostype"] == "linux"
        assert headers["docker-experimental"] == "false"
        assert "builder-version" in headers
        assert "no-cache" in headers["cache-control"]
        assert body == (b"OK" if method == "GET" else b"")


def test_version_prefixes(daemon: Daemon) -> None:
    for path in ("/version", "/v1.24/version", "/v1.41/version", "/v1.30/_ping"):
        status, _, _ = http_request(daemon.sock, "GET", path)
        assert status == 200, path
    status, headers, body = http_request(daemon.sock, "GET", "/v1.99/version")
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"] == ("client version 1.99 is too new. Maximum "
                                           "supported API version is 1.41")
    status, _, body = http_request(daemon.sock, "GET", "/v1.12/images/json")
    assert status == 400 and "too old" in json.loads(body)["message"]
    status, _, body = http_request(daemon.sock, "GET", "/v1.41/no/such/path")
    assert status == 404 and json.loads(body) == {"message": "page not found"}


def test_api_errors(daemon: Daemon, busybox: str) -> None:
    status, headers, body = http_request(daemon.sock, "GET", "/images/absent:v9/json")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "No such image: absent:v9"}
    status, _, body = http_request(daemon.sock, "DELETE", "/v1.41/images/absent:v9")
    assert status == 404 and "No such image" in json.loads(body)["message"]
    status, _, body = http_request(daemon.sock, "POST", "/auth", body=b"{not json",
                                   headers={"Content-Type": "application/json"})
    assert status == 400 and "invalid JSON" in json.loads(body)["message"]
    status, _, body = http_request(daemon.sock, "GET", "/images/json?filters=%7Bbroken")
    assert status == 400 and "invalid filter" in json.loads(body)["message"]
    status, _, _ = http_request(daemon.sock, "POST", "/images/busybox:dyk/tag?repo=UPPER")
    assert status == 400
    for bad in ("/images/create", "/images/create?fromSrc=http://x/y.tar"):
        assert http_request(daemon.sock, "POST", bad)[0] == 400
    status, _, body = http_request(daemon.sock, "POST",
                                   "/images/create?fromSrc=-&changes=BOGUS%20x", body=b"")
    assert status == 400 and "not a valid change command" in json.loads(body)["message"]
    status, _, body = http_request(daemon.sock, "POST", "/images/prune?filters="
                                   + '{"colour":["red"]}')
    assert status == 400
    status, _, body = http_request(daemon.sock, "GET", "/images/get?names=absent:v9")
    assert status == 404


def test_api_list_shapes(daemon: Daemon, busybox: str) -> None:
    status, _, body = http_request(daemon.sock, "GET", '/v1.41/images/json?filters='
                                   '{"reference":{"busybox:dyk":true}}')
    assert status == 200
    [summary] = json.loads(body)
    assert summary["Id"] == busybox and summary["RepoTags"] == ["busybox:dyk"]
    assert isinstance(summary["Created"], int) and summary["Size"] > 0
    status, _, body = http_request(daemon.sock, "GET", "/images/json?filters="
                                   '{"reference":["busybox:dyk"]}')
    assert [s["Id"] for s in json.loads(body)] == [busybox]


def test_api_push_auth_header_is_optional(daemon: Daemon, busybox: str,
                                          registry: Registry) -> None:
    path = f"/images/busybox:dyk/tag?repo={registry.host}/raw/busybox&tag=r1"
    assert http_request(daemon.sock, "POST", path)[0] == 201
    auth = base64.urlsafe_b64encode(b"{}").decode()
    status, headers, body = http_request(
        daemon.sock, "POST", f"/images/{registry.host}/raw/busybox/push?tag=r1",
        headers={"X-Registry-Auth": auth})
    assert status == 200 and headers["content-type"] == "application/json"
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    assert not any("error" in m for m in lines)
    assert lines[-1]["aux"]["Tag"] == "r1" and lines[-1]["aux"]["Digest"].startswith("sha256:")
    status, _, body = http_request(daemon.sock, "DELETE",
                                   f"/images/{registry.host}/raw/busybox:r1")
    assert status == 200 and {"Untagged": f"{registry.host}/raw/busybox:r1"} in json.loads(body)


# -- lifecycle ------------------------------------------------------------------------------

def test_sigterm_removes_socket_and_pidfile(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    assert os.stat(d.sock).st_mode & 0o777 == 0o660
    assert int(d.pidfile.read_text()) == d.proc.pid
    again = subprocess.run(_dockyard("daemon", "-H", f"unix://{tmp_path}/other.sock",
                                     "--data-root", d.data_root, "--pidfile", "",
                                     "--exec-root", str(tmp_path / "exec2")),
                           capture_output=True, text=True, timeout=30, check=False)
    assert again.returncode == 1 and "in use by another dockyard daemon" in again.stderr
    assert d.stop() == 0
    assert not os.path.exists(d.sock)
    assert not d.pidfile.exists()
    assert "shutdown complete" in d.logs()


def test_tcp_without_tlsverify_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(_dockyard("daemon", "-H", f"tcp://127.0.0.1:{_free_port()}",
                                 "--data-root", str(tmp_path / "data"), "--pidfile", "",
                                 "--exec-root", str(tmp_path / "exec"),
                                 "--config-file", os.devnull),
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "--tlsverify" in r.stderr


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text('{"data-root": "/tmp/x", "no-such-option": true}')
    r = subprocess.run(_dockyard("daemon", "--config-file", str(config), "--pidfile", ""),
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "no-such-option" in r.stderr
