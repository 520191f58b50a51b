"""A service -> the Engine API's POST /containers/create body (Config + HostConfig +
NetworkingConfig), with the com.docker.compose.* labels docker compose sets, so
other Compose tools see a project Dockyard started.
"""

from __future__ import annotations

import re
from typing import Any

from dockyard import __version__
from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.compose.normalize import mount_target
from dockyard.compose.planner import config_hash

LABEL = "com.docker.compose"
PROJECT, SERVICE, NUMBER, ONEOFF = (f"{LABEL}.project", f"{LABEL}.service",
                                    f"{LABEL}.container-number", f"{LABEL}.oneoff")
CONFIG_HASH, WORKING_DIR, CONFIG_FILES = (f"{LABEL}.config-hash",
                                          f"{LABEL}.project.working_dir",
                                          f"{LABEL}.project.config_files")
ENV_FILE, VERSION, DEPENDS_ON, IMAGE = (f"{LABEL}.project.environment_file",
                                        f"{LABEL}.version", f"{LABEL}.depends_on",
                                        f"{LABEL}.image")
NETWORK, VOLUME, SLUG, REPLACE = (f"{LABEL}.network", f"{LABEL}.volume", f"{LABEL}.slug",
                                  f"{LABEL}.replace")
COMPOSE_VERSION = __version__

_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
       "h": 3600 * 10**9}


def to_bytes(value: Any, what: str) -> int:
    if isinstance(value, int | float):
        return int(value)
    m = _BYTES.match(str(value))
    if not m:
        raise ComposeError(f"{what}: invalid size {value!r}")
    mult = 1024 ** " kmgtp".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * mult)


def to_ns(value: Any, what: str) -> int:
    if isinstance(value, int | float):
        return int(value * 10**9)
    text = str(value).strip()
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m:
            raise ComposeError(f"{what}: invalid duration {value!r}")
        total += float(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    return round(total)


def image_name(project: Project, name: str, svc: dict[str, Any]) -> str:
    """The image a service runs: `image`, else docker compose's `<project>-<service>`."""
    return svc.get("image") or f"{project.name}-{name}"


def container_name(project: Project, name: str, svc: dict[str, Any], n: int) -> str:
    return svc.get("container_name") or f"{project.name}-{name}-{n}"


def project_labels(project: Project) -> dict[str, str]:
    out = {PROJECT: project.name, WORKING_DIR: project.working_dir,
           CONFIG_FILES: ",".join(project.config_files), VERSION: COMPOSE_VERSION}
    if project.env_files:
        out[ENV_FILE] = ",".join(project.env_files)
    return out


def _restart(svc: dict[str, Any]) -> dict[str, Any]:
    policy = svc.get("restart")
    if policy:
        name, _, count = str(policy).partition(":")
        return {"Name": "" if name == "no" else name,
                "MaximumRetryCount": int(count) if count else 0}
    rp = (svc.get("deploy") or {}).get("restart_policy")
    if rp:
        cond = {"none": "no", "on-failure": "on-failure", "any": "always"}.get(
            rp.get("condition") or "any", "always")
        return {"Name": cond, "MaximumRetryCount": int(rp.get("max_attempts") or 0)}
    return {"Name": "", "MaximumRetryCount": 0}


def _healthcheck(h: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    if not h:
        return None
    if h.get("disable"):
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    if h.get("test"):
        out["Test"] = h["test"]
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"),
                     ("start_period", "StartPeriod"), ("start_interval", "StartInterval")):
        if h.get(key) is not None:
            out[api] = to_ns(h[key], f"{where}.healthcheck.{key}")
    if h.get("retries") is not None:
        out["Retries"] = int(h["retries"])
    return out


def _ports(svc: dict[str, Any]) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for e in svc.get("expose") or []:
        port, _, proto = str(e).partition("/")
        lo, _, hi = port.partition("-")
        for p in range(int(lo), int(hi or lo) + 1):
            exposed[f"{p}/{proto or 'tcp'}"] = {}
    for p in svc.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol') or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": p.get("host_ip") or "",
                                             "HostPort": str(p.get("published") or "")})
    return exposed, bindings


