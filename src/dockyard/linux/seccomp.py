"""Seccomp: compile an OCI `linux.seccomp` object and load it into the kernel.

`SeccompFilter.from_spec` does all the work up front with libseccomp (its
official Python binding, imported lazily there): it builds the filter,
exports the BPF program the kernel will run, and keeps it in a ctypes buffer.
`load` is then one seccomp(2) call: no import, no libseccomp, no allocation
beyond the ctypes call itself, so it can run at the very end of the container
init.

Like runc, loading does not set no_new_privs itself: without it the kernel
wants CAP_SYS_ADMIN, so the init loads the filter before dropping
capabilities, or sets no_new_privs (process.noNewPrivileges) first.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from dockyard.errors import ConfigError
from dockyard.linux import libc as _libc

# OCI action name -> libseccomp binding attribute (ERRNO and TRACE take a value)
ACTIONS: dict[str, str] = {
    "SCMP_ACT_KILL": "KILL",
    "SCMP_ACT_KILL_THREAD": "KILL",
    "SCMP_ACT_KILL_PROCESS": "KILL_PROCESS",
    "SCMP_ACT_TRAP": "TRAP",
    "SCMP_ACT_ERRNO": "ERRNO",
    "SCMP_ACT_TRACE": "TRACE",
    "SCMP_ACT_ALLOW": "ALLOW",
    "SCMP_ACT_LOG": "LOG",
}
UNSUPPORTED_ACTIONS = ("SCMP_ACT_NOTIFY",)

OPERATORS: dict[str, str] = {
    "SCMP_CMP_NE": "NE",
    "SCMP_CMP_LT": "LT",
    "SCMP_CMP_LE": "LE",
    "SCMP_CMP_EQ": "EQ",
    "SCMP_CMP_GE": "GE",
    "SCMP_CMP_GT": "GT",
    "SCMP_CMP_MASKED_EQ": "MASKED_EQ",
}

# OCI architecture name -> libseccomp binding Arch attribute
ARCHES: dict[str, str] = {
    name: name[len("SCMP_ARCH_") :]
    for name in (
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    )
}  # fmt: skip

# seccomp(2) filter flags runc accepts
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

_SECCOMP_SET_MODE_FILTER = 1
_ARG_MAX = 6
_U64_MAX = (1 << 64) - 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_COMPILED: dict[str, SeccompFilter] = {}  # profile JSON -> program, oldest first
_COMPILED_MAX = 8


class SeccompFilter:
    """A compiled seccomp program, ready to load with one system call."""

    def __init__(self, bpf: bytes, flags: int, syscall_nr: int, skipped: list[str]):
        if not bpf or len(bpf) % 8:
            raise ValueError("a BPF program is a non-empty list of 8-byte instructions")
        self.flags = flags
        self.skipped = skipped  # syscall names this kernel/libseccomp does not know
        self._bpf = bpf
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buf))
        self._prog_ref = ctypes.byref(self._prog)
        self._nr = syscall_nr
        self._syscall = _libc.libc.syscall
        self._args = (
            ctypes.c_long(syscall_nr),
            ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER),
            ctypes.c_ulong(flags),
        )

    @classmethod
    def from_spec(cls, spec: dict, field: str = "linux.seccomp") -> SeccompFilter:
        """Validate and compile an OCI `linux.seccomp` object (raises ConfigError).
        Compiled programs are kept by profile: the monitor compiles Docker's default
        profile once and the runtimes it forks find it here."""
        import json

        try:
            key = field + json.dumps(spec, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            key = None  # not JSON: let the compiler name the bad field
        cached = _COMPILED.get(key) if key else None
        if cached is not None:
            return cached
        import seccomp  # lazy: libseccomp's binding is only needed to compile

        compiled = _Compiler(seccomp, spec, field).compile()
        if key:
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[key] = compiled
        return compiled

    def load(self) -> None:
        """Install the filter on this thread (all threads with TSYNC)."""
        nr, mode, flags = self._args
        ret = self._syscall(nr, mode, flags, self._prog_ref)
        if ret == -1:
            err = ctypes.get_errno()
            raise OSError(err, "seccomp: " + os.strerror(err))
        if ret != 0:  # TSYNC: the id of a thread that could not be synchronised
            raise OSError(errno.EBUSY, "seccomp: cannot synchronise thread " + str(ret))

    def export_bpf(self) -> bytes:
        """The raw BPF program (struct sock_filter[]), as loaded into the kernel."""
        return self._bpf

    def __len__(self) -> int:
        return len(self._bpf) // 8


def _is_uint(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


class _Compiler:
    """One compilation of a spec with the libseccomp binding `sc`."""

    def __init__(self, sc: Any, spec: Any, field: str):
        if not isinstance(spec, dict):
            raise ConfigError(field, "must be an object")
        self.sc = sc
        self.spec = spec
        self.field = field
        self.skipped: list[str] = []
        self.default_errno = self._errno(spec.get("defaultErrnoRet"), f"{field}.defaultErrnoRet")

    def compile(self) -> SeccompFilter:
        sc, spec, field = self.sc, self.spec, self.field
        if spec.get("listenerPath"):
            raise ConfigError(f"{field}.listenerPath", "seccomp notify is not supported")
        if "defaultAction" not in spec:
            raise ConfigError(f"{field}.defaultAction", "is required")
        default = self._action(
            spec["defaultAction"], None, self.default_errno, f"{field}.defaultAction"
        )
        flags = self._flags(spec.get("flags"))
        filt = sc.SyscallFilter(default)
        self._arches(filt, spec.get("architectures"))
        syscalls = spec.get("syscalls")
        if syscalls is None:
            syscalls = []
        if not isinstance(syscalls, list):
            raise ConfigError(f"{field}.syscalls", "must be a list")
        for i, rule in enumerate(syscalls):
            self._rule(filt, default, rule, f"{field}.syscalls[{i}]")
        bpf = _export(filt)
        nr = sc.resolve_syscall(sc.Arch.NATIVE, "seccomp")
        return SeccompFilter(bpf, flags, nr, sorted(set(self.skipped)))

    def _errno(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if not _is_uint(value, 0xFFFF):
            raise ConfigError(where, f"must be an errno number, not {value!r}")
        return value

    def _action(self, name: Any, errno_ret: int | None, fallback: int | None, where: str) -> int:
        if name in UNSUPPORTED_ACTIONS:
            raise ConfigError(where, f"{name} is not supported")
        attr = ACTIONS.get(name) if isinstance(name, str) else None
        if attr is None:
            raise ConfigError(where, f"unknown seccomp action {name!r}")
        if attr in ("ERRNO", "TRACE"):
            value = errno_ret if errno_ret is not None else fallback
            return int(getattr(self.sc, attr)(errno.EPERM if value is None else value))
        return int(getattr(self.sc, attr))

    def _flags(self, flags: Any) -> int:
        where = f"{self.field}.flags"
        if flags is None:
            return 0
        if not isinstance(flags, list):
            raise ConfigError(where, "must be a list")
        out = 0
        for i, flag in enumerate(flags):
            if flag not in FLAGS:
                raise ConfigError(f"{where}[{i}]", f"unsupported seccomp flag {flag!r}")
            out |= FLAGS[flag]
        return out

    def _arches(self, filt: Any, arches: Any) -> None:
        where = f"{self.field}.architectures"
        if arches is None:
            return
        if not isinstance(arches, list):
            raise ConfigError(where, "must be a list")
        for i, name in enumerate(arches):
            attr = ARCHES.get(name) if isinstance(name, str) else None
            arch = getattr(self.sc.Arch, attr, None) if attr else None
            if arch is None:
                raise ConfigError(f"{where}[{i}]", f"unknown architecture {name!r}")
            if not filt.exist_arch(arch):
                try:
                    filt.add_arch(arch)
                except RuntimeError as e:
                    raise ConfigError(f"{where}[{i}]", f"cannot add {name}: {e}") from None

    def _rule(self, filt: Any, default: int, rule: Any, where: str) -> None:
        sc = self.sc
        if not isinstance(rule, dict):
            raise ConfigError(where, "must be an object")
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{where}.names", "must be a non-empty list of syscall names")
        errno_ret = self._errno(rule.get("errnoRet"), f"{where}.errnoRet")
        action = self._action(rule.get("action"), errno_ret, self.default_errno, f"{where}.action")
        args = self._args(rule.get("args"), f"{where}.args")
        if action == default:
            return  # libseccomp refuses a rule that repeats the default action
        indexes = [index for index, _ in args]
        if len(set(indexes)) == len(indexes):
            groups = [[arg for _, arg in args]]
        else:  # libseccomp wants one comparison per argument: one rule each (runc)
            groups = [[arg] for _, arg in args]
        for j, name in enumerate(names):
            if not isinstance(name, str):
                raise ConfigError(f"{where}.names[{j}]", "must be a string")
            nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if nr == -1:  # unknown to libseccomp: skipped, like runc
                self.skipped.append(name)
                continue
            for group in groups:
                try:
                    filt.add_rule(action, nr, *group)
                except RuntimeError as e:
                    raise ConfigError(f"{where}", f"cannot add rule for {name}: {e}") from None

    def _args(self, args: Any, where: str) -> list[tuple[int, Any]]:
        if args is None:
            return []
        if not isinstance(args, list):
            raise ConfigError(where, "must be a list")
        out = []
        for k, arg in enumerate(args):
            at = f"{where}[{k}]"
            if not isinstance(arg, dict):
                raise ConfigError(at, "must be an object")
            index = arg.get("index")
            if not _is_uint(index, _ARG_MAX - 1):
                raise ConfigError(f"{at}.index", f"must be 0 to {_ARG_MAX - 1}, not {index!r}")
            op = OPERATORS.get(arg.get("op")) if isinstance(arg.get("op"), str) else None
            if op is None:
                raise ConfigError(f"{at}.op", f"unknown seccomp operator {arg.get('op')!r}")
            value = arg.get("value", 0)
            value_two = arg.get("valueTwo", 0)
            for key, v in (("value", value), ("valueTwo", value_two)):
                if not _is_uint(v, _U64_MAX):
                    raise ConfigError(f"{at}.{key}", "must be a 64-bit unsigned integer")
            # MASKED_EQ: value is the mask, valueTwo the expected result (as runc)
            out.append((index, self.sc.Arg(index, getattr(self.sc, op), value, value_two)))
        return out


def _export(filt: Any) -> bytes:
    """The BPF program libseccomp generates for `filt`, as bytes."""
    fd = os.memfd_create("dockyard-seccomp", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as f:
            filt.export_bpf(f)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
