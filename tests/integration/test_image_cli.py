"""The real `dockyard` image commands, run as subprocesses through a real daemon,
against real registries.

Every test gets its own `dockyard daemon` (socket, --data-root and --exec-root in
a temp dir) and DOCKER_CONFIG; the CLI talks to the daemon with `-H unix://...`
only. The registries are `dockyard registry serve` and the Distribution registry
(/usr/bin/docker-registry), each on a free loopback port for the module. The
expected texts are docker's (20.10 daemon, v28 CLI), checked side by side with
tests/compat/test_image_interop.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from dockyard.devtools.daemon import DockyardDaemon

REPO = Path(__file__).resolve().parents[2]
DOCKYARD = str(Path(sys.executable).parent / "dockyard")
INSPECT_KEYS = ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
                "ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Os",
                "Size", "VirtualSize", "GraphDriver", "RootFS", "Metadata"]
IMAGES_JSON_KEYS = ["Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository",
                    "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------ the CLI


@dataclass
class Result:
    argv: list[str]
    rc: int
    out: str
    err: str
    raw: bytes

    def lines(self) -> list[str]:
        return self.out.splitlines()


class Dockyard:
    """`dockyard -H unix://...` against a private daemon, with a private client config.

    The CLI gets a data root that does not exist: it must not touch the store."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.daemon = DockyardDaemon(tmp / "daemon").start()
        self.data_root = self.daemon.data_root
        self.env = dict(os.environ, DOCKYARD_DATA_ROOT=str(tmp / "no-such-data-root"),
                        DOCKER_CONFIG=str(tmp / "config"))
        for var in ("DOCKYARD_INSECURE_REGISTRIES", "DOCKYARD_REGISTRY_MIRRORS", "DOCKER_HOST",
                    "DOCKYARD_HOST"):
            self.env.pop(var, None)

    def stop(self) -> None:
        problems = self.daemon.stop()
        assert not (tmp := self.tmp / "no-such-data-root").exists(), f"the CLI made {tmp}"
        assert not problems, problems

    def restart_after_crash(self) -> None:
        """SIGKILL the daemon, then start a new one on the same directories."""
        self.daemon.kill()
        self.daemon = DockyardDaemon(self.daemon.root).start()

    def argv(self, *args: str) -> list[str]:
        return [DOCKYARD, "-H", self.daemon.host, *args]

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 timeout: float = 60) -> Result:
        r = subprocess.run(self.argv(*args), input=input, capture_output=True, env=self.env,
                           timeout=timeout, check=False,
                           stdin=None if input is not None else subprocess.DEVNULL)
        res = Result(list(args), r.returncode, r.stdout.decode(errors="replace"),
                     r.stderr.decode(errors="replace"), r.stdout)
        if check:
            assert res.rc == 0, f"dockyard {' '.join(args)} -> {res.rc}\n{res.out}\n{res.err}"
        return res

    def image_id(self, name: str) -> str:
        return self("image", "inspect", "-f", "{{.Id}}", name).out.strip()

    def inspect(self, name: str) -> dict:
        return json.loads(self("image", "inspect", name).out)[0]

    @property
    def blobs(self) -> Path:
        return self.data_root / "image" / "content" / "blobs" / "sha256"

    @property
    def ingest(self) -> Path:
        return self.data_root / "image" / "content" / "ingest"

    def check_blobs(self) -> list[str]:
        """Every committed blob matches its digest; returns their digests."""
        found = []
        for path in self.blobs.iterdir():
            if not re.fullmatch(r"[0-9a-f]{64}", path.name):
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == path.name, f"blob {path.name} is corrupt"
            found.append("sha256:" + path.name)
        return found


@pytest.fixture
def dy(tmp_path: Path) -> Iterator[Dockyard]:
    d = Dockyard(tmp_path)
    try:
        yield d
    finally:
        d.stop()


def table(out: str) -> list[list[str]]:
    """docker's aligned table -> rows of cells (columns are 2+ spaces apart)."""
    return [re.split(r"\s{2,}", line.rstrip()) for line in out.splitlines() if line.strip()]


# ------------------------------------------------------------------- test inputs


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs /bin/busybox (busybox-static)")
    from dockyard.devtools.busybox import make_rootfs

    d = tmp_path_factory.mktemp("rootfs")
    make_rootfs(str(d / "rootfs"))
    tar = d / "rootfs.tar"
    subprocess.run(["tar", "-C", str(d / "rootfs"), "--numeric-owner", "--owner=0",
                    "--group=0", "-cf", str(tar), "."], check=True)
    return tar