def _mounts(project: Project, svc: dict[str, Any], where: str
            ) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """Binds (bind mounts that may create their host path, like docker compose does),
    Mounts (volumes, tmpfs, other binds) and Tmpfs."""
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    tmpfs: dict[str, str] = {}
    for v in svc.get("volumes") or []:
        kind, ro = v.get("type", "volume"), bool(v.get("read_only"))
        if kind == "bind":
            opts = v.get("bind") or {}
            if opts.get("create_host_path", True):
                mode = ",".join(filter(None, ["ro" if ro else "", opts.get("selinux", ""),
                                              opts.get("propagation", "")]))
                binds.append(f"{v['source']}:{v['target']}" + (f":{mode}" if mode else ""))
            else:
                m = {"Type": "bind", "Source": v["source"], "Target": v["target"],
                     "ReadOnly": ro}
                if opts.get("propagation"):
                    m["BindOptions"] = {"Propagation": opts["propagation"]}
                mounts.append(m)
        elif kind == "volume":
            m = {"Type": "volume", "Target": v["target"], "ReadOnly": ro}
            src = v.get("source")
            if src:
                if src not in project.volumes:
                    raise ComposeError(f"{where}.volumes: undefined volume {src}")
                m["Source"] = project.volume_name(src)
            opts = v.get("volume") or {}
            if opts.get("nocopy"):
                m["VolumeOptions"] = {"NoCopy": True}
            if opts.get("subpath"):  # refused rather than ignored (see engine/mounts.py)
                m.setdefault("VolumeOptions", {})["Subpath"] = opts["subpath"]
            mounts.append(m)
        elif kind == "tmpfs":
            m = {"Type": "tmpfs", "Target": v["target"]}
            t = v.get("tmpfs") or {}
            opts = {}
            if t.get("size") is not None:
                opts["SizeBytes"] = to_bytes(t["size"], f"{where}.volumes.tmpfs.size")
            if t.get("mode") is not None:
                opts["Mode"] = int(str(t["mode"]), 8) if isinstance(t["mode"], str) \
                    else int(t["mode"])
            if opts:
                m["TmpfsOptions"] = opts
            mounts.append(m)
        else:
            raise ComposeError(f"{where}.volumes: unsupported volume type {kind!r}")
    for t in svc.get("tmpfs") or []:
        path, _, opts = str(t).partition(":")
        tmpfs[path] = opts
    taken = {v.get("target") for v in svc.get("volumes") or []}
    for kind in ("secrets", "configs"):
        for ref in svc.get(kind) or []:
            res = _file_object(project, kind, ref["source"])
            # `environment`/`content` are copied in after create (injected_files)
            target = mount_target(kind, ref)
            if res.get("file") and target not in taken:  # a volume there wins
                binds.append(f"{res['file']}:{target}:ro")
                taken.add(target)
    return binds, mounts, tmpfs


def _file_object(project: Project, kind: str, key: str) -> dict[str, Any]:
    """A top-level secret or config a service uses, failing as docker compose does on
    what needs swarm mode."""
    res = (project.secrets if kind == "secrets" else project.configs).get(key) or {}
    if res.get("external"):
        raise ComposeError(f"unsupported external {kind[:-1]} {res.get('name') or key}")
    for opt in ("driver", "template_driver"):
        if res.get(opt):
            raise ComposeError(f"Docker Compose does not support {kind}.*.{opt}")
    return res


def _file_object_name(project: Project, kind: str, key: str) -> str:
    res = (project.secrets if kind == "secrets" else project.configs).get(key) or {}
    return res.get("name") or f"{project.name}_{key}"


def _networks(project: Project, svc: dict[str, Any], name: str
              ) -> tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """(NetworkMode, the first network's EndpointsConfig, the others to connect after
    create as (network name, EndpointConfig))."""
    mode = svc.get("network_mode")
    if mode:
        return mode, {}, []
    endpoints = []
    nets = svc.get("networks") or {}
    ordered = sorted(nets.items(), key=lambda kv: -int((kv[1] or {}).get("priority") or 0))
    for key, spec in ordered:
        spec = spec or {}
        epc: dict[str, Any] = {"Aliases": [name, *(spec.get("aliases") or [])]}
        ipam = {}
        if spec.get("ipv4_address"):
            ipam["IPv4Address"] = spec["ipv4_address"]
        if spec.get("ipv6_address"):
            ipam["IPv6Address"] = spec["ipv6_address"]
        if ipam:
            epc["IPAMConfig"] = ipam
        if spec.get("mac_address"):
            epc["MacAddress"] = spec["mac_address"]
        endpoints.append((project.network_name(key), epc))
    if not endpoints:
        return "default", {}, []
    first, epc = endpoints[0]
    return first, {first: epc}, endpoints[1:]


