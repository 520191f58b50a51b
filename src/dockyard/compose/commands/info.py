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
    # docker compose walks Go maps here (no set order); ours: sorted, and --services
    # lists each service after its dependencies, as docker compose always does
    if p["services"]:
        print("\n".join(_dependency_order(project))) if project.services else None
        return 0
    if p["volumes"]:
        used = _used_resources(project, "volumes")
        print("\n".join(used)) if used else None
        return 0
    if p["networks"]:
        used = _used_resources(project, "networks")
        print("\n".join(used)) if used else None
        return 0
    if p["images"]:
        names = planner.with_dependencies(project, p.args) if p.args else project.services
        for name in sorted(names):
            print(convert.image_name(project, name, project.services[name]))
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
        for n in sorted(names):  # docker compose sorts them
            print(f"{n} {planner.config_hash(project.service(n))}")
        return 0
    from dockyard.compose import gojson

    # the project as docker compose models it (field order, Go's encodings), with the
    # resources the services use (all of them with --all-resources)
    doc: dict[str, Any] = {"name": project.name, "services": {
        n: gojson.service_model(project.services[n]) for n in sorted(project.services)
        if not p.args or n in p.args}}
    for kind in ("networks", "volumes", "secrets", "configs"):
        defined = getattr(project, kind)
        keys = sorted(defined) if cctx.opts.get("all-resources") else \
            _used_resources(project, kind)
        if not keys:
            continue
        if kind in ("secrets", "configs"):
            doc[kind] = {k: gojson.file_object_model(kind, k, defined[k], project.name)
                         for k in keys}
        else:
            model = gojson.network_model if kind == "networks" else gojson.volume_model
            doc[kind] = {k: model(defined[k]) for k in keys}
    doc.update(project.extensions)
    if p["format"] == "json":
        text = gojson.dumps(dict(sorted(doc.items())), indent=2)  # no newline: compose's
    elif p["format"] == "yaml":
        from dockyard.compose import goyaml

        text = goyaml.dumps(doc)
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


def _dependency_order(project) -> list[str]:
    """Services by name, each after the services it depends on."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in project.services:
            return
        seen.add(name)
        for dep in sorted(planner.dependencies(project.services[name])):
            visit(dep)
        out.append(name)

    for name in sorted(project.services):
        visit(name)
    return out


def _used_resources(project, kind: str) -> list[str]:
    """The networks, volumes, secrets or configs the enabled services use (docker
    compose leaves the others out of its project unless --all-resources), sorted."""
    used: set[str] = set()
    for svc in project.services.values():
        if kind == "networks":
            used.update(svc.get("networks") or {})
        elif kind in ("secrets", "configs"):
            used.update(ref.get("source") for ref in svc.get(kind) or [])
        else:
            used.update(v.get("source") for v in svc.get("volumes") or []
                        if isinstance(v, dict) and v.get("type") == "volume"
                        and v.get("source"))
    return sorted(n for n in getattr(project, kind) if n in used)


# -- ps ---------------------------------------------------------------------------------------

def _ps_row(project: str, c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    labels = c.get("Labels") or {}
    mounts = c.get("Mounts") or []
    cmd = c.get("Command") or ""
    return {
        "ID": c["Id"][:12] if trunc else c["Id"], "Name": short_name(c),
        "Names": short_name(c), "Image": c.get("Image", ""),
        "Command": _go_quote(_ellipsis(cmd, 20) if trunc else cmd),
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


# the docker CLI's headers for docker compose's container fields; the fields without one
# head their column with what Go's template prints for a missing map key
PS_COLUMNS = {"ID": "CONTAINER ID", "Name": "NAME", "Project": "PROJECT",
              "Service": "SERVICE", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS",
              **{k: "<no value>" for k in ("Names", "Health", "ExitCode", "Publishers",
                                           "Mounts", "LocalVolumes", "Networks")}}
PS_TABLE = "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t" \
           "{{.Status}}\t{{.Ports}}"


def _project_containers(cctx, project: str, all: bool, oneoff: bool,
                        services: list[str] | None = None) -> list[dict[str, Any]]:
    """The containers docker compose lists: the project's, with a config hash, one-off
    ones only when asked, stopped ones only with `all`."""
    labels = [f"{convert.PROJECT}={project}", convert.CONFIG_HASH]
    if services and len(services) == 1:
        labels.append(f"{convert.SERVICE}={services[0]}")
    if not oneoff:
        labels.append(f"{convert.ONEOFF}=False")
    found = cctx.backend.client.get("/containers/json", params={
        "all": all, "filters": {"label": labels}})
    if services:
        found = [c for c in found if (c.get("Labels") or {}).get(convert.SERVICE) in services]
    return found


def _go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out) + '"'


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\v": "\\v"}


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _ps_template_row(project: str, c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """A container as the docker CLI's --format templates see it in docker compose."""
    row = _ps_row(project, c, trunc)
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = next(([n] for n in names if "/" not in n), names)
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    row.update({  # the CLI's fields: every name, mount names shortened
        "Names": ",".join(names),
        "Mounts": ",".join(_ellipsis(m, 15) if trunc else m for m in mounts),
    })
    return row


