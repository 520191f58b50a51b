"""Images move between the real dockerd and Dockyard with the same image IDs.

docker save -> dockyard load, dockyard save -> docker load, docker push to
`dockyard registry serve` -> dockyard pull, dockyard push to the Distribution
registry -> docker pull. Uses the session's private dockerd (conftest.py), which
has busybox:dyk imported; every image a test adds to it is removed at the end.
The dockyard CLI talks to a private `dockyard daemon` per test (`-H unix://...`).
dockerd treats 127.0.0.0/8 registries as insecure: plain HTTP works.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dockyard.devtools.daemon import DockyardDaemon
from dockyard.devtools.dockerd_peer import IMAGE, DockerdPeer

pytestmark = pytest.mark.dockerd

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


class Dockyard:
    def __init__(self, tmp: Path) -> None:
        self.daemon = DockyardDaemon(tmp / "daemon").start()
        self.env = dict(os.environ, DOCKER_CONFIG=str(tmp / "config"))
        for var in ("DOCKYARD_INSECURE_REGISTRIES", "DOCKYARD_REGISTRY_MIRRORS", "DOCKER_HOST",
                    "DOCKYARD_HOST"):
            self.env.pop(var, None)

    def __call__(self, *args: str, timeout: float = 60) -> str:
        r = subprocess.run([DOCKYARD, "-H", self.daemon.host, *args], capture_output=True,
                           text=True, env=self.env,
                           stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        assert r.returncode == 0, f"dockyard {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout

    def inspect(self, name: str) -> dict:
        return json.loads(self("image", "inspect", name))[0]


class DockerImages:
    """The docker CLI of the shared peer; removes the names and images it was told about."""

    def __init__(self, peer: DockerdPeer) -> None:
        self.peer = peer
        self.names: list[str] = []

    def __call__(self, *args: str, timeout: float = 60) -> str:
        return self.peer.docker(*args, timeout=timeout).stdout

    def own(self, *names: str) -> None:
        self.names += names

    def inspect(self, name: str) -> dict:
        return json.loads(self("image", "inspect", name))[0]

    def cleanup(self) -> None:
        for name in reversed(self.names):
            self.peer.docker("rmi", "-f", name, check=False)


@pytest.fixture
def dy(tmp_path: Path) -> Iterator[Dockyard]:
    d = Dockyard(tmp_path)
    yield d
    problems = d.daemon.stop()
    assert not problems, problems


@pytest.fixture
def docker(dockerd: DockerdPeer) -> Iterator[DockerImages]:
    before = set(dockerd.docker("images", "-aq", "--no-trunc").stdout.split())
    d = DockerImages(dockerd)
    yield d
    d.cleanup()
    left = set(dockerd.docker("images", "-aq", "--no-trunc").stdout.split()) - before
    assert not left, f"images left in the shared dockerd: {left}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def our_registry(tmp_path: Path) -> Iterator[str]:
    host = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([DOCKYARD, "registry", "serve", "--addr", host, "--root",
                             str(tmp_path / "registry")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"http://{host}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "no registry"
                time.sleep(0.05)
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[str]:
    from dockyard.devtools.distribution import BINARY, DistributionRegistry

    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} missing (apt-get install docker-registry)")
    reg = DistributionRegistry(str(tmp_path / "distribution")).start()
    try:
        yield reg.host
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dockyard.devtools.busybox import make_rootfs

    d = tmp_path_factory.mktemp("rootfs")
    make_rootfs(str(d / "rootfs"))
    tar = d / "rootfs.tar"
    subprocess.run(["tar", "-C", str(d / "rootfs"), "--numeric-owner", "--owner=0",
                    "--group=0", "-cf", str(tar), "."], check=True)
    return tar


def _name(hint: str) -> str:
    return f"dyk-{hint}-{uuid.uuid4().hex[:8]}"


def _same_view(dy: Dockyard, docker: DockerImages, dy_name: str, docker_name: str,
               peer: DockerdPeer) -> None:
    """inspect, images and history agree between the two engines for one image."""
    ours, theirs = dy.inspect(dy_name), docker.inspect(docker_name)
    assert list(ours) == list(theirs)  # docker's keys, in docker's order
    for key in ("Id", "Parent", "Comment", "Created", "Config", "ContainerConfig",
                "Architecture", "Os", "RootFS", "Author"):
        assert ours[key] == theirs[key], key
    if peer.storage_driver == "overlay2":  # vfs counts layer sizes its own way
        assert ours["Size"] == theirs["Size"]
        fmt = "{{.ID}}|{{.Size}}|{{.VirtualSize}}"
        assert dy("images", "--format", fmt, dy_name) == docker("images", "--format", fmt,
                                                                docker_name)
        fmt = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
        assert dy("history", "--no-trunc", "--format", fmt, dy_name) == \
            docker("history", "--no-trunc", "--format", fmt, docker_name)
    keys = sorted(json.loads(dy("images", "--format", "{{json .}}", dy_name).splitlines()[0]))
    assert keys == sorted(json.loads(docker("images", "--format", "{{json .}}",
                                            docker_name).splitlines()[0]))


def test_docker_save_then_dockyard_load(dy: Dockyard, docker: DockerImages,
                                        dockerd: DockerdPeer, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    docker("save", "-o", str(archive), IMAGE)
    docker_id = docker.inspect(IMAGE)["Id"]
    assert dy("load", "-i", str(archive)).splitlines() == [f"Loaded image: {IMAGE}"]
    assert dy.inspect(IMAGE)["Id"] == docker_id
    _same_view(dy, docker, IMAGE, IMAGE, dockerd)


def test_dockyard_save_then_docker_load(dy: Dockyard, docker: DockerImages,
                                        dockerd: DockerdPeer, rootfs_tar: Path,
                                        tmp_path: Path) -> None:
    a, b = _name("save") + ":a", _name("save") + ":b"
    a_id = dy("import", "--change", 'CMD ["sh"]', "--change", "ENV X=1", "--change",
              "LABEL k=v", "--change", "EXPOSE 8080", "--change", "WORKDIR /tmp",
              str(rootfs_tar), a).strip()
    b_id = dy("import", "--change", "USER nobody", str(rootfs_tar), b).strip()
    archive = tmp_path / "two.tar"
    dy("save", "-o", str(archive), a, b)
    docker.own(a, b, a_id, b_id)
    out = docker("load", "-i", str(archive)).splitlines()
    assert sorted(out) == sorted([f"Loaded image: {a}", f"Loaded image: {b}"])
    assert docker.inspect(a)["Id"] == a_id
    assert docker.inspect(b)["Id"] == b_id
    _same_view(dy, docker, a, a, dockerd)
    # docker runs it (with runc), so the layer unpacked right on its side too
    out = docker("run", "--rm", "--runtime", "dyk-runc", a, "sh", "-c", "echo $X; pwd")
    assert out.split() == ["1", "/tmp"]


def test_docker_push_to_our_registry_then_dockyard_pull(dy: Dockyard, docker: DockerImages,
                                                        dockerd: DockerdPeer,
                                                        our_registry: str) -> None:
    ref = f"{our_registry}/{_name('push')}:v1"
    docker("tag", IMAGE, ref)
    docker.own(ref)
    out = docker("push", ref)
    digest = out.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    pulled = dy("pull", ref)
    assert f"Digest: {digest}" in pulled
    info = dy.inspect(ref)
    assert info["Id"] == docker.inspect(IMAGE)["Id"]
    assert info["RepoDigests"] == [f"{ref.rsplit(':', 1)[0]}@{digest}"]
    _same_view(dy, docker, ref, IMAGE, dockerd)
    repo = ref.rsplit(":", 1)[0]
    fmt = "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.ID}}|{{.Size}}"
    assert dy("images", "--digests", "--format", fmt, repo) == \
        docker("images", "--digests", "--format", fmt, repo)
    # rmi of the tag: docker untags it and the repository's digest (busybox:dyk keeps the
    # image there); here it was the last name, so the image goes too
    ours = dy("rmi", ref).splitlines()
    assert ours[:2] == docker("rmi", ref).splitlines()
    assert ours[2:] == [f"Deleted: {info['Id']}"]


def test_dockyard_push_to_distribution_then_docker_pull(dy: Dockyard, docker: DockerImages,
                                                        dockerd: DockerdPeer,
                                                        distribution: str,
                                                        rootfs_tar: Path) -> None:
    ref = f"{distribution}/{_name('pull')}:v1"
    image_id = dy("import", "--change", 'CMD ["sh"]', str(rootfs_tar), ref).strip()
    out = dy("push", ref)
    digest = next(line for line in out.splitlines() if "digest:" in line).split()[2]
    docker.own(ref, image_id)
    out = docker("pull", ref)
    assert f"Digest: {digest}" in out
    theirs = docker.inspect(ref)
    assert theirs["Id"] == image_id
    assert theirs["RepoDigests"] == [f"{ref.rsplit(':', 1)[0]}@{digest}"]
    _same_view(dy, docker, ref, ref, dockerd)
    fmt = "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.ID}}|{{.Size}}"
    assert dy("images", "--digests", "--format", fmt, ref) == \
        docker("images", "--digests", "--format", fmt, ref)
    # the layer we compressed unpacks and runs in docker
    assert docker("run", "--rm", "--runtime", "dyk-runc", ref, "echo", "ok").strip() == "ok"
    # rmi: the same lines, up to docker's own "Deleted:" of its layer
    ours = dy("rmi", ref).splitlines()
    assert ours == docker("rmi", ref).splitlines()[:3]
