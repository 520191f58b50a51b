"""exec into a running container, and terminals through --console-socket."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

SLEEP = ["sleep", "7391"]


def test_exec_plain_args(rt):
    def conf(s):
        s["hostname"] = "dyt-exec"

    b = rt.bundle(SLEEP, configure=conf)
    rt.start_detached(b)
    r = rt.ok("exec", b.id, "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    lines = r.stdout.splitlines()
    assert lines[0] == "dyt-exec"
    assert lines[1] != "1"
    assert lines[2].split() == SLEEP


def test_exec_exit_code_and_stdio(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    r = rt("exec", b.id, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    r = rt("exec", b.id, "cat", input="piped\n")
    assert r.returncode == 0 and r.stdout == "piped\n"


def test_exec_shares_namespaces_with_init(rt):
    b = rt.bundle(SLEEP)
    pid = rt.start_detached(b)["pid"]
    kinds = ["pid", "net", "ipc", "uts", "mnt"]
    r = rt.ok("exec", b.id, "sh", "-c", " ; ".join(f"readlink /proc/self/ns/{k}" for k in kinds))
    assert r.stdout.split() == [os.readlink(f"/proc/{pid}/ns/{k}") for k in kinds]


def test_exec_process_json(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    proc = {
        "terminal": False,
        "args": ["sh", "-c", "echo foo=$FOO; pwd; id"],
        "env": ["PATH=/bin:/usr/bin", "FOO=from-json"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [20]},
    }
    path = rt.workdir / "process.json"
    path.write_text(json.dumps(proc))
    r = rt.ok("exec", "--process", str(path), b.id)
    assert r.stdout.splitlines() == ["foo=from-json", "/tmp", "uid=1000 gid=1000 groups=20"]


def test_exec_flags_cwd_env_user(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    r = rt.ok(
        "exec",
        "--cwd",
        "/var",
        "--env",
        "A=b c",
        "--env",
        "Z=1",
        "--user",
        "1000:1000",
        b.id,
        "sh",
        "-c",
        "pwd; echo $A/$Z; id -u; id -g",
    )
    assert r.stdout.splitlines() == ["/var", "b c/1", "1000", "1000"]


def test_exec_inherits_spec_env(rt):
    def conf(s):
        s["process"]["env"] = ["PATH=/bin", "FROM_SPEC=yes"]

    b = rt.bundle(SLEEP, configure=conf)
    rt.start_detached(b)
    r = rt.ok("exec", b.id, "sh", "-c", "echo $FROM_SPEC")
    assert r.stdout == "yes\n"


def test_exec_detached_with_pid_file(rt):
    b = rt.bundle(SLEEP)
    init = rt.start_detached(b)["pid"]
    pid_file = rt.workdir / "exec.pid"
    t0 = time.monotonic()
    rt.ok("exec", "-d", "--pid-file", str(pid_file), b.id, "sleep", "7393")
    assert time.monotonic() - t0 < 10
    pid = int(pid_file.read_text().strip())
    assert pid > 0, f"bad pid in --pid-file: {pid}"
    assert rt.pid_alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"7393"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    assert sorted(json.loads(rt.ok("ps", "--format", "json", b.id).stdout)) == sorted([init, pid])


def test_exec_missing_binary_fails(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    r = rt("exec", b.id, "/bin/dyt-no-such-binary")
    assert r.returncode != 0
    assert "dyt-no-such-binary" in r.stderr
    assert rt.status(b.id) == "running"


def test_exec_into_stopped_container_fails(rt):
    b = rt.bundle(["true"])
    rt.ok("create", "--bundle", str(b.path), b.id)
    rt.ok("start", b.id)
    assert rt.wait_status(b.id, "stopped")
    r = rt("exec", b.id, "true")
    assert r.returncode != 0
    assert r.stderr.strip()


# --------------------------------------------------------------------------- terminals


class ConsoleServer:
    """A unix socket that receives one pty master fd over SCM_RIGHTS."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.master: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(20)
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
                assert len(fds) == 1, fds
                self.master = fds[0]
        except BaseException as e:  # noqa: BLE001 - reported by wait()
            self.error = e

    def wait(self) -> int:
        self.thread.join(25)
        if self.error:
            raise self.error
        assert self.master is not None, "no pty master received"
        return self.master

    def close(self) -> None:
        self.sock.close()
        if self.master is not None:
            os.close(self.master)


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO once the slave side is gone
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_terminal_via_console_socket(rt):
    b = rt.bundle(["sh"], terminal=True)
    srv = ConsoleServer(str(rt.workdir / "console.sock"))
    try:
        rt.ok("create", "--bundle", str(b.path), "--console-socket", srv.path, b.id)
        master = srv.wait()
        rt.ok("start", b.id)
        os.write(master, b"tty; echo marker-$((6*7))\n")
        out = read_until(master, b"marker-42")
        assert b"marker-42" in out
        assert b"/dev/pts/0" in out
        os.write(master, b"exit 5\n")
        assert rt.wait_status(b.id, "stopped")
    finally:
        srv.close()


def test_exec_tty_via_console_socket(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    srv = ConsoleServer(str(rt.workdir / "exec-console.sock"))
    try:
        rt.ok(
            "exec",
            "-d",
            "-t",
            "--console-socket",
            srv.path,
            b.id,
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-tty; read x; echo got-$x",
        )
        master = srv.wait()
        out = read_until(master, b"stdin-is-tty")
        assert b"/dev/pts/" in out and b"stdin-is-tty" in out
        os.write(master, b"ping\n")
        assert b"got-ping" in read_until(master, b"got-ping")
    finally:
        srv.close()
