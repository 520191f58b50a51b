"""`docker exec` against `dockyard daemon` with the official docker CLI and the docker
SDK: output, exit codes, -e/-w/-u, stdin, -d, -t, errors, and the exec inspect.

One daemon for the module (private data root, exec root and socket); at the end it
is stopped and nothing may be left (no monitor, process, mount or cgroup).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

# the same module-scoped daemon set-up as the container tests (a daemon of its own here)
from test_daemon_containers import busybox, daemon, docker, workdir  # noqa: F401
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(scope="module")
def box(docker: DockerCLI, busybox: str) -> Iterator[str]:
    """A running container to exec into."""
    docker("run", "-d", "--name", "xbox", "-e", "FROM_RUN=1", "busybox:dyk",
           "sleep", "1000")
    yield "xbox"
    docker("rm", "-f", "xbox", check=False)


def test_exec_echo(docker: DockerCLI, box: str) -> None:
    r = docker("exec", box, "echo", "hi")
    assert r.stdout == "hi\n" and r.returncode == 0


def test_exec_exit_code_and_streams(docker: DockerCLI, box: str) -> None:
    r = docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert r.returncode == 5
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_exec_env_workdir_user(docker: DockerCLI, box: str) -> None:
    r = docker("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", box, "sh", "-c",
               'echo "$FOO $FROM_RUN $(pwd) $(id -u):$(id -g)"')
    assert r.stdout == "bar 1 /tmp 1000:1000\n"
    r = docker("exec", box, "sh", "-c", "echo $PATH; id -u")
    assert r.stdout.splitlines()[1] == "0" and "/bin" in r.stdout


def test_exec_stdin(docker: DockerCLI, box: str) -> None:
    r = docker("exec", "-i", box, "cat", input=b"one\ntwo\n")
    assert r.stdout == "one\ntwo\n"
    r = docker("exec", "-i", box, "sh", "-c", "wc -l; exit 3", input=b"a\nb\nc\n",
               check=False)
    assert r.returncode == 3 and r.stdout.strip() == "3"


def test_exec_stdin_at_eof_keeps_the_output(docker: DockerCLI, box: str) -> None:
    """`docker exec -i C sh -c 'echo x' </dev/null`: the CLI half-closes at once, so the
    daemon's zero frame (stdin closed) can reach the monitor after the exec has ended;
    the monitor must not close the stream with it unread (a unix socket closed with
    unread data resets its peer, and the output still queued was lost: ~1 run in 30)."""
    deadline, runs, lost = time.monotonic() + 8, 0, []
    while runs < 120 and (runs < 40 or time.monotonic() < deadline):
        r = subprocess.run([DOCKER, "exec", "-i", box, "sh", "-c", f"echo x{runs}"],
                           stdin=subprocess.DEVNULL, capture_output=True, env=docker.env,
                           timeout=30, check=False)
        if r.returncode != 0 or r.stdout != f"x{runs}\n".encode():
            lost.append((runs, r.returncode, r.stdout, r.stderr))
        runs += 1
    assert not lost, f"{len(lost)} of {runs} execs lost their output: {lost[:3]}"


def test_exec_big_output(docker: DockerCLI, box: str) -> None:
    lines = docker("exec", box, "seq", "1", "30000").stdout.splitlines()
    assert len(lines) == 30000 and lines[-1] == "30000"


def test_exec_detached(docker: DockerCLI, box: str) -> None:
    r = docker("exec", "-d", box, "sh", "-c", "echo done > /tmp/detached")
    assert r.stdout == ""
    deadline = time.monotonic() + 10
    while docker("exec", box, "cat", "/tmp/detached", check=False).stdout != "done\n":
        assert time.monotonic() < deadline, "the detached exec did not run"
        time.sleep(0.1)


@pytest.mark.skipif(not shutil.which("script"), reason="script(1) missing")
def test_exec_tty(docker: DockerCLI, box: str) -> None:
    cmd = f"{DOCKER} exec -t {box} sh -c 'tty; echo $TERM; exit 4'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       env=docker.env, timeout=60, check=False)
    out = r.stdout.decode().replace("\r", "")
    assert "/dev/pts/" in out and "xterm" in out
    assert r.returncode == 4


@pytest.mark.skipif(not shutil.which("script"), reason="script(1) missing")
def test_exec_interactive_tty(docker: DockerCLI, box: str) -> None:
    cmd = f"{DOCKER} exec -it {box} sh -c 'read x; echo got:$x; stty size'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], input=b"abc\n",
                       capture_output=True, env=docker.env, timeout=60, check=False)
    out = r.stdout.decode().replace("\r", "")
    assert "got:abc" in out and r.returncode == 0, out


def test_exec_ends_when_the_container_stops(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "xstop", "busybox:dyk", "sleep", "1000")
    try:
        proc = subprocess.Popen([DOCKER, "exec", "xstop", "sh", "-c", "echo up; sleep 1000"],
                                env=docker.env, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        docker("stop", "-t", "1", "xstop")
        assert proc.wait(timeout=30) != 0
    finally:
        docker("rm", "-f", "xstop", check=False)


def test_exec_errors(docker: DockerCLI, busybox: str, box: str) -> None:
    r = docker("exec", box, "no-such-binary", check=False)
    assert r.returncode == 127
    r = docker("exec", "no-such-container", "true", check=False)
    assert r.returncode != 0 and "No such container" in r.stderr
    docker("create", "--name", "xstopped", "busybox:dyk", "true")
    try:
        r = docker("exec", "xstopped", "true", check=False)
        assert r.returncode != 0 and "is not running" in r.stderr
    finally:
        docker("rm", "xstopped")
    docker("pause", box)
    try:
        r = docker("exec", box, "true", check=False)
        assert r.returncode != 0 and "paused" in r.stderr
    finally:
        docker("unpause", box)


def test_exec_api(daemon: Daemon, box: str) -> None:
    status, _, body = http_request(daemon.sock, "GET", "/exec/nope/json")
    assert status == 404 and b"No such exec instance" in body
    config = json.dumps({"Cmd": ["sh", "-c", "exit 2"], "Tty": False}).encode()
    status, _, body = http_request(daemon.sock, "POST", f"/containers/{box}/exec", config,
                                   {"Content-Type": "application/json"})
    assert status == 201, body
    exec_id = json.loads(body)["Id"]
    status, _, body = http_request(daemon.sock, "POST", f"/exec/{exec_id}/start",
                                   b'{"Detach": true}', {"Content-Type": "application/json"})
    assert status == 200, body
    deadline = time.monotonic() + 10
    while True:
        status, _, body = http_request(daemon.sock, "GET", f"/exec/{exec_id}/json")
        info = json.loads(body)
        if not info["Running"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["ExitCode"] == 2 and info["Pid"] > 0
    assert info["ProcessConfig"]["entrypoint"] == "sh" and len(info["ContainerID"]) == 64
    status, _, body = http_request(daemon.sock, "POST", f"/exec/{exec_id}/start",
                                   b'{"Detach": true}', {"Content-Type": "application/json"})
    assert status == 409, body


def test_exec_docker_sdk(daemon: Daemon, box: str) -> None:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{daemon.sock}", version="auto")
    try:
        c = client.containers.get(box)
        assert c.exec_run("echo hi") == (0, b"hi\n")
        code, out = c.exec_run(["sh", "-c", "echo o; echo e >&2; exit 6"], demux=True)
        assert code == 6 and out == (b"o\n", b"e\n")
        assert c.exec_run("tty", tty=True).output.strip().startswith(b"/dev/pts/")
    finally:
        client.close()
