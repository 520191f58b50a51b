"""config (convert), ps, ls, top, port, events, version."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from dockyard import __version__
from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, display_ports, parse_flags
from dockyard.compose import convert, planner
from dockyard.compose.backend import short_name
from dockyard.compose.errors import ComposeError


def _yaml(doc: Any) -> str:
    import yaml

    from dockyard.compose.gojson import Float32

    class Dumper(yaml.SafeDumper):
        pass

    def str_repr(dumper: Any, data: str) -> Any:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, str_repr)
    Dumper.add_representer(Float32, lambda dumper, data: dumper.represent_scalar(
        "tag:yaml.org,2002:float", data.go_text()))
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def config(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [
        Flag("quiet", short="q"), Flag("services"), Flag("volumes"), Flag("networks"),
        Flag("images"), Flag("profiles"), Flag("hash", VALUE, default=""),
        Flag("format", VALUE, default="yaml"), Flag("output", VALUE, "o", ""),
        Flag("no-interpolate"), Flag("no-normalize"), Flag("resolve-image-digests"),
        Flag("no-path-resolution"), Flag("no-consistency"), Flag("environment"),
        Flag("variables")])
    project = cctx.project(enabled=p.args)
    if p["quiet"]:
        return 0
    if p["services"]:
        print("\n".join(project.services))
        return 0
    if p["volumes"]:
        print("\n".join(project.volumes)) if project.volumes else None
        return 0
    if p["networks"]:
        print("\n".join(project.networks)) if project.networks else None
        return 0
    if p["images"]:
        for name, svc in project.services.items():
            print(convert.image_name(project, name, svc))
        return 0
    if p["profiles"]:
        seen = sorted({pr for s in [*project.services.values(), *project.disabled.values()]
                       for pr in s.get("profiles") or []})
        print("\n".join(seen)) if seen else None
        return 0
    if p["environment"]:
        for k, v in sorted(project.environment.items()):
            print(f"{k}={v}")
        return 0
    if p["hash"]:
        names = list(project.services) if p["hash"] == "*" else p["hash"].split(",")
        for n in names:
            print(f"{n} {planner.config_hash(project.service(n))}")
        return 0
    from dockyard.compose import gojson

    doc = project.to_dict()
    # services as docker compose models them (field order, Go's encodings)
    doc["services"] = {n: gojson.service_model(project.services[n]) for n in doc["services"]
                       if not p.args or n in p.args}
    if p["format"] == "json":
        text = gojson.dumps(doc, indent=2) + "\n"
    elif p["format"] == "yaml":
        text = _yaml(doc)
    else:
        raise FlagError(f"unsupported format {p['format']!r}: json or yaml")
    if not p["no-interpolate"]:
        text = text.replace("$", "$$")  # what it prints reads back as the same project
    if p["output"]:
        with open(p["output"], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


# -- ps ---------------------------------------------------------------------------------------

def _ps_row(project: str, c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    labels = c.get("Labels") or {}
    mounts = c.get("Mounts") or []
    cmd = c.get("Command") or ""
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return {
        "ID": c["Id"][:12] if trunc else c["Id"], "Name": short_name(c),
        "Names": short_name(c), "Image": c.get("Image", ""), "Command": f'"{cmd}"',
        "Project": labels.get(convert.PROJECT, ""), "Service": labels.get(convert.SERVICE, ""),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z",
                                   time.localtime(c.get("Created", 0))),
        "Created": c.get("Created", 0),
        "RunningFor": _ago(c.get("Created", 0)), "State": c.get("State", ""),
        "Status": c.get("Status", ""), "Health": _health(c.get("Status", "")),
        "ExitCode": _exit_code(c.get("Status", "")),
        "Ports": display_ports(c.get("Ports") or []), "Labels": ",".join(
            f"{k}={v}" for k, v in labels.items()),
        "Publishers": [{"URL": pt.get("IP", ""), "TargetPort": pt.get("PrivatePort"),
                        "PublishedPort": pt.get("PublicPort", 0),
                        "Protocol": pt.get("Type", "tcp")} for pt in c.get("Ports") or []],
        "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks")
                                     or {})),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in mounts),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Driver") == "local")),
        "Size": "0B",  # as docker compose's (no size asked of the daemon)
    }


def _ago(ts: float) -> str:
    from dockyard.units import since

    return since(ts) if ts else ""


def _health(status: str) -> str:
    for h in ("healthy", "unhealthy", "starting"):
        if f"({h})" in status or f"(health: {h})" in status:
            return h
    return ""


def _exit_code(status: str) -> int:
    if status.startswith("Exited ("):
        try:
            return int(status[8:status.index(")")])
        except ValueError:
            return 0
    return 0


PS_COLUMNS = {"Name": "NAME", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
              "Service": "SERVICE", "RunningFor": "CREATED", "CreatedAt": "CREATED",
              "Status": "STATUS", "State": "STATE", "Ports": "PORTS", "ID": "CONTAINER ID",
              "Project": "PROJECT", "Health": "HEALTH", "ExitCode": "EXIT CODE"}
PS_TABLE = "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t" \
           "{{.Status}}\t{{.Ports}}"


def ps(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("all", short="a"), Flag("quiet", short="q"),
                           Flag("services"), Flag("status", LIST), Flag("format", VALUE,
                                                                        default="table"),
                           Flag("filter", LIST), Flag("no-trunc"), Flag("orphans",
                                                                        default=True)])
    project = cctx.project(required=False)
    for s in p.args:
        if project.config_files:
            project.service(s)
    cons = cctx.backend.containers(project.name, all=True, services=p.args or None)
    if not p["all"] and not p["status"]:
        cons = [c for c in cons if c.get("State") in ("running", "paused", "restarting")]
    statuses = list(p["status"])
    for f in p["filter"]:
        key, _, value = f.partition("=")
        if key != "status":
            raise FlagError(f"invalid filter {key!r}: only status is supported")
        statuses.append(value)
    if statuses:
        cons = [c for c in cons if c.get("State") in statuses]
    if not p["orphans"] and project.config_files:
        cons = [c for c in cons if (c.get("Labels") or {}).get(convert.SERVICE)
                in project.services]
    if p["services"]:
        seen = dict.fromkeys((c.get("Labels") or {}).get(convert.SERVICE, "") for c in cons)
        for s in seen:
            print(s)
        return 0
    if p["quiet"]:
        for c in cons:
            print(c["Id"])
        return 0
    rows = [_ps_row(project.name, c, not p["no-trunc"]) for c in cons]
    fmt = p["format"]
    if fmt == "json":
        for r in rows:  # docker compose's fields, as Go writes them
            print(json.dumps({k: v for k, v in sorted(r.items()) if k != "Created"},
                             separators=(",", ":"), ensure_ascii=False))
        return 0
    if fmt == "table":
        fmt = PS_TABLE
    _table(rows, fmt, PS_COLUMNS)
    return 0


def _table(rows: list[dict[str, Any]], fmt: str, columns: dict[str, str]) -> None:
    from dockyard.cli.container import tabwriter
    from dockyard.cli.formatter import Template

    if fmt.startswith("table") and not fmt.startswith("table "):
        fmt = "table " + fmt[5:]
    template = Template(fmt)
    if not template.table:
        for r in rows:
            print(template.render(r))
        return
    out = [template.header(columns).split("\t")]
    out += [template.render(r).split("\t") for r in rows]
    print(tabwriter(out, 3, 3), end="")


# -- ls ---------------------------------------------------------------------------------------

def ls(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("all", short="a"), Flag("quiet", short="q"),
                           Flag("format", VALUE, default="table"), Flag("filter", LIST)])
    rows = []
    for name, cons in sorted(cctx.backend.projects().items()):
        counts: dict[str, int] = {}
        for c in cons:
            counts[c.get("State", "")] = counts.get(c.get("State", ""), 0) + 1
        if not p["all"] and not counts.get("running"):
            continue
        files = (cons[0].get("Labels") or {}).get(convert.CONFIG_FILES, "")
        status = ", ".join(f"{s}({n})" for s, n in sorted(counts.items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": files})
    for f in p["filter"]:
        key, _, value = f.partition("=")
        if key != "name":
            raise FlagError(f"invalid filter {key!r}: only name is supported")
        rows = [r for r in rows if value in r["Name"]]
    if p["quiet"]:
        for r in rows:
            print(r["Name"])
    elif p["format"] == "json":
        print(json.dumps(rows))
    else:
        fmt = p["format"]
        if fmt == "table":
            fmt = "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}"
        _table(rows, fmt, {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"})
    return 0


# -- top, port --------------------------------------------------------------------------------

def top(argv: list[str], cctx) -> int:
    from dockyard.cli.container import tabwriter

    p = parse_flags(argv, [])
    project = cctx.project(required=False)
    cons = cctx.backend.containers(project.name, all=False, services=p.args or None)
    first = True
    for c in cons:
        if c.get("State") != "running":
            continue
        resp = cctx.backend.client.get(f"/containers/{c['Id']}/top")
        if not first:
            print()
        first = False
        print(short_name(c))
        rows = [resp.get("Titles") or []] + (resp.get("Processes") or [])
        print(tabwriter([[str(x) for x in r] for r in rows], 0, 3), end="")
    return 0


def port(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("protocol", VALUE, default="tcp"),
                           Flag("index", VALUE, default="0")])
    if len(p.args) != 2:
        raise FlagError("requires exactly 2 arguments: SERVICE PRIVATE_PORT")
    service, private = p.args
    project = cctx.project(required=False)
    cons = cctx.backend.containers(project.name, all=False, services=[service])
    index = int(p["index"] or 0)
    if index:
        cons = [c for c in cons if planner.number(c) == index]
    if not cons:
        raise ComposeError(f"no container found for service \"{service}\"")
    for pt in cons[0].get("Ports") or []:
        if str(pt.get("PrivatePort")) == private and pt.get("Type", "tcp") == p["protocol"] \
                and pt.get("PublicPort"):
            print(f"{pt.get('IP') or '0.0.0.0'}:{pt['PublicPort']}")
            return 0
    raise ComposeError(f"no port {private}/{p['protocol']} for container "
                       f"{short_name(cons[0])}")


# -- events, version --------------------------------------------------------------------------

def events(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("json"), Flag("since", VALUE, default=""),
                           Flag("until", VALUE, default="")])
    project = cctx.project(required=False)
    filters = {"label": [f"{convert.PROJECT}={project.name}"], "type": ["container"]}
    params = {"filters": filters, "since": p["since"] or None, "until": p["until"] or None}
    try:
        for msg in cctx.backend.client.stream_json("GET", "/events", params=params):
            attrs = dict((msg.get("Actor") or {}).get("Attributes") or {})
            service = attrs.get(convert.SERVICE, "")
            if p.args and service not in p.args:
                continue
            ts = msg.get("timeNano") or int(msg.get("time", 0) * 10**9)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts / 1e9)) + \
                f".{ts % 10**9:09d}" + time.strftime("%z")
            action = msg.get("Action") or msg.get("status", "")
            cid = (msg.get("Actor") or {}).get("ID") or msg.get("id", "")
            if p["json"]:
                print(json.dumps({"time": stamp, "type": "container", "action": action,
                                  "id": cid, "service": service, "attributes": attrs}),
                      flush=True)
            else:
                shown = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())
                                  if not k.startswith("com.docker.compose."))
                print(f"{stamp} container {action} {cid} ({shown})", flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def version(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("short"), Flag("format", VALUE, "f", "")])
    if p["short"]:
        print(__version__)
    elif p["format"] == "json":
        print(json.dumps({"version": f"v{__version__}"}))
    else:
        print(f"Dockyard Compose version v{__version__}")
    return 0
