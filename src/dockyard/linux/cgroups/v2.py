"""The cgroup v2 (unified hierarchy) backend, runc's fs2 semantics.

`create` makes the directory and enables, in each ancestor's
cgroup.subtree_control, every controller that ancestor offers (best effort: an
ancestor that holds processes cannot enable domain controllers). Resource
conversions follow runc: cpu.shares -> cpu.weight, quota/period -> cpu.max,
swap (memory+swap) -> memory.swap.max = swap - memory, reservation -> memory.low,
blockIO.weight -> io.bfq.weight or io.weight, throttles -> io.max, `unified` keys
written as given.

Known limitation: device rules (linux.resources.devices) need an eBPF program
attached to the cgroup (BPF_CGROUP_DEVICE). That is not implemented: on v2 the
rules are skipped without a word, so the container sees whatever devices its
mount namespace gives it (the runtime only creates the default /dev nodes).
Also unsupported on v2, as in runc: realtime cpu limits and net_cls/net_prio
(those raise a ConfigError), memory.swappiness and memory.disableOOMKiller
(ignored).
"""

from __future__ import annotations

import os

from dockyard.errors import ConfigError, SystemError_
from dockyard.linux.cgroups import common as c
from dockyard.linux.signals import SIGKILL

R = "linux.resources"


def _max(value: int) -> str:
    """-1 -> "max" (v1's unlimited), otherwise the number."""
    return "max" if value == -1 else str(value)


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), runc's conversion."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, memory: int, field: str) -> int | None:
    """OCI memory.swap (memory+swap) -> memory.swap.max; None = leave alone, -1 = max."""
    if memory == -1 and swap == 0:
        return -1
    if swap in (0, -1):
        return swap or None
    if memory in (0, -1):
        raise ConfigError(field, "a swap limit needs a memory limit")
    if swap < memory:
        raise ConfigError(field, f"memory+swap limit {swap} is below memory limit {memory}")
    return swap - memory


