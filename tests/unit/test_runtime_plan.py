"""The spec -> actions planning: mounts, options, devices, paths, flags (no root)."""

import os

import pytest

from dockyard.linux import mount as m
from dockyard.runtime import rootfs
from dockyard.runtime.cli import COMMANDS, GLOBAL_FLAGS
from dockyard.runtime.defaults import default_spec
from dockyard.runtime.flags import UsageError, parse
from dockyard.runtime.paths import secure_join


def test_parse_options_splits_flags_propagation_and_data():
    flags, prop, data = m.parse_options(["nosuid", "noexec", "ro", "rw", "rslave", "mode=755",
                                         "size=64k", "tmpcopyup"])
    assert flags == m.MS_NOSUID | m.MS_NOEXEC
    assert prop == [m.MS_SLAVE | m.MS_REC]
    assert data == "mode=755,size=64k"


def test_plan_mounts_of_default_spec():
    steps = rootfs.plan_mounts(default_spec(), "/bundle")
    by_dest = {s.destination: s for s in steps}
    assert by_dest["/proc"].fstype == "proc" and not by_dest["/proc"].bind
    assert by_dest["/sys"].readonly
    assert by_dest["/dev/pts"].data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_plan_bind_mount_relative_source_and_rbind():
    spec = {"mounts": [{"destination": "/data", "source": "data", "options": ["rbind", "ro"]}]}
    (step,) = rootfs.plan_mounts(spec, "/bundle")
    assert step.bind and step.source == "/bundle/data"
    assert step.flags & m.MS_REC and step.flags & m.MS_BIND and step.readonly


def test_plan_devices_defaults_and_extra():
    spec = {"linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                                   "minor": 229, "fileMode": 0o600}]}}
    devices = {d.path: d for d in rootfs.plan_devices(spec)}
    assert {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
            "/dev/tty"} <= set(devices)
    assert devices["/dev/fuse"].mode == 0o600 and devices["/dev/fuse"].minor == 229


def test_device_rules_allow_defaults_after_spec_rules():
    spec = {"linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}}}
    rules = rootfs.device_rules(spec)
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules


def test_secure_join_stays_inside_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", root / "abs")
    os.symlink("../../../../outside", root / "etc" / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert secure_join(str(root), "/abs") == str(root / "etc" / "passwd")
    assert secure_join(str(root), "/etc/up/x") == str(root / "outside" / "x")
    assert secure_join(str(root), "/../../etc") == str(root / "etc")
    with pytest.raises(OSError):
        secure_join(str(root), "/loop1")


def test_flags_like_runc():
    ns = parse(["--root", "/r", "--log-format=json", "create", "-bundle", "/b", "--pid-file",
                "p", "--preserve-fds=2", "c1"], GLOBAL_FLAGS, COMMANDS)
    assert (ns.root, ns.log_format, ns.bundle, ns.pid_file, ns.preserve_fds, ns.id) == (
        "/r", "json", "/b", "p", 2, "c1")
    ns = parse(["exec", "-t", "c1", "sh", "-c", "ls -l"], GLOBAL_FLAGS, COMMANDS)
    assert ns.tty and ns.cmd_args == ["sh", "-c", "ls -l"]
    ns = parse(["kill", "--all", "c1", "KILL"], GLOBAL_FLAGS, COMMANDS)
    assert ns.all and ns.signal == "KILL"
    with pytest.raises(UsageError, match="not defined"):
        parse(["delete", "--bogus", "c1"], GLOBAL_FLAGS, COMMANDS)
    with pytest.raises(UsageError, match="requires"):
        parse(["start"], GLOBAL_FLAGS, COMMANDS)
