"""The real dockerd (20.10, via containerd-shim-runc-v2) driving an OCI runtime.

The runtime is TEST_RUNTIME: "dockyard" (ours, the default) or "dyk-runc"
(runc, to validate the tests). See conftest.py and dockyard/devtools/dockerd_peer.py.
"""

from __future__ import annotations

import ipaddress
import re
import time

import pytest

from dockyard.devtools.dockerd_peer import IMAGE, peer_missing

pytestmark = [
    pytest.mark.root,
    pytest.mark.dockerd,
    pytest.mark.skipif(peer_missing() is not None, reason=f"dockerd peer: {peer_missing()}"),
]

SLEEP = ["sleep", "1000"]
# pid 1 in its pid namespace with SIGTERM explicitly ignored
IGNORE_TERM = ["sh", "-c", 'trap "" TERM; while :; do sleep 1; done']
MIB = 1024 * 1024


def test_run_echo(docker):
    r = docker.run("--rm", IMAGE, "echo", "hi")
    assert r.stdout == "hi\n"


def test_exit_code_propagates(docker):
    r = docker.run("--rm", IMAGE, "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3, r.stderr


def test_missing_executable_is_127(docker):
    # dockerd maps the runtime's error text ("no such file or directory" /
    # "executable file not found") taken from log.json to exit status 127
    r = docker.run("--rm", IMAGE, "/nonexistent", check=False)
    assert r.returncode == 127, r.stderr


def test_stdin_is_attached(docker):
    r = docker.run("-i", "--rm", IMAGE, "sh", "-c", "cat; echo done", input="hello\n")
    assert r.stdout == "hello\ndone\n"


def test_env_workdir_user(docker):
    script = 'echo "$FOO"; pwd; id -u; id -g'
    r = docker.run("--rm", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "1000", IMAGE,
                   "sh", "-c", script)
    assert r.stdout.split("\n")[:4] == ["bar baz", "/tmp", "1000", "0"]
    r = docker.run("--rm", "-u", "1000:1001", IMAGE, "sh", "-c", "id -u; id -g")
    assert r.stdout.split() == ["1000", "1001"]


def test_hostname(docker):
    r = docker.run("--rm", "--hostname", "dykhost", IMAGE, "sh", "-c",
                   "hostname; cat /etc/hostname")
    assert r.stdout.split() == ["dykhost", "dykhost"]


def test_detached_exec_and_logs(docker):
    c = docker.run_d(IMAGE, "sh", "-c", "echo started; exec sleep 1000")
    r = docker("exec", c, "sh", "-c", "echo exec-$((40+2)); cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.stdout.splitlines() == ["exec-42", "sleep 1000 "]
    r = docker("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000", c,
               "sh", "-c", 'echo "$FOO"; pwd; id -u')
    assert r.stdout.split() == ["bar", "/tmp", "1000"]
    assert docker("exec", c, "sh", "-c", "exit 5", check=False).returncode == 5
    assert "started" in docker("logs", c).stdout
    assert docker.inspect(c)["State"]["Running"] is True


def test_stop_falls_back_to_sigkill(docker):
    c = docker.run_d(IMAGE, *IGNORE_TERM)
    t0 = time.monotonic()
    docker("stop", "-t", "1", c, timeout=30)
    took = time.monotonic() - t0
    state = docker.inspect(c)["State"]
    assert state["Running"] is False
    assert state["ExitCode"] == 137
    assert 0.9 <= took < 10, took


def test_stop_graceful(docker):
    c = docker.run_d(IMAGE, "sh", "-c", 'trap "exit 7" TERM; while :; do sleep 0.1; done')
    t0 = time.monotonic()
    docker("stop", "-t", "10", c, timeout=30)
    took = time.monotonic() - t0
    assert docker.inspect(c)["State"]["ExitCode"] == 7
    assert took < 5, took


def test_kill_and_restart(docker):
    c = docker.run_d(IMAGE, *SLEEP)
    docker("kill", c)
    assert docker.inspect(c)["State"]["ExitCode"] == 137
    docker("start", c)
    assert docker.inspect(c)["State"]["Running"] is True
    assert docker("exec", c, "echo", "again").stdout == "again\n"


def test_run_tty(docker):
    rc, out = docker.pty("run", "--runtime", docker.runtime, "-it", "--rm", IMAGE, "tty")
    assert rc == 0, out
    assert re.search(r"/dev/pts/\d+", out), out


def test_no_tty_without_t(docker):
    r = docker.run("--rm", IMAGE, "tty", check=False)
    assert r.returncode == 1
    assert "not a tty" in r.stdout


def test_exec_tty(docker):
    c = docker.run_d(IMAGE, *SLEEP)
    rc, out = docker.pty("exec", "-it", c, "sh", "-c", "tty; stty size")
    assert rc == 0, out
    assert re.search(r"/dev/pts/\d+", out), out


def test_oom_killed(docker):
    name = docker.name("oom")
    hog = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived'
    r = docker.run("--name", name, "--memory", "16m", "--memory-swap", "16m", IMAGE,
                   "sh", "-c", hog, check=False, timeout=60)
    state = docker.inspect(name)["State"]
    assert "survived" not in r.stdout
    assert state["OOMKilled"] is True, (r.returncode, r.stderr, state)
    assert r.returncode == 137


def test_bridge_ping(docker):
    """Both containers get an address on our bridge: libnetwork's prestart hook ran."""
    a, b = docker.run_d(IMAGE, *SLEEP), docker.run_d(IMAGE, *SLEEP)
    subnet = ipaddress.ip_interface(docker.peer.bridge_cidr).network
    ips = {}
    for c in (a, b):
        ip = docker.inspect(c)["NetworkSettings"]["IPAddress"]
        assert ip and ipaddress.ip_address(ip) in subnet, ip
        ips[c] = ip
        # and the address really is on eth0 inside the container
        r = docker("exec", c, "ip", "-4", "-o", "addr", "show", "eth0")
        assert ip in r.stdout
    for src, dst in ((a, b), (b, a)):
        r = docker("exec", src, "ping", "-c", "1", "-W", "2", ips[dst], check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_top(docker):
    c = docker.run_d(IMAGE, *SLEEP)
    r = docker("top", c)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"]
    assert any("sleep 1000" in line for line in lines[1:]), r.stdout


def test_pause_unpause(docker):
    c = docker.run_d(IMAGE, *SLEEP)
    docker("pause", c)
    state = docker.inspect(c)["State"]
    assert (state["Status"], state["Paused"]) == ("paused", True)
    docker("unpause", c)
    state = docker.inspect(c)["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    assert docker("exec", c, "echo", "awake").stdout == "awake\n"


def test_stats_memory(docker):
    c = docker.run_d("--memory", "64m", IMAGE, *SLEEP)
    r = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", c)
    m = re.match(r"\s*([\d.]+)\s*([KMGT]?i?B)\s*/\s*([\d.]+)\s*([KMGT]?i?B)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0, r.stdout
    assert (m.group(3), m.group(4)) == ("64", "MiB"), r.stdout


def test_update_memory(docker):
    c = docker.run_d("--memory", "32m", IMAGE, *SLEEP)
    docker("update", "--memory", "64m", "--memory-swap", "128m", c)
    assert docker.inspect(c)["HostConfig"]["Memory"] == 64 * MIB
    # the runtime applied it: the container's own memory cgroup says so
    r = docker("exec", c, "sh", "-c",
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
               " || cat /sys/fs/cgroup/memory.max")
    assert r.stdout.strip() == str(64 * MIB)
