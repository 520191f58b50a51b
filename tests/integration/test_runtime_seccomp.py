"""linux.seccomp: a small deny-list profile and Docker's default allow-list profile."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

# ../shared beside the checkout, as for the developers and CI
DOCKER_PROFILE = str(Path(__file__).resolve().parents[2].parent
                     / "shared/specs/docker-seccomp-default.json")


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
    """Docker's profile format -> OCI linux.seccomp for these caps, as dockerd makes it."""
    from dockyard.linux.seccomp_profile import resolve_docker_profile

    with open(DOCKER_PROFILE) as f:
        return resolve_docker_profile(json.load(f), caps, arch=platform.machine())


KEYCTL_PROBE = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    /* KEYCTL_GET_KEYRING_ID of the session keyring, creating it */
    long r = syscall(SYS_keyctl, 0, -3, 1);
    printf("keyctl: %s\n", r < 0 ? strerror(errno) : "ok");
    return r < 0;
}
"""


@pytest.fixture(scope="module")
def keyctl_probe(tmp_path_factory) -> str:
    """A static binary calling keyctl(2): busybox has no applet for it."""
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(KEYCTL_PROBE)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "keyctl-probe"), str(d / "probe.c")],
                   check=True, capture_output=True)
    return str(d / "keyctl-probe")


@pytest.mark.skipif(
    not os.path.exists(DOCKER_PROFILE), reason="docker default profile not available"
)
def test_docker_default_profile_blocks_keyctl(rt, keyctl_probe):
    def control(s):
        pass

    def conf(s):
        s["linux"]["seccomp"] = docker_profile_to_oci(s["process"]["capabilities"]["bounding"])

    results = []
    for configure in (control, conf):
        b = rt.bundle(["/keyctl-probe"], configure=configure)
        shutil.copy(keyctl_probe, b.rootfs / "keyctl-probe")
        results.append(rt.run_fg(b))
    assert results[0].stdout.strip() == "keyctl: ok", results[0].output
    assert results[1].stdout.strip() == "keyctl: Operation not permitted", results[1].output
    assert results[1].returncode == 1


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
