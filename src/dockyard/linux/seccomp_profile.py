"""Docker seccomp profiles -> plain OCI `linux.seccomp` objects.

A Docker profile (like moby's default.json) has an `archMap` and, per syscall
group, `includes`/`excludes` conditions on the architecture, the container's
bounding capabilities and the kernel version. dockerd resolves those when it
writes config.json; `resolve_docker_profile` does the same, so the runtime
only ever sees the plain OCI shape.
"""

from __future__ import annotations

import os
from typing import Any

from dockyard.errors import ConfigError

# machine name (uname -m or Go's GOARCH) -> (Docker's arch string, OCI arch)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "386": ("x86", "SCMP_ARCH_X86"),
    "x86": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "arm": ("arm", "SCMP_ARCH_ARM"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "mips64le": ("mipsel64", "SCMP_ARCH_MIPSEL64"),
    "mipsle": ("mipsel", "SCMP_ARCH_MIPSEL"),
    "ppc": ("ppc", "SCMP_ARCH_PPC"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390": ("s390", "SCMP_ARCH_S390"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


def resolve_docker_profile(
    profile: dict,
    caps: list[str],
    arch: str = "x86_64",
    kernel: str | None = None,
    field: str = "seccomp profile",
) -> dict:
    """Turn a Docker seccomp profile into an OCI `linux.seccomp` object.

    `caps` is the container's bounding set (a group with `includes.caps` needs
    all of them, `excludes.caps` drops the group if any is present); `arch` is
    the machine (`uname -m` or GOARCH spelling); `kernel` is the release to
    test `minKernel` against (default: the running kernel).
    """
    if not isinstance(profile, dict):
        raise ConfigError(field, "must be an object")
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return {}  # what dockerd treats as "seccomp disabled"
    native, oci_arch = _ARCHES.get(arch, (arch, ""))
    kernel_version = _version(kernel if kernel is not None else os.uname().release)
    cap_set = set(caps)

    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction")}
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata"):
        if profile.get(key) not in (None, ""):
            out[key] = profile[key]
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    arches = _architectures(profile, oci_arch, field)
    if arches:
        out["architectures"] = arches

    syscalls = []
    for i, group in enumerate(profile.get("syscalls") or []):
        where = f"{field}.syscalls[{i}]"
        if not isinstance(group, dict):
            raise ConfigError(where, "must be an object")
        if _wanted(group, native, cap_set, kernel_version, where):
            syscalls.append(_to_oci(group, where))
    out["syscalls"] = syscalls
    return out


def _architectures(profile: dict, oci_arch: str, field: str) -> list[str]:
    plain = profile.get("architectures") or []
    arch_map = profile.get("archMap") or []
    if plain and arch_map:
        raise ConfigError(field, "use either 'architectures' or 'archMap', not both")
    if plain:
        return list(plain)
    for entry in arch_map:
        if isinstance(entry, dict) and entry.get("architecture") == oci_arch:
            return [oci_arch, *(entry.get("subArchitectures") or [])]
    return []


def _wanted(group: dict, native: str, caps: set[str], kernel: tuple[int, ...], where: str) -> bool:
    excludes = group.get("excludes") or {}
    includes = group.get("includes") or {}
    if native in (excludes.get("arches") or []):
        return False
    if any(cap in caps for cap in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and kernel >= _version(excludes["minKernel"], where):
        return False
    if includes.get("arches") and native not in includes["arches"]:
        return False
    if not all(cap in caps for cap in includes.get("caps") or []):
        return False
    min_kernel = includes.get("minKernel")
    return not min_kernel or kernel >= _version(min_kernel, where)


def _to_oci(group: dict, where: str) -> dict:
    if group.get("name") and group.get("names"):
        raise ConfigError(where, "use either 'name' or 'names', not both")
    names = [group["name"]] if group.get("name") else list(group.get("names") or [])
    call: dict[str, Any] = {"names": names, "action": group.get("action")}
    if group.get("errnoRet") is not None:
        call["errnoRet"] = group["errnoRet"]
    args = []
    for arg in group.get("args") or []:
        new = {"index": arg.get("index"), "value": arg.get("value", 0), "op": arg.get("op")}
        if arg.get("valueTwo"):
            new["valueTwo"] = arg["valueTwo"]
        args.append(new)
    if args:
        call["args"] = args
    return call


def _version(release: str, where: str = "minKernel") -> tuple[int, ...]:
    """'6.1.0-18-amd64' -> (6, 1, 0); the kernel release parts before any suffix."""
    parts = []
    for piece in release.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ConfigError(where, f"bad kernel version {release!r}")
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)
