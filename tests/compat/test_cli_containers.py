"""`dockyard` container verbs against the real dockerd peer, compared with the
official docker CLI on the same daemon (the daemon's default runtime)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest

from dockyard.devtools.dockerd_peer import IMAGE, DockerdPeer, run_in_pty

REPO = Path(__file__).resolve().parents[2]
DOCKYARD = [sys.executable, "-m", "dockyard.cli.main"]


class Dyk:
    """`dockyard -H <peer>` plus the docker CLI on the same daemon; removes every
    container it named (and any other container the test left) at the end."""

    def __init__(self, peer: DockerdPeer) -> None:
        self.peer = peer
        self.names: list[str] = []
        self.before = set(peer.docker("ps", "-aq", "--no-trunc").stdout.split())

    def name(self, hint: str = "c") -> str:
        n = f"dykcli-{hint}-{uuid.uuid4().hex[:8]}"
        self.names.append(n)
        return n

    def env(self) -> dict[str, str]:
        env = self.peer.env()
        env["PYTHONPATH"] = str(REPO / "src")
        env.pop("DOCKYARD_HOST", None)
        return env

    def argv(self, *args: str) -> list[str]:
        return [*DOCKYARD, "-H", self.peer.host, *args]

    def __call__(self, *args: str, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), check=False, input=input, capture_output=True,
                              text=True,
                              env=self.env(), timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def docker(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return self.peer.docker(*args, check=False, input=input, timeout=60)

    def cleanup(self) -> None:
        left = set(self.peer.docker("ps", "-aq", "--no-trunc").stdout.split()) - self.before
        if self.names or left:
            self.peer.docker("rm", "-f", *self.names, *left, check=False, timeout=60)


@pytest.fixture
def dyk(dockerd: DockerdPeer):
    d = Dyk(dockerd)
    yield d
    d.cleanup()


# -- run -------------------------------------------------------------------------------------

def test_run_rm_echo(dyk: Dyk) -> None:
    r = dyk("run", "--rm", IMAGE, "echo", "hello", "world")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello world\n", "")
    assert dyk.docker("ps", "-aq").stdout == ""  # --rm: gone


def test_run_exit_code_and_streams(dyk: Dyk) -> None:
    r = dyk("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_run_env_workdir_user(dyk: Dyk, tmp_path: Path) -> None:
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROMFILE=two words\n\n")
    script = 'echo "$A|$FROMFILE"; pwd; id -u; id -g'
    args = ("run", "--rm", "-e", "A=1", "--env-file", str(envfile), "-w", "/tmp",
            "-u", "1000:1001", IMAGE, "sh", "-c", script)
    r = dyk(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1|two words\n/tmp\n1000\n1001\n"
    assert dyk.docker(*args).stdout == r.stdout


def test_run_stdin(dyk: Dyk) -> None:
    r = dyk("run", "--rm", "-i", IMAGE, "cat", input="some data\nmore\n")
    assert (r.returncode, r.stdout) == (0, "some data\nmore\n")
    r = dyk("run", "--rm", "-i", IMAGE, "sh", "-c", "wc -l; exit 4", input="a\nb\nc\n")
    assert (r.returncode, r.stdout.strip()) == (4, "3")


def test_run_name_conflict(dyk: Dyk) -> None:
    name = dyk.name("dup")
    assert dyk("run", "-d", "--name", name, IMAGE, "sleep", "30").returncode == 0
    ours = dyk("run", "--name", name, IMAGE, "true")
    theirs = dyk.docker("run", "--name", name, IMAGE, "true")
    assert ours.returncode == theirs.returncode == 125
    assert f'Conflict. The container name "/{name}" is already in use' in ours.stderr
    assert ours.stderr.replace("dockyard", "docker") == theirs.stderr


def test_run_missing_image(dyk: Dyk) -> None:
    r = dyk("run", "--rm", "dyk-no-such-image:1")
    assert r.returncode == 125
    assert "Unable to find image 'dyk-no-such-image:1' locally" in r.stderr
    assert "Error response from daemon" in r.stderr


@pytest.mark.parametrize("cmd,code", [("no-such-binary", 127), ("/etc", 126)])
def test_run_command_cannot_run(dyk: Dyk, cmd: str, code: int) -> None:
    ours = dyk("run", "--rm", IMAGE, cmd)
    theirs = dyk.docker("run", "--rm", IMAGE, cmd)
    assert ours.returncode == theirs.returncode == code
    assert ours.stderr.replace("dockyard", "docker") == theirs.stderr


def test_run_bad_flags(dyk: Dyk) -> None:
    for args in (("--bogus",), ("--rm", "--restart", "always"), ("--cpus", "1.0000000001"),
                 ("--ulimit", "nofile=10:5")):
        ours = dyk("run", *args, IMAGE)
        theirs = dyk.docker("run", *args, IMAGE)
        assert ours.returncode == theirs.returncode == 125, args
        assert ours.stderr.replace("dockyard", "docker") == theirs.stderr, args


def test_create_body_matches_docker(dyk: Dyk, tmp_path: Path) -> None:
    """The containers the two CLIs create from the same flags inspect the same."""
    envfile = tmp_path / "env"
    envfile.write_text("A=1\nB=two words\n")
    flags = ["-e", "X=1", "--env-file", str(envfile), "-w", "/tmp", "-u", "1000:1000",
             "--entrypoint", "sh", "--hostname", "hh", "-l", "a=b", "-l", "c",
             "--restart", "on-failure:3", "-m", "64m", "--memory-swap", "128m",
             "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0",
             "--pids-limit", "50", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=100",
             "--cap-add", "net_admin", "--cap-drop", "CHOWN",
             "--security-opt", "no-new-privileges", "--read-only",
             "--tmpfs", "/run:size=64m", "--tmpfs", "/tmp2", "--stop-signal", "SIGUSR1",
             "--stop-timeout", "5", "--health-cmd", "true", "--health-interval", "5s",
             "--health-timeout", "2s", "--health-retries", "2",
             "--health-start-period", "1m30s", "--shm-size", "32m", "--oom-score-adj", "100",
             "--sysctl", "net.ipv4.ip_forward=1", "--device", "/dev/null:/dev/xnull:rw",
             "--init", "-i", "-t", IMAGE, "-c", "echo hi"]
    shapes = []
    for cli, hint in ((dyk, "ours"), (dyk.docker, "docker")):
        name = dyk.name(hint)
        r = cli("create", "--name", name, *flags)
        assert r.returncode == 0, r.stderr
        d = dyk.peer.inspect(name)
        shapes.append({k: d[k] for k in ("Config", "HostConfig", "Path", "Args")})
    assert shapes[0] == shapes[1]
    # and the container runs
    r = dyk("start", "-a", dyk.names[0])
    assert (r.returncode, r.stdout.replace("\r", "")) == (0, "hi\n")


def _pty_run(argv: list[str], env: dict[str, str], rows: int = 0, cols: int = 0,
             timeout: float = 30) -> tuple[int, str]:
    """Like run_in_pty, with a window size set on the terminal first."""
    master, slave = pty.openpty()
    if rows:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=5), out.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_run_tty(dyk: Dyk) -> None:
    # the resize follows the start (as docker's with API 1.41): poll for it
    script = ('tty; for i in $(seq 50); do s=$(stty size 2>/dev/null); '
              '[ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.1; done; echo "$s"; exit 5')
    rc, out = _pty_run(dyk.argv("run", "--rm", "-t", IMAGE, "sh", "-c", script), dyk.env(),
                       rows=33, cols=101)
    assert rc == 5
    lines = out.replace("\r", "").split("\n")
    assert lines[0].startswith("/dev/pts/")
    assert "33 101" in lines


def test_run_interactive_tty(dyk: Dyk) -> None:
    rc, out = run_in_pty(dyk.argv("run", "--rm", "-it", IMAGE, "sh"), dyk.env(),
                         stdin_data=b"echo marker-$((6*7))\nexit 7\n")
    assert rc == 7
    assert "marker-42" in out


def test_run_detached_logs_ps_stop_rm(dyk: Dyk) -> None:
    name = dyk.name("bg")
    r = dyk("run", "-d", "--name", name, "-l", "dyk.test=1", IMAGE, "sh", "-c",
            "echo started; echo oops >&2; exec sleep 60")
    assert r.returncode == 0
    cid = r.stdout.strip()
    assert len(cid) == 64
    time.sleep(0.5)
    logs = dyk("logs", name)
    assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")
    tail = dyk("logs", "--tail", "1", "-t", name)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z (started|oops)\n", tail.stdout + tail.stderr)
    assert dyk("ps", "-q").stdout.split() == [cid[:12]]
    assert dyk("ps", "-q", "--no-trunc", "--filter", "label=dyk.test=1").stdout.split() == [cid]
    fmt = "{{.ID}} {{.Names}} {{.State}} {{.Command}}"
    assert dyk("ps", "--format", fmt).stdout == f'{cid[:12]} {name} running "sh -c \'echo started…"\n'
    for args in (("ps",), ("ps", "-a"), ("ps", "--format", "{{json .}}"),
                 ("ps", "--filter", f"name={name}", "--format", "table {{.Names}}\t{{.Ports}}"),
                 ("inspect", name), ("inspect", "-f", "{{.State.Status}}", name),
                 ("container", "inspect", "-f", "{{json .Config.Labels}}", name),
                 ("top", name), ("logs", name)):
        for _ in range(3):  # "Up 1 second" may turn into "Up 2 seconds" between the two
            ours, theirs = dyk(*args), dyk.docker(*args)
            if (ours.returncode, ours.stdout, ours.stderr) == (
                    theirs.returncode, theirs.stdout, theirs.stderr):
                break
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), args
    assert dyk("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    stats = dyk("stats", "--no-stream", name)
    assert stats.stdout.splitlines()[0].split() == [
        "CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
        "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert dyk("pause", name).stdout == f"{name}\n"
    assert dyk("inspect", "-f", "{{.State.Status}}", name).stdout == "paused\n"
    assert dyk("unpause", name).returncode == 0
    assert dyk("stop", "-t", "1", name).stdout == f"{name}\n"
    assert dyk("inspect", "-f", "{{.State.Status}}", name).stdout == "exited\n"
    assert dyk("wait", name).stdout == "137\n"
    assert dyk("ps", "-a", "--filter", "exited=137", "-q").stdout.split() == [cid[:12]]
    assert dyk("rm", name).stdout == f"{name}\n"
    assert dyk("ps", "-aq").stdout == ""


def test_exec(dyk: Dyk) -> None:
    name = dyk.name("ex")
    assert dyk("run", "-d", "--name", name, IMAGE, "sleep", "60").returncode == 0
    r = dyk("exec", "-e", "X=5", "-w", "/tmp", "-u", "1000", name, "sh", "-c",
            'echo "$X $(pwd) $(id -u)"; echo e >&2; exit 4')
    assert (r.returncode, r.stdout, r.stderr) == (4, "5 /tmp 1000\n", "e\n")
    assert dyk("exec", "-i", name, "cat", input="piped\n").stdout == "piped\n"
    for args in (("exec", name, "no-such-binary"), ("exec", "dyk-nosuch", "true")):
        for _ in range(3):  # "Up 1 second" may turn into "Up 2 seconds" between the two
            ours, theirs = dyk(*args), dyk.docker(*args)
            if (ours.returncode, ours.stdout, ours.stderr) == (
                    theirs.returncode, theirs.stdout, theirs.stderr):
                break
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), args
    rc, out = run_in_pty(dyk.argv("exec", "-t", name, "tty"), dyk.env())
    assert rc == 0 and out.startswith("/dev/pts/")


def test_errors_like_docker(dyk: Dyk) -> None:
    for args in (("rm", "dyk-nosuch"), ("rm", "-f", "dyk-nosuch"), ("stop", "dyk-nosuch"),
                 ("logs", "dyk-nosuch"), ("inspect", "dyk-nosuch"),
                 ("container", "inspect", "dyk-nosuch"), ("rename", "dyk-nosuch", "x"),
                 ("start", "dyk-nosuch"), ("stats", "--no-stream", "dyk-nosuch")):
        for _ in range(3):  # "Up 1 second" may turn into "Up 2 seconds" between the two
            ours, theirs = dyk(*args), dyk.docker(*args)
            if (ours.returncode, ours.stdout, ours.stderr) == (
                    theirs.returncode, theirs.stdout, theirs.stderr):
                break
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), args


def test_restart_rename_kill_prune(dyk: Dyk) -> None:
    name, new = dyk.name("rn"), dyk.name("rn2")
    assert dyk("run", "-d", "--name", name, IMAGE, "sleep", "60").returncode == 0
    assert dyk("rename", name, new).returncode == 0
    assert dyk("restart", "-t", "0", new).stdout == f"{new}\n"
    assert dyk("inspect", "-f", "{{.State.Running}}", new).stdout == "true\n"
    assert dyk("kill", "-s", "KILL", new).stdout == f"{new}\n"
    assert dyk("wait", new).stdout == "137\n"
    r = dyk("container", "prune", "-f")
    assert r.returncode == 0 and "Total reclaimed space:" in r.stdout
    assert dyk.docker("ps", "-aq").stdout == ""


def test_create_start_attach(dyk: Dyk) -> None:
    name = dyk.name("cs")
    r = dyk("create", "--name", name, IMAGE, "sh", "-c", "echo from-start; exit 6")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64
    assert dyk("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout \
        == "Created\n"
    r = dyk("start", "-a", name)
    assert (r.returncode, r.stdout) == (6, "from-start\n")
    assert json.loads(dyk("inspect", name).stdout)[0]["State"]["ExitCode"] == 6


def test_block_io_flags_like_docker(dyk: Dyk) -> None:
    """--blkio-weight(-device) and --device-{read,write}-{bps,iops}: the same create
    body as the docker CLI's (read back from the daemon), and the same refusals."""
    flags = ["--blkio-weight", "300", "--blkio-weight-device", "/dev/null:400",
             "--device-read-bps", "/dev/null:12mb", "--device-write-bps", "/dev/null:1024",
             "--device-read-iops", "/dev/null:100", "--device-write-iops", "/dev/null:30"]
    keys = ("BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
            "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps")
    ours, theirs = dyk.name("blk"), dyk.name("blk")
    assert dyk("create", "--name", ours, *flags, IMAGE, "true").returncode == 0
    assert dyk.docker("create", "--name", theirs, *flags, IMAGE, "true").returncode == 0
    got = [{k: json.loads(dyk.docker("inspect", n).stdout)[0]["HostConfig"][k] for k in keys}
           for n in (ours, theirs)]
    assert got[0] == got[1]
    assert got[0]["BlkioDeviceReadBps"] == [{"Path": "/dev/null", "Rate": 12 << 20}]
    for bad, why in ((["--device-read-bps", "nodev"], "bad format"),
                     (["--device-write-iops", "/dev/null:lots"], "invalid rate for device"),
                     (["--blkio-weight-device", "/dev/null:5"], "invalid weight for device")):
        r = dyk("create", *bad, IMAGE, "true")
        d = dyk.docker("create", *bad, IMAGE, "true")
        assert r.returncode == d.returncode == 125, (r.stderr, d.stderr)
        assert why in r.stderr and why in d.stderr, (r.stderr, d.stderr)
