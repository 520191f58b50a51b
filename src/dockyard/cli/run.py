"""`dockyard run`, `create` and `start`: docker's flows over the Engine API.

run (foreground), as the docker CLI does it: POST /containers/create (a 404
"No such image" pulls the image, then creates again), attach with a hijacked
connection *before* start, POST /wait?condition=next-exit (removed with
--rm) so the exit is not missed, start, copy the streams (cli/tty.py), and
exit with the container's status. Errors print as "dockyard: Error response
from daemon: ..." and exit 125, or 126/127 when the command cannot be
invoked / found. `create_body` builds Config + HostConfig + NetworkingConfig
from docker's run/create flags the way the docker CLI's container/opts.go does.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from dockyard.cli.runflags import (
    LIST,
    VALUE,
    Flag,
    FlagError,
    Parsed,
    _int,
    effective_caps,
    nano_cpus,
    parse_device,
    parse_flags,
    parse_health,
    parse_restart,
    parse_security_opts,
    parse_throttle_device,
    parse_ulimit,
    parse_weight_device,
    ram_in_bytes,
    read_kv_file,
    split_reference,
    tagged,
)
from dockyard.cli.tty import (
    StatusError,
    _client,
    _daemon_error,
    _report,
    _usage,
    attach_and_run,
    start_error_status,
)
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from dockyard.client.api import Client

RUN_USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]"


# -- image references and pulls ----------------------------------------------------------

def pull_image(client: Client, image: str, quiet: bool = False, platform: str = "") -> None:
    """POST /images/create, the JSON progress rendered on stderr like docker's."""
    from dockyard.client.auth import registry_auth_header
    from dockyard.client.progress import display

    name, tag = split_reference(image)
    params = {"fromImage": name, "tag": tag, "platform": platform or None}
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    auth = registry_auth_header(config_dir, image)
    headers = {"X-Registry-Auth": auth} if auth else {}
    display(client.stream_json("POST", "/images/create", params=params, headers=headers),
            None if quiet else sys.stderr)


def create_container(client: Client, body: dict[str, Any], name: str, pull: str = "missing",
                     quiet: bool = False, platform: str = "") -> str:
    """POST /containers/create; pulls a missing image like docker's CLI. Returns the id."""
    params = {"name": name or None, "platform": platform or None}
    image = body["Image"]
    if pull == "always":
        pull_image(client, image, quiet, platform)
    try:
        resp = client.post("/containers/create", params=params, body=body)
    except NotFound as e:
        if pull == "never" or "image" not in str(e).lower():
            raise
        print(f"Unable to find image '{tagged(image)}' locally", file=sys.stderr)
        pull_image(client, image, quiet, platform)
        resp = client.post("/containers/create", params=params, body=body)
    for warning in resp.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return resp["Id"]


# -- flags and the create body ----------------------------------------------------------

