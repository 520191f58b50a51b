"""The cgroup backends against the real kernel (root).

v1 tests use the host's v1 hierarchies; the v2 tests use a cgroup2 mount at
/sys/fs/cgroup/unified (the hybrid layout) or /sys/fs/cgroup. Every test makes
its own /dockyard-test-<random> cgroup and removes it, killing what it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dockyard.errors import ConfigError, SystemError_
from dockyard.linux import cgroups
from dockyard.linux.cgroups import common as c
from dockyard.linux.cgroups.v1 import CgroupV1, v1_mounts
from dockyard.linux.cgroups.v2 import CgroupV2

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for real cgroups"),
]

MIB = 1 << 20
V1 = v1_mounts() if os.path.exists("/proc/self/mountinfo") else {}
V2_ROOT = next((m[1] for m in c.cgroup_mounts() if m[2] == "cgroup2"), None)

needs_v1 = pytest.mark.skipif(
    not {"memory", "cpu", "pids", "freezer", "devices", "cpuset"} <= set(V1),
    reason="needs the cgroup v1 controllers",
)


def _name() -> str:
    return f"/dockyard-test-{os.urandom(4).hex()}"


def _cleanup(cg: c.Cgroup, procs: list[subprocess.Popen]) -> None:
    if cg.exists():
        with contextlib.suppress(SystemError_, OSError):
            cg.kill_all(signal.SIGKILL)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    cg.destroy()
    assert not cg.exists()


@pytest.fixture
def v1cg():
    cg = CgroupV1(_name())
    cg.procs = []  # type: ignore[attr-defined]
    yield cg
    _cleanup(cg, cg.procs)  # type: ignore[attr-defined]


def _start(cg: c.Cgroup, code: str, *, wait_stdin: bool = True) -> subprocess.Popen:
    """Run `sh -c code` inside cg; with wait_stdin it only starts after joining."""
    script = ("read _go; " if wait_stdin else "") + code
    p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    cg.procs.append(p)  # type: ignore[attr-defined]
    cg.add_pid(p.pid)
    if wait_stdin:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return p


def _execd(pids: list[int], program: str) -> int:
    """How many of `pids` run `program` (have exec'd it)."""
    count = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                count += f.read().split(b"\0")[0].endswith(program.encode())
        except OSError:
            pass
    return count


def _read(cg: CgroupV1, ctrl: str, name: str) -> str:
    d = cg.dir(ctrl)
    assert d is not None
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


DOCKER_DEVICES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
]


# ------------------------------------------------------------------ v1


