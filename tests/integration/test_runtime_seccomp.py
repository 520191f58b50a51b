"""linux.seccomp: a small deny-list profile and Docker's default allow-list profile."""

from __future__ import annotations

import json
import os
import platform

import pytest

DOCKER_PROFILE = "/work/shared/specs/docker-seccomp-default.json"
ARCHES = {
    "x86_64": ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    "aarch64": ("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
}


def writable(s):
    s["root"]["readonly"] = False


def deny(names, errno_ret=None):
    rule = {"names": names, "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret

    def conf(s):
        writable(s)
        s["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}

    return conf


def test_seccomp_deny_mkdir_with_eperm(rt):
    script = "grep ^Seccomp: /proc/self/status; touch /tmp/file && echo touched; mkdir /tmp/dir"
    r = rt.run_fg(rt.bundle(["sh", "-c", script], configure=deny(["keyctl", "mkdir", "mkdirat"])))
    assert r.returncode != 0
    assert r.stdout.splitlines()[0].split() == ["Seccomp:", "2"]
    assert "touched" in r.stdout
    assert "Operation not permitted" in r.stderr

    # control: the same script without the filter creates the directory
    r = rt.run_fg(rt.bundle(["sh", "-c", script], configure=writable)).check()
    assert r.stdout.splitlines()[0].split() == ["Seccomp:", "0"]


def test_seccomp_errno_ret(rt):
    r = rt.run_fg(
        rt.bundle(["sh", "-c", "mkdir /tmp/dir"], configure=deny(["mkdir", "mkdirat"], 13))
    )
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def docker_profile_to_oci(caps: list[str]) -> dict:
    """Docker's profile format -> OCI linux.seccomp, for this arch and these caps."""
    machine = platform.machine()
    if machine not in ARCHES:
        pytest.skip(f"no arch mapping for {machine}")
    arch, scmp_arches = ARCHES[machine]
    with open(DOCKER_PROFILE) as f:
        prof = json.load(f)
    syscalls = []
    for rule in prof["syscalls"]:
        inc, exc = rule.get("includes", {}), rule.get("excludes", {})
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        out = {"names": rule["names"], "action": rule["action"]}
        if "errnoRet" in rule:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = rule["args"]
        syscalls.append(out)
    spec = {
        "defaultAction": prof["defaultAction"],
        "architectures": scmp_arches,
        "syscalls": syscalls,
    }
    if "defaultErrnoRet" in prof:
        spec["defaultErrnoRet"] = prof["defaultErrnoRet"]
    return spec


@pytest.mark.skipif(
    not os.path.exists(DOCKER_PROFILE), reason="docker default profile not available"
)
def test_seccomp_docker_default_profile(rt):
    script = (
        "grep ^Seccomp: /proc/self/status; mkdir /tmp/d && echo mkdir-ok; ls / >/dev/null && echo ls-ok; "
        "unshare -U true && echo unshare-ok"
    )

    def control(s):
        writable(s)

    r = rt.run_fg(rt.bundle(["sh", "-c", script], configure=control))
    if "unshare-ok" not in r.stdout:
        pytest.skip("host does not allow user namespaces; no blocked syscall to observe")

    def conf(s):
        writable(s)
        caps = s["process"]["capabilities"]["bounding"]
        s["linux"]["seccomp"] = docker_profile_to_oci(caps)

    r = rt.run_fg(rt.bundle(["sh", "-c", script], configure=conf))
    assert r.stdout.splitlines()[0].split() == ["Seccomp:", "2"]
    assert "mkdir-ok" in r.stdout and "ls-ok" in r.stdout
    assert "unshare-ok" not in r.stdout
    assert "Operation not permitted" in r.stderr