RUN_FLAGS: list[Flag] = [
    Flag("detach", short="d"), Flag("rm"), Flag("name", VALUE, default=""),
    Flag("interactive", short="i"), Flag("tty", short="t"), Flag("attach", LIST, "a"),
    Flag("env", LIST, "e"), Flag("env-file", LIST), Flag("workdir", VALUE, "w", ""),
    Flag("user", VALUE, "u", ""), Flag("entrypoint", VALUE, default=""),
    Flag("hostname", VALUE, "h", ""), Flag("domainname", VALUE, default=""),
    Flag("label", LIST, "l"), Flag("label-file", LIST),
    Flag("restart", VALUE, default="no"), Flag("memory", VALUE, "m", ""),
    Flag("memory-swap", VALUE, default=""), Flag("memory-reservation", VALUE, default=""),
    Flag("memory-swappiness", VALUE, default="-1"), Flag("oom-kill-disable"),
    Flag("cpus", VALUE, default=""), Flag("cpu-shares", VALUE, "c", "0"),
    Flag("cpu-period", VALUE, default="0"), Flag("cpu-quota", VALUE, default="0"),
    Flag("cpuset-cpus", VALUE, default=""), Flag("cpuset-mems", VALUE, default=""),
    Flag("pids-limit", VALUE, default="0"), Flag("ulimit", LIST),
    Flag("cap-add", LIST), Flag("cap-drop", LIST), Flag("privileged"),
    Flag("security-opt", LIST), Flag("read-only"), Flag("tmpfs", LIST),
    Flag("stop-signal", VALUE, default=""), Flag("stop-timeout", VALUE, default="0"),
    Flag("health-cmd", VALUE, default=""), Flag("health-interval", VALUE, default="0s"),
    Flag("health-timeout", VALUE, default="0s"), Flag("health-retries", VALUE, default="0"),
    Flag("health-start-period", VALUE, default="0s"), Flag("no-healthcheck"),
    Flag("health-start-interval", VALUE, default="0s"),
    Flag("shm-size", VALUE, default=""), Flag("oom-score-adj", VALUE, default="0"),
    Flag("sysctl", LIST), Flag("device", LIST), Flag("init"),
    Flag("network", VALUE, default=""), Flag("net", VALUE, default=""),
    Flag("runtime", VALUE, default=""), Flag("group-add", LIST),
    Flag("dns", LIST), Flag("dns-search", LIST), Flag("dns-option", LIST),
    Flag("add-host", LIST), Flag("ipc", VALUE, default=""), Flag("pid", VALUE, default=""),
    Flag("uts", VALUE, default=""), Flag("userns", VALUE, default=""),
    Flag("cgroupns", VALUE, default=""), Flag("cgroup-parent", VALUE, default=""),
    Flag("log-driver", VALUE, default=""), Flag("log-opt", LIST),
    Flag("platform", VALUE, default=""), Flag("pull", VALUE, default="missing"),
    Flag("quiet", short="q"), Flag("detach-keys", VALUE, default=""),
    Flag("sig-proxy", default=True), Flag("expose", LIST),
    Flag("publish", LIST, "p"), Flag("volume", LIST, "v"), Flag("mount", LIST),
    Flag("cidfile", VALUE, default=""), Flag("isolation", VALUE, default=""),
    Flag("mac-address", VALUE, default=""), Flag("volume-driver", VALUE, default=""),
    Flag("volumes-from", LIST), Flag("storage-opt", LIST),
    Flag("device-cgroup-rule", LIST), Flag("link", LIST), Flag("network-alias", LIST),
    Flag("publish-all", short="P"), Flag("ip", VALUE, default=""),
    Flag("ip6", VALUE, default=""), Flag("blkio-weight", VALUE, default="0"),
    Flag("blkio-weight-device", LIST), Flag("device-read-bps", LIST),
    Flag("device-write-bps", LIST), Flag("device-read-iops", LIST),
    Flag("device-write-iops", LIST),
]


def _env(values: list[str]) -> list[str]:
    out = []
    for v in values:
        key, eq, _ = v.partition("=")
        if not key:
            raise FlagError(f"invalid environment variable: {v}")
        if not eq and key in os.environ:
            v = f"{key}={os.environ[key]}"
        out.append(v)
    return out