@pytest.fixture(scope="module")
def random_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs of one 20 MB file of random bytes (its gzip layer is as big)."""
    d = tmp_path_factory.mktemp("random")
    tar = d / "random.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as t:
        data = os.urandom(20 << 20)
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
    return tar


def tiny_tar(path: Path, name: str = "hello", data: bytes = b"hi\n") -> Path:
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------- registries


class OurRegistry:
    def __init__(self, root: Path, *args: str) -> None:
        self.host = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen([DOCKYARD, "registry", "serve", "--addr", self.host,
                                      "--root", str(root), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://{self.host}/v2/", self.proc)
        except RuntimeError:
            stop(self.proc)
            raise

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurRegistry]:
    reg = OurRegistry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory):
    from dockyard.devtools.distribution import BINARY, DistributionRegistry

    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} missing (apt-get install docker-registry)")
    reg = DistributionRegistry(str(tmp_path_factory.mktemp("distribution"))).start()
    yield reg
    reg.stop()


@pytest.fixture(params=["dockyard", "distribution"])
def registry_host(request: pytest.FixtureRequest) -> str:
    name = "ours" if request.param == "dockyard" else "distribution"
    return request.getfixturevalue(name).host


class ThrottlingProxy:
    """A TCP forwarder on loopback; registry -> client bytes at `rate` bytes/s (None:
    full speed). Lets a test kill a pull in the middle of a multi-MB blob."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit(":", 1)
        self.rate: float | None = None
        self.sent = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.socks: list[socket.socket] = [self.listener]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, throttled: bool) -> None:
        try:
            while True:
                data = src.recv(64 << 10 if not throttled or self.rate is None else 32 << 10)
                if not data:
                    break
                dst.sendall(data)
                if throttled:
                    self.sent += len(data)
                    if self.rate:
                        time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


# ========================================================================== tests


def test_import_with_changes_sets_the_config(dy: Dockyard, rootfs_tar: Path) -> None:
    image_id = dy("import",
                  "--change", 'CMD ["sh", "-c", "echo hi"]',
                  "--change", "ENV A=1 B=two",
                  "--change", "ENV C three four",
                  "--change", 'LABEL a=b "c d"=e',
                  "--change", "EXPOSE 80 53/udp",
                  "--change", "WORKDIR /srv",
                  "--change", "USER nobody",
                  "--change", 'ENTRYPOINT ["/bin/sh"]',
                  "--change", "VOLUME /data",
                  str(rootfs_tar), "bb:changes").out.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    info = dy.inspect("bb:changes")
    assert list(info) == INSPECT_KEYS
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["bb:changes"]
    assert info["RepoDigests"] == []
    assert info["Comment"] == "Imported from -"
    assert info["Architecture"] and info["Os"] == "linux"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    assert info["Size"] == info["VirtualSize"] > 1_000_000
    assert info["GraphDriver"]["Name"] == "overlay2"
    assert "LowerDir" not in info["GraphDriver"]["Data"]  # one layer: as docker
    cfg = info["Config"]
    assert cfg["Cmd"] == ["sh", "-c", "echo hi"]
    assert cfg["Entrypoint"] == ["/bin/sh"]
    assert cfg["Env"] == ["A=1", "B=two", "C=three four"]
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["User"] == "nobody"
    assert cfg["Volumes"] == {"/data": {}}
    # -m sets the comment; a bad instruction is refused
    dy("import", "-m", "my message", str(rootfs_tar), "bb:msg")
    assert dy.inspect("bb:msg")["Comment"] == "my message"
    bad = dy("import", "--change", "RUN true", str(rootfs_tar), "bb:bad", check=False)
    assert bad.rc == 1 and "RUN is not a valid change command" in bad.err


