"""`docker update`: a new HostConfig from the update body, and the cgroup resources
to apply to a running container.

As dockerd: only the fields the body sets (non-zero; PidsLimit also when 0/-1)
change; the result is checked with create's HostConfig checks, so the same
limits are refused with the same messages.
"""

from __future__ import annotations

import copy

from dockyard.engine import config as cfgmod
from dockyard.engine import spec as specmod
from dockyard.errors import InvalidArgument

INT_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
              "CpuQuota", "CpuPeriod", "BlkioWeight", "CpuRealtimePeriod",
              "CpuRealtimeRuntime", "KernelMemory")
STR_FIELDS = ("CpusetCpus", "CpusetMems")
MEMORY = ("Memory", "MemorySwap", "MemoryReservation")
CPU = ("NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "CpusetMems")


def _int(body: dict, key: str) -> int:
    value = body.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"invalid JSON: {key} must be an integer")
    return value


def merge(host_config: dict, body: dict) -> tuple[dict, dict]:
    """(the new HostConfig, OCI resources to apply now; {} when only the restart policy
    changed). Raises InvalidArgument (400) like dockerd."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    hc = copy.deepcopy(host_config)
    changed: set[str] = set()
    for key in INT_FIELDS:
        value = _int(body, key)
        if value:
            hc[key] = value
            changed.add(key)
    for key in STR_FIELDS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"invalid JSON: {key} must be a string")
        if value:
            hc[key] = value
            changed.add(key)
    if body.get("PidsLimit") is not None:  # a pointer in docker: 0 and -1 mean unlimited
        hc["PidsLimit"] = _int(body, "PidsLimit")
        changed.add("PidsLimit")
    memory, swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
    if "Memory" in changed and "MemorySwap" not in changed and 0 < swap < memory:
        raise InvalidArgument("Memory limit should be smaller than already set memoryswap "
                              "limit, update the memoryswap at the same time")
    if "NanoCpus" in changed and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        what = "Period" if hc.get("CpuPeriod") else "Quota"
        raise InvalidArgument(f"Conflicting options: Nano CPUs cannot be updated as CPU "
                              f"{what} has already been set")
    for key, what in (("CpuQuota", "Quota"), ("CpuPeriod", "Period")):
        if key in changed and hc.get("NanoCpus"):
            raise InvalidArgument(f"Conflicting options: CPU {what} cannot be updated as "
                                  "NanoCPUs has already been set")
    policy = body.get("RestartPolicy")
    if policy is not None and not isinstance(policy, dict):
        raise InvalidArgument("invalid JSON: RestartPolicy must be an object")
    if policy and policy.get("Name"):
        if hc.get("AutoRemove") and policy["Name"] != "no":
            raise InvalidArgument("Restart policy cannot be updated because AutoRemove is "
                                  "enabled for the container")
        hc["RestartPolicy"] = {"Name": policy["Name"],
                               "MaximumRetryCount": policy.get("MaximumRetryCount") or 0}
    checked = cfgmod.check_host_config(hc)  # create's checks: 6MB minimum, swap, policy...
    hc["RestartPolicy"] = checked["RestartPolicy"]
    return hc, _resources(hc, changed)


def _resources(hc: dict, changed: set[str]) -> dict:
    """Only the controllers whose settings changed (a device rule is never rewritten)."""
    full = specmod.resources(hc)
    out: dict = {}
    if changed & set(MEMORY) and full.get("memory"):
        out["memory"] = full["memory"]
    if changed & set(CPU) and full.get("cpu"):
        out["cpu"] = full["cpu"]
    if "BlkioWeight" in changed and full.get("blockIO"):
        out["blockIO"] = full["blockIO"]
    if "PidsLimit" in changed:
        limit = hc.get("PidsLimit") or 0
        out["pids"] = {"limit": limit if limit > 0 else -1}
    return out
