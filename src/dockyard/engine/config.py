"""Container create input: names, the image config merged in, HostConfig checks.

The checks and defaults follow dockerd's (daemon/create.go, verifyContainerSettings,
adaptContainerSettings) so a bad request fails before anything is created.
"""

from __future__ import annotations

import copy
import re
import secrets

from dockyard.errors import InvalidArgument

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MIN_MEMORY = 6 * 1024 * 1024
POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
LOG_DRIVERS = ("json-file", "local", "none")

# Our own word lists for generated names (docker's style: adjective_noun).
_ADJECTIVES = ("amber", "brave", "calm", "deft", "eager", "fair", "gentle", "happy", "keen",
               "lucid", "merry", "noble", "plucky", "quiet", "rapid", "sharp", "steady",
               "sunny", "tidy", "vivid", "witty", "zesty", "bold", "crisp", "dapper")
_NOUNS = ("anchor", "barge", "beacon", "buoy", "capstan", "cargo", "crane", "dinghy",
          "ferry", "galley", "harbor", "hull", "jetty", "keel", "lighthouse", "mast",
          "mooring", "pier", "quay", "rudder", "schooner", "tugboat", "wharf", "yawl")


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"


def check_name(name: str) -> str:
    """A user-given name -> docker's stored form "/name"."""
    if not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only "
                              "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def merge_image_config(config: dict, image_config: dict) -> dict:
    """docker's merge of the image's Config into the container's (runconfig merge)."""
    out = copy.deepcopy(config)
    img = image_config or {}
    if not out.get("User") and img.get("User"):
        out["User"] = img["User"]
    env = list(img.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in out.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    out["Env"] = env or None
    labels = dict(img.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
        out["Entrypoint"] = img.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = img.get("WorkingDir") or ""
    for key in ("StopSignal", "Healthcheck", "OnBuild", "Shell"):
        if not out.get(key) and img.get(key):
            out[key] = copy.deepcopy(img[key])
    for key in ("ExposedPorts", "Volumes"):
        merged = dict(img.get(key) or {})
        merged.update(out.get(key) or {})
        if merged:
            out[key] = merged
    return out


def check_host_config(hc: dict) -> dict:
    """Validate and fill in dockerd's defaults; returns a new dict."""
    hc = copy.deepcopy(hc or {})
    for key in ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "ShmSize", "OomScoreAdj",
                "CpuQuota", "CpuPeriod", "MemoryReservation"):
        value = hc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidArgument(f"invalid HostConfig.{key}: must be an integer")
    memory = hc.get("Memory") or 0
    if memory < 0:
        raise InvalidArgument("invalid memory limit: must be positive")
    if 0 < memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if memory > 0 and swap == 0:
        hc["MemorySwap"] = memory * 2
    elif swap > 0 and memory > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    elif swap > 0 and memory == 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    nano = hc.get("NanoCpus") or 0
    if nano and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    import os
    if nano < 0 or nano > (os.cpu_count() or 1) * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there "
                              f"are only {os.cpu_count()} CPUs available")
    if hc.get("ShmSize") is not None and hc["ShmSize"] < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if not hc.get("ShmSize"):
        hc["ShmSize"] = 64 * 1024 * 1024
    oom = hc.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    policy = hc.get("RestartPolicy") or {}
    name = policy.get("Name") or ""
    retries = policy.get("MaximumRetryCount") or 0
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    hc["RestartPolicy"] = {"Name": name or "no", "MaximumRetryCount": retries}
    log = hc.get("LogConfig") or {}
    driver = log.get("Type") or "json-file"
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    hc["LogConfig"] = {"Type": driver, "Config": dict(log.get("Config") or {})}
    from dockyard.engine.logfile import validate_opts
    validate_opts(driver, hc["LogConfig"]["Config"])  # docker's 400 for a bad log opt
    return hc