def ps(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("all", short="a"), Flag("quiet", short="q"),
                           Flag("services"), Flag("status", LIST), Flag("format", VALUE,
                                                                        default="table"),
                           Flag("filter", LIST), Flag("no-trunc"), Flag("orphans",
                                                                        default=True)])
    statuses = list(p["status"])
    for f in p["filter"]:
        key, eq, value = f.partition("=")
        if not eq:
            raise FlagError("arguments to --filter should be in form KEY=VAL")
        if key != "status":
            raise ComposeError(f"unknown filter {key}" if key != "source"
                               else "not implemented")
        statuses.append(value)
    project = cctx.project(required=False)
    for s in p.args:
        if project.config_files:
            project.service(s)
    services = list(p.args)
    if not services and not p["orphans"] and project.config_files:
        services = list(project.services)
    everything = p["all"] or bool(statuses)
    cons = _project_containers(cctx, project.name, all=everything, oneoff=everything,
                               services=services or None)
    if statuses:
        cons = [c for c in cons if c.get("State") in statuses]
    cons.sort(key=short_name)
    if p["quiet"]:
        for c in cons:
            print(c["Id"])
        return 0
    if p["services"]:
        print("\n".join(dict.fromkeys((c.get("Labels") or {}).get(convert.SERVICE, "")
                                      for c in cons)))
        return 0
    fmt = p["format"]
    if fmt == "json":
        rows = [_ps_row(project.name, c, not p["no-trunc"]) for c in cons]
        for r in rows:  # docker compose's fields, as Go writes them
            print(json.dumps({k: v for k, v in sorted(r.items()) if k != "Created"},
                             separators=(",", ":"), ensure_ascii=False))
        return 0
    if fmt in ("table", ""):
        fmt = PS_TABLE
    _table([_ps_template_row(project.name, c, not p["no-trunc"]) for c in cons], fmt,
           PS_COLUMNS)
    return 0


def _table(rows: list[dict[str, Any]], fmt: str, columns: dict[str, str],
           minwidth: int = 10) -> None:
    """The docker CLI's formatter: a template per row; a `table` template gets a header
    and columns aligned by a tabwriter (minwidth 10, padding 3)."""
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
    print(tabwriter(out, minwidth, 3), end="")


# -- ls ---------------------------------------------------------------------------------------

