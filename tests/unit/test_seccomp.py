"""Seccomp compilation, Docker profile resolution, and loading in a forked child."""

from __future__ import annotations

import builtins
import ctypes
import errno
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.errors import ConfigError
from dockyard.linux import libc
from dockyard.linux.seccomp_profile import resolve_docker_profile

seccomp = pytest.importorskip("seccomp")
from dockyard.linux.seccomp import SeccompFilter

PROFILE = Path(__file__).resolve().parents[2].parent / "shared/specs/docker-seccomp-default.json"
DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


def nr(name: str) -> int:
    return seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)


def raw_syscall(name: str, *args: int) -> tuple[int, int]:
    ctypes.set_errno(0)
    ret = libc.libc.syscall(ctypes.c_long(nr(name)), *(ctypes.c_long(a) for a in args))
    return ret, ctypes.get_errno()


def run_in_child(fn: Callable[[], object]) -> object:
    """Run `fn` in a forked child; return its JSON result or fail with its traceback."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(rfd)
            out = {"ok": fn()}
        except BaseException:  # noqa: BLE001 - the child must always report
            out = {"error": traceback.format_exc()}
            code = 1
        try:
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    assert chunks, f"child died without a report (status {status})"
    out = json.loads(b"".join(chunks))
    assert "error" not in out, out["error"]
    return out["ok"]


def deny(*names: str, **rule: object) -> dict:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": list(names), "action": "SCMP_ACT_ERRNO", **rule}],
    }


@pytest.fixture(scope="module")
def docker_profile() -> dict:
    if not PROFILE.exists():
        pytest.skip(f"{PROFILE} not found")
    return json.loads(PROFILE.read_text())


# ------------------------------------------------------------ compiling


def test_compile_simple_filter() -> None:
    filt = SeccompFilter.from_spec(deny("keyctl"))
    bpf = filt.export_bpf()
    assert bpf and len(bpf) % 8 == 0
    assert len(filt) == len(bpf) // 8
    assert filt.flags == 0
    assert filt.skipped == []


def test_all_actions_operators_and_arches_compile() -> None:
    actions = ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
               "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]  # fmt: skip
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
           "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]  # fmt: skip
    names = ["read", "write", "openat", "close", "getuid", "getgid", "getppid"]
    syscalls = [{"names": [n], "action": a} for n, a in zip(names, actions, strict=True)]
    syscalls += [
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": i % 6, "value": 3, "valueTwo": 1, "op": op}]}
        for i, op in enumerate(ops)
    ]  # fmt: skip
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_ARM",
        ],
        "flags": [
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ],
        "syscalls": syscalls,
    }
    filt = SeccompFilter.from_spec(spec)
    assert filt.flags == 1 | 2 | 4
    assert len(filt) > 50


def test_unknown_syscalls_are_skipped() -> None:
    filt = SeccompFilter.from_spec(deny("keyctl", "no_such_syscall_xyz"))
    assert filt.skipped == ["no_such_syscall_xyz"]


def test_rule_equal_to_default_is_skipped() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"},  # = default: skipped
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # also
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # kept
        ],
    }
    assert len(SeccompFilter.from_spec(spec)) > 0


def test_several_conditions_on_one_argument() -> None:
    spec = deny(
        "personality",
        args=[
            {"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
        ],
    )
    assert len(SeccompFilter.from_spec(spec)) > 0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"syscalls": []}, "linux.seccomp.defaultAction"),
        ({"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp.defaultAction"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"},
         "linux.seccomp.listenerPath"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1},
         "linux.seccomp.defaultErrnoRet"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]},
         "linux.seccomp.architectures[1]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]},
         "linux.seccomp.flags[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "linux.seccomp.syscalls"),
        ({"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}] * 3
          + [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]},
         "linux.seccomp.syscalls[3].action"),
        ({"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
         "linux.seccomp.syscalls[0].action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]},
         "linux.seccomp.syscalls[0].names"),
        ({"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["read", 3], "action": "SCMP_ACT_LOG"}]},
         "linux.seccomp.syscalls[0].names[1]"),
        (deny("read", args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
         "linux.seccomp.syscalls[0].args[0].index"),
        (deny("read", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]),
         "linux.seccomp.syscalls[0].args[0].op"),
        (deny("read", args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]),
         "linux.seccomp.syscalls[0].args[0].value"),
        (deny("read", args=[{"index": 0, "value": 1, "valueTwo": 1 << 64, "op": "SCMP_CMP_EQ"}]),
         "linux.seccomp.syscalls[0].args[0].valueTwo"),
        (deny("read", errnoRet="EPERM"), "linux.seccomp.syscalls[0].errnoRet"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SeccompFilter.from_spec(spec)
    assert info.value.field == field


def test_not_an_object() -> None:
    with pytest.raises(ConfigError) as info:
        SeccompFilter.from_spec([], field="seccomp")  # type: ignore[arg-type]
    assert info.value.field == "seccomp"


# ------------------------------------------------------------ Docker's profile


def test_docker_profile_resolves_like_dockerd(docker_profile: dict) -> None:
    oci = resolve_docker_profile(docker_profile, DOCKER_CAPS, kernel="6.1.0-18-amd64")
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert oci["defaultErrnoRet"] == 1
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for call in oci["syscalls"]:
        assert set(call) <= {"names", "action", "errnoRet", "args"}
    names = [n for call in oci["syscalls"] for n in call["names"]]
    assert "arch_prctl" in names and "ptrace" in names and "chroot" in names
    assert "arm_fadvise64_64" not in names and "reboot" not in names and "bpf" not in names
    clone = [c for c in oci["syscalls"] if c["names"] == ["clone"]]
    assert clone == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    clone3 = [c for c in oci["syscalls"] if c["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_docker_profile_conditions(docker_profile: dict) -> None:
    admin = resolve_docker_profile(docker_profile, DOCKER_CAPS + ["CAP_SYS_ADMIN"], kernel="6.1")
    calls = {tuple(c["names"]): c for c in admin["syscalls"]}
    assert not any(c["names"] == ["clone3"] for c in admin["syscalls"])
    assert any("clone" in names and "args" not in c for names, c in calls.items())
    old = resolve_docker_profile(docker_profile, DOCKER_CAPS, kernel="4.4.0")
    assert not any("ptrace" in c["names"] for c in old["syscalls"])
    arm = resolve_docker_profile(docker_profile, DOCKER_CAPS, arch="aarch64", kernel="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    arm_names = [n for c in arm["syscalls"] for n in c["names"]]
    assert "arm_fadvise64_64" in arm_names and "arch_prctl" not in arm_names


def test_docker_profile_errors() -> None:
    assert resolve_docker_profile({}, []) == {}
    with pytest.raises(ConfigError):
        resolve_docker_profile(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            },
            [],
        )
    with pytest.raises(ConfigError) as info:
        resolve_docker_profile(
            {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_LOG"}]},
            [],
        )  # fmt: skip
    assert "syscalls[0]" in info.value.field


def test_docker_profile_compiles_fast(docker_profile: dict) -> None:
    oci = resolve_docker_profile(docker_profile, DOCKER_CAPS)
    SeccompFilter.from_spec(oci)  # warm up: the import and libseccomp's tables
    times = []
    for _ in range(5):
        start = time.perf_counter()
        filt = SeccompFilter.from_spec(oci)
        times.append(time.perf_counter() - start)
    print(f"Docker default profile: from_spec best {min(times) * 1e3:.1f} ms, {len(filt)} insns")
    assert len(filt) > 300
    assert min(times) < 0.25  # about 7 ms on the dev machine; generous for CI


# ------------------------------------------------------------ loading for real


def test_load_denies_keyctl_with_eperm() -> None:
    filt = SeccompFilter.from_spec(deny("keyctl"))

    def child() -> dict:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        imported: list[str] = []
        real_import = builtins.__import__

        def spy(name: str, *args: object, **kwargs: object) -> object:
            imported.append(name)
            return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

        builtins.__import__ = spy
        try:
            filt.load()
        finally:
            builtins.__import__ = real_import
        ret, err = raw_syscall("keyctl", 0, 0, 0, 0, 0)
        pid_ret, _ = raw_syscall("getpid")
        return {"ret": ret, "errno": err, "pid": pid_ret, "me": os.getpid(), "imports": imported}

    out = run_in_child(child)
    assert (out["ret"], out["errno"]) == (-1, errno.EPERM)
    assert out["pid"] == out["me"]
    assert out["imports"] == []


def test_load_errno_ret_and_arguments() -> None:
    spec = deny(
        "dup", errnoRet=errno.ENOTSUP, args=[{"index": 0, "value": 1000, "op": "SCMP_CMP_EQ"}]
    )
    filt = SeccompFilter.from_spec(spec)

    def child() -> dict:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        denied = raw_syscall("dup", 1000)
        other = raw_syscall("dup", 1001)  # not open: the kernel's EBADF
        fd = os.dup(0)
        os.close(fd)
        return {"denied": denied, "other": other}

    out = run_in_child(child)
    assert out["denied"] == [-1, errno.ENOTSUP]
    assert out["other"] == [-1, errno.EBADF]


def test_load_docker_default_profile(docker_profile: dict) -> None:
    filt = SeccompFilter.from_spec(resolve_docker_profile(docker_profile, DOCKER_CAPS))

    def child() -> dict:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        with open("/proc/self/status") as f:
            seccomp_mode = [line.split()[1] for line in f if line.startswith("Seccomp:")]
        return {
            "keyctl": raw_syscall("keyctl", 0, 0, 0, 0, 0),
            "unshare": raw_syscall("unshare", 0x10000000),
            "getpid": raw_syscall("getpid")[0] == os.getpid(),
            "mode": seccomp_mode,
        }

    out = run_in_child(child)
    assert out["keyctl"] == [-1, errno.EPERM]
    assert out["unshare"] == [-1, errno.EPERM]
    assert out["getpid"] is True
    assert out["mode"] == ["2"]
