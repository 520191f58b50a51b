"""`dockyard daemon`: --init (our static init as PID 1), the `local` log driver, the
detach keys and attach's logs=1, with the official docker CLI, our CLI and raw HTTP.

One daemon per module (its own data root, exec root and socket under a temp dir);
busybox:dyk is imported through the daemon; a second short-lived daemon checks the
daemon.json defaults (init, log-driver, detach-keys).
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_containers import _check_nothing_left, _read_pid, checked_daemon
from test_daemon_images import DOCKER, Daemon, DockerCLI, http_request

from dockyard.devtools.busybox import make_rootfs
from dockyard.devtools.netconfig import private_network_config

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyi")


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    yield from checked_daemon(workdir)


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(daemon, workdir)
    yield cli
    cli.remove_all_containers()


def _busybox_tar(workdir: Path) -> Path:
    out = workdir / "busybox.tar"
    if not out.exists():
        root = make_rootfs(str(workdir / "rootfs"))
        with tarfile.open(out, "w") as tar:
            tar.add(root, arcname=".")
    return out


@pytest.fixture(scope="module")
def busybox(docker: DockerCLI, workdir: Path) -> str:
    return docker("import", "-c", 'CMD ["sh"]', str(_busybox_tar(workdir)),
                  "busybox:dyk").stdout.strip()


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _running(docker: DockerCLI, name: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def _ours(daemon: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{daemon.sock}", *args]


def _pty_session(argv: list[str], env: dict[str, str], steps: list[tuple[bytes, bytes]],
                 timeout: float = 20.0) -> tuple[int, bytes]:
    """Run argv on a pty; for each (expected, keys): wait for `expected` in the output,
    then type `keys`. Returns (exit status, output)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout

    def read(wait: float) -> bool:
        nonlocal out
        if select.select([master], [], [], wait)[0]:
            try:
                data = os.read(master, 65536)
            except OSError as e:  # EIO: the CLI closed the terminal
                if e.errno != errno.EIO:
                    raise
                data = b""
            out += data
            return bool(data)
        return True

    try:
        for expected, keys in steps:
            while expected not in out:
                if time.monotonic() > deadline or not read(0.1):
                    proc.kill()
                    raise AssertionError(f"no {expected!r} in {out!r}")
            os.write(master, keys)
        while proc.poll() is None and time.monotonic() < deadline and read(0.1):
            pass
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        while select.select([master], [], [], 0)[0] and read(0):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out


# -- --init -----------------------------------------------------------------------------------

def test_init_is_pid1(docker: DockerCLI, busybox: str) -> None:
    r = docker("run", "--name", "init1", "--init", "busybox:dyk", "ps", "-o", "pid,comm")
    procs = dict(line.split() for line in r.stdout.splitlines()[1:])
    assert procs["1"] == "docker-init" and procs["2"] == "ps", r.stdout
    assert docker("inspect", "-f", "{{json .HostConfig.Init}}", "init1").stdout.strip() \
        == "true"
    docker("rm", "init1")
    r = docker("run", "--rm", "busybox:dyk", "ps", "-o", "pid,comm")
    assert "docker-init" not in r.stdout


def test_init_reaps_zombies_and_exit_status(docker: DockerCLI, busybox: str) -> None:
    # the inner shell exits at once: its sleeps are orphans that PID 1 must reap
    script = 'sh -c "sleep 0.1 & sleep 0.1 & exit 0"; sleep 0.6; ps -o pid,stat,comm; exit 7'
    r = docker("run", "--rm", "--init", "busybox:dyk", "sh", "-c", script, check=False)
    assert r.returncode == 7, r.stderr
    stats = [line.split()[1] for line in r.stdout.splitlines()[1:]]
    assert stats and not [s for s in stats if s.startswith("Z")], r.stdout
    r = docker("run", "--rm", "--init", "busybox:dyk", "sh", "-c", "kill -KILL $$",
               check=False)
    assert r.returncode == 137  # 128 + the child's signal
    r = docker("run", "--rm", "--init", "busybox:dyk", "no-such-command", check=False)
    assert r.returncode == 127 and "no-such-command" in r.stderr