def _kv_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def create_body(p: Parsed, image: str, cmd: list[str]) -> dict[str, Any]:
    """Config + HostConfig + NetworkingConfig for POST /containers/create."""
    v = p.values
    attach = [a.lower() for a in v["attach"]]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise FlagError(f"invalid argument \"{a}\" for \"-a, --attach\" flag: "
                            f"valid streams are STDIN, STDOUT and STDERR")
    attach_stdin = "stdin" in attach or v["interactive"]
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach

    env = []
    for path in v["env-file"]:
        env += read_kv_file(path, env_lookup=True)
    env += _env(v["env"])
    labels: list[str] = []
    for path in v["label-file"]:
        labels += read_kv_file(path, env_lookup=False)
    labels += v["label"]

    entrypoint: list[str] | None = None
    if v["entrypoint"]:
        entrypoint = [v["entrypoint"]]
    elif "entrypoint" in p.changed:
        entrypoint = [""]

    health = parse_health(v)

    ports: dict[str, dict] = {}
    for e in v["expose"]:
        port, _, proto = e.partition("/")
        first, _, last = port.partition("-")
        for n in range(_int("expose", first), _int("expose", last or first) + 1):
            ports[f"{n}/{proto or 'tcp'}"] = {}

    config: dict[str, Any] = {
        "Hostname": v["hostname"], "Domainname": v["domainname"], "User": v["user"],
        "AttachStdin": attach_stdin, "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr, "ExposedPorts": ports or None, "Tty": v["tty"],
        "OpenStdin": v["interactive"], "StdinOnce": bool(v["interactive"] and attach_stdin),
        "Env": env or None, "Cmd": cmd or None, "Healthcheck": health, "Image": image,
        "Volumes": None, "WorkingDir": v["workdir"], "Entrypoint": entrypoint,
        "MacAddress": v["mac-address"], "OnBuild": None, "Labels": _kv_map(labels),
    }
    if "stop-signal" in p.changed:
        config["StopSignal"] = v["stop-signal"]
    if "stop-timeout" in p.changed:
        config["StopTimeout"] = _int("stop-timeout", v["stop-timeout"])

    restart = parse_restart(v["restart"])
    if v["rm"] and restart["Name"] not in ("", "no"):
        raise FlagError("conflicting options: cannot specify both --restart and --rm")
    swap = v["memory-swap"]
    swappiness = _int("memory-swappiness", v["memory-swappiness"])
    if swappiness != -1 and not 0 <= swappiness <= 100:
        raise FlagError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
    oom = _int("oom-score-adj", v["oom-score-adj"])
    if not -1000 <= oom <= 1000:
        raise FlagError(f"invalid value: {oom}. Valid oom-score-adj range is -1000 to 1000")
    cap_add, cap_drop = effective_caps(v["cap-add"], v["cap-drop"])
    log_opts = _kv_map(v["log-opt"])
    if log_opts and not v["log-driver"]:
        raise FlagError("invalid logging opts for driver ")
    tmpfs = {}
    for t in v["tmpfs"]:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    network = v["network"] or v["net"] or "default"
    from dockyard.cli.mountflags import split_volumes
    binds, volumes = split_volumes(v["volume"])
    if volumes:
        config["Volumes"] = volumes
    host: dict[str, Any] = {
        "Binds": binds or None, "ContainerIDFile": v["cidfile"],
        "LogConfig": {"Type": v["log-driver"], "Config": log_opts},
        "NetworkMode": network, "PortBindings": {}, "RestartPolicy": restart,
        "AutoRemove": v["rm"], "VolumeDriver": v["volume-driver"],
        "VolumesFrom": v["volumes-from"] or None, "CapAdd": cap_add, "CapDrop": cap_drop,
        "CgroupnsMode": v["cgroupns"], "Dns": v["dns"], "DnsOptions": v["dns-option"],
        "DnsSearch": v["dns-search"], "ExtraHosts": v["add-host"] or None,
        "GroupAdd": v["group-add"] or None, "IpcMode": v["ipc"], "Cgroup": "",
        "Links": v["link"] or None, "OomScoreAdj": oom, "PidMode": v["pid"],
        "Privileged": v["privileged"], "PublishAllPorts": False,
        "ReadonlyRootfs": v["read-only"],
        "SecurityOpt": parse_security_opts(v["security-opt"]) or None,
        "StorageOpt": _kv_map(v["storage-opt"]) or None,
        "Tmpfs": tmpfs or None, "UTSMode": v["uts"], "UsernsMode": v["userns"],
        "ShmSize": ram_in_bytes(v["shm-size"], "--shm-size") if v["shm-size"] else 0,
        "Sysctls": _kv_map(v["sysctl"]) or None, "Runtime": v["runtime"],
        "Isolation": v["isolation"],
        "CpuShares": _int("cpu-shares", v["cpu-shares"]),
        "Memory": ram_in_bytes(v["memory"], "-m, --memory") if v["memory"] else 0,
        "NanoCpus": nano_cpus(v["cpus"]) if v["cpus"] else 0,
        "CgroupParent": v["cgroup-parent"], "BlkioWeight": _int("blkio-weight",
                                                                 v["blkio-weight"]),
        "BlkioWeightDevice": [parse_weight_device(d) for d in v["blkio-weight-device"]],
        "BlkioDeviceReadBps": [parse_throttle_device(d) for d in v["device-read-bps"]],
        "BlkioDeviceWriteBps": [parse_throttle_device(d) for d in v["device-write-bps"]],
        "BlkioDeviceReadIOps": [parse_throttle_device(d, iops=True)
                                for d in v["device-read-iops"]],
        "BlkioDeviceWriteIOps": [parse_throttle_device(d, iops=True)
                                 for d in v["device-write-iops"]],
        "CpuPeriod": _int("cpu-period", v["cpu-period"]),
        "CpuQuota": _int("cpu-quota", v["cpu-quota"]),
        "CpusetCpus": v["cpuset-cpus"], "CpusetMems": v["cpuset-mems"],
        "Devices": [parse_device(d) for d in v["device"]],
        "DeviceCgroupRules": v["device-cgroup-rule"] or None,
        "MemoryReservation": (ram_in_bytes(v["memory-reservation"], "--memory-reservation")
                              if v["memory-reservation"] else 0),
        "MemorySwap": -1 if swap == "-1" else (ram_in_bytes(swap, "--memory-swap") if swap else 0),
        "MemorySwappiness": None if swappiness == -1 else swappiness,
        "OomKillDisable": v["oom-kill-disable"],
        "PidsLimit": (_int("pids-limit", v["pids-limit"])
                      if "pids-limit" in p.changed else None),
        "Ulimits": [parse_ulimit(u) for u in v["ulimit"]],
        "Mounts": [_mount(m) for m in v["mount"]] or None,
    }
    if "init" in p.changed:
        host["Init"] = v["init"]
    _network_flags(v, network, config, host)
    endpoints: dict[str, Any] = {}
    epc: dict[str, Any] = {}
    if v["network-alias"]:
        epc["Aliases"] = v["network-alias"]
    if v["ip"] or v["ip6"]:
        epc["IPAMConfig"] = {"IPv4Address": v["ip"], "IPv6Address": v["ip6"]}
    if v["mac-address"]:
        epc["MacAddress"] = v["mac-address"]
    if epc:
        endpoints[network] = epc
    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


