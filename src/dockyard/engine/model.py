"""The container model: docker's Config, HostConfig and State, and the inspect JSON.

Config and HostConfig are kept as docker's own JSON objects (dicts with docker's
keys), so the API layer passes them through unchanged; the engine reads the
fields it acts on. State is a dataclass with docker's field names.
"""

from __future__ import annotations

import copy
import datetime
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.units import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"
STATUSES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")

# docker's Config keys with their zero values (what `docker inspect` shows)
CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
    "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}

HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                   "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None,
    "CapDrop": None, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "dockyard-runtime", "Isolation": "", "CpuShares": 0,
    "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
    "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None,
    "Ulimits": None, "Init": None, "Tmpfs": None, "Sysctls": None,
    "MaskedPaths": None, "ReadonlyPaths": None,
}


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> str:
    """RFC 3339 with nanosecond digits, as docker prints times."""
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def parse_time(text: str) -> float:
    """docker's RFC 3339 (nanoseconds, Z or offset) -> unix seconds; 0 for the zero time."""
    if not text or text.startswith("0001-"):
        return 0.0
    main, _, frac = text.partition(".")
    tz = "Z"
    if frac:
        digits = "".join(ch for ch in frac if ch.isdigit())
        tz = frac[len(digits):] or "Z"
        frac = digits
    elif text.endswith("Z"):
        main = main[:-1]
    elif len(main) > 19:
        main, tz = main[:19], main[19:]
    base = datetime.datetime.strptime(main[:19], "%Y-%m-%dT%H:%M:%S")
    offset = datetime.timedelta(0)
    if tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        hours, _, minutes = tz[1:].partition(":")
        offset = sign * datetime.timedelta(hours=int(hours), minutes=int(minutes or 0))
    base = base.replace(tzinfo=datetime.UTC) - offset
    return base.timestamp() + (float("0." + frac) if frac else 0.0)


@dataclass
class State:
    Status: str = "created"
    Running: bool = False
    Paused: bool = False
    Restarting: bool = False
    OOMKilled: bool = False
    Dead: bool = False
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = ZERO_TIME
    FinishedAt: str = ZERO_TIME
    Health: dict | None = None

    def set_running(self, pid: int) -> None:
        self.Status, self.Running, self.Paused, self.Restarting = "running", True, False, False
        self.Pid, self.ExitCode, self.Error, self.OOMKilled = pid, 0, "", False
        self.StartedAt = now()
        self.FinishedAt = ZERO_TIME

    def set_exited(self, code: int, oom: bool = False, finished: str | None = None,
                   error: str = "") -> None:
        self.Status, self.Running, self.Paused, self.Restarting = "exited", False, False, False
        self.Pid, self.ExitCode, self.OOMKilled = 0, code, oom
        self.FinishedAt = finished or now()
        self.Error = error

    def to_json(self) -> dict:
        out = asdict(self)
        if out["Health"] is None:
            del out["Health"]
        return out

    @classmethod
    def from_json(cls, data: dict) -> State:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Container:
    id: str
    name: str  # with docker's leading "/"
    image: str  # the image id (sha256:...)
    image_name: str  # what the user asked for (Config.Image)
    config: dict
    host_config: dict
    created: str = field(default_factory=now)
    state: State = field(default_factory=State)
    restart_count: int = 0
    manually_stopped: bool = False  # for unless-stopped and daemon start
    path: str = ""  # the container's directory under <data-root>/containers
    extra: dict = field(default_factory=dict)  # room for later slices (networks, mounts)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state.Running

    @property
    def restart_policy(self) -> tuple[str, int]:
        policy = self.host_config.get("RestartPolicy") or {}
        return (policy.get("Name") or "no"), int(policy.get("MaximumRetryCount") or 0)

    def command(self) -> tuple[str, list[str]]:
        """(Path, Args) as docker's inspect shows them: entrypoint + cmd split."""
        argv = list(self.config.get("Entrypoint") or []) + list(self.config.get("Cmd") or [])
        return (argv[0] if argv else ""), argv[1:]

    def inspect(self, *, log_path: str = "", graph_driver: dict | None = None,
                size: tuple[int, int] | None = None) -> dict:
        """docker's ContainerJSON for `docker inspect`."""
        path, args = self.command()
        config = {**CONFIG_DEFAULTS, **copy.deepcopy(self.config)}
        config["Image"] = self.image_name
        config.setdefault("Labels", {})
        if config["Labels"] is None:
            config["Labels"] = {}
        host_config = {**HOST_CONFIG_DEFAULTS, **copy.deepcopy(self.host_config)}
        out: dict[str, Any] = {
            "Id": self.id,
            "Created": self.created,
            "Path": path,
            "Args": args,
            "State": self.state.to_json(),
            "Image": self.image,
            "ResolvConfPath": f"{self.path}/resolv.conf",
            "HostnamePath": f"{self.path}/hostname",
            "HostsPath": f"{self.path}/hosts",
            "LogPath": log_path,
            "Name": self.name,
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": host_config,
            "GraphDriver": graph_driver or {"Data": None, "Name": "overlay2"},
            "Mounts": list(self.extra.get("mounts") or []),
            "Config": config,
            "NetworkSettings": self.extra.get("network_settings") or _loopback_settings(),
        }
        if size is not None:
            out["SizeRw"], out["SizeRootFs"] = size
        return out

    # -- persistence (the store keeps this JSON) --

    def to_record(self) -> dict:
        return {
            "id": self.id, "name": self.name, "image": self.image,
            "image_name": self.image_name, "config": self.config,
            "host_config": self.host_config, "created": self.created,
            "state": asdict(self.state), "restart_count": self.restart_count,
            "manually_stopped": self.manually_stopped, "path": self.path, "extra": self.extra,
        }

    @classmethod
    def from_record(cls, rec: dict) -> Container:
        rec = dict(rec)
        rec["state"] = State.from_json(rec.get("state") or {})
        known = {k: v for k, v in rec.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _loopback_settings() -> dict:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {"none": {"IPAMConfig": None, "Links": None, "Aliases": None,
                                  "NetworkID": "", "EndpointID": "", "Gateway": "",
                                  "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                                  "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                                  "MacAddress": "", "DriverOpts": None}}}


def status_text(c: Container, now_ts: float | None = None) -> str:
    """docker ps's STATUS column: "Up 2 minutes", "Exited (0) 3 seconds ago", ..."""
    import time

    now_ts = now_ts or time.time()
    st = c.state
    if st.Restarting:
        return f"Restarting ({st.ExitCode}) {human_duration(now_ts - parse_time(st.FinishedAt))} ago"
    if st.Running:
        text = f"Up {human_duration(now_ts - parse_time(st.StartedAt))}"
        if st.Paused:
            text += " (Paused)"
        if st.Health:
            health = st.Health.get("Status", "")
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if st.Status == "removing":
        return "Removal In Progress"
    if st.Dead:
        return "Dead"
    if st.Status == "created" or parse_time(st.FinishedAt) == 0:
        return "Created"
    return f"Exited ({st.ExitCode}) {human_duration(now_ts - parse_time(st.FinishedAt))} ago"