def test_init_forwards_signals(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "init-stop", "--init", "busybox:dyk", "sleep", "100")
    script = 'trap "echo got usr1; exit 3" USR1; echo ready; while true; do sleep 0.05; done'
    docker("run", "-d", "--name", "init-usr1", "--init", "busybox:dyk", "sh", "-c", script)
    try:
        start = time.monotonic()
        docker("stop", "-t", "10", "init-stop")  # sleep as PID 1 would ignore SIGTERM
        assert time.monotonic() - start < 5
        assert docker("inspect", "-f", "{{.State.ExitCode}}", "init-stop").stdout.strip() \
            == "143"
        _wait_for(lambda: "ready" in docker("logs", "init-usr1").stdout)
        docker("kill", "-s", "USR1", "init-usr1")
        assert docker("wait", "init-usr1").stdout.strip() == "3"
        assert "got usr1" in docker("logs", "init-usr1").stdout
    finally:
        docker("rm", "-f", "init-stop", "init-usr1", check=False)


# -- the local log driver ----------------------------------------------------------------------

def test_local_driver_logs(docker: DockerCLI, busybox: str, daemon: Daemon) -> None:
    docker("run", "--name", "loc1", "--log-driver", "local", "busybox:dyk", "sh", "-c",
           "echo one; echo two >&2; sleep 0.2; echo three; printf tail")
    try:
        cid = docker("inspect", "-f", "{{.Id}}", "loc1").stdout.strip()
        assert json.loads(docker("inspect", "-f", "{{json .HostConfig.LogConfig}}",
                                 "loc1").stdout) == {"Type": "local", "Config": {}}
        path = Path(daemon.data_root) / "containers" / cid / "local-logs" / "container.log"
        raw = path.read_bytes()
        size = int.from_bytes(raw[:4], "big")
        assert raw[4 + size:8 + size] == raw[:4]  # framed: the length before and after
        assert b"\x0a\x06stdout" in raw[4:4 + size] and b"\x1a\x03one" in raw[4:4 + size]
        r = docker("logs", "loc1")
        assert r.stdout == "one\nthree\ntail" and r.stderr == "two\n"
        r = docker("logs", "--tail", "2", "-t", "loc1")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n"
                            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tail", r.stdout), r.stdout
    finally:
        docker("rm", "loc1")


def test_local_driver_rotation(docker: DockerCLI, busybox: str, daemon: Daemon) -> None:
    docker("run", "--name", "loc2", "--log-driver", "local", "--log-opt", "max-size=1k",
           "--log-opt", "max-file=3", "busybox:dyk", "seq", "1", "300")
    try:
        cid = docker("inspect", "-f", "{{.Id}}", "loc2").stdout.strip()
        logdir = Path(daemon.data_root) / "containers" / cid / "local-logs"
        _wait_for(lambda: sorted(os.listdir(logdir)) == [
            "container.log", "container.log.1.gz", "container.log.2.gz"])
        lines = docker("logs", "loc2").stdout.split()
        assert lines[-1] == "300" and 30 < len(lines) < 300  # the oldest rotated away
        assert lines == [str(i) for i in range(int(lines[0]), 301)]
        assert docker("logs", "--tail", "3", "loc2").stdout == "298\n299\n300\n"
        assert docker("logs", "--tail", "0", "loc2").stdout == ""
    finally:
        docker("rm", "loc2")


def test_local_driver_follow(docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "loc3", "--log-driver", "local", "--log-opt", "max-size=1k",
           "busybox:dyk", "sh", "-c", "for i in $(seq 1 40); do echo l$i; sleep 0.02; done")
    try:
        r = docker("logs", "-f", "loc3", timeout=30)
        assert r.stdout.split() == [f"l{i}" for i in range(1, 41)]
    finally:
        docker("rm", "-f", "loc3")