@needs_v1
def test_v1_create_apply_and_read_back(v1cg: CgroupV1) -> None:
    assert not v1cg.exists()
    v1cg.create()
    v1cg.create()  # idempotent
    assert v1cg.exists()
    assert _read(v1cg, "cpuset", "cpuset.cpus") != ""  # inherited from the parent
    p = _start(v1cg, "sleep 60", wait_stdin=False)
    assert v1cg.pids() == [p.pid]
    assert cgroups.cgroup_of_pid(p.pid) == v1cg.path
    resources = {
        "memory": {"limit": 64 * MIB, "reservation": 32 * MIB, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
        "devices": DOCKER_DEVICES,
        "blockIO": {},
    }
    if os.path.exists(os.path.join(v1cg.dir("memory") or "", "memory.memsw.limit_in_bytes")):
        resources["memory"]["swap"] = 128 * MIB
    v1cg.apply(resources)
    assert _read(v1cg, "memory", "memory.limit_in_bytes") == str(64 * MIB)
    assert _read(v1cg, "memory", "memory.soft_limit_in_bytes") == str(32 * MIB)
    assert _read(v1cg, "memory", "memory.swappiness") == "10"
    if "swap" in resources["memory"]:
        assert _read(v1cg, "memory", "memory.memsw.limit_in_bytes") == str(128 * MIB)
    assert _read(v1cg, "cpu", "cpu.shares") == "512"
    assert _read(v1cg, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _read(v1cg, "cpu", "cpu.cfs_period_us") == "100000"
    assert _read(v1cg, "cpuset", "cpuset.cpus") == "0"
    assert _read(v1cg, "cpuset", "cpuset.mems") == "0"
    assert _read(v1cg, "pids", "pids.max") == "20"
    assert sorted(_read(v1cg, "devices", "devices.list").splitlines()) == sorted(
        ["c 1:3 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 136:* rwm", "c *:* m"])
    # `update` again (the diff path, with a sub-cgroup present) and unlimited values
    os.mkdir(os.path.join(v1cg.dir("devices") or "", "child"))
    v1cg.apply({"devices": DOCKER_DEVICES[:3], "pids": {"limit": 0},
                "cpu": {"quota": -1}, "memory": {"limit": -1}})
    assert sorted(_read(v1cg, "devices", "devices.list").splitlines()) == ["c 1:3 rwm",
                                                                           "c 1:9 rwm"]
    assert _read(v1cg, "pids", "pids.max") == "max"
    assert _read(v1cg, "cpu", "cpu.cfs_quota_us") == "-1"
    assert int(_read(v1cg, "memory", "memory.limit_in_bytes")) > 1 << 60


@needs_v1
def test_v1_memory_swap_update_order(v1cg: CgroupV1) -> None:
    v1cg.create()
    memsw = os.path.join(v1cg.dir("memory") or "", "memory.memsw.limit_in_bytes")
    if not os.path.exists(memsw):
        pytest.skip("no swap accounting")
    for limit, swap in [(64, 128), (256, 512), (32, 32), (48, -1), (16, 24)]:
        v1cg.apply({"memory": {"limit": limit * MIB, "swap": swap * MIB if swap > 0 else -1}})
        assert _read(v1cg, "memory", "memory.limit_in_bytes") == str(limit * MIB)
        if swap > 0:
            assert _read(v1cg, "memory", "memory.memsw.limit_in_bytes") == str(swap * MIB)


@needs_v1
def test_v1_cpu_realtime_burst_idle(v1cg: CgroupV1) -> None:
    v1cg.create()
    d = v1cg.dir("cpu") or ""
    if not os.path.exists(os.path.join(d, "cpu.rt_runtime_us")):
        pytest.skip("no CONFIG_RT_GROUP_SCHED")
    cpu: dict = {"realtimePeriod": 1000000, "realtimeRuntime": 10000}
    if os.path.exists(os.path.join(d, "cpu.cfs_burst_us")):
        cpu.update(quota=20000, period=100000, burst=10000)
    v1cg.apply({"cpu": cpu})
    assert _read(v1cg, "cpu", "cpu.rt_runtime_us") == "10000"
    assert _read(v1cg, "cpu", "cpu.rt_period_us") == "1000000"
    if "burst" in cpu:
        assert _read(v1cg, "cpu", "cpu.cfs_burst_us") == "10000"
    v1cg.apply({"cpu": {"quota": 10000, "period": 50000}})
    assert _read(v1cg, "cpu", "cpu.cfs_period_us") == "50000"
    assert _read(v1cg, "cpu", "cpu.cfs_quota_us") == "10000"
    with pytest.raises(ConfigError) as e:
        v1cg.apply({"cpu": {"realtimeRuntime": 10 ** 9}})
    assert e.value.field == "linux.resources.cpu.realtime"


@needs_v1
def test_v1_bad_values_name_the_field(v1cg: CgroupV1) -> None:
    v1cg.create()
    with pytest.raises(ConfigError) as e:
        v1cg.apply({"cpu": {"cpus": f"{os.cpu_count() or 1}-4095"}})
    assert e.value.field == "linux.resources.cpu.cpus"
    with pytest.raises(ConfigError) as e:
        v1cg.apply({"cpu": {"shares": 1}})
    assert e.value.field == "linux.resources.cpu.shares"
    with pytest.raises(ConfigError) as e:
        v1cg.apply({"devices": [{"allow": True, "type": "q"}]})
    assert e.value.field == "linux.resources.devices[0].type"


@needs_v1
def test_v1_devices_are_enforced(v1cg: CgroupV1) -> None:
    v1cg.create()
    v1cg.apply({"devices": DOCKER_DEVICES})
    p = _start(v1cg, "head -c1 /dev/null; echo null=$?; head -c1 /dev/zero >/dev/null; "
                     "echo zero=$?")
    out, _ = p.communicate(timeout=10)
    assert "null=0" in out
    assert "zero=0" not in out and "zero=" in out


@needs_v1
def test_v1_freeze_thaw(v1cg: CgroupV1) -> None:
    v1cg.create()
    p = _start(v1cg, "while :; do :; done")
    time.sleep(0.2)
    assert not v1cg.is_frozen()
    v1cg.freeze()
    assert v1cg.is_frozen()
    assert _read(v1cg, "freezer", "freezer.state") == "FROZEN"
    before = _cpu_ticks(p.pid)
    time.sleep(0.3)
    assert _cpu_ticks(p.pid) == before
    v1cg.thaw()
    assert not v1cg.is_frozen()
    time.sleep(0.3)
    assert _cpu_ticks(p.pid) > before


@needs_v1
def test_v1_stats(v1cg: CgroupV1) -> None:
    v1cg.create()
    v1cg.apply({"memory": {"limit": 128 * MIB}, "pids": {"limit": 50}})
    p = _start(v1cg, "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 60")
    c.wait_until(lambda: _comm(p.pid) == "sleep", 10.0, "the loop to finish")
    s = v1cg.stats()
    json.dumps(s)
    assert s["cpu"]["usage"]["total"] > 0
    assert len(s["cpu"]["usage"]["percpu"]) >= 1
    assert s["cpu"]["usage"]["user"] + s["cpu"]["usage"]["kernel"] > 0
    assert s["memory"]["usage"]["limit"] == 128 * MIB
    assert 0 < s["memory"]["usage"]["usage"] <= 128 * MIB
    assert s["memory"]["usage"]["max"] >= s["memory"]["usage"]["usage"]
    assert "rss" in s["memory"]["raw"] or "total_rss" in s["memory"]["raw"]
    assert s["pids"] == {"current": 1, "limit": 50}
    assert s["cpuset"]["cpus"]
    assert isinstance(s["blkio"]["ioServiceBytesRecursive"], list)
    assert isinstance(s["hugetlb"], dict)


@needs_v1
def test_v1_oom_kill(v1cg: CgroupV1) -> None:
    v1cg.create()
    v1cg.apply({"memory": {"limit": 16 * MIB, "swap": 16 * MIB}})
    assert v1cg.oom_kill_count() == 0
    p = _start(v1cg, f"exec {sys.executable} -c 'b = b\"x\" * (64 << 20); print(len(b))'")
    out, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert out == ""
    assert v1cg.oom_kill_count() >= 1
    mem = v1cg.stats()["memory"]
    assert mem["usage"]["max"] >= 15 * MIB  # it hit the limit


@needs_v1
def test_v1_pids_limit_stops_forks(v1cg: CgroupV1) -> None:
    v1cg.create()
    v1cg.apply({"pids": {"limit": 4}})
    # dash gives up at the first fork the pids controller refuses
    p = _start(v1cg, "for i in 1 2 3 4 5 6 7 8; do sleep 30 >/dev/null 2>&1 & done; wait")
    _out, err = p.communicate(timeout=10)
    assert p.returncode != 0
    assert "fork" in err.lower()
    assert len(v1cg.pids()) <= 4
    assert c.read_kv(os.path.join(v1cg.dir("pids") or "", "pids.events")).get("max", 0) > 0
    assert v1cg.stats()["pids"]["current"] <= 4


@needs_v1
def test_v1_kill_all_and_destroy(v1cg: CgroupV1) -> None:
    v1cg.create()
    p = _start(v1cg, "for i in 1 2 3 4 5; do sleep 60 & done; while :; do sleep 60; done")
    deadline = time.monotonic() + 5
    while len(v1cg.pids()) < 7 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(v1cg.pids()) >= 6
    # a nested cgroup made by the container is signalled and removed too
    sub = os.path.join(v1cg.dir("pids") or "", "nested")
    os.mkdir(sub)
    victim = v1cg.pids()[-1]
    c.add_proc(os.path.join(sub, "cgroup.procs"), victim)
    assert victim in v1cg.pids()
    v1cg.kill_all(signal.SIGKILL)
    p.wait(timeout=10)
    c.wait_until(lambda: not v1cg.pids(), 5.0, "processes to die")
    assert not v1cg.is_frozen()
    v1cg.destroy()
    assert not v1cg.exists()
    for d in v1cg.dirs():
        assert not os.path.exists(d)
    v1cg.destroy()  # idempotent


@needs_v1
def test_v1_kill_all_term_keeps_paused_container_paused(v1cg: CgroupV1) -> None:
    v1cg.create()
    p = _start(v1cg, "trap 'exit 3' TERM; while :; do sleep 0.05; done")
    time.sleep(0.2)
    v1cg.freeze()
    v1cg.kill_all(signal.SIGTERM)
    assert v1cg.is_frozen()
    v1cg.thaw()
    assert p.wait(timeout=10) == 3


def test_open_cgroup_and_mode() -> None:
    mode = cgroups.detect_mode()
    assert mode in ("v1", "v2")
    cg = cgroups.open_cgroup("/dockyard-test-x")
    assert isinstance(cg, CgroupV1 if mode == "v1" else CgroupV2)
    assert isinstance(cgroups.open_cgroup("/x", mode="v2"), CgroupV2)
    assert cgroups.cgroup_of_pid(os.getpid()).startswith("/")


# ------------------------------------------------------------------ v2


@pytest.fixture
def v2cg():
    if V2_ROOT is None:
        pytest.skip("no cgroup2 mount")
    before = c.read_opt(os.path.join(V2_ROOT, "cgroup.subtree_control")) or ""
    cg = CgroupV2(_name(), root=V2_ROOT)
    cg.procs = []  # type: ignore[attr-defined]
    yield cg
    _cleanup(cg, cg.procs)  # type: ignore[attr-defined]
    after = (c.read_opt(os.path.join(V2_ROOT, "cgroup.subtree_control")) or "").split()
    for ctrl in set(after) - set(before.split()):  # undo what create() enabled at the root
        with contextlib.suppress(OSError):
            c.write_raw(os.path.join(V2_ROOT, "cgroup.subtree_control"), "-" + ctrl)


def test_v2_basic_lifecycle(v2cg: CgroupV2) -> None:
    v2cg.create()
    v2cg.create()
    assert v2cg.exists()
    p = _start(v2cg, "while :; do :; done")
    assert v2cg.pids() == [p.pid]
    v2cg.apply({"unified": {"cgroup.max.descendants": "3"},
                "devices": DOCKER_DEVICES})  # device rules are skipped on v2
    assert c.read_str(os.path.join(v2cg.dir, "cgroup.max.descendants")) == "3"
    time.sleep(0.2)
    v2cg.freeze()
    assert v2cg.is_frozen()
    before = _cpu_ticks(p.pid)
    time.sleep(0.3)
    assert _cpu_ticks(p.pid) == before
    v2cg.thaw()
    assert not v2cg.is_frozen()
    time.sleep(0.3)
    assert _cpu_ticks(p.pid) > before
    s = v2cg.stats()
    json.dumps(s)
    assert s["cpu"]["usage"]["total"] > 0
    assert v2cg.oom_kill_count() == 0
    v2cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL
    c.wait_until(lambda: not v2cg.pids(), 5.0, "processes to die")
    v2cg.destroy()
    assert not v2cg.exists()
    v2cg.destroy()


def test_v2_kill_all_with_signal_and_children(v2cg: CgroupV2) -> None:
    v2cg.create()
    p = _start(v2cg, "trap 'kill $(jobs -p); exit 4' TERM; sleep 60 & sleep 60 & wait; wait")
    # the children must have exec'd sleep: a forked shell not yet exec'd still has the
    # shell's TERM trap, takes the signal for it, then execs sleep and lives on
    c.wait_until(lambda: len(v2cg.pids()) == 3 and _execd(v2cg.pids(), "sleep") == 2, 5.0,
                 "children")
    v2cg.kill_all(signal.SIGTERM)
    assert not v2cg.is_frozen()
    p.wait(timeout=10)
    c.wait_until(lambda: not v2cg.pids(), 20.0, "processes to die")