def _device(spec: Any, where: str) -> dict[str, str]:
    """`/dev/x[:/dev/y[:rwm]]` or {source, target, permissions}."""
    if isinstance(spec, dict):
        src = spec.get("source") or ""
        return {"PathOnHost": src, "PathInContainer": spec.get("target") or src,
                "CgroupPermissions": spec.get("permissions") or "rwm"}
    parts = str(spec).split(":")
    if not parts[0] or len(parts) > 3:
        raise ComposeError(f"{where}.devices: invalid device {spec!r}")
    perms = "rwm"
    if len(parts) == 3:
        perms = parts[2]
    elif len(parts) == 2 and re.fullmatch(r"[rwm]{1,3}", parts[1]):
        perms, parts = parts[1], parts[:1]
    return {"PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
            "CgroupPermissions": perms}


def _blkio(b: dict[str, Any], where: str) -> dict[str, Any]:
    """blkio_config -> HostConfig.Blkio* (rates take byte units, as compose's)."""
    out: dict[str, Any] = {}
    if b.get("weight"):
        out["BlkioWeight"] = int(b["weight"])
    if b.get("weight_device"):
        out["BlkioWeightDevice"] = [{"Path": d.get("path") or "", "Weight": int(d.get("weight") or 0)}
                                    for d in b["weight_device"]]
    for key, api in (("device_read_bps", "BlkioDeviceReadBps"),
                     ("device_write_bps", "BlkioDeviceWriteBps"),
                     ("device_read_iops", "BlkioDeviceReadIOps"),
                     ("device_write_iops", "BlkioDeviceWriteIOps")):
        if b.get(key):
            out[api] = [{"Path": d.get("path") or "", "Rate": to_bytes(d.get("rate") or 0,
                                                                       f"{where}.{key}")}
                        for d in b[key]]
    return out


def _device_request(d: dict[str, Any], caps: list[str], where: str) -> dict[str, Any]:
    """A gpus entry or a reserved device -> a DeviceRequest; with neither count nor
    device_ids, compose asks for all devices (count -1)."""
    count = d.get("count", "all" if not d.get("device_ids") else 0)
    if str(count).lower() == "all":
        count = -1
    elif not re.fullmatch(r"-?\d+", str(count)):
        raise ComposeError(f"{where}: invalid value {count!r}, the only value allowed is "
                           "'all' or a number")
    opts = d.get("options")
    if isinstance(opts, list):
        opts = dict(str(o).partition("=")[::2] for o in opts)
    return {"Driver": d.get("driver") or "", "Count": int(count),
            "DeviceIDs": [str(i) for i in d["device_ids"]] if d.get("device_ids") else None,
            "Capabilities": [caps],
            "Options": {k: str(v) for k, v in opts.items()} if opts is not None else None}


def _link(project: Project, link: str) -> str:
    """`service[:alias]` -> `<container>:<alias>` (the service's first container)."""
    target, _, alias = link.partition(":")
    if target in project.services:
        return f"{container_name(project, target, project.services[target], 1)}:{alias or target}"
    return f"{target}:{alias or target}"


def depends_label(svc: dict[str, Any]) -> str:
    return ",".join(f"{dep}:{spec.get('condition', 'service_started')}:"
                    f"{str(bool(spec.get('restart', False))).lower()}"
                    for dep, spec in (svc.get("depends_on") or {}).items())


def resolved_references(project: Project, svc: dict[str, Any],
                        resolve_service: Any) -> dict[str, Any]:
    """The service as docker compose hashes it at up: network_mode, ipc and pid
    `service:x` as `container:<id of x's first container>`, volumes_from entries as
    that id (or the named container), their modes dropped as compose drops them."""
    if resolve_service is None:
        return svc
    out = dict(svc)
    for key in ("network_mode", "ipc", "pid"):
        ref = str(svc.get(key) or "")
        if ref.startswith("service:"):
            out[key] = f"container:{resolve_service(ref[8:])}"
    if svc.get("volumes_from"):
        out["volumes_from"] = [
            ref.split(":")[1] if ref.startswith("container:")
            else resolve_service(ref.split(":")[1] if ref.startswith("service:")
                                 else ref.split(":")[0])
            for ref in svc["volumes_from"]]
    return out


