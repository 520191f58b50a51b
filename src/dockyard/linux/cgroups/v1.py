"""The cgroup v1 backend (legacy and hybrid layouts), runc's cgroupfs semantics.

One directory per mounted hierarchy (cpu, cpuacct, cpuset, memory, devices,
freezer, blkio, pids, hugetlb, net_cls, net_prio, rdma, name=systemd, ...):
`create` makes them all, `apply` writes only the controllers a resource needs,
and asks for a missing controller with a ConfigError naming the OCI field.
Kernel memory limits (`memory.kernel`, `memory.kernelTCP`) are ignored like
runc does; without swap accounting a swap limit equal to the memory limit (or -1)
is a no-op and any other value is refused.
"""

from __future__ import annotations

import errno
import os

from dockyard.errors import ConfigError, SystemError_
from dockyard.linux.cgroups import common as c

R = "linux.resources"


def v1_mounts() -> dict[str, tuple[str, str]]:
    """controller -> (mountpoint, mount root) for every v1 hierarchy mounted."""
    out: dict[str, tuple[str, str]] = {}
    for root, mountpoint, fstype, opts in c.cgroup_mounts():
        if fstype == "cgroup":
            for ctrl in c.v1_controllers(opts):
                out.setdefault(ctrl, (mountpoint, root))
    return out


