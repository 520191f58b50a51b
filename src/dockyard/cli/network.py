"""`dockyard network create|ls|inspect|rm|prune|connect|disconnect`: docker's flags and
tables over the Engine API (parsing and output only)."""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from typing import Any

from dockyard.cli.common import client_for, verb_parser
from dockyard.cli.formatter import print_formatted
from dockyard.errors import DockyardError, InvalidArgument

SUBCOMMANDS = ("connect", "create", "disconnect", "inspect", "ls", "prune", "rm")
COLUMNS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
           "CreatedAt": "CREATED AT"}
LS_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


_parser = verb_parser


_client = client_for


def _path(ref: str, tail: str = "") -> str:
    return "/networks/" + urllib.parse.quote(ref, safe="") + tail


def network(argv: list[str], ctx) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard network COMMAND\n\nManage networks\n\nCommands:\n  "
              + "\n  ".join(SUBCOMMANDS))
        return 0
    sub, rest = argv[0], argv[1:]
    handlers = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm,
                "remove": rm, "prune": prune, "connect": connect, "disconnect": disconnect}
    if sub not in handlers:
        print(f"dockyard: 'network {sub}' is not a dockyard command.", file=sys.stderr)
        return 1
    return handlers[sub](rest, ctx)


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {item}")
        out[key] = value
    return out


def _filters(specs: list[str]) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        out.setdefault(key.strip(), {})[value] = True
    return out


# -- create ---------------------------------------------------------------------------------

def ipam_configs(subnets: list[str], gateways: list[str], ranges: list[str],
                 aux: list[str]) -> list[dict]:
    """docker's consolidateIpam: each --gateway/--ip-range/--aux-address goes with the
    --subnet that contains it."""
    import ipaddress

    def net(text: str, what: str):
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid {what}: {text}") from None

    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
    configs = [{"Subnet": s} for s in subnets]
    parsed = [net(s, "subnet") for s in subnets]
    for r in ranges:
        rn = net(r, "ip-range")
        match = [i for i, s in enumerate(parsed) if s.version == rn.version
                 and rn.subnet_of(s)]  # type: ignore[arg-type]
        if not match:
            raise InvalidArgument(f"no matching subnet for range {r}")
        if "IPRange" in configs[match[0]]:
            raise InvalidArgument(f"cannot configure multiple ranges ({r}, "
                                  f"{configs[match[0]]['IPRange']}) on the same subnet")
        configs[match[0]]["IPRange"] = r
    for g in gateways:
        try:
            addr = ipaddress.ip_address(g)
        except ValueError:
            raise InvalidArgument(f"invalid gateway: {g}") from None
        match = [i for i, s in enumerate(parsed) if addr in s]
        if not match:
            raise InvalidArgument(f"no matching subnet for gateway {g}")
        if "Gateway" in configs[match[0]]:
            raise InvalidArgument(f"cannot configure multiple gateways ({g}, "
                                  f"{configs[match[0]]['Gateway']}) for the same subnet")
        configs[match[0]]["Gateway"] = g
    for key, value in _kv(aux, "aux-address").items():
        addr = ipaddress.ip_address(value)
        match = [i for i, s in enumerate(parsed) if addr in s]
        if not match:
            raise InvalidArgument(f"no matching subnet for aux-address {value}")
        configs[match[0]].setdefault("AuxiliaryAddresses", {})[key] = value
    return configs


def create(argv: list[str], ctx) -> int:
    p = _parser("network create", "network create [OPTIONS] NETWORK")
    p.add_argument("name")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--ipam-opt", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    args = p.parse_args(argv)
    body: dict[str, Any] = {
        "Name": args.name, "CheckDuplicate": True, "Driver": args.driver,
        "Internal": args.internal, "Attachable": args.attachable,
        "IPAM": {"Driver": args.ipam_driver, "Options": _kv(args.ipam_opt, "ipam-opt"),
                 "Config": ipam_configs(args.subnet, args.gateway, args.ip_range,
                                        args.aux_address)},
        "Options": _kv(args.opt, "option"), "Labels": _kv(args.label, "label"),
    }
    if args.ipv6:
        body["EnableIPv6"] = True
    resp = _client(ctx).post("/networks/create", body=body) or {}
    if resp.get("Warning"):
        print(f"WARNING: {resp['Warning']}", file=sys.stderr)
    print(resp.get("Id", ""))
    return 0


