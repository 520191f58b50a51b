"""Linux capabilities: names, masks, and applying an OCI `process.capabilities`.

A `CapPlan` is built from the spec before the container init starts changing
its credentials (building may read /proc and allocate); applying it runs no
Python import and only a handful of ctypes calls, so it is safe late in the
init, after the container's root is entered.

The order the runtime init uses (the same as runc)::

    plan.drop_bounding()
    set_keepcaps(True)
    setgroups / setgid / setuid
    set_keepcaps(False)
    plan.apply()
"""

from __future__ import annotations

import ctypes
import errno

from dockyard.errors import ConfigError
from dockyard.linux import libc as _libc

_CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip

CAPS: dict[str, int] = {f"CAP_{name}": number for number, name in enumerate(_CAP_NAMES)}
_BY_NUMBER: dict[int, str] = {number: name for name, number in CAPS.items()}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CapDataPair = _CapData * 2
_capget = _libc.libc.capget
_capset = _libc.libc.capset
_capget.argtypes = _capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_capget.restype = _capset.restype = ctypes.c_int

_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = _probe_last_cap()
    return _last_cap


def _probe_last_cap() -> int:
    """Without /proc: PR_CAPBSET_READ fails with EINVAL past the last capability."""
    number = 0
    while number < 63:
        try:
            _libc.prctl(_libc.PR_CAPBSET_READ, number + 1)
        except OSError:
            break
        number += 1
    return number


def to_mask(names: list[str] | None, field: str, skipped: list[str] | None = None) -> int:
    """The bit mask of capability `names`.

    Unknown names are left out, as runc does (it warns); pass `skipped` to
    collect them so the caller can warn. A non-string raises ConfigError.
    """
    if names is None:
        return 0
    if not isinstance(names, list):
        raise ConfigError(field, "must be a list of capability names")
    mask = 0
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ConfigError(f"{field}[{i}]", f"capability must be a string, not {name!r}")
        number = CAPS.get(name)
        if number is None:
            if skipped is not None:
                skipped.append(name)
            continue
        mask |= 1 << number
    return mask


def names(mask: int) -> list[str]:
    """The capability names in `mask`, lowest number first (unknown bits as CAP_<n>)."""
    out: list[str] = []
    number = 0
    while mask >> number:
        if mask >> number & 1:
            out.append(_BY_NUMBER.get(number, f"CAP_{number}"))
        number += 1
    return out


class CapPlan:
    """The five capability sets of a process, ready to apply without imports."""

    __slots__ = (
        "_data",
        "_header",
        "_to_drop",
        "_to_raise",
        "ambient",
        "ambient_failed",
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "skipped",
    )

    def __init__(
        self,
        bounding: int = 0,
        effective: int = 0,
        permitted: int = 0,
        inheritable: int = 0,
        ambient: int = 0,
        skipped: list[str] | None = None,
    ):
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
        self.skipped = skipped or []  # unknown names, for a warning
        self.ambient_failed = 0  # after apply(): ambient caps the kernel refused (runc warns)
        self._to_drop: tuple[int, ...] = ()
        self._to_raise: tuple[int, ...] = ()
        self._header: _CapHeader | None = None
        self._data: ctypes.Array | None = None

    def __repr__(self) -> str:
        sets = ", ".join(f"{name}={names(getattr(self, name))}" for name in _SETS)
        return f"CapPlan({sets})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapPlan):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _SETS)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_spec(cls, caps: dict | None, field: str = "process.capabilities") -> CapPlan:
        """Plan from an OCI `process.capabilities` object; None means no capabilities."""
        if caps is None:
            caps = {}
        if not isinstance(caps, dict):
            raise ConfigError(field, "must be an object")
        skipped: list[str] = []
        valid = (1 << (last_cap() + 1)) - 1
        masks = {name: to_mask(caps.get(name), f"{field}.{name}", skipped) for name in _SETS}
        for name, mask in masks.items():
            skipped.extend(names(mask & ~valid))  # unknown to this kernel: runc warns too
            masks[name] = mask & valid
        plan = cls(**masks, skipped=sorted(set(skipped)))
        plan._prepare()
        return plan

    def _prepare(self) -> None:
        last = last_cap()
        self._to_drop = tuple(n for n in range(last + 1) if not self.bounding >> n & 1)
        self._to_raise = tuple(n for n in range(last + 1) if self.ambient >> n & 1)
        self._header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CapDataPair()
        for i in (0, 1):
            shift = 32 * i
            data[i].effective = self.effective >> shift & 0xFFFFFFFF
            data[i].permitted = self.permitted >> shift & 0xFFFFFFFF
            data[i].inheritable = self.inheritable >> shift & 0xFFFFFFFF
        self._data = data

    def drop_bounding(self) -> None:
        """Drop every capability the bounding set does not keep (needs CAP_SETPCAP)."""
        drop = _libc.prctl
        for number in self._to_drop:
            drop(_libc.PR_CAPBSET_DROP, number)

    def apply(self) -> None:
        """Set effective/permitted/inheritable, then the ambient set.

        Ambient capabilities the kernel refuses (not in permitted and
        inheritable) are recorded in `ambient_failed`, not raised: runc warns.
        """
        if self._header is None:
            self._prepare()
        _libc.call(_capset, self._header, self._data, what="capset")
        try:
            _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError as e:
            # kernels before 4.3 have no ambient set: fine if none is wanted
            if e.errno != errno.EINVAL or self.ambient:
                raise
        failed = 0
        for number in self._to_raise:
            try:
                _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_RAISE, number)
            except OSError:
                failed |= 1 << number
        self.ambient_failed = failed


def set_keepcaps(on: bool) -> None:
    """PR_SET_KEEPCAPS: keep permitted capabilities across setuid away from 0."""
    _libc.prctl(_libc.PR_SET_KEEPCAPS, 1 if on else 0)


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair()
    _libc.call(_capget, ctypes.byref(header), data, what="capget")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )
