"""cgroup backends for dockyard-runtime (runc's cgroupfs driver, v1 and v2).

    detect_mode() -> "v1" | "v2"
    path_from_spec(linux.cgroupsPath, id, systemd) -> "/dockyard/<id>" etc.
    open_cgroup(path) -> CgroupV1 | CgroupV2   (see common.Cgroup for the API)
    cgroup_of_pid(pid) -> the path of a process's cgroup

Imports stay light (os only here; the backends load on first use).
"""

from __future__ import annotations

import os

from dockyard.errors import ConfigError
from dockyard.linux.cgroups.common import Cgroup, cgroup_mounts, parse_proc_cgroup

__all__ = ["Cgroup", "cgroup_of_pid", "detect_mode", "open_cgroup", "path_from_spec"]

DEFAULT_PARENT = "/dockyard"
_mode: str | None = None


def detect_mode() -> str:
    """ "v2" when cgroup2 is the only hierarchy (mounted at /sys/fs/cgroup), else "v1"."""
    global _mode
    if _mode is None:
        _mode = mode_of(cgroup_mounts())
    return _mode


def mode_of(mounts: list[tuple[str, str, str, str]]) -> str:
    """The mode for a list of (root, mountpoint, fstype, superopts) cgroup mounts."""
    if any(m[2] == "cgroup2" and m[1] == "/sys/fs/cgroup" for m in mounts):
        return "v2"
    if any(m[2] == "cgroup" for m in mounts):
        return "v1"
    return "v2" if any(m[2] == "cgroup2" for m in mounts) else "v1"


def _expand_slice(slice_: str) -> str:
    """systemd's slice expansion: "a-b.slice" -> "/a.slice/a-b.slice"."""
    field = "linux.cgroupsPath"
    if not slice_.endswith(".slice") or "/" in slice_:
        raise ConfigError(field, f"invalid systemd slice name {slice_!r}")
    if slice_ == "-.slice":
        return "/"
    name = slice_[: -len(".slice")]
    if not name or name.startswith("-") or name.endswith("-") or "--" in name:
        raise ConfigError(field, f"invalid systemd slice name {slice_!r}")
    path, prefix = "", ""
    for part in name.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def _clean(path: str) -> str:
    """An absolute, normalised path that cannot climb above "/"."""
    path = os.path.normpath("/" + path.lstrip("/"))
    return "/" + path.lstrip("/")


def path_from_spec(cgroups_path: str | None, container_id: str, systemd: bool = False) -> str:
    """OCI linux.cgroupsPath -> a path relative to the hierarchy roots (cgroupfs layout)."""
    if systemd:
        spec = cgroups_path or f"system.slice:dockyard:{container_id}"
        parts = spec.split(":")
        if len(parts) != 3:
            raise ConfigError(
                "linux.cgroupsPath",
                f"expected slice:prefix:name for systemd cgroups, got {spec!r}",
            )
        slice_, prefix, name = parts
        if not name or "/" in name or "/" in prefix:
            raise ConfigError("linux.cgroupsPath", f"invalid systemd cgroup name in {spec!r}")
        parent = _expand_slice(slice_ or "system.slice")
        if name.endswith(".slice"):  # the container asked for a slice of its own
            unit = name
        else:
            unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return _clean(f"{parent.rstrip('/')}/{unit}")
    if not cgroups_path:
        return _clean(f"{DEFAULT_PARENT}/{container_id}")
    return _clean(cgroups_path)


def open_cgroup(path: str, mode: str | None = None) -> Cgroup:
    """The backend for `path`: CgroupV1 on legacy/hybrid hosts, CgroupV2 on unified ones."""
    if (mode or detect_mode()) == "v2":
        from dockyard.linux.cgroups.v2 import CgroupV2

        return CgroupV2(path)
    from dockyard.linux.cgroups.v1 import CgroupV1

    return CgroupV1(path)


def cgroup_of_pid(pid: int) -> str:
    """The cgroup path of `pid` (its memory line on v1, its unified line on v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = parse_proc_cgroup(f.read())
    if detect_mode() == "v1":
        for want in ("memory", "pids", "cpu", "freezer"):
            for _hid, ctrls, path in lines:
                if want in ctrls:
                    return path
        for _hid, ctrls, path in lines:
            if ctrls and not ctrls[0].startswith("name="):
                return path
    for hid, ctrls, path in lines:
        if hid == "0" and not ctrls:
            return path
    return lines[0][2] if lines else "/"