# -- ls / inspect ---------------------------------------------------------------------------

def _row(n: dict, no_trunc: bool) -> dict:
    created = n.get("Created") or ""
    return {"ID": n["Id"] if no_trunc else n["Id"][:12], "Name": n.get("Name", ""),
            "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
            "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
            "Internal": str(bool(n.get("Internal"))).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
            "CreatedAt": _created(created)}


def _created(text: str) -> str:
    """docker's CreatedAt column for an RFC 3339 UTC time."""
    try:
        ts = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return text
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", ts)


def ls(argv: list[str], ctx) -> int:
    p = _parser("network ls", "network ls [OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")
    args = p.parse_args(argv)
    filters = _filters(args.filter)
    nets = _client(ctx).get("/networks", params={"filters": filters or None}) or []
    rows = sorted((_row(n, args.no_trunc) for n in nets), key=lambda r: r["Name"])
    if args.quiet:
        print("".join(r["ID"] + "\n" for r in rows), end="")
        return 0
    print_formatted(rows, args.format or LS_FORMAT, COLUMNS)
    return 0


def inspect(argv: list[str], ctx) -> int:
    p = _parser("network inspect", "network inspect [OPTIONS] NETWORK [NETWORK...]")
    p.add_argument("networks", nargs="+")
    p.add_argument("-f", "--format")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    client = _client(ctx)
    found, status = [], 0
    for ref in args.networks:
        try:
            found.append(client.get(_path(ref)))
        except DockyardError as e:
            print(f"Error response from daemon: {e}", file=sys.stderr)
            status = 1
    if args.format:
        print_formatted(found, args.format, {})
    else:
        print(json.dumps(found, indent=4))
    return status


# -- rm / prune -----------------------------------------------------------------------------

def rm(argv: list[str], ctx) -> int:
    p = _parser("network rm", "network rm NETWORK [NETWORK...]")
    p.add_argument("networks", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    args = p.parse_args(argv)
    client = _client(ctx)
    status = 0
    for ref in args.networks:
        try:
            client.delete(_path(ref))
        except DockyardError as e:
            if args.force and "not found" in str(e):
                continue
            print(f"Error response from daemon: {e}", file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status


def prune(argv: list[str], ctx) -> int:
    p = _parser("network prune", "network prune [OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    args = p.parse_args(argv)
    if not args.force and sys.stdin.isatty():
        answer = input("WARNING! This will remove all custom networks not used by at least "
                       "one container.\nAre you sure you want to continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    report = _client(ctx).post("/networks/prune",
                               params={"filters": _filters(args.filter) or None}) or {}
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        print("".join(name + "\n" for name in deleted), end="")
    return 0


# -- connect / disconnect -------------------------------------------------------------------

def connect(argv: list[str], ctx) -> int:
    p = _parser("network connect", "network connect [OPTIONS] NETWORK CONTAINER")
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("--ip", default="")
    p.add_argument("--ip6", default="")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--link-local-ip", action="append", default=[])
    p.add_argument("--driver-opt", action="append", default=[])
    args = p.parse_args(argv)
    epc: dict[str, Any] = {"Aliases": args.alias or None, "Links": args.link or None}
    if args.ip or args.ip6 or args.link_local_ip:
        epc["IPAMConfig"] = {"IPv4Address": args.ip, "IPv6Address": args.ip6,
                             "LinkLocalIPs": args.link_local_ip or None}
    if args.driver_opt:
        epc["DriverOpts"] = _kv(args.driver_opt, "driver-opt")
    _client(ctx).post(_path(args.network, "/connect"),
                      body={"Container": args.container, "EndpointConfig": epc})
    return 0


def disconnect(argv: list[str], ctx) -> int:
    p = _parser("network disconnect", "network disconnect [OPTIONS] NETWORK CONTAINER")
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("-f", "--force", action="store_true")
    args = p.parse_args(argv)
    _client(ctx).post(_path(args.network, "/disconnect"),
                      body={"Container": args.container, "Force": args.force})
    return 0