class CgroupV1(c.Cgroup):
    def __init__(self, path: str, mounts: dict[str, tuple[str, str]] | None = None) -> None:
        self.path = "/" + path.strip("/")
        self.mounts = v1_mounts() if mounts is None else mounts

    # ------------------------------------------------------------ paths

    def dir(self, ctrl: str) -> str | None:
        """This cgroup's directory in the hierarchy of `ctrl`, None if not mounted."""
        m = self.mounts.get(ctrl)
        if m is None:
            return None
        mountpoint, root = m
        rel = self.path
        if root != "/" and (rel == root or rel.startswith(root.rstrip("/") + "/")):
            rel = rel[len(root.rstrip("/")) :]
        rel = rel.strip("/")
        return os.path.join(mountpoint, rel) if rel else mountpoint

    def dirs(self) -> list[str]:
        out: list[str] = []
        for ctrl in self.mounts:
            d = self.dir(ctrl)
            if d is not None and d not in out:
                out.append(d)
        return out

    def _f(self, ctrl: str, name: str, field: str) -> str:
        d = self.dir(ctrl)
        if d is None:
            raise ConfigError(field, f"the {ctrl} cgroup controller is not mounted")
        return os.path.join(d, name)

    def _first_dir(self) -> str:
        for ctrl in ("pids", "memory", "freezer", "devices", "cpu", "cpuacct"):
            d = self.dir(ctrl)
            if d is not None:
                return d
        dirs = self.dirs()
        if not dirs:
            raise SystemError_("no cgroup v1 hierarchy is mounted")
        return dirs[0]

    # ------------------------------------------------------------ lifecycle

    def create(self) -> None:
        for d in self.dirs():
            for attempt in range(3):
                try:
                    os.makedirs(d, exist_ok=True)
                    break
                except FileNotFoundError:
                    # an empty parent removed meanwhile by someone else (rmdir of a cgroup
                    # with no children races with makedirs): create it again
                    if attempt == 2:
                        raise SystemError_(f"cannot create cgroup {d}: its parent keeps "
                                           "disappearing") from None
                except OSError as e:
                    raise SystemError_(f"cannot create cgroup {d}: {e.strerror}") from None
        if "cpuset" in self.mounts:
            self._init_cpuset()

    def _init_cpuset(self) -> None:
        """Fill empty cpuset.cpus/mems from the parent, top down (v1 starts them empty)."""
        mountpoint = self.mounts["cpuset"][0]
        target = self.dir("cpuset") or mountpoint
        rel = os.path.relpath(target, mountpoint)
        parent = mountpoint
        for part in [] if rel == "." else rel.split("/"):
            d = os.path.join(parent, part)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if c.read_opt(os.path.join(d, name)) == "":
                    value = c.read_str(os.path.join(parent, name))
                    c.write(os.path.join(d, name), value, f"{R}.cpu.{name[7:]}")
            parent = d

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    def destroy(self) -> None:
        if self.path == "/":
            raise SystemError_("refusing to remove the root cgroup")
        for d in self.dirs():
            c.rmdir_tree(d)

    def add_pid(self, pid: int) -> None:
        for d in self.dirs():
            c.add_proc(os.path.join(d, "cgroup.procs"), pid)

    def pids(self) -> list[int]:
        return c.procs_under(self._first_dir())

    # ------------------------------------------------------------ freezer

    def can_freeze(self) -> bool:
        d = self.dir("freezer")
        return d is not None and os.path.exists(os.path.join(d, "freezer.state"))

    def _state_file(self) -> str:
        d = self.dir("freezer")
        if d is None:
            raise SystemError_("the freezer cgroup controller is not mounted")
        return os.path.join(d, "freezer.state")

    def is_frozen(self) -> bool:
        d = self.dir("freezer")
        return d is not None and c.read_opt(os.path.join(d, "freezer.state")) == "FROZEN"

    def freeze(self) -> None:
        try:
            self._freeze()
        except OSError as e:
            raise SystemError_(f"cannot freeze cgroup {self.path}: {e.strerror}") from None

    def _freeze(self) -> None:
        f = self._state_file()
        for _ in range(50):  # rewrite FROZEN now and then: a fork can race the freezer
            c.write_raw(f, "FROZEN")
            try:
                c.wait_until(lambda: c.read_str(f) == "FROZEN", 0.1, "freeze")
                return
            except SystemError_:
                continue
        c.write_raw(f, "THAWED")
        raise SystemError_(f"timed out freezing cgroup {self.path}")

    def thaw(self) -> None:
        f = self._state_file()
        try:
            c.write_raw(f, "THAWED")
            c.wait_until(lambda: c.read_str(f) == "THAWED", 5.0, f"thawing cgroup {self.path}")
        except FileNotFoundError:
            return  # the cgroup is gone (its last process died and it was removed): nothing to thaw
        except OSError as e:
            raise SystemError_(f"cannot thaw cgroup {self.path}: {e.strerror}") from None

    # ------------------------------------------------------------ apply

    def apply(self, resources: dict) -> None:
        r = resources or {}
        cpu = r.get("cpu") or {}
        self._set_cpuset(cpu)
        self._set_devices(r.get("devices") or [])
        self._set_memory(r.get("memory") or {})
        self._set_cpu(cpu)
        self._set_pids(r.get("pids"))
        self._set_blkio(r.get("blockIO") or {})
        self._set_hugetlb(r.get("hugepageLimits") or [])
        self._set_network(r.get("network") or {})
        self._set_rdma(r.get("rdma") or {})
        if r.get("unified"):
            raise ConfigError(f"{R}.unified", "needs cgroup v2; this host uses cgroup v1")

    def _set_cpuset(self, cpu: dict) -> None:
        for key in ("cpus", "mems"):
            value = cpu.get(key)
            if value:
                field = f"{R}.cpu.{key}"
                if not isinstance(value, str):
                    raise ConfigError(field, f"invalid value {value!r}")
                c.write(self._f("cpuset", f"cpuset.{key}", field), value, field)

    def _set_devices(self, rules: list) -> None:
        if not rules:
            return
        field = f"{R}.devices"
        parsed = [c.device_rule(rule, f"{field}[{i}]") for i, rule in enumerate(rules)]
        listing = self._f("devices", "devices.list", field)
        current = c.DeviceState.from_list(c.read_opt(listing) or "")
        target = c.DeviceState(True)
        if current is not None:
            target.default_allow = False
            target.exceptions = {k: set(v) for k, v in current.exceptions.items()}
        for rule in parsed:
            target.apply(*rule)
        if current is not None and not target.default_allow:
            # Default deny before and after: write only the difference, which
            # (unlike an "a" reset) also works once the cgroup has children.
            deny = self._f("devices", "devices.deny", field)
            allow = self._f("devices", "devices.allow", field)
            for (t, ma, mi), acc in current.exceptions.items():
                gone = acc - target.exceptions.get((t, ma, mi), set())
                if gone:
                    c.write(deny, f"{t} {ma}:{mi} {_acc(gone)}", field)
            for (t, ma, mi), acc in target.exceptions.items():
                if acc - current.exceptions.get((t, ma, mi), set()):
                    c.write(allow, f"{t} {ma}:{mi} {_acc(acc)}", field)
            return
        for i, (allow_, t, ma, mi, acc) in enumerate(parsed):
            name = "devices.allow" if allow_ else "devices.deny"
            c.write(self._f("devices", name, field), f"{t} {ma}:{mi} {acc}", f"{field}[{i}]")

    def _set_memory(self, m: dict) -> None:
        F = f"{R}.memory"
        limit = c.num(m, "limit", F)
        swap = c.num(m, "swap", F)
        reservation = c.num(m, "reservation", F)
        swappiness = m.get("swappiness")
        if not (limit or swap or reservation or m.get("disableOOMKiller")) and swappiness is None:
            return
        memsw = self._f("memory", "memory.memsw.limit_in_bytes", F)
        has_swap = os.path.exists(memsw)
        if limit == -1 and swap == 0 and has_swap:
            swap = -1
        if swap and not has_swap:
            if swap not in (-1, limit):
                raise ConfigError(
                    f"{F}.swap",
                    "swap limit not supported: the kernel has no swap accounting "
                    "(memory.memsw.limit_in_bytes); set it to the memory limit or -1",
                )
            swap = 0
        if limit > 0 and swap > 0 and swap < limit:
            raise ConfigError(f"{F}.swap", f"memory+swap limit {swap} is below memory limit {limit}")
        mem_file = self._f("memory", "memory.limit_in_bytes", F)
        if limit and swap:
            if swap == -1 or c.read_int(mem_file) < swap:
                c.write(memsw, swap, f"{F}.swap")
                self._set_limit(mem_file, limit)
                swap = 0
            else:
                self._set_limit(mem_file, limit)
                limit = 0
        if limit:
            self._set_limit(mem_file, limit)
        if swap:
            c.write(memsw, swap, f"{F}.swap")
        if reservation:
            c.write(self._f("memory", "memory.soft_limit_in_bytes", F), reservation,
                    f"{F}.reservation")
        if m.get("disableOOMKiller"):
            c.write(self._f("memory", "memory.oom_control", F), 1, f"{F}.disableOOMKiller")
        if swappiness is not None and swappiness != -1:
            if not isinstance(swappiness, int) or not 0 <= swappiness <= 100:
                raise ConfigError(f"{F}.swappiness", f"invalid value {swappiness!r} (0-100)")
            c.write(self._f("memory", "memory.swappiness", F), swappiness, f"{F}.swappiness")

    def _set_limit(self, mem_file: str, limit: int) -> None:
        field = f"{R}.memory.limit"
        try:
            c.write_raw(mem_file, str(limit))
        except OSError as e:
            if e.errno == errno.EBUSY:
                d = os.path.dirname(mem_file)
                usage = c.read_int(os.path.join(d, "memory.usage_in_bytes"))
                peak = c.read_int(os.path.join(d, "memory.max_usage_in_bytes"))
                raise ConfigError(field, f"unable to set memory limit to {limit} "
                                         f"(current usage: {usage}, peak usage: {peak})") from None
            raise ConfigError(field, f"cannot set {mem_file} to {limit}: {e.strerror}") from None

    def _set_cpu(self, cpu: dict) -> None:
        F = f"{R}.cpu"
        shares = c.num(cpu, "shares", F, 0)
        if shares:
            f = self._f("cpu", "cpu.shares", F)
            c.write(f, shares, f"{F}.shares")
            got = c.read_int(f)
            if got != shares:
                raise ConfigError(f"{F}.shares", f"{shares} is out of range (the kernel set {got})")
        rt_period = c.num(cpu, "realtimePeriod", F, 0) or None
        rt_runtime = c.num(cpu, "realtimeRuntime", F) or None
        if rt_period or rt_runtime:
            c.write_pair((self._f("cpu", "cpu.rt_period_us", F), rt_period),
                          (self._f("cpu", "cpu.rt_runtime_us", F), rt_runtime), f"{F}.realtime")
        period = c.num(cpu, "period", F, 0) or None
        quota = c.num(cpu, "quota", F) or None
        if period or quota:
            c.write_pair((self._f("cpu", "cpu.cfs_period_us", F), period),
                          (self._f("cpu", "cpu.cfs_quota_us", F), quota), f"{F}.quota")
        if cpu.get("burst") is not None:
            burst = c.num(cpu, "burst", F, 0)
            c.write(self._f("cpu", "cpu.cfs_burst_us", F), burst, f"{F}.burst")
        if cpu.get("idle") is not None:
            c.write(self._f("cpu", "cpu.idle", F), c.num(cpu, "idle", F, 0), f"{F}.idle")

    def _set_pids(self, pids: dict | None) -> None:
        if not pids or pids.get("limit") is None:
            return
        field = f"{R}.pids.limit"
        limit = pids["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise ConfigError(field, f"invalid value {limit!r}")
        c.write(self._f("pids", "pids.max", field), limit if limit > 0 else "max", field)

    def _set_blkio(self, b: dict) -> None:
        F = f"{R}.blockIO"
        if not b:
            return
        d = self.dir("blkio")
        # as runc: CFQ's blkio.weight where the kernel has it, else BFQ's files
        cfq = d is not None and os.path.exists(os.path.join(d, "blkio.weight"))
        weight_file = "blkio.weight" if cfq else "blkio.bfq.weight"
        if c.num(b, "weight", F, 0):
            c.write(self._f("blkio", weight_file, F), b["weight"], f"{F}.weight")
        if c.num(b, "leafWeight", F, 0):
            c.write(self._f("blkio", "blkio.leaf_weight", F), b["leafWeight"], f"{F}.leafWeight")
        for i, wd in enumerate(b.get("weightDevice") or []):
            field = f"{F}.weightDevice[{i}]"
            dev = c.devno(wd, field)
            if wd.get("weight"):
                c.write(self._f("blkio", weight_file + "_device", F), f"{dev} {wd['weight']}", field)
            if wd.get("leafWeight"):
                c.write(self._f("blkio", "blkio.leaf_weight_device", F),
                        f"{dev} {wd['leafWeight']}", field)
        for key, name in (("throttleReadBpsDevice", "read_bps_device"),
                          ("throttleWriteBpsDevice", "write_bps_device"),
                          ("throttleReadIOPSDevice", "read_iops_device"),
                          ("throttleWriteIOPSDevice", "write_iops_device")):
            for i, td in enumerate(b.get(key) or []):
                field = f"{F}.{key}[{i}]"
                rate = c.num(td, "rate", field, 0)
                c.write(self._f("blkio", f"blkio.throttle.{name}", F), f"{c.devno(td, field)} {rate}",
                        field)

    def _set_hugetlb(self, limits: list) -> None:
        for i, h in enumerate(limits):
            field = f"{R}.hugepageLimits[{i}]"
            size = c.check_page_size(h.get("pageSize"), f"{field}.pageSize")
            limit = c.num(h, "limit", field, 0)
            c.write(self._f("hugetlb", f"hugetlb.{size}.limit_in_bytes", field), limit, field)

    def _set_network(self, n: dict) -> None:
        F = f"{R}.network"
        if n.get("classID") is not None:
            c.write(self._f("net_cls", "net_cls.classid", F), c.num(n, "classID", F, 0),
                    f"{F}.classID")
        for i, p in enumerate(n.get("priorities") or []):
            field = f"{F}.priorities[{i}]"
            name, prio = p.get("name"), p.get("priority")
            if not isinstance(name, str) or not name or not isinstance(prio, int):
                raise ConfigError(field, "needs a name and an integer priority")
            c.write(self._f("net_prio", "net_prio.ifpriomap", field), f"{name} {prio}", field)

    def _set_rdma(self, rdma: dict) -> None:
        for dev, lim in rdma.items():
            field = f"{R}.rdma.{dev}"
            parts = [dev]
            if (lim or {}).get("hcaHandles") is not None:
                parts.append(f"hca_handle={lim['hcaHandles']}")
            if (lim or {}).get("hcaObjects") is not None:
                parts.append(f"hca_object={lim['hcaObjects']}")
            if len(parts) > 1:
                c.write(self._f("rdma", "rdma.max", field), " ".join(parts), field)

    # ------------------------------------------------------------ stats

    def oom_kill_count(self) -> int:
        d = self.dir("memory")
        if d is None:
            return 0
        kv = c.read_kv(os.path.join(d, "memory.oom_control"))
        if "oom_kill" in kv:
            return kv["oom_kill"]
        return 1 if kv.get("under_oom") else 0

    def stats(self) -> dict:
        s = c.empty_stats()
        d = self.dir("cpuacct")
        if d is not None:
            u = s["cpu"]["usage"]
            u["total"] = c.read_int(os.path.join(d, "cpuacct.usage"))
            for key, name in (("percpu", "usage_percpu"), ("percpu_kernel", "usage_percpu_sys"),
                              ("percpu_user", "usage_percpu_user")):
                text = c.read_opt(os.path.join(d, f"cpuacct.{name}")) or ""
                u[key] = [int(x) for x in text.split()]
            ticks = os.sysconf("SC_CLK_TCK") or 100
            acct = c.read_kv(os.path.join(d, "cpuacct.stat"))
            u["user"] = acct.get("user", 0) * 1_000_000_000 // ticks
            u["kernel"] = acct.get("system", 0) * 1_000_000_000 // ticks
        d = self.dir("cpu")
        if d is not None:
            kv = c.read_kv(os.path.join(d, "cpu.stat"))
            t = s["cpu"]["throttling"]
            t["periods"] = kv.get("nr_periods", 0)
            t["throttledPeriods"] = kv.get("nr_throttled", 0)
            t["throttledTime"] = kv.get("throttled_time", 0)
        d = self.dir("cpuset")
        if d is not None:
            cs = s["cpuset"]
            for key in ("cpus", "mems"):
                cs[key] = c.parse_cpu_list(c.read_opt(os.path.join(d, f"cpuset.{key}")) or "")
            for key in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                        "memory_spread_page", "memory_spread_slab", "memory_pressure",
                        "sched_load_balance", "sched_relax_domain_level"):
                cs[key] = c.read_int(os.path.join(d, f"cpuset.{key}"))
        d = self.dir("memory")
        if d is not None:
            mem = s["memory"]
            mem["raw"] = c.read_kv(os.path.join(d, "memory.stat"))
            mem["cache"] = mem["raw"].get("cache", 0)
            for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"),
                                ("kernel", "memory.kmem"), ("kernelTCP", "memory.kmem.tcp")):
                if not os.path.exists(os.path.join(d, f"{prefix}.usage_in_bytes")):
                    continue
                e = mem[key]
                e["usage"] = c.read_int(os.path.join(d, f"{prefix}.usage_in_bytes"))
                e["max"] = c.read_int(os.path.join(d, f"{prefix}.max_usage_in_bytes"))
                e["failcnt"] = c.read_int(os.path.join(d, f"{prefix}.failcnt"))
                e["limit"] = c.read_int(os.path.join(d, f"{prefix}.limit_in_bytes"))
        d = self.dir("pids")
        if d is not None:
            s["pids"]["current"] = c.read_int(os.path.join(d, "pids.current"))
            limit = c.read_int(os.path.join(d, "pids.max"))
            s["pids"]["limit"] = 0 if limit == c.MAX_UINT64 else limit
        d = self.dir("blkio")
        if d is not None:
            s["blkio"] = self._blkio_stats(d, s["blkio"])
        d = self.dir("hugetlb")
        if d is not None:
            for size in c.hugepage_sizes():
                pre = os.path.join(d, f"hugetlb.{size}.")
                if os.path.exists(pre + "usage_in_bytes"):
                    s["hugetlb"][size] = {
                        "usage": c.read_int(pre + "usage_in_bytes"),
                        "max": c.read_int(pre + "max_usage_in_bytes"),
                        "failcnt": c.read_int(pre + "failcnt"),
                    }
        return s

    @staticmethod
    def _blkio_stats(d: str, out: dict) -> dict:
        def get(name: str) -> list[dict]:
            return c.blkio_entries(c.read_opt(os.path.join(d, name)))

        if os.path.exists(os.path.join(d, "blkio.bfq.io_service_bytes_recursive")):
            out["ioServiceBytesRecursive"] = get("blkio.bfq.io_service_bytes_recursive")
            out["ioServicedRecursive"] = get("blkio.bfq.io_serviced_recursive")
        elif get("blkio.io_serviced_recursive"):
            for key, name in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                              ("ioServicedRecursive", "io_serviced_recursive"),
                              ("ioQueueRecursive", "io_queued_recursive"),
                              ("ioServiceTimeRecursive", "io_service_time_recursive"),
                              ("ioWaitTimeRecursive", "io_wait_time_recursive"),
                              ("ioMergedRecursive", "io_merged_recursive"),
                              ("ioTimeRecursive", "time_recursive"),
                              ("sectorsRecursive", "sectors_recursive")):
                out[key] = get(f"blkio.{name}")
        if not out["ioServiceBytesRecursive"]:
            out["ioServiceBytesRecursive"] = get("blkio.throttle.io_service_bytes_recursive")
            out["ioServicedRecursive"] = get("blkio.throttle.io_serviced_recursive")
        return out


def _acc(bits: set[str]) -> str:
    return "".join(ch for ch in "rwm" if ch in bits)
