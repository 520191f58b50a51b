"""What `dockyard-runtime spec` writes and what `dockyard-runtime features` prints.

The shapes follow runc (`runc spec [--rootless]`, `runc features`); the
hostname is "dockyard" and the features are those this runtime implements.
"""

from __future__ import annotations

import os
from typing import Any

from dockyard import __version__

OCI_VERSION = "1.0.2-dev"
OCI_VERSION_MIN = "1.0.0"

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

HOOKS = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
]


def _cgroup2_unified() -> bool:
    """True when /sys/fs/cgroup is a pure cgroup v2 hierarchy (as runc checks)."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def default_spec(rootless: bool = False) -> dict:
    """The starter config.json, as `runc spec` (or `runc spec --rootless`) writes it."""
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if _cgroup2_unified():
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                key: list(DEFAULT_CAPS) for key in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "dockyard",
        "mounts": _mounts(),
        "linux": linux,
    }
    if rootless:
        _to_rootless(spec)
    return spec


def _to_rootless(spec: dict[str, Any]) -> None:
    """What `runc spec --rootless` changes: a user namespace for the current user."""
    linux = spec["linux"]
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    namespaces.append({"type": "user"})
    # keep runc's key order: the mappings come before the namespaces
    rest = {k: v for k, v in linux.items() if k not in ("resources", "namespaces")}
    linux.clear()
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    linux["namespaces"] = namespaces
    linux.update(rest)  # resources (cgroup settings) are dropped
    mounts = []
    for mount in spec["mounts"]:
        if os.path.normpath(mount["destination"]) == "/sys":
            mounts.append(
                {
                    "destination": "/sys",
                    "type": "none",
                    "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
                }
            )
            continue
        if "options" in mount:
            mount["options"] = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]
        mounts.append(mount)
    spec["mounts"] = mounts


def _mount_options() -> list[str]:
    from dockyard.linux import mount

    known = set(mount.FLAG_OPTIONS) | set(mount.PROPAGATION_OPTIONS) | {"defaults"}
    return sorted(known)


def _seccomp_features() -> tuple[dict[str, Any], str | None]:
    from dockyard.linux import seccomp as ours

    try:
        import seccomp
    except ImportError:
        return {"enabled": False}, None
    archs = sorted(name for name, attr in ours.ARCHES.items() if hasattr(seccomp.Arch, attr))
    return {
        "enabled": True,
        "actions": sorted(ours.ACTIONS),
        "operators": sorted(ours.OPERATORS),
        "archs": archs,
    }, _libseccomp_version()


def _libseccomp_version() -> str | None:
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint) for n in ("major", "minor", "micro")]

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def features() -> dict:
    """The JSON `runc features` prints, for what this runtime implements."""
    from dockyard.linux import namespaces
    from dockyard.linux.capabilities import CAPS

    seccomp, libseccomp = _seccomp_features()
    annotations = {"dev.dockyard.runtime.version": __version__}
    if libseccomp:
        annotations["io.github.seccomp.libseccomp.version"] = libseccomp
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": _mount_options(),
        "linux": {
            "namespaces": sorted(namespaces.NAMESPACES),
            "capabilities": list(CAPS),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": dict(sorted(annotations.items())),
    }