def _network_flags(v: dict[str, Any], network: str, config: dict, host: dict) -> None:
    """-p/--publish, -P, --add-host, --dns: docker's client-side checks (network/ports.py is
    pure parsing, cheap to import)."""
    from dockyard.errors import InvalidArgument
    from dockyard.network.ports import parse_expose, parse_publish_list

    try:
        exposed, bindings = parse_publish_list(v["publish"])
        for e in v["expose"]:
            exposed.update({k: {} for k in parse_expose(e)})
    except InvalidArgument as e:
        raise FlagError(f'invalid argument "{" ".join(v["publish"])}" for "-p, --publish" '
                        f"flag: {e}") from None
    if exposed:
        config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}), **exposed}
    host["PortBindings"] = bindings
    host["PublishAllPorts"] = v["publish-all"]
    for entry in v["add-host"]:
        name, sep, addr = entry.partition(":")
        if not sep or not name or not addr:
            raise FlagError(f'invalid argument "{entry}" for "--add-host" flag: bad format '
                            f"for add-host: {entry!r}")
    if network.startswith("container:") and (v["publish"] or v["publish-all"]):
        raise FlagError("conflicting options: port publishing and the container type "
                        "network mode")


def _mount(spec: str) -> dict[str, Any]:
    """--mount (all of docker's keys: cli/mountflags.py)."""
    from dockyard.cli.mountflags import parse_mount
    return parse_mount(spec)


# -- run / create -------------------------------------------------------------------------

def _parse_run(verb: str, argv: list[str]) -> tuple[Parsed, dict[str, Any]]:
    p = parse_flags(argv, RUN_FLAGS, interspersed=False)
    if not p.args:
        raise FlagError(f"'dockyard {verb}' requires at least 1 argument.")
    try:
        return p, create_body(p, p.args[0], p.args[1:])
    except FlagError as e:  # a bad flag value gets the usage; other errors do not
        if str(e).startswith("invalid argument "):
            raise
        raise StatusError(125, str(e)) from None


