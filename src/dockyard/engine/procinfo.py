"""`docker top` and `docker stats` data for a running container.

Both read the container's cgroup through the runtime library in-process
(no fork): the pids for top, the runc-shaped stats for stats, which are then
put into docker's stats JSON shape (cgroup v1 field names, as dockerd on v1).
"""

from __future__ import annotations

import os
import subprocess

from dockyard.engine.logfile import rfc3339_nano
from dockyard.errors import InvalidArgument


def top(pids: list[int], ps_args: str = "-ef") -> dict:
    """docker's ContainerTopOKBody: ps output filtered to the container's pids."""
    args = ps_args.split() or ["-ef"]
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True,
                             timeout=30).stdout
    except subprocess.CalledProcessError as e:
        raise InvalidArgument(f"ps: {e.stderr.strip() or e}") from None
    lines = out.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    col = titles.index("PID")
    wanted = set(pids)
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


def _system_cpu_usage() -> int:
    """Host CPU time in nanoseconds (the first line of /proc/stat), as dockerd reports."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = os.sysconf("SC_CLK_TCK") or 100
    return sum(int(x) for x in fields) * 1_000_000_000 // ticks


def net_stats(pid: int) -> dict:
    """docker stats' "networks": per interface of the process's network namespace (lo
    left out), read from /proc/<pid>/net/dev without entering the namespace."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if name == "lo" or len(fields) < 16:
            continue
        v = [int(x) for x in fields]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                     "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                     "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def docker_stats(data: dict, name: str, cid: str, previous: dict | None = None,
                 networks: dict | None = None) -> dict:
    """runc's stats `data` -> docker's container stats JSON."""
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    mem = data.get("memory") or {}
    mem_usage = mem.get("usage") or {}
    raw = mem.get("raw") or {}
    blk = data.get("blkio") or {}

    def blkio(entries: list) -> list:
        return [{"major": e["major"], "minor": e["minor"], "op": e.get("op", ""),
                 "value": e["value"]} for e in entries or []]

    cpu_stats = {
        "cpu_usage": {"total_usage": usage.get("total", 0),
                      "percpu_usage": usage.get("percpu") or None,
                      "usage_in_kernelmode": usage.get("kernel", 0),
                      "usage_in_usermode": usage.get("user", 0)},
        "system_cpu_usage": _system_cpu_usage(),
        "online_cpus": os.cpu_count() or 1,
        "throttling_data": {"periods": (cpu.get("throttling") or {}).get("periods", 0),
                            "throttled_periods":
                                (cpu.get("throttling") or {}).get("throttledPeriods", 0),
                            "throttled_time":
                                (cpu.get("throttling") or {}).get("throttledTime", 0)},
    }
    limit = mem_usage.get("limit", 0)
    host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "read": rfc3339_nano(),
        "preread": (previous or {}).get("read", "0001-01-01T00:00:00Z"),
        "pids_stats": {"current": (data.get("pids") or {}).get("current", 0),
                       "limit": (data.get("pids") or {}).get("limit", 0) or None},
        "blkio_stats": {
            "io_service_bytes_recursive": blkio(blk.get("ioServiceBytesRecursive")),
            "io_serviced_recursive": blkio(blk.get("ioServicedRecursive")),
            "io_queue_recursive": None, "io_service_time_recursive": None,
            "io_wait_time_recursive": None, "io_merged_recursive": None,
            "io_time_recursive": None, "sectors_recursive": None},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats,
        "precpu_stats": (previous or {}).get("cpu_stats") or {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                          "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": mem_usage.get("usage", 0),
                         "max_usage": mem_usage.get("max", 0),
                         "stats": dict(raw), "failcnt": mem_usage.get("failcnt", 0),
                         "limit": min(limit, host_mem) if limit else host_mem},
        "name": name,
        "id": cid,
        "networks": networks or {},
    }