class CgroupV2(c.Cgroup):
    def __init__(self, path: str, root: str = "/sys/fs/cgroup") -> None:
        self.path = "/" + path.strip("/")
        self.root = root.rstrip("/") or "/"
        rel = self.path.strip("/")
        self.dir = os.path.join(self.root, rel) if rel else self.root

    def _f(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # ------------------------------------------------------------ lifecycle

    def create(self) -> None:
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise SystemError_(f"cannot create cgroup {self.dir}: {e.strerror}") from None
        rel = os.path.relpath(self.dir, self.root)
        parts = [] if rel == "." else rel.split("/")
        d = self.root
        for part in parts:  # every ancestor of the leaf, root first
            self._enable_controllers(d)
            d = os.path.join(d, part)

    @staticmethod
    def _enable_controllers(d: str) -> None:
        available = (c.read_opt(os.path.join(d, "cgroup.controllers")) or "").split()
        enabled = set((c.read_opt(os.path.join(d, "cgroup.subtree_control")) or "").split())
        missing = [ctrl for ctrl in available if ctrl not in enabled]
        if not missing:
            return
        f = os.path.join(d, "cgroup.subtree_control")
        try:
            c.write_raw(f, " ".join("+" + ctrl for ctrl in missing))
        except OSError:
            for ctrl in missing:
                try:
                    c.write_raw(f, "+" + ctrl)
                except OSError:
                    pass

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def destroy(self) -> None:
        if self.path == "/":
            raise SystemError_("refusing to remove the root cgroup")
        c.rmdir_tree(self.dir)

    def add_pid(self, pid: int) -> None:
        c.add_proc(self._f("cgroup.procs"), pid)

    def pids(self) -> list[int]:
        return c.procs_under(self.dir)

    # ------------------------------------------------------------ freezer, kill

    def can_freeze(self) -> bool:
        return os.path.exists(self._f("cgroup.freeze"))

    def is_frozen(self) -> bool:
        return c.read_kv(self._f("cgroup.events")).get("frozen") == 1

    def _set_frozen(self, frozen: bool) -> None:
        f = self._f("cgroup.freeze")
        if not os.path.exists(f):
            raise SystemError_(f"cgroup {self.path} cannot be frozen (no cgroup.freeze)")
        try:
            c.write_raw(f, "1" if frozen else "0")
        except OSError as e:
            raise SystemError_(f"cannot change freezer of cgroup {self.path}: {e.strerror}") from None
        try:
            c.wait_until(lambda: self.is_frozen() == frozen, 5.0,
                         f"cgroup {self.path} to {'freeze' if frozen else 'thaw'}")
        except SystemError_:
            if frozen:
                c.write_raw(f, "0")
            raise

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and os.path.exists(self._f("cgroup.kill")):
            c.write_raw(self._f("cgroup.kill"), "1")
            return
        super().kill_all(sig)

    # ------------------------------------------------------------ apply

    def apply(self, resources: dict) -> None:
        r = resources or {}
        cpu = r.get("cpu") or {}
        self._set_cpuset(cpu)
        self._set_memory(r.get("memory") or {})
        self._set_cpu(cpu)
        pids = r.get("pids") or {}
        if pids.get("limit") is not None:
            field = f"{R}.pids.limit"
            limit = c.num(pids, "limit", f"{R}.pids", -(1 << 63))
            c.write(self._f("pids.max"), limit if limit > 0 else "max", field)
        self._set_io(r.get("blockIO") or {})
        for i, h in enumerate(r.get("hugepageLimits") or []):
            field = f"{R}.hugepageLimits[{i}]"
            size = c.check_page_size(h.get("pageSize"), f"{field}.pageSize")
            c.write(self._f(f"hugetlb.{size}.max"), c.num(h, "limit", field, 0), field)
        net = r.get("network") or {}
        if net.get("classID") is not None or net.get("priorities"):
            raise ConfigError(f"{R}.network", "net_cls/net_prio need cgroup v1")
        for dev, lim in (r.get("rdma") or {}).items():
            parts = [dev] + [f"{k}={(lim or {})[o]}" for o, k in
                             (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object"))
                             if (lim or {}).get(o) is not None]
            if len(parts) > 1:
                c.write(self._f("rdma.max"), " ".join(parts), f"{R}.rdma.{dev}")
        # linux.resources.devices: not enforced on v2 (see the module docstring).
        self._set_unified(r.get("unified") or {})

    def _set_cpuset(self, cpu: dict) -> None:
        for key in ("cpus", "mems"):
            value = cpu.get(key)
            if value:
                field = f"{R}.cpu.{key}"
                if not isinstance(value, str):
                    raise ConfigError(field, f"invalid value {value!r}")
                c.write(self._f(f"cpuset.{key}"), value, field)

    def _set_memory(self, m: dict) -> None:
        F = f"{R}.memory"
        limit = c.num(m, "limit", F)
        swap = c.num(m, "swap", F)
        reservation = c.num(m, "reservation", F)
        if not (limit or swap or reservation):
            return
        swap_v2 = swap_to_v2(swap, limit, f"{F}.swap")
        swap_file = self._f("memory.swap.max")
        if swap_v2 is not None:
            if os.path.exists(swap_file):
                c.write(swap_file, _max(swap_v2), f"{F}.swap")
            elif swap_v2 not in (0, -1):
                raise ConfigError(
                    f"{F}.swap",
                    "swap limit not supported: the kernel has no swap accounting "
                    "(memory.swap.max); set it to the memory limit or -1",
                )
        if limit:
            c.write(self._f("memory.max"), _max(limit), f"{F}.limit")
        if reservation:
            c.write(self._f("memory.low"), _max(reservation), f"{F}.reservation")

    def _set_cpu(self, cpu: dict) -> None:
        F = f"{R}.cpu"
        if c.num(cpu, "realtimeRuntime", F) or c.num(cpu, "realtimePeriod", F, 0):
            raise ConfigError(f"{F}.realtimeRuntime", "realtime cpu limits need cgroup v1")
        shares = c.num(cpu, "shares", F, 0)
        if shares:
            if not 2 <= shares <= 262144:
                raise ConfigError(f"{F}.shares", f"{shares} is out of range (2-262144)")
            c.write(self._f("cpu.weight"), shares_to_weight(shares), f"{F}.shares")
        quota = c.num(cpu, "quota", F)
        period = c.num(cpu, "period", F, 0)
        if quota or period:
            value = str(quota) if quota > 0 else "max"
            if period:
                value += f" {period}"
            c.write(self._f("cpu.max"), value, f"{F}.quota")
        if cpu.get("burst") is not None:
            c.write(self._f("cpu.max.burst"), c.num(cpu, "burst", F, 0), f"{F}.burst")
        if cpu.get("idle") is not None:
            c.write(self._f("cpu.idle"), c.num(cpu, "idle", F, 0), f"{F}.idle")

    def _set_io(self, b: dict) -> None:
        F = f"{R}.blockIO"
        if not b:
            return
        bfq = os.path.exists(self._f("io.bfq.weight"))
        weight = c.num(b, "weight", F, 0)
        if weight:
            if bfq:
                c.write(self._f("io.bfq.weight"), weight, f"{F}.weight")
            else:
                c.write(self._f("io.weight"), blkio_weight_to_io_weight(weight), f"{F}.weight")
        # as runc: per-device weights go to io.bfq.weight only, and only where it takes
        # them (a "default N" first line); elsewhere they are skipped
        per_device = bfq and (c.read_opt(self._f("io.bfq.weight")) or "").startswith("default")
        for i, wd in enumerate((b.get("weightDevice") or []) if per_device else []):
            field = f"{F}.weightDevice[{i}]"
            w = c.num(wd, "weight", field, 0)
            if w:
                c.write(self._f("io.bfq.weight"), f"{c.devno(wd, field)} {w}", field)
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"),
                          ("throttleWriteIOPSDevice", "wiops")):
            for i, td in enumerate(b.get(key) or []):
                field = f"{F}.{key}[{i}]"
                rate = c.num(td, "rate", field, 0)
                c.write(self._f("io.max"), f"{c.devno(td, field)} {name}={rate or 'max'}", field)

    def _set_unified(self, unified: dict) -> None:
        for key, value in unified.items():
            field = f"{R}.unified.{key}"
            if (not isinstance(key, str) or "/" in key or key.startswith(".")
                    or key in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")):
                raise ConfigError(field, "not a settable cgroup file")
            if not isinstance(value, str):
                raise ConfigError(field, f"value must be a string, not {value!r}")
            c.write(self._f(key), value, field)

    # ------------------------------------------------------------ stats

    def oom_kill_count(self) -> int:
        return c.read_kv(self._f("memory.events")).get("oom_kill", 0)

    def stats(self) -> dict:
        s = c.empty_stats()
        kv = c.read_kv(self._f("cpu.stat"))
        u, t = s["cpu"]["usage"], s["cpu"]["throttling"]
        u["total"] = kv.get("usage_usec", 0) * 1000
        u["user"] = kv.get("user_usec", 0) * 1000
        u["kernel"] = kv.get("system_usec", 0) * 1000
        t["periods"] = kv.get("nr_periods", 0)
        t["throttledPeriods"] = kv.get("nr_throttled", 0)
        t["throttledTime"] = kv.get("throttled_usec", 0) * 1000
        for key in ("cpus", "mems"):
            text = c.read_opt(self._f(f"cpuset.{key}.effective"))
            s["cpuset"][key] = c.parse_cpu_list(text or "")
        mem = s["memory"]
        mem["raw"] = c.read_kv(self._f("memory.stat"))
        mem["cache"] = mem["raw"].get("file", 0)
        if os.path.exists(self._f("memory.current")):
            usage = mem["usage"]
            usage["usage"] = c.read_int(self._f("memory.current"))
            usage["limit"] = c.read_int(self._f("memory.max"), c.MAX_UINT64)
            usage["max"] = c.read_int(self._f("memory.peak"))
            usage["failcnt"] = c.read_kv(self._f("memory.events")).get("max", 0)
            swap = mem["swap"]
            swap["usage"] = c.read_int(self._f("memory.swap.current")) + usage["usage"]
            swap_max = c.read_int(self._f("memory.swap.max"), c.MAX_UINT64)
            swap["limit"] = (c.MAX_UINT64 if c.MAX_UINT64 in (swap_max, usage["limit"])
                             else swap_max + usage["limit"])
        if os.path.exists(self._f("pids.current")):
            s["pids"]["current"] = c.read_int(self._f("pids.current"))
            limit = c.read_int(self._f("pids.max"))
            s["pids"]["limit"] = 0 if limit == c.MAX_UINT64 else limit
        s["blkio"] = _io_stats(c.read_opt(self._f("io.stat")), s["blkio"])
        for size in c.hugepage_sizes():
            if os.path.exists(self._f(f"hugetlb.{size}.current")):
                s["hugetlb"][size] = {
                    "usage": c.read_int(self._f(f"hugetlb.{size}.current")),
                    "max": 0,
                    "failcnt": c.read_kv(self._f(f"hugetlb.{size}.events")).get("max", 0),
                }
        return s


def _io_stats(text: str | None, out: dict) -> dict:
    """io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") -> runc's blkio lists."""
    keys = {"rbytes": ("ioServiceBytesRecursive", "Read"),
            "wbytes": ("ioServiceBytesRecursive", "Write"),
            "rios": ("ioServicedRecursive", "Read"),
            "wios": ("ioServicedRecursive", "Write")}
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            if k in keys and v.isdigit():
                lst, op = keys[k]
                out[lst].append({"major": int(major), "minor": int(minor), "op": op,
                                 "value": int(v)})
    return out