def run(argv: list[str], ctx) -> int:
    try:
        p, body = _parse_run("run", argv)
    except FlagError as e:
        return _usage("run", RUN_USAGE, e)
    except StatusError as e:
        _report("run", e.message)
        return e.status
    detach = p["detach"]
    if detach:
        if p["attach"]:
            _report("run", "Conflicting options: -a and -d")
            return 125
        body.update(AttachStdin=False, AttachStdout=False, AttachStderr=False,
                    StdinOnce=False)
    elif body["AttachStdin"] and body["Tty"]:
        from dockyard.cli.tty import is_tty

        if not is_tty(0):
            _report("run", "the input device is not a TTY")
            return 1
    client = _client(ctx)
    try:
        cid = create_container(client, body, p["name"], p["pull"], p["quiet"], p["platform"])
        if p["cidfile"]:
            with open(p["cidfile"], "w") as f:
                f.write(cid)
        if detach:
            try:
                client.post(f"/containers/{cid}/start")
            except DockyardError as e:
                msg = _daemon_error(e)
                raise StatusError(start_error_status(msg), msg) from None
            print(cid)
            return 0
        attach = {"stdin": body["AttachStdin"], "stdout": body["AttachStdout"],
                  "stderr": body["AttachStderr"]}
        return attach_and_run(client, cid, attach, body["Tty"], body["HostConfig"]["AutoRemove"],
                              p["sig-proxy"], p["detach-keys"])
    except StatusError as e:
        _report("run", e.message)
        return e.status
    except DockyardError as e:
        _report("run", _daemon_error(e))
        return 125
    except OSError as e:
        _report("run", str(e))
        return 125
    finally:
        client.close()


def create(argv: list[str], ctx) -> int:
    try:
        p, body = _parse_run("create", argv)
    except FlagError as e:
        return _usage("create", RUN_USAGE, e)
    except StatusError as e:
        _report("create", e.message)
        return e.status
    client = _client(ctx)
    try:
        cid = create_container(client, body, p["name"], p["pull"], p["quiet"], p["platform"])
        if p["cidfile"]:
            with open(p["cidfile"], "w") as f:
                f.write(cid)
    except DockyardError as e:
        _report("create", _daemon_error(e))
        return 125
    finally:
        client.close()
    print(cid)
    return 0


# -- start --------------------------------------------------------------------------------

START_FLAGS = [Flag("attach", short="a"), Flag("interactive", short="i"),
               Flag("detach-keys", VALUE, default="")]


def start(argv: list[str], ctx) -> int:
    try:
        p = parse_flags(argv, START_FLAGS)
        if not p.args:
            raise FlagError("'dockyard start' requires at least 1 argument.")
    except FlagError as e:
        return _usage("start", "[OPTIONS] CONTAINER [CONTAINER...]", e)
    client = _client(ctx)
    try:
        if p["attach"] or p["interactive"]:
            if len(p.args) > 1:
                print("you cannot start and attach multiple containers at once",
                      file=sys.stderr)
                return 1
            info = client.get(f"/containers/{p.args[0]}/json")
            cfg = info["Config"]
            attach = {"stdin": bool(p["interactive"] and cfg.get("OpenStdin")),
                      "stdout": True, "stderr": True}
            try:
                return attach_and_run(client, info["Id"], attach, bool(cfg.get("Tty")),
                                      bool(info["HostConfig"].get("AutoRemove")), True,
                                      p["detach-keys"])
            except StatusError as e:
                print(e.message, file=sys.stderr)
                return 1
        failed = []
        for name in p.args:
            try:
                client.post(f"/containers/{name}/start")
                print(name)
            except DockyardError as e:
                print(_daemon_error(e), file=sys.stderr)
                failed.append(name)
        if failed:
            print(f"Error: failed to start containers: {', '.join(failed)}", file=sys.stderr)
            return 1
        return 0
    finally:
        client.close()
