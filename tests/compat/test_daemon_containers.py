"""`dockyard daemon` container endpoints against the official docker CLI (v28) and the
docker SDK: run (attach, wait, --rm), logs, ps, the lifecycle verbs, top, stats,
errors, and raw HTTP for the hijack.

One daemon per module (its own data root, exec root and socket under a temp dir);
busybox:dyk is imported through the daemon. At the end the daemon is stopped and
nothing may be left: no monitor, no container process, no mount, no cgroup.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

from dockyard.devtools.busybox import make_rootfs

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

LOOP = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyc")


def checked_daemon(workdir: Path) -> Iterator[Daemon]:
    """A module's daemon (its own roots under `workdir`); once the module is done it is
    stopped, and no monitor, container process, mount or cgroup may be left."""
    d = Daemon(workdir, "--exec-root", str(workdir / "exec"))
    yield d
    monitor_pid = _read_pid(workdir / "exec" / "monitor.pid")
    ids = os.listdir(os.path.join(d.data_root, "containers")) \
        if os.path.isdir(os.path.join(d.data_root, "containers")) else []
    assert d.stop() == 0, d.logs()
    _check_nothing_left(workdir, monitor_pid, ids)


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    yield from checked_daemon(workdir)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _check_nothing_left(workdir: Path, monitor_pid: int, ids: list[str]) -> None:
    deadline = time.monotonic() + 10
    while monitor_pid and os.path.exists(f"/proc/{monitor_pid}") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not monitor_pid or not os.path.exists(f"/proc/{monitor_pid}"), "monitor left"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    assert not [m for m in mounts if m.startswith(str(workdir))], "mounts left"
    for cid in ids:
        assert not glob.glob(f"/sys/fs/cgroup/*/dockyard/{cid}") \
            and not glob.glob(f"/sys/fs/cgroup/dockyard/{cid}"), f"cgroup of {cid} left"


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(daemon, workdir)
    yield cli
    cli.remove_all_containers()


@pytest.fixture(scope="module")
def busybox(docker: DockerCLI, workdir: Path) -> str:
    root = make_rootfs(str(workdir / "rootfs"))
    out = workdir / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return docker("import", "-c", 'CMD ["sh"]', str(out), "busybox:dyk").stdout.strip()


def _state(docker: DockerCLI, name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- run: create, attach, wait, start -----------------------------------------------------

def test_run_rm_prints_and_is_removed(docker: DockerCLI, busybox: str) -> None:
    before = set(docker("ps", "-aq").stdout.split())
    r = docker("run", "--rm", "busybox:dyk", "echo", "hi")
    assert r.stdout == "hi\n"
    assert set(docker("ps", "-aq").stdout.split()) == before


def test_run_exit_code_and_streams(docker: DockerCLI, busybox: str) -> None:
    r = docker("run", "--rm", "busybox:dyk", "sh", "-c", "echo out; echo err >&2; exit 3",
               check=False)
    assert r.returncode == 3
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_run_stdin(docker: DockerCLI, busybox: str) -> None:
    r = docker("run", "--rm", "-i", "busybox:dyk", "sh", "-c", "cat; echo done",
               input=b"one\ntwo\n")
    assert r.stdout == "one\ntwo\ndone\n"


def test_run_big_output(docker: DockerCLI, busybox: str) -> None:
    r = docker("run", "--rm", "busybox:dyk", "seq", "1", "50000")
    lines = r.stdout.splitlines()
    assert len(lines) == 50000 and lines[-1] == "50000"


def test_run_errors(docker: DockerCLI, busybox: str) -> None:
    r = docker("run", "--rm", "busybox:dyk", "no-such-binary", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr
    docker("create", "--name", "dup", "busybox:dyk", "true")
    try:
        r = docker("create", "--name", "dup", "busybox:dyk", "true", check=False)
        assert r.returncode != 0
        assert 'Conflict. The container name "/dup" is already in use' in r.stderr
    finally:
        docker("rm", "dup")


def test_create_missing_image_is_404(daemon: Daemon, busybox: str) -> None:
    body = json.dumps({"Image": "absent:nope", "Cmd": ["true"]}).encode()
    status, headers, data = http_request(daemon.sock, "POST", "/v1.41/containers/create",
                                         body, {"Content-Type": "application/json"})
    assert status == 404 and headers["content-type"] == "application/json"
    assert "No such image" in json.loads(data)["message"]
    status, _, data = http_request(daemon.sock, "POST", "/containers/create", b"{nope",
                                   {"Content-Type": "application/json"})
    assert status == 400
    status, _, _ = http_request(daemon.sock, "GET", "/containers/nope/json")
    assert status == 404


# -- a detached container ---------------------------------------------------------------------

def test_detached_lifecycle(docker: DockerCLI, busybox: str) -> None:
    cid = docker("run", "-d", "--name", "web", "busybox:dyk", "sh", "-c", LOOP).stdout.strip()
    try:
        assert len(cid) == 64
        _wait_for(lambda: "line 3" in docker("logs", "web").stdout)
        assert docker("logs", "--tail", "1", "web").stdout.count("\n") == 1
        stamped = docker("logs", "-t", "--tail", "1", "web").stdout
        assert stamped[:4].isdigit() and "Z line" in stamped
        with pytest.raises(subprocess.TimeoutExpired) as got:
            subprocess.run([DOCKER, "logs", "-f", "--tail", "0", "web"], env=docker.env,
                           capture_output=True, timeout=1.0, check=False)
        assert b"line" in (got.value.stdout or b"")

        table = docker("ps").stdout.splitlines()
        assert table[0].split()[:2] == ["CONTAINER", "ID"]
        assert any(cid[:12] in row and "web" in row and "Up" in row for row in table[1:])
        assert cid[:12] in docker("ps", "-q").stdout.split()
        assert docker("ps", "--format", "{{.Names}} {{.State}}",
                      "--filter", "name=web").stdout.strip() == "web running"
        top = docker("top", "web").stdout
        assert "PID" in top and "sh -c" in top
        stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}",
                       "web").stdout.split()
        assert stats[0] == "web" and int(stats[1]) >= 1

        docker("pause", "web")
        assert _state(docker, "web")["Status"] == "paused"
        docker("unpause", "web")
        assert _state(docker, "web")["Status"] == "running"

        docker("rename", "web", "web2")
        assert docker("inspect", "-f", "{{.Name}}", "web2").stdout.strip() == "/web2"
        r = docker("rm", "web2", check=False)
        assert r.returncode != 0 and "cannot remove a running container" in r.stderr

        docker("restart", "-t", "1", "web2")
        assert _state(docker, "web2")["Running"]
        docker("kill", "web2")
        assert docker("wait", "web2").stdout.strip() == "137"
        assert _state(docker, "web2")["ExitCode"] == 137
        r = docker("stop", "web2")  # already stopped: 304, not an error
        assert r.returncode == 0
        docker("start", "web2")
        t0 = time.monotonic()
        docker("stop", "-t", "1", "web2")
        assert time.monotonic() - t0 < 8
        assert "Exited (137)" in docker("ps", "-a", "--filter", "name=web2").stdout
    finally:
        docker("rm", "-f", "web", "web2", check=False)
    assert cid[:12] not in docker("ps", "-aq").stdout


def test_inspect_and_wait_exit_code(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "ex5", "busybox:dyk", "sh", "-c", "sleep 0.3; exit 5")
    try:
        assert docker("wait", "ex5").stdout.strip() == "5"
        [doc] = json.loads(docker("inspect", "ex5").stdout)
        assert doc["Name"] == "/ex5" and doc["State"]["Status"] == "exited"
        assert doc["State"]["ExitCode"] == 5 and doc["Config"]["Image"] == "busybox:dyk"
        assert doc["Path"] == "sh" and doc["Args"][0] == "-c"
    finally:
        docker("rm", "ex5")


def test_rm_force_and_prune(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "forced", "busybox:dyk", "sleep", "60")
    docker("rm", "-f", "forced")
    assert "forced" not in docker("ps", "-a", "--format", "{{.Names}}").stdout
    docker("create", "--name", "stale", "busybox:dyk", "true")
    out = docker("container", "prune", "-f").stdout
    assert "Total reclaimed space" in out
    assert "stale" not in docker("ps", "-a", "--format", "{{.Names}}").stdout


def test_many_concurrent_creates_get_unique_generated_names(docker: DockerCLI,
                                                             busybox: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: docker("create", "busybox:dyk", "true",
                                                 check=False), range(40)))
    ids = [r.stdout.strip() for r in results if r.returncode == 0]
    try:
        assert [r.stderr for r in results if r.returncode != 0] == []
        names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert len(set(names)) == len(names) >= 40
    finally:
        if ids:
            docker("rm", "-f", *ids, check=False)


def test_rmi_refuses_an_image_a_container_uses(docker: DockerCLI, busybox: str) -> None:
    docker("tag", "busybox:dyk", "busybox:inuse")
    docker("create", "--name", "user-of-image", "busybox:inuse", "true")
    try:
        # another tag still names the image: dockerd only untags this one
        r = docker("rmi", "busybox:inuse", check=False)
        assert r.returncode == 0 and r.stdout == "Untagged: busybox:inuse\n", r.stderr
        # its last name: refused while a container uses it
        r = docker("rmi", "busybox:dyk", check=False)
        assert r.returncode == 1 and "is using its referenced image" in r.stderr
        assert "must force" in r.stderr
        pruned = docker("image", "prune", "-a", "-f").stdout
        assert busybox.removeprefix("sha256:")[:12] not in pruned
        assert "busybox:dyk" in docker("images", "--format",
                                       "{{.Repository}}:{{.Tag}}").stdout
    finally:
        docker("rm", "-f", "user-of-image", check=False)
        docker("rmi", "busybox:inuse", check=False)


def test_attach_raw_http(daemon: Daemon, docker: DockerCLI, busybox: str) -> None:
    """The hijack as the CLI sees it: 101 UPGRADED, then 8-byte frames; stdin half-close."""
    cid = docker("create", "-i", "busybox:dyk", "sh", "-c", "cat; echo bye >&2").stdout.strip()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(20)
        s.connect(daemon.sock)
        s.sendall(f"POST /v1.41/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1 "
                  "HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                  "Content-Length: 0\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"application/vnd.docker.raw-stream" in head and b"Upgrade: tcp" in head
        docker("start", cid)
        s.sendall(b"ping\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        frames = []
        while data:
            kind, size = data[0], int.from_bytes(data[4:8], "big")
            frames.append((kind, data[8:8 + size]))
            data = data[8 + size:]
        assert (1, b"ping\n") in frames and (2, b"bye\n") in frames
    finally:
        docker("rm", "-f", cid)


# -- the docker SDK -------------------------------------------------------------------------------

def test_docker_sdk_containers(daemon: Daemon, busybox: str) -> None:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{daemon.sock}", version="auto")
    try:
        assert client.containers.run("busybox:dyk", "echo hi", remove=True) == b"hi\n"
        c = client.containers.run("busybox:dyk", ["sh", "-c", "echo a; sleep 60"],
                                  detach=True, name="sdk1")
        try:
            _wait_for(lambda: b"a\n" in c.logs())
            c.reload()
            assert c.status == "running" and c.name == "sdk1"
            assert [x.id for x in client.containers.list(filters={"name": "sdk1"})] == [c.id]
            c.kill()
            assert c.wait()["StatusCode"] == 137
        finally:
            c.remove(force=True)
        with pytest.raises(docker_sdk.errors.NotFound):
            client.containers.get("sdk1")
        with pytest.raises(docker_sdk.errors.ContainerError):
            client.containers.run("busybox:dyk", ["sh", "-c", "exit 4"], remove=True)
    finally:
        client.close()


def test_shared_pid_ipc_and_uts_namespaces(docker: DockerCLI, busybox: str) -> None:
    """--pid/--ipc container:X join X's namespaces, --pid/--uts host the host's;
    joining a container that is not running fails as dockerd's does."""
    import socket

    docker("run", "-d", "--name", "nsowner", "busybox:dyk", "sleep", "300")
    try:
        docker("run", "-d", "--name", "nsjoiner", "--pid", "container:nsowner", "--ipc",
               "container:nsowner", "busybox:dyk", "sleep", "299")
        procs = docker("exec", "nsjoiner", "ps", "-o", "args").stdout
        assert "sleep 300" in procs and "sleep 299" in procs
        ipc = [docker("exec", n, "readlink", "/proc/self/ns/ipc").stdout for n in
               ("nsowner", "nsjoiner")]
        assert ipc[0] == ipc[1]
        own = docker("run", "--rm", "busybox:dyk", "readlink", "/proc/self/ns/ipc").stdout
        assert own != ipc[0]

        host_procs = docker("run", "--rm", "--pid", "host", "busybox:dyk", "ps", "-o",
                            "pid").stdout.split()
        assert "1" in host_procs and len(host_procs) > 10
        assert docker("run", "--rm", "--uts", "host", "busybox:dyk",
                      "hostname").stdout.strip() == socket.gethostname()

        docker("stop", "-t", "0", "nsowner")
        r = docker("start", "nsjoiner", check=False)
        assert r.returncode != 0 and "cannot join PID of a non running container" in r.stderr
        r = docker("run", "--rm", "--ipc", "bogus", "busybox:dyk", "true", check=False)
        assert r.returncode == 125 and "invalid IPC mode" in r.stderr, r.stderr
    finally:
        docker("rm", "-f", "nsjoiner", "nsowner", check=False)
