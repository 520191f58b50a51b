"""Unit tests for the cgroup backends: parsing, conversions, and apply() on a fake tree.

No root needed: the "cgroup" directories are plain temp directories with
pre-created files, so these check which files get which values.
"""

from __future__ import annotations

import os

import pytest

from dockyard.errors import ConfigError
from dockyard.linux import cgroups
from dockyard.linux.cgroups import common as c
from dockyard.linux.cgroups.v1 import CgroupV1
from dockyard.linux.cgroups.v2 import (
    CgroupV2,
    _io_stats,
    blkio_weight_to_io_weight,
    shares_to_weight,
    swap_to_v2,
)

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
"""

UNIFIED = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


# ------------------------------------------------------------------ path_from_spec


@pytest.mark.parametrize(
    "spec, systemd, want",
    [
        (None, False, "/dockyard/abc"),
        ("", False, "/dockyard/abc"),
        ("/docker/abc", False, "/docker/abc"),
        ("foo", False, "/foo"),
        ("foo/bar/", False, "/foo/bar"),
        ("//a//b", False, "/a/b"),
        ("../../etc/x", False, "/etc/x"),
        ("/a/../../b", False, "/b"),
        ("system.slice:docker:abc", True, "/system.slice/docker-abc.scope"),
        ("machine-qemu.slice:pre:xyz", True, "/machine.slice/machine-qemu.slice/pre-xyz.scope"),
        (":docker:abc", True, "/system.slice/docker-abc.scope"),
        ("-.slice:docker:abc", True, "/docker-abc.scope"),
        ("system.slice::abc", True, "/system.slice/abc.scope"),
        ("system.slice:x:my.slice", True, "/system.slice/my.slice"),
        (None, True, "/system.slice/dockyard-abc.scope"),
    ],
)
def test_path_from_spec(spec: str | None, systemd: bool, want: str) -> None:
    assert cgroups.path_from_spec(spec, "abc", systemd=systemd) == want


@pytest.mark.parametrize("spec", ["/docker/abc", "a:b", "a.slice:b:c:d", "bad:docker:x",
                                  "a--b.slice:p:n", "system.slice:p:a/b"])
def test_path_from_spec_systemd_errors(spec: str) -> None:
    with pytest.raises(ConfigError) as e:
        cgroups.path_from_spec(spec, "abc", systemd=True)
    assert e.value.field == "linux.cgroupsPath"


# ------------------------------------------------------------------ parsing


def test_parse_mountinfo_and_mode() -> None:
    mounts = c.parse_mountinfo(HYBRID)
    assert [m[1] for m in mounts] == [
        "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    ]
    assert c.v1_controllers(mounts[0][3]) == ["cpu", "cpuacct"]
    assert c.v1_controllers(mounts[2][3]) == ["name=systemd"]
    assert cgroups.mode_of(mounts) == "v1"
    assert cgroups.mode_of(c.parse_mountinfo(UNIFIED)) == "v2"
    assert cgroups.mode_of([]) == "v1"
    assert c._unescape("/mnt/with\\040space") == "/mnt/with space"


def test_parse_proc_cgroup() -> None:
    text = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/y\n"
    assert c.parse_proc_cgroup(text) == [
        ("4", ["memory"], "/docker/abc"), ("2", ["cpu", "cpuacct"], "/docker/abc"),
        ("1", ["name=systemd"], "/x"), ("0", [], "/y"),
    ]


def test_small_parsers() -> None:
    assert c.parse_cpu_list("0-2,5\n") == [0, 1, 2, 5]
    assert c.parse_cpu_list("") == []
    text = "8:0 Read 4096\n8:0 Write 0\n8:16 512\nTotal 4096\n"
    assert c.blkio_entries(text) == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 0},
        {"major": 8, "minor": 16, "op": "", "value": 512},
    ]
    out = _io_stats("259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
                    c.empty_stats()["blkio"])
    assert out["ioServiceBytesRecursive"] == [
        {"major": 259, "minor": 0, "op": "Read", "value": 10},
        {"major": 259, "minor": 0, "op": "Write", "value": 20},
    ]
    assert len(out["ioServicedRecursive"]) == 2


def test_conversions() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000
    assert swap_to_v2(0, 0, "f") is None
    assert swap_to_v2(0, -1, "f") == -1
    assert swap_to_v2(-1, 100, "f") == -1
    assert swap_to_v2(300, 100, "f") == 200
    assert swap_to_v2(100, 100, "f") == 0
    with pytest.raises(ConfigError):
        swap_to_v2(50, 100, "f")
    with pytest.raises(ConfigError):
        swap_to_v2(50, 0, "f")


def test_device_rule_validation() -> None:
    assert c.device_rule({"allow": False, "access": "rwm"}, "d") == (False, "a", "*", "*", "rwm")
    assert c.device_rule({"allow": True, "type": "c", "major": 1, "minor": -1, "access": "mr"},
                         "d") == (True, "c", "1", "*", "rm")
    for bad in ({"type": "x"}, {"access": "rwx"}, {"major": -5}, {"minor": "1"}):
        with pytest.raises(ConfigError):
            c.device_rule(bad, "linux.resources.devices[0]")


def test_device_state_emulation() -> None:
    s = c.DeviceState(True)
    for rule in [(False, "a", "*", "*", "rwm"), (True, "c", "1", "3", "rwm"),
                 (True, "c", "1", "3", "r"), (True, "c", "*", "*", "m"),
                 (True, "b", "8", "0", "rw"), (False, "b", "8", "0", "w")]:
        s.apply(*rule)
    assert not s.default_allow
    assert s.exceptions == {("c", "1", "3"): set("rwm"), ("c", "*", "*"): {"m"},
                            ("b", "8", "0"): {"r"}}
    listed = c.DeviceState.from_list("c 1:3 rwm\nc *:* m\nb 8:0 r\n")
    assert listed is not None and listed.exceptions == s.exceptions
    assert c.DeviceState.from_list("a *:* rwm\n") is None


# ------------------------------------------------------------------ fake trees


def _tree(tmp_path, files: dict[str, str]) -> str:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    return str(tmp_path)


def _v1(tmp_path, ctrl: str, files: dict[str, str]) -> CgroupV1:
    root = _tree(tmp_path, files)
    return CgroupV1("/", mounts={ctrl: (root, "/")})


def test_v1_memory_without_swap_accounting(tmp_path) -> None:
    cg = _v1(tmp_path, "memory", {"memory.limit_in_bytes": "", "memory.soft_limit_in_bytes": ""})
    mib = 1 << 20
    cg.apply({"memory": {"limit": 64 * mib, "swap": 64 * mib}})
    assert (tmp_path / "memory.limit_in_bytes").read_text() == str(64 * mib)
    cg.apply({"memory": {"limit": 32 * mib, "swap": -1, "reservation": 16 * mib}})
    assert (tmp_path / "memory.limit_in_bytes").read_text() == str(32 * mib)
    assert (tmp_path / "memory.soft_limit_in_bytes").read_text() == str(16 * mib)
    with pytest.raises(ConfigError) as e:
        cg.apply({"memory": {"limit": 32 * mib, "swap": 128 * mib}})
    assert e.value.field == "linux.resources.memory.swap"
    assert "swap" in str(e.value)


def test_v1_memory_validation(tmp_path) -> None:
    cg = _v1(tmp_path, "memory", {"memory.limit_in_bytes": "", "memory.memsw.limit_in_bytes": ""})
    with pytest.raises(ConfigError) as e:
        cg.apply({"memory": {"limit": 100, "swap": 50}})
    assert e.value.field == "linux.resources.memory.swap"
    with pytest.raises(ConfigError) as e:
        cg.apply({"memory": {"limit": "lots"}})
    assert e.value.field == "linux.resources.memory.limit"
    with pytest.raises(ConfigError) as e:
        cg.apply({"memory": {"swappiness": 101}})
    assert e.value.field == "linux.resources.memory.swappiness"


def test_v1_missing_controller_names_field(tmp_path) -> None:
    cg = _v1(tmp_path, "memory", {})
    with pytest.raises(ConfigError) as e:
        cg.apply({"pids": {"limit": 10}})
    assert e.value.field == "linux.resources.pids.limit"
    assert "pids" in str(e.value)
    with pytest.raises(ConfigError) as e:
        cg.apply({"unified": {"memory.high": "1M"}})
    assert e.value.field == "linux.resources.unified"


def test_v1_pids_and_cpu(tmp_path) -> None:
    cg = CgroupV1("/", mounts={"pids": (_tree(tmp_path, {"pids.max": ""}), "/")})
    cg.apply({"pids": {"limit": 0}})
    assert (tmp_path / "pids.max").read_text() == "max"
    cg.apply({"pids": {"limit": 7}})
    assert (tmp_path / "pids.max").read_text() == "7"
    cg.apply({"pids": {"limit": -1}})
    assert (tmp_path / "pids.max").read_text() == "max"


def test_v1_devices_replay_on_fake(tmp_path) -> None:
    cg = _v1(tmp_path, "devices",
             {"devices.list": "a *:* rwm\n", "devices.allow": "", "devices.deny": ""})
    cg.apply({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert (tmp_path / "devices.deny").read_text() == "a *:* rwm"
    assert (tmp_path / "devices.allow").read_text() == "c 1:3 rwm"


def test_v1_paths_with_mount_root() -> None:
    cg = CgroupV1("/docker/abc", mounts={"memory": ("/sys/fs/cgroup/memory", "/docker"),
                                         "cpu": ("/sys/fs/cgroup/cpu,cpuacct", "/"),
                                         "cpuacct": ("/sys/fs/cgroup/cpu,cpuacct", "/")})
    assert cg.dir("memory") == "/sys/fs/cgroup/memory/abc"
    assert cg.dir("cpu") == "/sys/fs/cgroup/cpu,cpuacct/docker/abc"
    assert cg.dirs() == ["/sys/fs/cgroup/memory/abc", "/sys/fs/cgroup/cpu,cpuacct/docker/abc"]
    assert cg.dir("pids") is None


def test_v2_apply_on_fake(tmp_path) -> None:
    names = ["memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max",
             "pids.max", "cpuset.cpus", "io.weight", "io.max", "memory.high"]
    root = _tree(tmp_path, {n: "" for n in names})
    cg = CgroupV2("/", root=root)
    mib = 1 << 20
    cg.apply({
        "memory": {"limit": 64 * mib, "swap": 96 * mib, "reservation": 8 * mib},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": -1},
        "blockIO": {"weight": 1000, "throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                                "rate": 1048576}]},
        "devices": [{"allow": False, "access": "rwm"}],  # skipped on v2
        "unified": {"memory.high": "50M"},
    })

    def read(n: str) -> str:
        return (tmp_path / n).read_text()

    assert read("memory.max") == str(64 * mib)
    assert read("memory.swap.max") == str(32 * mib)
    assert read("memory.low") == str(8 * mib)
    assert read("cpu.weight") == "39"
    assert read("cpu.max") == "50000 100000"
    assert read("pids.max") == "max"
    assert read("cpuset.cpus") == "0"
    assert read("io.weight") == "10000"
    assert read("io.max") == "8:0 rbps=1048576"
    assert read("memory.high") == "50M"
    cg.apply({"memory": {"limit": -1}, "cpu": {"quota": -1}})
    assert read("memory.max") == "max"
    assert read("memory.swap.max") == "max"
    assert read("cpu.max") == "max"


def test_v2_errors_on_fake(tmp_path) -> None:
    cg = CgroupV2("/", root=_tree(tmp_path, {"memory.max": ""}))
    for resources, field in [
        ({"unified": {"../escape": "1"}}, "linux.resources.unified.../escape"),
        ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs"),
        ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
        ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
        ({"memory": {"limit": 100, "swap": 200}}, "linux.resources.memory.swap"),
        ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]},
         "linux.resources.hugepageLimits[0].pageSize"),
    ]:
        with pytest.raises(ConfigError) as e:
            cg.apply(resources)
        assert e.value.field == field, resources
    # swap equal to memory (or -1) without swap accounting is a no-op
    cg.apply({"memory": {"limit": 100, "swap": 100}})
    assert (tmp_path / "memory.max").read_text() == "100"
    assert not os.path.exists(tmp_path / "memory.swap.max")


def test_empty_stats_shape() -> None:
    s = c.empty_stats()
    assert set(s) >= {"cpu", "memory", "pids", "blkio", "hugetlb", "cpuset"}
    assert set(s["cpu"]["usage"]) >= {"total", "percpu", "kernel", "user"}
    assert set(s["cpu"]["throttling"]) == {"periods", "throttledPeriods", "throttledTime"}
    assert set(s["memory"]["usage"]) == {"limit", "usage", "max", "failcnt"}
    assert set(s["memory"]) >= {"usage", "swap", "kernel", "kernelTCP", "raw", "cache"}