def test_import_from_stdin_and_history(dy: Dockyard, rootfs_tar: Path) -> None:
    image_id = dy("import", "-", "stdin:1", input=rootfs_tar.read_bytes()).out.strip()
    assert dy.image_id("stdin:1") == image_id
    # the same bytes from a file give the same layer
    dy("import", str(rootfs_tar), "file:1")
    assert dy.inspect("file:1")["RootFS"] == dy.inspect("stdin:1")["RootFS"]
    rows = table(dy("history", "stdin:1").out)
    assert rows[0] == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert len(rows) == 2
    assert rows[1][0] == image_id[7:19]
    assert rows[1][-1] == "Imported from -"
    assert dy("history", "-q", "stdin:1").out.split() == [image_id[7:19]]
    full = dy("history", "--no-trunc", "--format", "{{.ID}}|{{.Size}}|{{.Comment}}",
              "stdin:1").out.strip()
    size = dy.inspect("stdin:1")["Size"]
    assert full == f"{image_id}|{human(size)}|Imported from -"
    missing = dy("history", "nosuch", check=False)
    assert missing.rc == 1 and "No such image: nosuch" in missing.err


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}TB"


def test_images_columns_flags_and_formats(dy: Dockyard, rootfs_tar: Path) -> None:
    assert table(dy("images").out) == [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    image_id = dy("import", str(rootfs_tar), "busybox:one").out.strip()
    dy("tag", "busybox:one", "busybox:two")
    rows = table(dy("images").out)
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    body = sorted(rows[1:])
    assert [r[:3] for r in body] == [["busybox", "one", image_id[7:19]],
                                     ["busybox", "two", image_id[7:19]]]
    size = dy.inspect("busybox:one")["Size"]
    assert all(r[4] == human(size) for r in body)
    # -q: one line per row, as docker's CLI prints it (the ID once per tag)
    assert dy("images", "-q").out.split() == [image_id[7:19]] * 2
    assert dy("images", "-q", "--no-trunc").out.split() == [image_id] * 2
    # --digests adds DIGEST after TAG
    rows = table(dy("images", "--digests").out)
    assert rows[0] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    assert rows[1][2] == "<none>"
    rows = table(dy("images", "--no-trunc").out)
    assert rows[1][2] == image_id
    # a repository argument
    assert len(table(dy("images", "busybox").out)) == 3
    assert len(table(dy("images", "busybox:two").out)) == 2
    assert len(table(dy("images", "other").out)) == 1
    # --format
    out = dy("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert sorted(out) == ["busybox:one", "busybox:two"]
    line = dy("images", "--format", "{{json .}}", "busybox:one").out
    assert "\\u003cnone\\u003e" in line  # Go's encoder, as docker prints it
    doc = json.loads(line)
    assert sorted(doc) == IMAGES_JSON_KEYS
    assert doc["Repository"] == "busybox" and doc["Tag"] == "one"
    assert doc["ID"] == image_id[7:19] and doc["Digest"] == "<none>"
    assert doc["Containers"] == doc["SharedSize"] == doc["UniqueSize"] == "N/A"
    assert doc["Size"] == human(size)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", doc["CreatedAt"])
    rows = table(dy("images", "--format", "table {{.Repository}}\t{{.ID}}").out)
    assert rows[0] == ["REPOSITORY", "IMAGE ID"]
    assert rows[1] == ["busybox", image_id[7:19]]
    bad = dy("images", "--format", "{{.Nope}}", check=False)
    assert bad.rc != 0


def test_images_filters(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    first = dy("import", "--change", "LABEL a=b", str(rootfs_tar), "busybox:first").out.strip()
    time.sleep(0.05)  # before/since compare creation times (sub-second)
    middle = dy("import", "--change", "LABEL a=c", str(rootfs_tar), "other:mid").out.strip()
    time.sleep(0.05)
    dangling = dy("import", str(tiny_tar(tmp_path / "t.tar"))).out.strip()

    def ids(*flt: str) -> set[str]:
        args = [a for f in flt for a in ("--filter", f)]
        return set(dy("images", "-q", "--no-trunc", *args).out.split())

    assert ids() == {first, middle, dangling}
    assert ids("dangling=true") == {dangling}
    assert ids("dangling=false") == {first, middle}
    assert ids("reference=busy*") == {first}
    assert ids("reference=*:mid") == {middle}
    assert ids("label=a=b") == {first}
    assert ids("label=a") == {first, middle}
    assert ids("label=nope") == set()
    assert ids("before=other:mid") == {first}
    assert ids("since=other:mid") == {dangling}
    assert ids("since=busybox:first", "dangling=false") == {middle}
    rows = table(dy("images", "--filter", "dangling=true").out)
    assert rows[1][:3] == ["<none>", "<none>", dangling[7:19]]
    bad = dy("images", "--filter", "color=red", check=False)
    assert bad.rc == 1
    assert bad.err == "Error response from daemon: Invalid filter 'color'\n"
    bad = dy("images", "--filter", "dangling=maybe", check=False)
    assert bad.err == "Error response from daemon: Invalid filter 'dangling=[maybe]'\n"


def test_tag_and_rmi(dy: Dockyard, rootfs_tar: Path) -> None:
    image_id = dy("import", str(rootfs_tar), "one:1").out.strip()
    dy("tag", "one:1", "two")  # no tag means latest
    dy("tag", image_id[7:19], "localhost:5000/three/x:v1")
    assert sorted(dy.inspect(image_id)["RepoTags"]) == [
        "localhost:5000/three/x:v1", "one:1", "two:latest"]
    r = dy("tag", "nosuch", "x:1", check=False)
    assert r.rc == 1 and "No such image: nosuch:latest" in r.err
    r = dy("tag", "one:1", "Bad:Name", check=False)
    assert r.rc != 0
    # untag, the image stays
    assert dy("rmi", "two").out == "Untagged: two:latest\n"
    assert dy.image_id(image_id) == image_id
    # by id while two repositories name it: refused without -f
    r = dy("rmi", image_id[7:19], check=False)
    assert r.rc == 1
    assert r.err == (f"Error response from daemon: conflict: unable to delete {image_id[7:19]} "
                     "(must be forced) - image is referenced in multiple repositories\n")
    assert dy.image_id("one:1") == image_id
    # an unknown name: docker's words, exit 1, and the other names are still removed
    r = dy("rmi", "nosuch", "localhost:5000/three/x:v1", check=False)
    assert r.rc == 1
    assert r.err == "Error response from daemon: No such image: nosuch:latest\n"
    assert r.out == "Untagged: localhost:5000/three/x:v1\n"
    # the last tag: untag and delete, and the store's blobs go with it
    assert dy("rmi", "one:1").lines() == ["Untagged: one:1", f"Deleted: {image_id}"]
    assert dy("images", "-aq").out == ""
    assert dy.check_blobs() == []
    # -f by id removes every name
    image_id = dy("import", str(rootfs_tar), "a:1").out.strip()
    dy("tag", "a:1", "b:1")
    out = dy("rmi", "-f", image_id[7:19]).lines()
    assert sorted(out[:2]) == ["Untagged: a:1", "Untagged: b:1"]
    assert out[2:] == [f"Deleted: {image_id}"]
    r = dy("image", "inspect", image_id, check=False)
    assert r.rc == 1 and r.out.strip() == "[]"
    assert f"No such image: {image_id}" in r.err


def test_push_pull_round_trip(dy: Dockyard, rootfs_tar: Path, registry_host: str) -> None:
    repo = f"{registry_host}/rt/busybox"
    image_id = dy("import", "--change", 'CMD ["sh"]', str(rootfs_tar), f"{repo}:v1").out.strip()
    layer = dy.inspect(image_id)["RootFS"]["Layers"][0]
    out = dy("push", f"{repo}:v1").lines()
    assert out[0] == f"The push refers to repository [{repo}]"
    assert f"{layer[7:19]}: Pushed" in out  # docker names the layer by its diff id
    assert not any(image_id[7:19] in line for line in out)  # the config is no layer
    digest_line = [line for line in out if "digest:" in line]
    assert len(digest_line) == 1
    m = re.fullmatch(r"v1: digest: (sha256:[0-9a-f]{64}) size: \d+", digest_line[0])
    assert m, out
    digest = m.group(1)
    assert dy.inspect(image_id)["RepoDigests"] == [f"{repo}@{digest}"]
    again = dy("push", f"{repo}:v1").lines()
    assert f"{layer[7:19]}: Layer already exists" in again
    assert f"v1: digest: {digest} size: {m.group(0).rsplit(' ', 1)[1]}" in again
    # push -q prints the digest only
    assert dy("push", "-q", f"{repo}:v1").out.strip() == digest
    # delete everything, pull it back: same image, digest recorded
    rm = dy("rmi", f"{repo}:v1").lines()
    assert rm == [f"Untagged: {repo}:v1", f"Untagged: {repo}@{digest}", f"Deleted: {image_id}"]
    assert dy.check_blobs() == []
    pulled = dy("pull", f"{repo}:v1")
    assert f"Digest: {digest}" in pulled.lines()
    assert f"Status: Downloaded newer image for {repo}:v1" in pulled.lines()
    assert pulled.lines()[-1] == f"{repo}:v1"
    info = dy.inspect(f"{repo}:v1")
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{repo}@{digest}"]
    assert info["Config"]["Cmd"] == ["sh"]
    rows = table(dy("images", "--digests").out)
    assert rows[1][:4] == [repo, "v1", digest, image_id[7:19]]
    assert dy.image_id(f"{repo}@{digest}") == image_id
    # docker shows the digest only when asked for (--digests or {{.Digest}})
    assert json.loads(dy("images", "--format", "{{json .}}").out)["Digest"] == "<none>"
    assert dy("images", "--format", "{{.Tag}} {{.Digest}}").out == f"v1 {digest}\n"
    # a second pull: nothing new
    assert "Status: Image is up to date for " + f"{repo}:v1" in dy("pull", f"{repo}:v1").out
    # by digest
    dy("rmi", f"{repo}:v1")
    pulled = dy("pull", f"{repo}@{digest}")
    assert pulled.lines()[-1] == f"{repo}@{digest}"
    assert dy.image_id(f"{repo}@{digest}") == image_id
    # named by a digest only: the repository with tag <none>, as docker lists it
    assert table(dy("images").out)[1][:3] == [repo, "<none>", image_id[7:19]]
    assert table(dy("images", "--digests").out)[1][:4] == [repo, "<none>", digest,
                                                          image_id[7:19]]
    assert image_id in dy.check_blobs()


def test_pull_unknown_gives_the_registry_error(dy: Dockyard, registry_host: str,
                                               rootfs_tar: Path) -> None:
    repo = f"{registry_host}/unknown/busybox"
    r = dy("pull", f"{repo}:nope", check=False)
    assert r.rc == 1
    assert "Error response from daemon:" in r.err
    assert "name unknown" in r.err or "manifest unknown" in r.err
    dy("import", str(rootfs_tar), f"{repo}:v1")
    dy("push", f"{repo}:v1")
    r = dy("pull", f"{repo}:nope", check=False)
    assert r.rc == 1
    assert "manifest unknown" in r.err
    assert dy("images", "-q", f"{repo}").out.split() == [dy.image_id(f"{repo}:v1")[7:19]]


def test_save_several_and_load(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    a = dy("import", "--change", "ENV X=1", str(rootfs_tar), "save/a:1").out.strip()
    b = dy("import", "--change", "ENV X=2", str(rootfs_tar), "save/b:1").out.strip()
    dy("tag", "save/a:1", "save/a:also")
    archive = tmp_path / "images.tar"
    dy("save", "-o", str(archive), "save/a:1", "save/b:1", "save/a:also")
    with tarfile.open(archive) as t:
        names = set(t.getnames())
        manifest = json.load(t.extractfile("manifest.json"))
        index = json.load(t.extractfile("index.json"))
    assert {"manifest.json", "index.json", "oci-layout"} <= names
    by_config = {e["Config"]: e for e in manifest}
    assert set(by_config) == {f"blobs/sha256/{a[7:]}", f"blobs/sha256/{b[7:]}"}
    assert sorted(by_config[f"blobs/sha256/{a[7:]}"]["RepoTags"]) == ["save/a:1", "save/a:also"]
    assert by_config[f"blobs/sha256/{b[7:]}"]["RepoTags"] == ["save/b:1"]
    layer_paths = {p for e in manifest for p in e["Layers"]}
    assert len(layer_paths) == 1 and layer_paths <= names  # the shared layer, once
    assert len(index["manifests"]) == 3
    for desc in index["manifests"]:  # sizes in the OCI manifests match the blobs
        path = f"blobs/{desc['digest'].replace(':', '/')}"
        with tarfile.open(archive) as t:
            doc = json.load(t.extractfile(path))
            for layer in doc["layers"]:
                member = t.getmember(f"blobs/{layer['digest'].replace(':', '/')}")
                assert member.size == layer["size"]
    # to stdout as well
    piped = dy("save", "save/b:1").raw
    with tarfile.open(fileobj=io.BytesIO(piped)) as t:
        assert json.load(t.extractfile("manifest.json"))[0]["RepoTags"] == ["save/b:1"]
    dy("rmi", "-f", a, b)
    assert dy("images", "-aq").out == ""
    out = dy("load", "-i", str(archive)).lines()
    assert sorted(out) == ["Loaded image: save/a:1", "Loaded image: save/a:also",
                           "Loaded image: save/b:1"]
    assert dy.image_id("save/a:1") == dy.image_id("save/a:also") == a
    assert dy.image_id("save/b:1") == b
    assert dy.inspect("save/a:1")["Config"]["Env"] == ["X=1"]
    # load from stdin, into another daemon's store
    other = Dockyard(tmp_path / "other")
    try:
        assert other("load", input=archive.read_bytes()).rc == 0
        assert other.image_id("save/b:1") == b
        assert other.inspect("save/b:1")["Size"] == dy.inspect("save/b:1")["Size"]
    finally:
        other.stop()
    r = dy("load", input=b"not a tar", check=False)
    assert r.rc == 1 and "invalid archive" in r.err
    r = dy("save", "-o", str(tmp_path / "x.tar"), "nosuch", check=False)
    assert r.rc == 1 and "No such image: nosuch" in r.err
    assert not (tmp_path / "x.tar").exists()


def test_image_prune(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    tagged = dy("import", str(rootfs_tar), "keep:1").out.strip()
    dangling = dy("import", str(tiny_tar(tmp_path / "t.tar", data=b"dangling"))).out.strip()
    out = dy("image", "prune", "-f").lines()
    assert out[:2] == ["Deleted Images:", f"deleted: {dangling}"]
    assert re.fullmatch(r"Total reclaimed space: \d+(\.\d+)?[kMG]?B", out[-1])
    assert dy("images", "-aq", "--no-trunc").out.split() == [tagged]
    assert dy("image", "prune", "-f").lines() == ["Total reclaimed space: 0B"]
    dy("tag", "keep:1", "keep:2")
    out = dy("image", "prune", "-a", "-f").lines()
    assert out[:5] == ["Deleted Images:", "untagged: keep:1", "untagged: keep:2",
                       f"deleted: {tagged}", ""]
    assert re.fullmatch(r"Total reclaimed space: \d+(\.\d+)?MB", out[-1])
    assert dy("images", "-aq").out == ""
    assert dy.check_blobs() == []


def test_interrupted_pull_leaves_a_consistent_store(dy: Dockyard, random_tar: Path,
                                                    ours: OurRegistry) -> None:
    proxy = ThrottlingProxy(ours.host)
    try:
        ref = f"{proxy.host}/interrupted/random:v1"
        image_id = dy("import", str(random_tar), ref).out.strip()
        dy("push", ref)
        layer_blob = [b for b in dy.check_blobs() if b != image_id]
        dy("rmi", ref)
        assert dy.check_blobs() == []

        proxy.rate = 4 << 20  # ~5 s for the layer: long enough to kill it halfway
        proc = subprocess.Popen(dy.argv("pull", ref), env=dy.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def ingested() -> int:
                sizes = [p.stat().st_size for p in dy.ingest.glob("*/data")]
                return max(sizes, default=0)

            deadline = time.monotonic() + 30
            while ingested() < (3 << 20):
                assert proc.poll() is None, "the pull ended before it could be killed"
                assert time.monotonic() < deadline, "the pull did not start downloading"
                time.sleep(0.02)
            # the daemon does the pull: a crash of the daemon is what interrupts it
            dy.restart_after_crash()
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 1, err  # the CLI reports the daemon going away

        # consistent: no partial blob, no image, the commands work
        assert all(b not in layer_blob for b in dy.check_blobs())
        assert table(dy("images", "-a").out) == [["REPOSITORY", "TAG", "IMAGE ID", "CREATED",
                                                  "SIZE"]]
        assert dy("image", "inspect", ref, check=False).rc == 1

        proxy.rate = None
        before = proxy.sent
        dy("pull", ref, timeout=60)
        assert dy.image_id(ref) == image_id
        assert set(layer_blob) <= set(dy.check_blobs())
        assert list(dy.ingest.iterdir()) == []  # nothing half-written left behind
        # it resumed with Range: the bytes already ingested did not cross the wire again
        assert proxy.sent - before < (20 << 20)
        rows = table(dy("images").out)
        assert rows[1][:3] == [f"{proxy.host}/interrupted/random", "v1", image_id[7:19]]
        assert dy.inspect(ref)["Size"] == 20 << 20
    finally:
        proxy.close()


def test_login_then_push_and_pull_with_credentials(dy: Dockyard, rootfs_tar: Path,
                                                   tmp_path: Path) -> None:
    """The credentials live in the client's config.json and reach the daemon in
    X-Registry-Auth; `login` has the daemon check them (POST /auth)."""
    bcrypt = pytest.importorskip("bcrypt")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("dyk:" + bcrypt.hashpw(b"pw-123", bcrypt.gensalt(rounds=4)).decode()
                        + "\n")
    reg = OurRegistry(tmp_path / "registry-auth", "--htpasswd", str(htpasswd))
    config = tmp_path / "config" / "config.json"
    try:
        ref = f"{reg.host}/auth/busybox:v1"
        dy("import", str(rootfs_tar), ref)
        denied = dy("push", ref, check=False)
        assert denied.rc == 1 and "Error response from daemon: " in denied.err
        assert "unauthorized" in denied.err
        bad = dy("login", "-u", "dyk", "--password-stdin", reg.host, input=b"wrong\n",
                 check=False)
        assert bad.rc == 1 and bad.err.startswith("Error response from daemon: ")
        assert not config.exists()
        ok = dy("login", "-u", "dyk", "--password-stdin", reg.host, input=b"pw-123\n")
        assert ok.lines()[-1] == "Login Succeeded"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        assert reg.host in json.loads(config.read_text())["auths"]
        assert re.search(r"^v1: digest: sha256:[0-9a-f]{64} size: \d+$", dy("push", ref).out,
                         re.MULTILINE)
        dy("rmi", ref)
        assert dy("pull", ref).lines()[-1] == ref
        assert dy("logout", reg.host).out == f"Removing login credentials for {reg.host}\n"
        assert reg.host not in json.loads(config.read_text())["auths"]
        dy("rmi", ref)
        assert "unauthorized" in dy("pull", ref, check=False).err
    finally:
        reg.stop()


def test_import_from_a_url(dy: Dockyard, tmp_path: Path) -> None:
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    tiny_tar(tmp_path / "t.tar")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/t.tar"
        image_id = dy("import", url, "fromurl:1").out.strip()  # the daemon downloads it
        assert dy.image_id("fromurl:1") == image_id
        assert dy.inspect("fromurl:1")["Comment"] == f"Imported from {url}"
        r = dy("import", url + ".missing", check=False)
        assert r.rc == 1 and "Error response from daemon: could not download" in r.err
    finally:
        server.shutdown()
        server.server_close()


def test_client_side_errors(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    r = dy("pull", "-a", "busybox:1", check=False)
    assert r.rc == 1 and r.err == "Error: tag can't be used with --all-tags/-a\n"
    r = dy("push", "-a", "busybox:1", check=False)
    assert r.rc == 1 and r.err == "Error: tag can't be used with --all-tags/-a\n"
    dy("import", str(rootfs_tar), "tty:1")
    master, slave = os.openpty()
    try:
        r = subprocess.run(dy.argv("save", "tty:1"), stdout=slave, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=dy.env, timeout=30, check=False)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 1
    assert r.stderr == (b"Error: cowardly refusing to save to a terminal. Use the -o flag or "
                        b"redirect\n")
    missing = tmp_path / "missing.tar"
    for args in (["load", "-i", str(missing)], ["import", str(missing)]):
        r = dy(*args, check=False)
        assert r.rc == 1 and r.err == f"Error: open {missing}: no such file or directory\n"
    sock = tmp_path / "nobody-listens.sock"
    r = subprocess.run([DOCKYARD, "-H", f"unix://{sock}", "images"], capture_output=True,
                       text=True, env=dy.env, timeout=30, check=False)
    assert r.returncode == 1
    assert r.stderr == (f"Cannot connect to the Dockyard daemon at unix://{sock}. Is the "
                        "dockyard daemon running?\n")


def test_the_cli_imports_no_engine_code(dy: Dockyard) -> None:
    """The image and login verbs are thin: Engine API requests, no engine modules."""
    code = (
        "import sys\n"
        "from dockyard.cli.main import main\n"
        f"assert main(['-H', {dy.daemon.host!r}, 'images', '-q']) == 0\n"
        "assert main(['-H', 'unix:///nonexistent.sock', 'pull', 'x']) == 1\n"
        "import dockyard.cli.image, dockyard.cli.login\n"
        "engine = ('dockyard.image', 'dockyard.registry', 'dockyard.engine', 'dockyard.api',\n"
        "          'dockyard.daemon', 'dockyard.runtime', 'aiohttp')\n"
        "print(sorted(m for m in sys.modules if m.startswith(engine)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dy.env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"
