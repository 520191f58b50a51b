"""`cp` and the archive API (issue 6) through `dockyard daemon`, with the official docker
CLI and our `dockyard cp`: both directions, running and stopped containers, volumes
at their mount points, docker cp's path rules (trailing `/.`, directory vs file,
`-` for a tar), symlinks kept or followed (-L), the stat header, errors, and a
container flipping a symlink between a safe directory and `/` while we copy — the
copy must never touch a host path.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_containers import checked_daemon
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

from dockyard.devtools.busybox import make_rootfs

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

IMG = "bbcp:dyk"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dycp")


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    yield from checked_daemon(workdir)


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(daemon, workdir)
    root = make_rootfs(str(workdir / "rootfs"))
    d = Path(root) / "d"
    (d / "sub").mkdir(parents=True)
    (d / "f").write_text("file f\n")
    os.chmod(d / "f", 0o640)
    os.chown(d / "f", 1000, 1000)
    os.symlink("/d/f", d / "abs")
    os.symlink("f", d / "rel")
    os.symlink("/etc", Path(root) / "etc2")
    with tarfile.open(workdir / "bb.tar", "w") as tar:
        tar.add(root, arcname=".")
    cli("import", "-c", 'CMD ["sh"]', str(workdir / "bb.tar"), IMG)
    yield cli
    cli.remove_all_containers(volumes=True)
    names = cli("volume", "ls", "-q", check=False).stdout.split()
    if names:
        cli("volume", "rm", "-f", *names, check=False)


def ours(daemon: Daemon, *args: str, input: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                        f"unix://{daemon.sock}", *args], capture_output=True, input=input,
                       timeout=120, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"dockyard {' '.join(args)} -> {r.returncode}\n{r.stderr!r}")
    return r


@pytest.fixture(params=["docker", "dockyard"])
def cp(request: pytest.FixtureRequest, docker: DockerCLI, daemon: Daemon):
    """`cp ARGS...` with one CLI or the other -> (returncode, stderr)."""
    def run(*args: str, input: bytes | None = None) -> tuple[int, str, bytes]:
        if request.param == "docker":
            r = subprocess.run([DOCKER, "cp", *args], env=docker.env, capture_output=True,
                               input=input, timeout=120, check=False)
        else:
            r = ours(daemon, "cp", *args, input=input, check=False)
        return r.returncode, r.stderr.decode(errors="replace"), r.stdout
    return run


def _tree(path: Path) -> dict[str, str]:
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_text()
    return out


def _sh(docker: DockerCLI, name: str, script: str) -> str:
    return docker("exec", name, "sh", "-c", script).stdout


@pytest.fixture
def running(docker: DockerCLI) -> Iterator[str]:
    name = "cp-" + uuid.uuid4().hex[:8]
    docker("run", "-d", "--name", name, "-v", f"{name}-vol:/vol", IMG, "sleep", "300")
    _sh(docker, name, "echo in-volume > /vol/v")
    yield name
    docker("rm", "-f", "-v", name)
    docker("volume", "rm", f"{name}-vol")


# -- container -> host --------------------------------------------------------------------------

def test_copy_out_path_rules(cp, running: str, tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    assert cp(f"{running}:/d", str(tmp_path / "exists"))[0] == 0  # into: exists/d
    assert _tree(tmp_path / "exists") == {"d": "dir", "d/abs": "-> /d/f", "d/f": "file f\n",
                                          "d/rel": "-> f", "d/sub": "dir"}
    assert cp(f"{running}:/d", str(tmp_path / "new"))[0] == 0  # takes the new name
    assert _tree(tmp_path / "new")["f"] == "file f\n"
    (tmp_path / "contents").mkdir()
    assert cp(f"{running}:/d/.", str(tmp_path / "contents"))[0] == 0  # trailing /.
    assert set(_tree(tmp_path / "contents")) == {"abs", "f", "rel", "sub"}
    assert cp(f"{running}:/d/f", str(tmp_path / "one"))[0] == 0
    assert (tmp_path / "one").read_text() == "file f\n"
    assert oct((tmp_path / "one").stat().st_mode & 0o777) == "0o640"
    assert (tmp_path / "one").stat().st_uid == os.getuid()  # docker cp: no lchown
    assert cp(f"{running}:/d/abs", str(tmp_path / "link"))[0] == 0  # a symlink stays one
    assert os.readlink(tmp_path / "link") == "/d/f"
    assert cp("-L", f"{running}:/d/abs", str(tmp_path / "followed"))[0] == 0
    assert (tmp_path / "followed").read_text() == "file f\n"
    assert cp(f"{running}:/vol/v", str(tmp_path / "v"))[0] == 0  # a volume, in place
    assert (tmp_path / "v").read_text() == "in-volume\n"
    assert cp(f"{running}:/etc2/", str(tmp_path / "etc"))[0] == 0  # symlink/ -> its dir
    assert (tmp_path / "etc" / "passwd").exists()


def test_running_container_is_seen_with_its_own_mounts(docker: DockerCLI, daemon: Daemon,
                                                      tmp_path: Path) -> None:
    """A tmpfs exists only in the container's mount namespace: reached through
    /proc/<pid>/root (pinned and checked to be the container's process)."""
    name = "cp-tmpfs"
    docker("run", "-d", "--name", name, "--tmpfs", "/scratch", IMG, "sh", "-c",
           "echo only-in-tmpfs > /scratch/t; sleep 300")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = ours(daemon, "cp", f"{name}:/scratch/t", str(tmp_path / "t"), check=False)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert (tmp_path / "t").read_text() == "only-in-tmpfs\n"
    ours(daemon, "cp", str(tmp_path / "t"), f"{name}:/scratch/back")
    assert _sh(docker, name, "cat /scratch/back") == "only-in-tmpfs\n"
    # the whole root: /proc, /sys and /dev are there as (empty) mount points, as in docker
    assert docker("cp", f"{name}:/", str(tmp_path / "all")).returncode == 0
    assert (tmp_path / "all" / "bin" / "busybox").exists()
    assert os.listdir(tmp_path / "all" / "proc") == []
    assert os.listdir(tmp_path / "all" / "sys") == []
    docker("rm", "-f", name)


def test_copy_out_to_stdout_is_a_tar(cp, running: str) -> None:
    code, _, out = cp(f"{running}:/d", "-")
    assert code == 0
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        names = sorted(t.getnames())
    assert names == ["d", "d/abs", "d/f", "d/rel", "d/sub"]


def test_copy_out_errors(cp, running: str, tmp_path: Path) -> None:
    code, err, _ = cp(f"{running}:/nope", str(tmp_path / "x"))
    assert code == 1 and f"Could not find the file /nope in container {running}" in err
    code, err, _ = cp("no-such-container:/d", str(tmp_path / "x"))
    assert code == 1 and "No such container: no-such-container" in err
    (tmp_path / "file").write_text("x")
    code, err, _ = cp(f"{running}:/d", str(tmp_path / "file"))
    assert code == 1 and "cannot copy directory" in err
    code, err, _ = cp(str(tmp_path / "file"), str(tmp_path / "other"))
    assert code != 0 and "must specify at least one container source" in err


# -- host -> container ----------------------------------------------------------------------------

def test_copy_in_path_rules(cp, docker: DockerCLI, running: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "x").write_text("x\n")
    os.symlink("deep/x", src / "lx")
    (tmp_path / "single").write_text("single\n")
    assert cp(str(src), f"{running}:/tmp")[0] == 0  # into the existing dir
    assert cp(str(src), f"{running}:/newdir")[0] == 0  # takes the name
    assert cp(str(src) + "/.", f"{running}:/d/sub")[0] == 0  # contents
    assert cp(str(tmp_path / "single"), f"{running}:/d/renamed")[0] == 0
    assert cp(str(tmp_path / "single"), f"{running}:/vol/")[0] == 0  # into the volume
    out = _sh(docker, running, "cat /tmp/src/deep/x /newdir/deep/x /d/sub/deep/x "
              "/d/renamed /vol/single; readlink /newdir/lx")
    assert out == "x\nx\nx\nsingle\nsingle\ndeep/x\n"
    code, err, _ = cp(str(tmp_path / "single"), f"{running}:/no/such/dir/")
    assert code == 1
    code, err, _ = cp(str(src), f"{running}:/d/f")
    assert code == 1 and "cannot copy directory" in err
    code, err, _ = cp(str(tmp_path / "absent"), f"{running}:/tmp")
    assert code == 1 and "no such file or directory" in err


def test_copy_in_from_stdin_tar(cp, docker: DockerCLI, running: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("from-stdin")
        info.size = 3
        t.addfile(info, io.BytesIO(b"hi\n"))
    assert cp("-", f"{running}:/tmp", input=buf.getvalue())[0] == 0
    assert _sh(docker, running, "cat /tmp/from-stdin") == "hi\n"


def test_copy_a_keeps_container_user(docker: DockerCLI, daemon: Daemon,
                                     tmp_path: Path) -> None:
    name = "cp-user"
    docker("run", "-d", "--name", name, "-u", "1234:2345", IMG, "sleep", "300")
    f = tmp_path / "owned"
    f.write_text("o")
    ours(daemon, "cp", "-a", str(f), f"{name}:/tmp/a")
    ours(daemon, "cp", str(f), f"{name}:/tmp/b")
    out = _sh(docker, name, "stat -c '%u:%g' /tmp/a /tmp/b")
    assert out == "1234:2345\n0:0\n"
    docker("rm", "-f", name)


def test_stopped_container_both_ways_with_volume(cp, docker: DockerCLI,
                                                 tmp_path: Path) -> None:
    name = "cp-stopped-" + uuid.uuid4().hex[:6]
    docker("run", "--name", name, "-v", f"{name}v:/vol", IMG, "sh", "-c",
           "echo v > /vol/v; echo r > /root.txt")
    (tmp_path / "in").write_text("in\n")
    assert cp(str(tmp_path / "in"), f"{name}:/vol/in")[0] == 0
    assert cp(f"{name}:/vol", str(tmp_path / "vol"))[0] == 0
    assert _tree(tmp_path / "vol") == {"in": "in\n", "v": "v\n"}
    assert cp(f"{name}:/root.txt", str(tmp_path / "r"))[0] == 0
    assert (tmp_path / "r").read_text() == "r\n"
    out = docker("run", "--rm", "-v", f"{name}v:/vol", IMG, "cat", "/vol/in").stdout
    assert out == "in\n"
    docker("rm", name)
    docker("volume", "rm", f"{name}v")


# -- the API ----------------------------------------------------------------------------------

def test_head_stat_header(daemon: Daemon, running: str) -> None:
    status, headers, _ = http_request(daemon.sock, "HEAD",
                                      f"/v1.41/containers/{running}/archive?path=/d/abs")
    assert status == 200
    st = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert st["name"] == "abs" and st["linkTarget"] == "/d/f"
    assert st["mode"] == (1 << 27) | 0o777  # Go's os.ModeSymlink
    status, headers, _ = http_request(daemon.sock, "HEAD",
                                      f"/v1.41/containers/{running}/archive?path=/d")
    st = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert st["mode"] & (1 << 31) and st["name"] == "d"
    status, _, _ = http_request(daemon.sock, "HEAD",
                                f"/v1.41/containers/{running}/archive?path=/none")
    assert status == 404
    status, _, body = http_request(daemon.sock, "PUT",
                                   f"/v1.41/containers/{running}/archive?path=/d/f", b"")
    assert status == 400 and b"extraction point is not a directory" in body


def test_put_into_read_only_rootfs_is_refused(docker: DockerCLI, cp, tmp_path: Path) -> None:
    name = "cp-ro-" + uuid.uuid4().hex[:6]
    docker("run", "-d", "--name", name, "--read-only", "-v", f"{name}v:/vol", IMG, "sleep",
           "300")
    (tmp_path / "f").write_text("f")
    code, err, _ = cp(str(tmp_path / "f"), f"{name}:/tmp")
    assert code == 1 and "container rootfs is marked read-only" in err
    assert cp(str(tmp_path / "f"), f"{name}:/vol")[0] == 0  # a volume stays writable
    docker("rm", "-f", "-v", name)
    docker("volume", "rm", f"{name}v")


def test_put_refuses_dotdot_entries(daemon: Daemon, docker: DockerCLI, running: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../escape-" + running)
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    status, _, body = http_request(daemon.sock, "PUT",
                                   f"/v1.41/containers/{running}/archive?path=/tmp",
                                   buf.getvalue())
    assert status == 400 and b".." in body
    assert not os.path.exists("/escape-" + running)


# -- a container racing a symlink during cp ------------------------------------------------------

def test_symlink_flip_race_never_reaches_the_host(docker: DockerCLI, daemon: Daemon,
                                                  tmp_path: Path) -> None:
    """/race/link flips between /safe and / (as fast as busybox can) while we copy
    in and out through it: every copy lands in, or reads from, the container; nothing
    is ever written to or read from the host's root."""
    name = "racer"
    token = uuid.uuid4().hex
    host_secret = Path(f"/dyk-host-secret-{token}")
    host_secret.write_text("HOST\n")
    try:
        docker("run", "-d", "--name", name, IMG, "sh", "-c",
               "mkdir -p /safe /race; echo container > /dyk-host-secret-" + token + "; "
               "echo safe > /safe/dyk-host-secret-" + token + "; "
               "while true; do ln -sfn /safe /race/link; ln -sfn / /race/link; done")
        time.sleep(0.3)
        (tmp_path / f"planted-{token}").write_text("planted\n")
        deadline = time.monotonic() + 8
        copies = 0
        while time.monotonic() < deadline and copies < 60:
            ours(daemon, "cp", str(tmp_path / f"planted-{token}"), f"{name}:/race/link/",
                 check=False)
            out = tmp_path / f"out-{copies}"
            ours(daemon, "cp", f"{name}:/race/link/dyk-host-secret-{token}", str(out),
                 check=False)
            if out.exists():
                assert out.read_text() in ("container\n", "safe\n")
            copies += 1
        assert copies >= 10
        assert not Path(f"/planted-{token}").exists()  # never in the host's root
        assert host_secret.read_text() == "HOST\n"
        found = _sh(docker, name, f"ls /planted-{token} /safe/planted-{token} 2>/dev/null; "
                    "true")
        assert f"planted-{token}" in found  # it went to the container's / or /safe
    finally:
        docker("rm", "-f", name, check=False)
        host_secret.unlink()
        Path(f"/planted-{token}").unlink(missing_ok=True)
