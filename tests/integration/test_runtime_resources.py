"""cgroup limits from linux.resources, and `update`."""

from __future__ import annotations

import json

import pytest

SLEEP = ["sleep", "7391"]
MiB = 1024 * 1024


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_cgroup_created_at_configured_path(rt):
    b = rt.bundle(SLEEP)
    rt.ok("create", "--bundle", str(b.path), b.id)
    pid = rt.state(b.id)["pid"]
    dirs = rt.cgroup_dirs(b.id)
    assert dirs
    # the init is in the container's cgroup in every hierarchy we created
    procs = rt.cgroup_file(b.id, ("pids", "cgroup.procs"), "cgroup.procs")
    assert str(pid) in read(procs).split()


def test_memory_limit_applied(rt):
    def conf(s):
        s["linux"]["resources"]["memory"] = {"limit": 16 * MiB}

    b = rt.bundle(SLEEP, configure=conf)
    rt.ok("create", "--bundle", str(b.path), b.id)
    knob = rt.cgroup_file(b.id, ("memory", "memory.limit_in_bytes"), "memory.max")
    assert int(read(knob)) == 16 * MiB


def test_oom_kill_under_memory_limit(rt):
    def conf(s):
        s["linux"]["resources"]["memory"] = {"limit": 16 * MiB, "swap": 16 * MiB}

    b = rt.bundle(
        ["sh", "-c", 'echo start; x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo done'],
        configure=conf,
    )
    r = rt.run_fg(b, timeout=60)
    assert r.returncode == 137, r
    assert r.stdout.startswith("start")
    assert "done" not in r.stdout


def test_pids_limit_stops_fork_loop(rt):
    def conf(s):
        s["linux"]["resources"]["pids"] = {"limit": 20}

    b = rt.bundle(SLEEP, configure=conf)
    rt.start_detached(b)
    assert read(rt.cgroup_file(b.id, ("pids", "pids.max"), "pids.max")) == "20"
    r = rt(
        "exec",
        b.id,
        "sh",
        "-c",
        "i=0; while [ $i -lt 50 ]; do sleep 7394 >/dev/null 2>&1 & i=$((i+1)); echo $i; done",
    )
    assert r.returncode != 0
    assert "can't fork" in r.stderr
    started = int(r.stdout.split()[-1])
    assert 1 <= started < 20
    assert int(read(rt.cgroup_file(b.id, ("pids", "pids.current"), "pids.current"))) <= 20
    events = read(rt.cgroup_file(b.id, ("pids", "pids.events"), "pids.events"))
    assert int(events.split("max")[-1].split()[0]) > 0


def test_update_pids_limit_flag(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    rt.ok("update", "--pids-limit", "33", b.id)
    assert read(rt.cgroup_file(b.id, ("pids", "pids.max"), "pids.max")) == "33"


def test_update_memory_flag(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    rt.ok("update", "--memory", str(64 * MiB), b.id)
    knob = rt.cgroup_file(b.id, ("memory", "memory.limit_in_bytes"), "memory.max")
    assert int(read(knob)) == 64 * MiB


def test_update_resources_file(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    res = rt.workdir / "resources.json"
    res.write_text(json.dumps({"pids": {"limit": 44}, "memory": {"limit": 48 * MiB}}))
    rt.ok("update", "--resources", str(res), b.id)
    assert read(rt.cgroup_file(b.id, ("pids", "pids.max"), "pids.max")) == "44"
    knob = rt.cgroup_file(b.id, ("memory", "memory.limit_in_bytes"), "memory.max")
    assert int(read(knob)) == 48 * MiB


def test_update_resources_stdin(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    rt.ok("update", "-r", "-", b.id, input=json.dumps({"memory": {"limit": 32 * MiB}}))
    knob = rt.cgroup_file(b.id, ("memory", "memory.limit_in_bytes"), "memory.max")
    assert int(read(knob)) == 32 * MiB


def test_update_cpu_shares(rt):
    if rt.cgroup_v2():
        pytest.skip("cpu.shares is a cgroup v1 knob")
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    rt.ok("update", "--cpu-share", "512", b.id)
    assert read(rt.cgroup_file(b.id, ("cpu", "cpu.shares"), "cpu.weight")) == "512"


def test_update_unknown_container_fails(rt):
    assert rt("update", "--pids-limit", "10", "dyt-nonexistent").returncode != 0


def test_events_stats_reflect_pids(rt):
    b = rt.bundle(SLEEP)
    rt.start_detached(b)
    rt.ok("exec", "-d", b.id, "sleep", "7395")
    rt.ok("exec", "-d", b.id, "sleep", "7396")
    ev = json.loads(rt.ok("events", "--stats", b.id).stdout.splitlines()[0])
    assert ev["data"]["pids"]["current"] == 3