def create_body(project: Project, name: str, svc: dict[str, Any], number: int,
                image_id: str = "", oneoff: bool = False,
                resolve_service: Any = None) -> dict[str, Any]:
    """The create body for container `number` of service `name`. `resolve_service`
    maps a service name to a container id (network_mode/volumes_from: service:x)."""
    where = f"services.{name}"
    env = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items() if v is not None]
    labels = {k: str(v if v is not None else "") for k, v in (svc.get("labels") or {}).items()}
    labels.update(project_labels(project))
    resolved = resolved_references(project, svc, resolve_service)
    labels.update({SERVICE: name, NUMBER: str(number), ONEOFF: "True" if oneoff else "False",
                   CONFIG_HASH: config_hash(resolved), DEPENDS_ON: depends_label(svc)})
    if image_id:
        labels[IMAGE] = image_id
    exposed, bindings = _ports(svc)
    binds, mounts, tmpfs = _mounts(project, svc, where)
    network_mode, endpoints, _ = _networks(project, resolved, name)
    volumes_from = []
    for ref in svc.get("volumes_from") or []:
        if ref.startswith("service:") or ref.split(":")[0] in project.services:
            parts = ref.split(":")
            target = parts[1] if parts[0] == "service" else parts[0]
            mode = parts[-1] if parts[-1] in ("ro", "rw") else ""
            cid = resolve_service(target) if resolve_service else target
            volumes_from.append(cid + (f":{mode}" if mode else ""))
        else:
            volumes_from.append(ref.removeprefix("container:"))
    stop_timeout = None
    if svc.get("stop_grace_period") is not None:
        stop_timeout = to_ns(svc["stop_grace_period"], f"{where}.stop_grace_period") // 10**9
    resources = (svc.get("deploy") or {}).get("resources") or {}
    limits, reserv = resources.get("limits") or {}, resources.get("reservations") or {}
    memory = limits.get("memory") or svc.get("mem_limit")
    cpus = limits.get("cpus") or svc.get("cpus")
    pids = limits.get("pids") or svc.get("pids_limit")
    logging = svc.get("logging") or {}
    config: dict[str, Any] = {
        "Hostname": svc.get("hostname") or "", "Domainname": svc.get("domainname") or "",
        "User": str(svc.get("user") or ""), "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": exposed or None, "Tty": bool(svc.get("tty")),
        "OpenStdin": bool(svc.get("stdin_open")), "StdinOnce": False,
        "Env": env or None, "Cmd": svc.get("command"), "Image": image_name(project, name, svc),
        "WorkingDir": svc.get("working_dir") or "", "Entrypoint": svc.get("entrypoint"),
        "Labels": labels, "Healthcheck": _healthcheck(svc.get("healthcheck"), where),
        "MacAddress": svc.get("mac_address") or "",
    }
    if svc.get("stop_signal"):
        config["StopSignal"] = svc["stop_signal"]
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    host: dict[str, Any] = {
        "Binds": binds or None, "Mounts": mounts or None, "Tmpfs": tmpfs or None,
        "NetworkMode": network_mode, "PortBindings": bindings or None,
        "RestartPolicy": _restart(svc), "VolumesFrom": volumes_from or None,
        "CapAdd": svc.get("cap_add") or None, "CapDrop": svc.get("cap_drop") or None,
        "Dns": svc.get("dns") or None, "DnsSearch": svc.get("dns_search") or None,
        "DnsOptions": svc.get("dns_opt") or None, "ExtraHosts": svc.get("extra_hosts") or None,
        "Privileged": bool(svc.get("privileged")),
        "ReadonlyRootfs": bool(svc.get("read_only")),
        "SecurityOpt": svc.get("security_opt") or None,
        "Sysctls": {k: str(v) for k, v in (svc.get("sysctls") or {}).items()} or None,
        "Ulimits": [{"Name": k, "Soft": v["soft"], "Hard": v["hard"]}
                    for k, v in (svc.get("ulimits") or {}).items()] or None,
        "PidMode": resolved.get("pid") or "", "IpcMode": resolved.get("ipc") or "",
        "UTSMode": svc.get("uts") or "", "UsernsMode": svc.get("userns_mode") or "",
        "ShmSize": to_bytes(svc["shm_size"], f"{where}.shm_size") if svc.get("shm_size")
        else 0,
        "LogConfig": {"Type": logging.get("driver") or "",
                      "Config": {k: str(v) for k, v in (logging.get("options") or {}).items()}},
        "Memory": to_bytes(memory, f"{where}.deploy.resources.limits.memory") if memory else 0,
        "MemoryReservation": to_bytes(reserv["memory"], f"{where}.deploy.resources."
                                      "reservations.memory") if reserv.get("memory") else 0,
        "NanoCpus": int(float(cpus) * 10**9) if cpus else 0,
        "CpuShares": int(svc.get("cpu_shares") or 0),
        "PidsLimit": int(pids) if pids else None,
        "GroupAdd": svc.get("group_add") or None,
        "OomScoreAdj": int(svc.get("oom_score_adj") or 0),
        "CgroupParent": svc.get("cgroup_parent") or "", "Runtime": svc.get("runtime") or "",
        "Links": [_link(project, lk) for lk in svc.get("links") or []] or None,
    }
    if svc.get("memswap_limit") is not None:
        ms = svc["memswap_limit"]
        host["MemorySwap"] = -1 if str(ms) == "-1" else to_bytes(ms, f"{where}.memswap_limit")
    if svc.get("init") is not None:
        host["Init"] = bool(svc["init"])
    if svc.get("cpuset"):
        host["CpusetCpus"] = str(svc["cpuset"])
    for key, api in (("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
                     ("mem_swappiness", "MemorySwappiness")):
        if svc.get(key) is not None:
            host[api] = int(svc[key])
    if svc.get("oom_kill_disable") is not None:
        host["OomKillDisable"] = bool(svc["oom_kill_disable"])
    if svc.get("cgroup"):
        host["CgroupnsMode"] = svc["cgroup"]
    if svc.get("storage_opt"):
        host["StorageOpt"] = {k: str(v) for k, v in svc["storage_opt"].items()}
    if svc.get("devices"):
        host["Devices"] = [_device(d, where) for d in svc["devices"]]
    if svc.get("device_cgroup_rules"):
        host["DeviceCgroupRules"] = list(svc["device_cgroup_rules"])
    host.update(_blkio(svc.get("blkio_config") or {}, f"{where}.blkio_config"))
    requests = [_device_request(d, list(d.get("capabilities") or []), f"{where}.deploy."
                                "resources.reservations.devices")
                for d in reserv.get("devices") or []]
    requests += [_device_request(g, [*(g.get("capabilities") or []), "gpu"], f"{where}.gpus")
                 for g in svc.get("gpus") or []]
    if requests:
        host["DeviceRequests"] = requests
    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


def injected_files(project: Project, svc: dict[str, Any], where: str
                   ) -> list[tuple[str, bytes, int]]:
    """Secrets and configs given by `content` or `environment`: (target, data, mode),
    copied into the container after create like docker compose does."""
    out = []
    for kind in ("secrets", "configs"):
        for ref in svc.get(kind) or []:
            res = _file_object(project, kind, ref["source"])
            name = _file_object_name(project, kind, ref["source"])
            if res.get("content"):
                data = str(res["content"]).encode()
            elif res.get("environment"):
                value = project.environment.get(res["environment"])
                if value is None:
                    raise ComposeError(f"environment variable \"{res['environment']}\" "
                                       f"required by {kind[:-1]} \"{name}\" is not set")
                data = value.encode()
            else:
                continue
            if not data:
                continue  # docker compose copies nothing for empty content
            if svc.get("read_only"):
                service = where.removeprefix("services.")
                raise ComposeError(f"cannot create {kind[:-1]} \"{name}\" in read-only "
                                   f"service {service}: `file` is the sole supported option")
            mode = ref.get("mode")
            mode = int(mode, 8) if isinstance(mode, str) else (mode if mode is not None
                                                                else 0o444)
            out.append((mount_target(kind, ref), data, mode))
    return out


def extra_networks(project: Project, name: str, svc: dict[str, Any]
                   ) -> list[tuple[str, dict[str, Any]]]:
    """The networks to connect after create (all but the first)."""
    return _networks(project, svc, name)[2]