def ls(argv: list[str], cctx) -> int:
    import re

    p = parse_flags(argv, [Flag("all", short="a"), Flag("quiet", short="q"),
                           Flag("format", VALUE, default="table"), Flag("filter", LIST)])
    names: list[str] = []
    for f in p["filter"]:
        key, eq, value = f.partition("=")
        if not eq:
            raise FlagError(f"bad format of filter (expected name=value): {f}")
        if key != "name":
            raise ComposeError(f"invalid filter '{key}'")
        names.append(value)
    # the containers `docker ps` shows (all of them with -a), by project
    projects: dict[str, list[dict[str, Any]]] = {}
    for c in cctx.backend.client.get("/containers/json", params={
            "all": p["all"], "filters": {"label": [convert.PROJECT, convert.CONFIG_HASH]}}):
        projects.setdefault(c["Labels"][convert.PROJECT], []).append(c)
    rows = []
    for name, cons in sorted(projects.items()):
        if names and not any(_matches(n, name, re) for n in names):
            continue
        counts: dict[str, int] = {}
        for c in cons:
            counts[c.get("State", "")] = counts.get(c.get("State", ""), 0) + 1
        files = dict.fromkeys(f for c in cons for f in
                              (c.get("Labels") or {}).get(convert.CONFIG_FILES, "").split(","))
        status = ", ".join(f"{s}({n})" for s, n in sorted(counts.items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": ",".join(files)})
    if p["quiet"]:
        for r in rows:
            print(r["Name"])
    elif p["format"].lower() == "json":
        print(json.dumps(rows, separators=(",", ":"), ensure_ascii=False))
    elif p["format"].lower() == "{{json.}}":
        for r in rows:
            print(json.dumps(r, separators=(",", ":"), ensure_ascii=False))
    else:
        fmt = p["format"]
        if fmt.lower() in ("table", "pretty", ""):
            fmt = "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}"
            minwidth = 20  # docker compose's own table
        else:
            minwidth = 10  # a template of ours (docker compose has none)
        _table(rows, fmt, {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"},
               minwidth)
    return 0


def _matches(pattern: str, name: str, re) -> bool:
    """docker's filters.Match: the value is a regular expression, searched for."""
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


# -- top, port --------------------------------------------------------------------------------

def top(argv: list[str], cctx) -> int:
    """One table for all the running containers, by container name: SERVICE and # (the
    replica) first, then the columns of `docker top`, CMD last."""
    from dockyard.cli.container import tabwriter

    p = parse_flags(argv, [])
    project = cctx.project(required=False)
    cons = _project_containers(cctx, project.name, all=False, oneoff=True,
                               services=p.args or None)
    cons.sort(key=short_name)
    titles: list[str] = ["SERVICE", "#"]
    entries: list[dict[str, str]] = []
    for c in cons:
        resp = cctx.backend.client.get(f"/containers/{c['Id']}/top")
        labels = c.get("Labels") or {}
        cols = [str(t) for t in resp.get("Titles") or []]
        for t in cols:
            if t not in titles:
                titles.append(t)
        for proc in resp.get("Processes") or []:
            entry = {"SERVICE": labels.get(convert.SERVICE, short_name(c)),
                     "#": labels.get(convert.NUMBER, "")}
            entry.update(zip(cols, (str(x) for x in proc)))
            entries.append(entry)
    if not entries:
        return 0
    if "CMD" in titles:
        titles.remove("CMD")
        titles.append("CMD")
    rows = [titles] + [[e.get(t, "-") for t in titles] for e in entries]
    sys.stdout.write(tabwriter(rows, 4, 2))
    return 0


def port(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("protocol", VALUE, default="tcp"),
                           Flag("index", VALUE, default="0")])
    if len(p.args) < 2:
        raise FlagError(f"requires at least 2 arg(s), only received {len(p.args)}")
    service, private = p.args[:2]
    if not (private.isascii() and private.isdigit()) or int(private) > 65535:
        why = "value out of range" if private.isdigit() else "invalid syntax"
        raise ComposeError(f'strconv.ParseUint: parsing "{private}": {why}')
    protocol = p["protocol"].lower()
    try:
        index = int(p["index"] or 0)
    except ValueError:
        raise FlagError(f'invalid argument "{p["index"]}" for "--index" flag: '
                        f'strconv.ParseInt: parsing "{p["index"]}": invalid syntax') from None
    project = cctx.project(required=False)
    cons = _project_containers(cctx, project.name, all=False, oneoff=True,
                               services=[service])
    if index > 0:
        cons = [c for c in cons if planner.number(c) == index]
    if not cons:
        raise ComposeError(f'service "{service}" is not running'
                           + (f" container #{index}" if index > 0 else ""))
    # by container number, one-off containers last
    cons.sort(key=lambda c: ((c.get("Labels") or {}).get(convert.ONEOFF) == "True",
                             planner.number(c)))
    ports = cons[0].get("Ports") or []
    for pt in ports:
        if pt.get("PrivatePort") == int(private) and pt.get("Type") == protocol:
            print(f"{pt.get('IP', '')}:{pt.get('PublicPort', 0)}")
            return 0
    raise ComposeError(f"no port {int(private)}/{protocol} for container "
                       f"{(cons[0].get('Names') or [''])[0].lstrip('/')}: "
                       + ", ".join(f"{pt.get('PublicPort', 0)}/{pt.get('Type', '')}"
                                   for pt in ports))


# -- events, version --------------------------------------------------------------------------

def events(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("json"), Flag("since", VALUE, default=""),
                           Flag("until", VALUE, default="")])
    project = cctx.project(required=False)
    filters = {"label": [f"{convert.PROJECT}={project.name}"], "type": ["container"]}
    params = {"filters": filters, "since": p["since"] or None, "until": p["until"] or None}
    try:
        for msg in cctx.backend.client.stream_json("GET", "/events", params=params):
            if (msg.get("Type") or msg.get("type") or "container") != "container":
                continue
            attrs = dict((msg.get("Actor") or {}).get("Attributes") or {})
            if attrs.get(convert.ONEOFF) == "True":
                continue
            service = attrs.get(convert.SERVICE, "")
            if p.args and service not in p.args:
                continue
            attrs = {k: v for k, v in sorted(attrs.items())
                     if not k.startswith("com.docker.compose.")}
            ts = msg.get("timeNano") or int(msg.get("time", 0) * 10**9)
            action = msg.get("Action") or msg.get("status", "")
            cid = (msg.get("Actor") or {}).get("ID") or msg.get("id", "")
            if p["json"]:
                from dockyard.cli.formatter import _go_json

                # Go's json.Marshal of a map: keys sorted, compact, HTML escaped
                print(_go_json({"action": action, "attributes": attrs, "id": cid,
                                "service": service, "time": _rfc3339_nano(ts),
                                "type": "container"}), flush=True)
            else:
                local = time.localtime(ts // 10**9)
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", local) + \
                    f".{ts % 10**9 // 1000:06d}"
                shown = ", ".join(f"{k}={v}" for k, v in attrs.items())
                # the event's String() ends with a newline, and Println adds one
                print(f"{stamp} container {action} {cid} ({shown})\n", flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _rfc3339_nano(ns: int) -> str:
    """Go's time.Time in JSON (RFC 3339 with nanoseconds, zeros trimmed), local time."""
    local = time.localtime(ns // 10**9)
    frac = f"{ns % 10**9:09d}".rstrip("0")
    offset = local.tm_gmtoff or 0
    zone = "Z" if offset == 0 else \
        f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + (f".{frac}" if frac else "") + zone


def version(argv: list[str], cctx) -> int:
    """docker compose's layout, our version."""
    p = parse_flags(argv, [Flag("short"), Flag("format", VALUE, "f", "")])
    if p["short"]:
        print(__version__.removeprefix("v"))
    elif p["format"] == "json":
        print(json.dumps({"version": f"v{__version__}"}, separators=(",", ":")))
    else:
        print(f"Dockyard Compose version v{__version__}")
    return 0
