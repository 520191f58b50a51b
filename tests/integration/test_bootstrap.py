"""`dockyard image bootstrap`: offline base images from Debian packages, through a private
daemon (devtools.daemon.DockyardDaemon: its own socket, data root and bridge).

The images are built with debootstrap from the mirror apt uses and cached per machine
under /var/cache/dockyard-bootstrap (DOCKYARD_BOOTSTRAP_CACHE): the first run on a
machine takes about 30 s for debian and 40 s per derived image (python, redis); every
later run reuses the cached layers and only loads them into the test's daemon. The
python and redis test therefore costs minutes once per machine, seconds afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from dockyard.bootstrap import rootfs
from dockyard.bootstrap.mirror import apt_sources, debian_mirror, image_sources

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def _can_bootstrap() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap missing (apt-get install debootstrap)"
    try:
        debian_mirror(rootfs.SUITE)
    except Exception as e:  # noqa: BLE001 - any reason is a reason to skip
        return str(e)
    return ""


needs_bootstrap = pytest.mark.skipif(bool(_can_bootstrap()), reason=_can_bootstrap() or "-")


# -- pure parts (no root) ---------------------------------------------------------------------

def test_apt_sources_both_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main\n"
        "deb-src http://mirror.test/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.test/\n"
        "Suites: bookworm\nComponents: main\n")
    sources = apt_sources(str(tmp_path))
    assert [s.uri for s in sources] == ["http://mirror.test/debian",
                                        "http://mirror.test/debian-security"]
    assert debian_mirror("bookworm", str(tmp_path)) == "http://mirror.test/debian"
    text = image_sources("bookworm", str(tmp_path))
    assert "URIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates" in text
    assert "URIs: http://mirror.test/debian-security\nSuites: bookworm-security" in text
    with pytest.raises(Exception, match="no apt source"):
        debian_mirror("trixie", str(tmp_path))


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, "."]:
            os.utime(os.path.join(dirpath, name), (1000, 1000), follow_symlinks=False)


def test_diff_layer_has_changes_and_whiteouts(tmp_path: Path) -> None:
    base, new = tmp_path / "base", tmp_path / "new"
    _tree(base, {"etc/keep": "same", "etc/edit": "old", "etc/gone": "x", "old/dir/f": "y"})
    _tree(new, {"etc/keep": "same", "etc/edit": "new", "usr/bin/tool": "z"})
    diff_id, size = rootfs.write_diff_tar(str(base), str(new), str(tmp_path / "l.tar"))
    with tarfile.open(tmp_path / "l.tar") as tar:
        names = tar.getnames()
    assert names == [".wh.old", "etc", "etc/.wh.gone", "etc/edit", "usr", "usr/bin",
                     "usr/bin/tool"]
    assert diff_id.startswith("sha256:") and size == (tmp_path / "l.tar").stat().st_size
    # the same trees give the same bytes
    again, _ = rootfs.write_diff_tar(str(base), str(new), str(tmp_path / "m.tar"))
    assert again == diff_id


# -- through a daemon ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if _can_bootstrap():
        pytest.skip(_can_bootstrap())
    from dockyard.devtools.daemon import DockyardDaemon

    d = DockyardDaemon(tmp_path_factory.mktemp("bootstrap") / "daemon").start()
    yield d
    d.stop()


def dockyard(d, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKYARD, "-H", d.host, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ok(d, *args: str, timeout: float = 900) -> str:
    r = dockyard(d, *args, timeout=timeout)
    assert r.returncode == 0, f"dockyard {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r.stdout


def image_id(d, name: str) -> str:
    return ok(d, "image", "inspect", "--format", "{{.Id}}", name).strip()


@needs_bootstrap
def test_busybox_and_debian(daemon) -> None:
    out = ok(daemon, "image", "bootstrap", "--only", "busybox", "debian")
    assert "Loaded image: debian:bookworm-slim" in out
    assert ok(daemon, "run", "--rm", "busybox:latest", "echo", "hello").strip() == "hello"
    version = ok(daemon, "run", "--rm", "debian:bookworm-slim", "cat", "/etc/debian_version")
    assert re.fullmatch(r"12\.\d+\n", version), version
    first = image_id(daemon, "debian:bookworm-slim")
    assert image_id(daemon, "debian:bookworm") == image_id(daemon, "debian:12-slim") == first
    config = json.loads(ok(daemon, "image", "inspect", "--format", "{{json .Config}}",
                           "debian:bookworm-slim"))
    assert config["Cmd"] == ["bash"]
    # clean like the official image: no apt lists, logs, machine-id, device nodes, host files
    listing = ok(daemon, "run", "--rm", "--entrypoint", "sh", "debian:bookworm-slim", "-c",
                 "ls -A /var/lib/apt/lists /var/log /usr/share/man; ls -A /etc/machine-id "
                 "2>&1; cat /etc/apt/sources.list.d/debian.sources")
    assert "No such file" in listing
    assert "URIs: " + debian_mirror(rootfs.SUITE) in listing
    assert not re.search(r"\.log|Packages|InRelease", listing), listing


@needs_bootstrap
def test_second_run_uses_the_cache(daemon) -> None:
    ok(daemon, "image", "bootstrap", "--only", "busybox", "debian")
    before = image_id(daemon, "debian:bookworm-slim")
    started = time.monotonic()
    out = ok(daemon, "image", "bootstrap", "--only", "busybox", "debian")
    assert time.monotonic() - started < 20
    assert "every image already" in out
    # forced: the same image again (reproducible configs and layers)
    ok(daemon, "rmi", "busybox:stable")
    out = ok(daemon, "image", "bootstrap", "--only", "busybox", "debian", "--force-load")
    assert "Loaded image: busybox:stable" in out
    assert image_id(daemon, "debian:bookworm-slim") == before


@needs_bootstrap
def test_python_and_redis(daemon) -> None:
    """Minutes on a machine's first run (two debootstraps), then the cache's seconds."""
    ok(daemon, "image", "bootstrap", "--only", "python", "redis", timeout=1800)
    out = ok(daemon, "run", "--rm", "python:3.11-slim", "python", "-c",
             "import os, sys; print(sys.version_info[:2], os.environ['LANG'])")
    assert out.strip() == "(3, 11) C.UTF-8"
    assert "pip " in ok(daemon, "run", "--rm", "python:3-slim", "pip", "--version")
    py = json.loads(ok(daemon, "image", "inspect", "python:3.11-slim"))[0]
    deb = json.loads(ok(daemon, "image", "inspect", "debian:bookworm-slim"))[0]
    assert py["Config"]["Cmd"] == ["python3"]
    # python's first layer is debian's, as in the official images
    assert py["RootFS"]["Layers"][0] == deb["RootFS"]["Layers"][0]

    redis = json.loads(ok(daemon, "image", "inspect", "redis:alpine"))[0]["Config"]
    assert redis["WorkingDir"] == "/data" and "/data" in redis["Volumes"]
    assert "6379/tcp" in redis["ExposedPorts"]
    cid = ok(daemon, "run", "-d", "redis:7").strip()
    try:
        deadline = time.monotonic() + 20
        while True:
            r = dockyard(daemon, "exec", cid, "redis-cli", "ping")
            if r.stdout.strip() == "PONG" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert r.stdout.strip() == "PONG", r.stdout + r.stderr
        assert ok(daemon, "exec", cid, "redis-cli", "config", "get", "protected-mode") \
            .split() == ["protected-mode", "no"]
        top = ok(daemon, "top", cid)
        assert "redis-server *:6379" in top
    finally:
        dockyard(daemon, "rm", "-f", cid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_bootstrap
def test_push_to_a_registry_used_as_the_docker_io_mirror(daemon, tmp_path: Path) -> None:
    from dockyard.devtools.daemon import DockyardDaemon

    port = _free_port()
    registry = subprocess.Popen([DOCKYARD, "registry", "serve", "--addr", f"127.0.0.1:{port}",
                                 "--root", str(tmp_path / "registry")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "registry did not start"
                time.sleep(0.05)
        out = ok(daemon, "image", "bootstrap", "--only", "busybox",
                 "--registry", f"127.0.0.1:{port}")
        assert f"pushed 127.0.0.1:{port}/library/busybox:latest" in out
        mirror_user = DockyardDaemon(tmp_path / "d2",
                                     {"registry-mirrors": [f"http://127.0.0.1:{port}"]}).start()
        try:
            ok(mirror_user, "pull", "busybox")
            assert image_id(mirror_user, "busybox:latest") == image_id(daemon, "busybox:latest")
        finally:
            mirror_user.stop()
    finally:
        registry.terminate()
        registry.wait(timeout=20)
