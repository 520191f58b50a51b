"""Pieces shared by the cgroup v1 and v2 backends.

File helpers that turn kernel refusals into `ConfigError`s naming the OCI field,
/proc parsers, the device-rule emulator and the base `Cgroup` class. Only os,
signal and time are imported: this module loads on every `dockyard-runtime` call.
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.errors import ConfigError, SystemError_
from dockyard.linux.signals import SIGKILL

MAX_UINT64 = (1 << 64) - 1


# ---------------------------------------------------------------- files


def read_str(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def read_opt(path: str) -> str | None:
    """The stripped content of `path`, or None if it does not exist."""
    try:
        return read_str(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_int(path: str, default: int = 0) -> int:
    """An integer file; "max" reads as MAX_UINT64; a missing file as `default`."""
    text = read_opt(path)
    if text is None or text == "":
        return default
    if text == "max":
        return MAX_UINT64
    try:
        return int(text.split()[0])
    except ValueError:
        return default


def read_kv(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line, e.g. memory.stat, cpu.stat)."""
    out: dict[str, int] = {}
    text = read_opt(path)
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def write(path: str, value: str | int, field: str) -> None:
    """Write `value` to the cgroup file `path`; any refusal is a ConfigError on `field`."""
    data = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            field, f"not supported here: {path} does not exist (controller missing?)"
        ) from None
    except OSError as e:
        raise ConfigError(field, f"cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise ConfigError(field, f"cannot set {path} to {data!r}: {e.strerror}") from None
    finally:
        os.close(fd)


def write_raw(path: str, value: str) -> None:
    """Write without wrapping errors (callers that handle OSError themselves)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def add_proc(procs_file: str, pid: int) -> None:
    """Move `pid` into the cgroup owning `procs_file`, retrying while it is mid-fork."""
    for attempt in range(6):
        try:
            write_raw(procs_file, str(pid))
            return
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise SystemError_(f"cannot add pid {pid} to {procs_file}: no such process") from None
            if e.errno not in (errno.EINVAL, errno.EBUSY, errno.EAGAIN) or attempt == 5:
                raise SystemError_(f"cannot add pid {pid} to {procs_file}: {e.strerror}") from None
            time.sleep(0.01 * (attempt + 1))


def procs_under(directory: str) -> list[int]:
    """Every pid in cgroup.procs of `directory` and all its descendants."""
    pids: list[int] = []
    seen: set[int] = set()
    for dirpath, _dirs, _files in os.walk(directory):
        text = read_opt(os.path.join(dirpath, "cgroup.procs"))
        for word in (text or "").split():
            pid = int(word)
            if pid not in seen:
                seen.add(pid)
                pids.append(pid)
    return pids


def rmdir_tree(directory: str, timeout: float = 2.0) -> None:
    """rmdir `directory` and its sub-cgroups, deepest first, retrying while busy."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        busy: OSError | None = None
        if not os.path.isdir(directory):
            return
        for dirpath, dirs, _files in os.walk(directory, topdown=False):
            for d in dirs:
                busy = _rmdir(os.path.join(dirpath, d)) or busy
        busy = _rmdir(directory) or busy
        if busy is None:
            return
        if time.monotonic() >= deadline:
            raise SystemError_(f"cannot remove cgroup {directory}: {busy.strerror}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _rmdir(path: str) -> OSError | None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.EAGAIN, errno.ENOTEMPTY):
            return e
        raise SystemError_(f"cannot remove cgroup {path}: {e.strerror}") from None
    return None


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(check, timeout: float, what: str) -> None:
    """Poll `check()` until true; raise SystemError_ naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not check():
        if time.monotonic() >= deadline:
            raise SystemError_(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def num(section: dict, key: str, field: str, minimum: int = -1) -> int:
    """An integer resource value; None/absent reads as 0 (unset, like runc)."""
    v = section.get(key)
    if v is None:
        return 0
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ConfigError(f"{field}.{key}", f"invalid value {v!r}")
    return v


def devno(entry: dict, field: str) -> str:
    """"major:minor" of an OCI blockIO device entry."""
    nums = []
    for key in ("major", "minor"):
        v = entry.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{field}.{key}", f"invalid device number {v!r}")
        nums.append(str(v))
    return ":".join(nums)


# ---------------------------------------------------------------- /proc parsing


def _unescape(s: str) -> str:
    """Decode the octal escapes (\\040 etc.) used in /proc/self/mountinfo."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """(root, mountpoint, fstype, superopts) for each cgroup/cgroup2 mount in `text`."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        rparts = right.split()
        if len(rparts) < 3 or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        lparts = left.split()
        if len(lparts) < 5:
            continue
        out.append((_unescape(lparts[3]), _unescape(lparts[4]), rparts[0], rparts[2]))
    return out


def cgroup_mounts() -> list[tuple[str, str, str, str]]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


_V1_FLAGS = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode", "none"}


def v1_controllers(superopts: str) -> list[str]:
    """Controller names of a v1 mount's super options ("rw,cpu,cpuacct" -> cpu, cpuacct)."""
    return [
        o
        for o in superopts.split(",")
        if o and o not in _V1_FLAGS and not o.startswith("release_agent=")
    ]


def parse_proc_cgroup(text: str) -> list[tuple[str, list[str], str]]:
    """(hierarchy id, controllers, path) per line of /proc/<pid>/cgroup."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[0], [c for c in parts[1].split(",") if c], parts[2]))
    return out


def parse_cpu_list(text: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def hugepage_sizes() -> list[str]:
    """Huge page sizes as cgroup file infixes ("2MB", "1GB"), from /sys/kernel/mm/hugepages."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    sizes = []
    for n in sorted(names):
        if n.startswith("hugepages-") and n.endswith("kB"):
            kb = int(n[len("hugepages-") : -2])
            units = ["KB", "MB", "GB", "TB"]
            i = 0
            while kb >= 1024 and kb % 1024 == 0 and i < len(units) - 1:
                kb //= 1024
                i += 1
            sizes.append(f"{kb}{units[i]}")
    return sizes


def check_page_size(size: object, field: str) -> str:
    if not isinstance(size, str) or not size or "/" in size or size not in hugepage_sizes():
        raise ConfigError(field, f"unsupported huge page size {size!r}")
    return size


# ---------------------------------------------------------------- devices (v1 emulation)


def device_rule(rule: dict, field: str) -> tuple[bool, str, str, str, str]:
    """(allow, type, major, minor, access) of an OCI device rule, validated."""
    if not isinstance(rule, dict):
        raise ConfigError(field, "must be an object")
    dtype = rule.get("type") or "a"
    if dtype not in ("a", "b", "c"):
        raise ConfigError(f"{field}.type", f"invalid device type {dtype!r}")
    nums = []
    for key in ("major", "minor"):
        v = rule.get(key)
        if v is None or v == -1:
            nums.append("*")
        elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            nums.append(str(v))
        else:
            raise ConfigError(f"{field}.{key}", f"invalid device number {v!r}")
    access = rule.get("access") or "rwm"
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise ConfigError(f"{field}.access", f"invalid access {access!r}")
    access = "".join(c for c in "rwm" if c in access)
    return bool(rule.get("allow")), dtype, nums[0], nums[1], access


class DeviceState:
    """The kernel's v1 device cgroup model: a default plus per-device exceptions."""

    def __init__(self, default_allow: bool = True) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[tuple[str, str, str], set[str]] = {}

    def apply(self, allow: bool, dtype: str, major: str, minor: str, access: str) -> None:
        if dtype == "a":
            self.default_allow = allow
            self.exceptions = {}
            return
        key = (dtype, major, minor)
        if allow != self.default_allow:  # adds an exception
            self.exceptions.setdefault(key, set()).update(access)
        elif key in self.exceptions:  # removes access bits from one
            self.exceptions[key] -= set(access)
            if not self.exceptions[key]:
                del self.exceptions[key]

    @classmethod
    def from_list(cls, text: str) -> DeviceState | None:
        """Parse devices.list; None when the state cannot be known (default allow)."""
        state = cls(default_allow=False)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            dtype, (major, _, minor), access = parts[0], parts[1].partition(":"), parts[2]
            if dtype == "a":
                return None
            state.exceptions.setdefault((dtype, major, minor), set()).update(access)
        return state


# ---------------------------------------------------------------- the interface


class Cgroup:
    """One container's cgroup; see CgroupV1 and CgroupV2."""

    path: str

    def create(self) -> None:
        raise NotImplementedError

    def add_pid(self, pid: int) -> None:
        raise NotImplementedError

    def apply(self, resources: dict) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    def oom_kill_count(self) -> int:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def can_freeze(self) -> bool:
        return True

    def kill_all(self, sig: int) -> None:
        """Signal every process; freeze first so that none escapes by forking."""
        froze = False
        was_frozen = False
        if self.can_freeze():
            was_frozen = self.is_frozen()
            if not was_frozen:
                try:
                    self.freeze()
                    froze = True
                except (SystemError_, OSError):
                    pass
        signal_pids(self.pids(), sig)
        # A frozen task only dies of SIGKILL once thawed; other signals leave a
        # paused container paused.
        if froze or (was_frozen and sig == SIGKILL):
            self.thaw()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


# ---------------------------------------------------------------- stats shape


def empty_stats() -> dict:
    """The `data` object of `runc events --stats`, zeroed (runc's types.Stats)."""

    def mem_entry() -> dict:
        return {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}

    return {
        "cpu": {
            "usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                      "kernel": 0, "user": 0},
            "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0},
        },
        "cpuset": {
            "cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0,
            "mem_exclusive": 0, "memory_migrate": 0, "memory_spread_page": 0,
            "memory_spread_slab": 0, "memory_pressure": 0, "sched_load_balance": 0,
            "sched_relax_domain_level": 0,
        },
        "memory": {
            "cache": 0, "usage": mem_entry(), "swap": mem_entry(), "kernel": mem_entry(),
            "kernelTCP": mem_entry(), "raw": {},
        },
        "pids": {"current": 0, "limit": 0},
        "blkio": {
            "ioServiceBytesRecursive": [], "ioServicedRecursive": [], "ioQueueRecursive": [],
            "ioServiceTimeRecursive": [], "ioWaitTimeRecursive": [], "ioMergedRecursive": [],
            "ioTimeRecursive": [], "sectorsRecursive": [],
        },
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


def blkio_entries(text: str | None) -> list[dict]:
    """v1 blkio stat lines ("8:0 Read 4096", "8:0 4096") as runc BlkioEntry objects."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 2 or ":" not in parts[0]:
            continue  # "Total N"
        major, _, minor = parts[0].partition(":")
        try:
            entry = {"major": int(major), "minor": int(minor), "op": "", "value": int(parts[-1])}
        except ValueError:
            continue
        if len(parts) == 3:
            entry["op"] = parts[1]
        out.append(entry)
    return out


def write_pair(first: tuple[str, object], second: tuple[str, object], field: str) -> None:
    """Write two related files; if the first is refused, write the second and retry."""
    (f1, v1), (f2, v2) = first, second
    if v1 is None:
        if v2 is not None:
            write(f2, v2, field)
        return
    try:
        write(f1, v1, field)
    except ConfigError:
        if v2 is None:
            raise
        write(f2, v2, field)
        write(f1, v1, field)
        return
    if v2 is not None:
        write(f2, v2, field)