def test_bad_log_options_are_400(daemon: Daemon, busybox: str) -> None:
    for config, message in [
        ({"max-size": "abc"}, "invalid value for max-size: abc"),
        ({"bogus": "1"}, "unknown log opt 'bogus' for log driver local"),
        ({"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
    ]:
        body = json.dumps({"Image": "busybox:dyk", "Cmd": ["true"], "HostConfig": {
            "LogConfig": {"Type": "local", "Config": config}}}).encode()
        status, _, data = http_request(daemon.sock, "POST", "/v1.41/containers/create", body,
                                       {"Content-Type": "application/json"})
        assert status == 400 and message in json.loads(data)["message"]


def test_none_driver_logs_error(docker: DockerCLI, busybox: str) -> None:
    docker("run", "--name", "none1", "--log-driver", "none", "busybox:dyk", "echo", "x")
    try:
        r = docker("logs", "none1", check=False)
        assert r.returncode != 0
        assert "configured logging driver does not support reading" in r.stderr
    finally:
        docker("rm", "none1")


# -- detach keys -------------------------------------------------------------------------------

def test_detach_from_docker_run_it(docker: DockerCLI, busybox: str) -> None:
    try:
        rc, out = _pty_session([DOCKER, "run", "-it", "--name", "det1", "busybox:dyk", "sh"],
                               docker.env, [(b"/ # ", b"echo mar''ker\r"),
                                            (b"marker", b"\x10\x11")])
        assert rc == 0, out
        assert _running(docker, "det1")
        # docker attach: "read escape sequence", status 1; the custom keys too
        rc, out = _pty_session([DOCKER, "attach", "--detach-keys", "ctrl-x,x", "det1"],
                               docker.env, [(b"", b"echo sec''ond\r"),
                                            (b"second", b"\x18x")])
        assert rc == 1 and b"read escape sequence" in out, out
        assert _running(docker, "det1")
    finally:
        docker("rm", "-f", "det1")


def test_detach_with_our_cli(daemon: Daemon, docker: DockerCLI, busybox: str) -> None:
    env = dict(os.environ)
    try:
        rc, out = _pty_session(_ours(daemon, "run", "-it", "--name", "det2", "busybox:dyk",
                                     "sh"), env, [(b"/ # ", b"echo mar''ker\r"),
                                                  (b"marker", b"\x10\x11")])
        assert rc == 0, out
        assert _running(docker, "det2")
        rc, out = _pty_session(_ours(daemon, "attach", "--detach-keys", "ctrl-a,q", "det2"),
                               env, [(b"", b"echo sec''ond\r"), (b"second", b"\x01q")])
        assert rc == 1 and b"read escape sequence" in out, out
        assert _running(docker, "det2")
    finally:
        docker("rm", "-f", "det2")


def _hijack(sock_path: str, path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sock_path)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              "Content-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 UPGRADED"), head
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_daemon_scans_detach_keys(daemon: Daemon, docker: DockerCLI, busybox: str) -> None:
    """Without a client that scans (raw HTTP), the daemon ends the session itself."""
    docker("run", "-dit", "--name", "det3", "busybox:dyk", "sh")
    try:
        s = _hijack(daemon.sock, "/v1.41/containers/det3/attach?stream=1&stdin=1&stdout=1"
                                 "&detachKeys=ctrl-x,x")
        s.sendall(b"echo fi''rst\r")
        data = b""
        while b"first" not in data:
            data += s.recv(65536)
        s.sendall(b"\x18xecho nev''er\r")  # after the keys: never reaches the shell
        data += _read_all(s)  # the daemon closes the connection
        s.close()
        assert b"never" not in data
        assert _running(docker, "det3")
        r = docker("exec", "det3", "sh", "-c", "echo ok")
        assert r.stdout == "ok\n"
        status, _, body = http_request(
            daemon.sock, "POST", "/v1.41/containers/det3/attach?stream=1&detachKeys=ctrl-",
            None, {"Connection": "Upgrade", "Upgrade": "tcp"})
        assert status == 400 and b"Invalid detach keys (ctrl-) provided" in body
    finally:
        docker("rm", "-f", "det3")


def test_attach_logs_replay(daemon: Daemon, docker: DockerCLI, busybox: str) -> None:
    docker("run", "-d", "--name", "replay", "busybox:dyk", "sh", "-c",
           "echo one; echo two >&2; sleep 100")
    try:
        _wait_for(lambda: docker("logs", "replay").stderr == "two\n")
        s = _hijack(daemon.sock, "/v1.41/containers/replay/attach?logs=1&stream=0"
                                 "&stdout=1&stderr=1")
        data = _read_all(s)  # logs only: the end comes after them
        s.close()
        frames = []
        while data:
            kind, size = data[0], int.from_bytes(data[4:8], "big")
            frames.append((kind, data[8:8 + size]))
            data = data[8 + size:]
        assert sorted(frames) == [(1, b"one\n"), (2, b"two\n")]
        s = _hijack(daemon.sock, "/v1.41/containers/replay/attach?logs=1&stream=1&stdout=1")
        data = b""
        while b"one\n" not in data:
            data += s.recv(65536)
        s.close()
        assert data[0] == 1 and b"two" not in data  # stdout only
    finally:
        docker("rm", "-f", "replay")


# -- daemon.json defaults -----------------------------------------------------------------------

def test_daemon_json_defaults(tmp_path: Path, workdir: Path) -> None:
    config = tmp_path / "custom.json"
    config.write_text(json.dumps({"init": True, "log-driver": "local",
                                  "log-opts": {"max-size": "2k", "max-file": "2"},
                                  "detach-keys": "ctrl-x,x",
                                  **private_network_config(tmp_path)}))
    d = Daemon(tmp_path, "--config-file", str(config))
    try:
        (tmp_path / "cfg").mkdir()
        docker = DockerCLI(d, tmp_path / "cfg")
        docker("import", "-c", 'CMD ["sh"]', str(_busybox_tar(workdir)), "busybox:dyk")
        r = docker("run", "--name", "dflt", "busybox:dyk", "ps", "-o", "pid,comm")
        assert "1 docker-init" in r.stdout  # init: true
        info = json.loads(docker("inspect", "dflt").stdout)[0]
        assert info["HostConfig"]["LogConfig"] == {
            "Type": "local", "Config": {"max-size": "2k", "max-file": "2"}}
        assert docker("logs", "dflt").stdout == r.stdout
        r = docker("run", "--rm", "--init=false", "busybox:dyk", "ps", "-o", "pid,comm")
        assert "docker-init" not in r.stdout
        docker("run", "-dit", "--name", "dkeys", "busybox:dyk", "sh")
        s = _hijack(d.sock, "/v1.41/containers/dkeys/attach?stream=1&stdin=1&stdout=1")
        s.sendall(b"\x18x")  # the daemon's detach-keys
        _read_all(s)
        s.close()
        assert _running(docker, "dkeys")
        docker("rm", "-f", "dflt", "dkeys")
    finally:
        monitor_pid = _read_pid(tmp_path / "exec" / "monitor.pid")
        assert d.stop() == 0, d.logs()
    _check_nothing_left(tmp_path, monitor_pid, [])


def test_bad_daemon_json_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"log-driver": "local", "log-opts": {"max-file": "x"}}))
    r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "daemon", "-H",
                        f"unix://{tmp_path}/d.sock", "--data-root", str(tmp_path / "data"),
                        "--config-file", str(config)], check=False, capture_output=True,
                       text=True,
                       timeout=30)
    assert r.returncode != 0 and "invalid value for max-file: x" in r.stderr
