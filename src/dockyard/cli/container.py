"""`dockyard container ...` and docker's top-level container verbs: ps, logs, stop,
kill, restart, rm, wait, pause, unpause, rename, top, inspect, stats, prune.
Parsing and output only: everything goes through the Engine API client, so
the verbs work against any daemon (ours or dockerd). run/create/start/exec/
attach live in dockyard.cli.run.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.cli.common import client_for
from dockyard.cli.runflags import (
    LIST,
    VALUE,
    Flag,
    FlagError,
    bytes_size,
    display_ports,
    ellipsis,
    go_quote,
    parse_flags,
)
from dockyard.errors import DockyardError, NotFound
from dockyard.units import human_duration, human_size

if TYPE_CHECKING:
    from dockyard.client.api import Client

PS_COLUMNS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE", "Labels": "LABELS",
              "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
              "State": "STATE", "Container": "CONTAINER", "Name": "NAME",
              "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
              "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
PS_FORMAT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
             "{{.Ports}}\t{{.Names}}")
STATS_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


_client = client_for


def _err(e: DockyardError) -> str:
    if type(e).__name__ == "CannotConnect":
        return str(e)
    return f"Error response from daemon: {e}"


def _parse(verb: str, usage: str, argv: list[str], flags: list[Flag],
           min_args: int = 1, max_args: int | None = None):
    try:
        p = parse_flags(argv, flags)
        n = len(p.args)
        if n < min_args or (max_args is not None and n > max_args):
            if max_args == min_args:
                what = f"exactly {min_args} argument" + ("s" if min_args != 1 else "")
            elif n < min_args:
                what = f"at least {min_args} argument" + ("s" if min_args != 1 else "")
            else:
                what = f"at most {max_args} argument" + ("s" if max_args != 1 else "")
            raise FlagError(f"dockyard: '{verb}' requires {what}.")
    except FlagError as e:
        if str(e) == "help requested":
            print(f"Usage:  dockyard {verb} {usage}")
            raise SystemExit(0) from None
        print(f"{e}\n\nUsage:  dockyard {verb} {usage}\n\n"
              f"Run 'dockyard {verb} --help' for more information", file=sys.stderr)
        raise SystemExit(1) from None
    return p


_SILENT = object()


def _each(ctx, names: list[str], action, echo: bool = True) -> int:
    """Run `action(client, name)` for every container; docker prints each error and
    exits 1 at the end if any failed."""
    client = _client(ctx)
    status = 0
    try:
        for name in names:
            try:
                out = action(client, name)
                if echo and out is not _SILENT:
                    print(name if out is None else out)
            except DockyardError as e:
                print(_err(e), file=sys.stderr)
                status = 1
    finally:
        client.close()
    return status


def _filters(items: list[str]) -> dict[str, dict[str, bool]] | None:
    out: dict[str, dict[str, bool]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f'invalid argument "{item}" for "-f, --filter" flag: '
                             f"bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), {})[value] = True
    return out or None


# -- ps ---------------------------------------------------------------------------------------

def _image(c: dict[str, Any], trunc: bool) -> str:
    image = c.get("Image") or ""
    if not image:
        return "<no image>"
    if trunc:
        short = image.removeprefix("sha256:")[:12]
        if (c.get("ImageID") or "").removeprefix("sha256:")[:12] == short:
            return short
        return image.split("@", 1)[0]
    return image


def ps_row(c: dict[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, Any]:
    names = [n.removeprefix("/") for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1]
    command = c.get("Command") or ""
    created = c.get("Created") or 0
    size_rw, size_root = c.get("SizeRw") or 0, c.get("SizeRootFs") or 0
    size = human_size(size_rw, 3)
    if size_root > 0:
        size += f" (virtual {human_size(size_root, 3)})"
    mounts = [m.get("Name") or ellipsis(m.get("Source") or "", 15 if trunc else 10**6)
              for m in c.get("Mounts") or []]
    labels = c.get("Labels") or {}
    return {
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "ID": c["Id"][:12] if trunc else c["Id"],
        "Image": _image(c, trunc),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or []
                                if m.get("Driver") == "local")),
        "Mounts": ",".join(mounts), "Names": ",".join(names),
        "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks") or {})),
        "Platform": None,
        "Ports": display_ports(c.get("Ports") or []),
        "RunningFor": human_duration((now or time.time()) - created) + " ago",
        "Size": size, "State": c.get("State") or "", "Status": c.get("Status") or "",
    }


PS_FLAGS = [Flag("all", short="a"), Flag("quiet", short="q"), Flag("size", short="s"),
            Flag("last", VALUE, "n", "-1"), Flag("latest", short="l"), Flag("no-trunc"),
            Flag("filter", LIST, "f"), Flag("format", VALUE, default="")]


def ps(argv: list[str], ctx) -> int:
    p = _parse("ps", "[OPTIONS]", argv, PS_FLAGS, 0, 0)
    fmt = p["format"]
    last = int(p["last"])
    if p["latest"] and last == -1:
        last = 1
    params = {"all": p["all"] or None, "limit": last if last > 0 else None,
              "size": (p["size"] or ".Size" in fmt or "json ." in fmt) or None, "filters": _filters(p["filter"])}
    client = _client(ctx)
    try:
        containers = client.get("/containers/json", params=params)
    finally:
        client.close()
    trunc = not p["no-trunc"]
    now = time.time()
    rows = [ps_row(c, trunc, now) for c in containers]
    if p["quiet"] and not fmt:
        fmt = "{{.ID}}"
    if not fmt or fmt == "table":
        fmt = PS_FORMAT + ("\t{{.Size}}" if p["size"] else "")
    print_table(rows, fmt)
    return 0
# -- lifecycle --------------------------------------------------------------------------------

def stop(argv: list[str], ctx, verb: str = "stop") -> int:
    flags = [Flag("time", VALUE, "t", ""), Flag("timeout", VALUE, default=""),
             Flag("signal", VALUE, "s", "")]
    p = _parse(verb, "[OPTIONS] CONTAINER [CONTAINER...]", argv, flags)
    t = p["time"] or p["timeout"]
    params = {"t": int(t) if t else None, "signal": p["signal"] or None}
    return _each(ctx, p.args, lambda c, n: c.post(f"/containers/{n}/{verb}", params=params))


def restart(argv: list[str], ctx) -> int:
    return stop(argv, ctx, "restart")


def kill(argv: list[str], ctx) -> int:
    p = _parse("kill", "[OPTIONS] CONTAINER [CONTAINER...]", argv,
               [Flag("signal", VALUE, "s", "")])
    params = {"signal": p["signal"] or None}
    return _each(ctx, p.args, lambda c, n: c.post(f"/containers/{n}/kill", params=params))


def rm(argv: list[str], ctx) -> int:
    flags = [Flag("force", short="f"), Flag("volumes", short="v"), Flag("link", short="l")]
    p = _parse("rm", "[OPTIONS] CONTAINER [CONTAINER...]", argv, flags)
    params = {"force": p["force"] or None, "v": p["volumes"] or None,
              "link": p["link"] or None}

    def remove(c: Client, name: str) -> None:
        try:
            c.delete(f"/containers/{name.strip('/')}", params=params)
        except NotFound as e:
            if not p["force"]:
                raise
            print(_err(e), file=sys.stderr)  # docker v28 says so, but exits 0
            return _SILENT
    return _each(ctx, p.args, remove)


def wait(argv: list[str], ctx) -> int:
    p = _parse("wait", "CONTAINER [CONTAINER...]", argv, [])
    return _each(ctx, p.args,
                 lambda c, n: c.post(f"/containers/{n}/wait").get("StatusCode", 0))


def pause(argv: list[str], ctx) -> int:
    p = _parse("pause", "CONTAINER [CONTAINER...]", argv, [])
    return _each(ctx, p.args, lambda c, n: c.post(f"/containers/{n}/pause"))


def unpause(argv: list[str], ctx) -> int:
    p = _parse("unpause", "CONTAINER [CONTAINER...]", argv, [])
    return _each(ctx, p.args, lambda c, n: c.post(f"/containers/{n}/unpause"))


def rename(argv: list[str], ctx) -> int:
    p = _parse("rename", "CONTAINER NEW_NAME", argv, [], 2, 2)
    status = _each(ctx, p.args[:1], lambda c, n: c.post(f"/containers/{n}/rename",
                                                        params={"name": p.args[1]}), echo=False)
    if status:
        print(f"Error: failed to rename container named {p.args[0]}", file=sys.stderr)
    return status


def tabwriter(rows: list[list[str]], minwidth: int, padding: int) -> str:
    """Go's tabwriter: every cell but a line's last padded to its column's width."""
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    return "".join("".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1]))
                   + (r[-1] if r else "") + "\n" for r in rows)


def print_table(items: list[dict[str, Any]], fmt: str) -> None:
    """docker's formatter output: a Go template per item; with `table`, a header and
    columns aligned by Go's tabwriter (minwidth 10, padding 3) like the docker CLI's."""
    from dockyard.cli.formatter import Template
    from dockyard.errors import InvalidArgument

    if fmt.startswith("table") and not fmt.startswith("table "):
        fmt = "table " + fmt[5:]
    try:
        template = Template(fmt)
    except InvalidArgument as e:
        raise SystemExit(f"failed to parse template: {e}") from None
    if not template.table:
        for item in items:
            print(template.render(item))
        return
    rows = [template.header(PS_COLUMNS).split("\t")]
    rows += [template.render(item).split("\t") for item in items]
    print(tabwriter(rows, 10, 3), end="")


def top(argv: list[str], ctx) -> int:
    try:
        p = parse_flags(argv, [], interspersed=False)
    except FlagError as e:
        print(e, file=sys.stderr)
        return 1
    if not p.args:
        print("dockyard: 'top' requires at least 1 argument.", file=sys.stderr)
        return 1
    client = _client(ctx)
    try:
        params = {"ps_args": " ".join(p.args[1:]) or None}
        doc = client.get(f"/containers/{p.args[0]}/top", params=params)
    finally:
        client.close()
    rows = [doc.get("Titles") or []] + [list(r) for r in doc.get("Processes") or []]
    print(tabwriter(rows, 20, 3), end="")
    return 0


# -- inspect ----------------------------------------------------------------------------------

def go_json_indent(value: Any) -> str:
    """docker inspect's output: the daemon's JSON indented by 4, not HTML-escaped."""
    return json.dumps(value, indent=4, ensure_ascii=False)


KINDS = {"container": "/containers/{}/json", "image": "/images/{}/json",
         "network": "/networks/{}", "volume": "/volumes/{}"}


def inspect(argv: list[str], ctx, kind: str | None = None) -> int:
    flags = [Flag("format", VALUE, "f", ""), Flag("size", short="s"),
             Flag("type", VALUE, default="")]
    verb = "container inspect" if kind else "inspect"
    p = _parse(verb, "[OPTIONS] NAME|ID [NAME|ID...]", argv, flags)
    kind = kind or p["type"] or None
    if kind and kind not in KINDS:
        print(f'"{kind}" is not a valid value for --type', file=sys.stderr)
        return 1
    client = _client(ctx)
    found: list[Any] = []
    errors: list[str] = []
    try:
        for name in p.args:
            obj = None
            for k in [kind] if kind else list(KINDS):
                params = {"size": True} if p["size"] and k == "container" else None
                try:
                    obj = client.get(KINDS[k].format(name), params=params)
                    break
                except NotFound as e:
                    if kind:
                        errors.append(_err(e))
                        break
            if obj is None:
                if not kind:
                    errors.append(f"Error: No such object: {name}")
                continue
            found.append(obj)
    finally:
        client.close()
    if p["format"]:
        _print_inspect_format(found, p["format"])
    else:
        print(go_json_indent(found))
    sys.stdout.flush()
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


def _print_inspect_format(objects: list[Any], fmt: str) -> None:
    """inspect -f: docker's `json` template function does not HTML-escape here (the
    objects are plain maps), unlike the list formatters' rows."""
    from dockyard.cli import formatter
    from dockyard.errors import InvalidArgument

    saved = formatter.FUNCTIONS["json"]
    formatter.FUNCTIONS["json"] = lambda v: json.dumps(v, separators=(",", ":"),
                                                       ensure_ascii=False)
    try:
        template = formatter.Template(fmt)
        for obj in objects:
            print(template.render(obj))
    except InvalidArgument as e:
        raise SystemExit(f"template parsing error: {e}") from None
    finally:
        formatter.FUNCTIONS["json"] = saved


def container_inspect(argv: list[str], ctx) -> int:
    return inspect(argv, ctx, "container")


# -- stats ------------------------------------------------------------------------------------

def stats_row(s: dict[str, Any], cid: str, trunc: bool) -> dict[str, str]:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage", 0)
                 - (pre.get("cpu_usage") or {}).get("total_usage", 0))
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {})
                                           .get("percpu_usage") or [])
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage, limit, mstats = mem.get("usage") or 0, mem.get("limit") or 0, mem.get("stats") or {}
    if "total_inactive_file" in mstats and mstats["total_inactive_file"] < usage:
        usage -= mstats["total_inactive_file"]
    elif mstats.get("inactive_file", usage) < usage:
        usage -= mstats["inactive_file"]
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
    name = (s.get("name") or "").lstrip("/")
    return {"Container": cid[:12] if trunc else cid, "ID": cid[:12] if trunc else cid,
            "Name": name or "--", "CPUPerc": f"{cpu_pct:.2f}%",
            "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
            "MemPerc": f"{mem_pct:.2f}%",
            "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
            "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


def stats(argv: list[str], ctx) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from dockyard.client.api import Client

    flags = [Flag("all", short="a"), Flag("no-stream"), Flag("no-trunc"),
             Flag("format", VALUE, default="")]
    p = _parse("stats", "[OPTIONS] [CONTAINER...]", argv, flags, 0)
    host = getattr(ctx, "host", None)

    def one(name: str) -> dict[str, str] | None:
        with Client(host) as c:
            try:
                s = c.get(f"/containers/{name}/stats", params={"stream": False})
            except DockyardError as e:
                print(_err(e), file=sys.stderr)
                return None
        return stats_row(s, s.get("id") or name, not p["no-trunc"])

    while True:
        names = p.args
        if not names:
            with Client(host) as c:
                names = [x["Id"] for x in c.get("/containers/json",
                                                 params={"all": p["all"] or None})]
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
            rows = list(pool.map(one, names))
        if p.args and None in rows:
            return 1
        if not p["no-stream"]:
            sys.stdout.write("\033[2J\033[H")
        print_table([r for r in rows if r], p["format"] or STATS_FORMAT)
        if p["no-stream"]:
            return 0
        sys.stdout.flush()
        time.sleep(0.5)


# -- update, port, diff, export, commit ------------------------------------------------------

UPDATE_FLAGS = [Flag("blkio-weight", VALUE), Flag("cpu-period", VALUE),
                Flag("cpu-quota", VALUE), Flag("cpu-rt-period", VALUE),
                Flag("cpu-rt-runtime", VALUE), Flag("cpu-shares", VALUE, "c"),
                Flag("cpus", VALUE), Flag("cpuset-cpus", VALUE), Flag("cpuset-mems", VALUE),
                Flag("memory", VALUE, "m"), Flag("memory-reservation", VALUE),
                Flag("memory-swap", VALUE), Flag("pids-limit", VALUE), Flag("restart", VALUE),
                Flag("kernel-memory", VALUE)]


def _update_body(p) -> dict[str, Any]:
    from dockyard.cli.runflags import nano_cpus, parse_restart, ram_in_bytes

    def num(flag: str) -> int:
        text = p[flag]
        try:
            return int(text)
        except ValueError:
            raise FlagError(f'invalid argument "{text}" for "--{flag}" flag: '
                            f'strconv.ParseInt: parsing "{text}": invalid syntax') from None

    body: dict[str, Any] = {}
    ints = {"blkio-weight": "BlkioWeight", "cpu-period": "CpuPeriod", "cpu-quota": "CpuQuota",
            "cpu-rt-period": "CpuRealtimePeriod", "cpu-rt-runtime": "CpuRealtimeRuntime",
            "cpu-shares": "CpuShares", "pids-limit": "PidsLimit"}
    for flag, key in ints.items():
        if p[flag] is not None:
            body[key] = num(flag)
    sizes = {"memory": "Memory", "memory-reservation": "MemoryReservation",
             "kernel-memory": "KernelMemory"}
    for flag, key in sizes.items():
        if p[flag] is not None:
            body[key] = ram_in_bytes(p[flag], f"--{flag}")
    if p["memory-swap"] is not None:  # docker's MemorySwap: -1 is unlimited
        swap = p["memory-swap"]
        body["MemorySwap"] = -1 if swap == "-1" else ram_in_bytes(swap, "--memory-swap")
    if p["cpus"] is not None:
        body["NanoCpus"] = nano_cpus(p["cpus"])
    for flag, key in (("cpuset-cpus", "CpusetCpus"), ("cpuset-mems", "CpusetMems")):
        if p[flag] is not None:
            body[key] = p[flag]
    if p["restart"] is not None:
        body["RestartPolicy"] = parse_restart(p["restart"])
    return body


def update(argv: list[str], ctx) -> int:
    usage = "[OPTIONS] CONTAINER [CONTAINER...]"
    p = _parse("update", usage, argv, UPDATE_FLAGS)
    try:
        body = _update_body(p)
    except FlagError as e:
        print(f"{e}\nSee 'dockyard update --help'.", file=sys.stderr)
        return 125
    if not p.changed:
        print("You must provide one or more flags when using this command.", file=sys.stderr)
        return 1

    def one(c: Client, name: str) -> None:
        for warning in c.post(f"/containers/{name}/update", body=body).get("Warnings") or []:
            print(warning, file=sys.stderr)
    return _each(ctx, p.args, one)


def _port_lines(ports: dict[str, Any], wanted: str | None) -> list[str]:
    lines = []
    for port, bindings in sorted((ports or {}).items(),
                                 key=lambda kv: (int(kv[0].split("/")[0] or 0), kv[0])):
        if wanted is not None and port != wanted:
            continue
        for b in bindings or []:
            ip = b.get("HostIp") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            address = f"{host}:{b.get('HostPort', '')}"
            lines.append(address if wanted is not None else f"{port} -> {address}")
    return lines


def port(argv: list[str], ctx) -> int:
    p = _parse("port", "CONTAINER [PRIVATE_PORT[/PROTO]]", argv, [], 1, 2)
    client = _client(ctx)
    try:
        doc = client.get(f"/containers/{p.args[0]}/json")
    finally:
        client.close()
    ports = (doc.get("NetworkSettings") or {}).get("Ports") or {}
    wanted = None
    if len(p.args) == 2:
        number, _, proto = p.args[1].partition("/")
        wanted = f"{number}/{proto or 'tcp'}"
    lines = _port_lines(ports, wanted)
    if wanted is not None and not lines:
        # docker's wording, with the port as it was given
        print(f"Error: No public port '{p.args[1]}' published for {p.args[0]}",
              file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def diff(argv: list[str], ctx) -> int:
    p = _parse("diff", "CONTAINER", argv, [], 1, 1)
    client = _client(ctx)
    try:
        entries = client.get(f"/containers/{p.args[0]}/changes") or []
    finally:
        client.close()
    for e in entries:
        print(f"{'CAD'[e.get('Kind', 0)] if e.get('Kind', 0) in (0, 1, 2) else '?'} "
              f"{e.get('Path', '')}")
    return 0


def export(argv: list[str], ctx) -> int:
    import os

    p = _parse("export", "[OPTIONS] CONTAINER", argv, [Flag("output", VALUE, "o")], 1, 1)
    if not p["output"] and sys.stdout.isatty():
        print("cowardly refusing to save to a terminal. Use the -o flag or redirect",
              file=sys.stderr)
        return 1
    client = _client(ctx)
    try:
        stream = client.raw_stream("GET", f"/containers/{p.args[0]}/export")
        with stream:
            if not p["output"]:
                for chunk in stream:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                return 0
            tmp = f"{p['output']}.{os.getpid()}.tmp"  # no half-written file on an error
            try:
                with open(tmp, "wb") as f:
                    for chunk in stream:
                        f.write(chunk)
                os.replace(tmp, p["output"])
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    finally:
        client.close()
    return 0


def commit(argv: list[str], ctx) -> int:
    flags = [Flag("author", VALUE, "a", ""), Flag("change", LIST, "c"),
             Flag("message", VALUE, "m", ""), Flag("pause", short="p", default=True)]
    p = _parse("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", argv, flags, 1, 2)
    repo = tag = ""
    if len(p.args) == 2:
        repo = p.args[1]
        name, colon, maybe_tag = repo.rpartition(":")
        if colon and "/" not in maybe_tag and "@" not in repo:
            repo, tag = name, maybe_tag
    params = {"container": p.args[0], "repo": repo or None, "tag": tag or None,
              "comment": p["message"] or None, "author": p["author"] or None,
              "pause": "1" if p["pause"] else "0", "changes": p["change"] or None}
    client = _client(ctx)
    try:
        out = client.post("/commit", params=params)
    finally:
        client.close()
    print(out.get("Id", ""))
    return 0


# -- prune and the `container` noun ----------------------------------------------------------

def prune(argv: list[str], ctx) -> int:
    p = _parse("container prune", "[OPTIONS]", argv,
               [Flag("force", short="f"), Flag("filter", LIST)], 0, 0)
    if not p["force"]:
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    client = _client(ctx)
    try:
        report = client.post("/containers/prune", params={"filters": _filters(p["filter"])})
    finally:
        client.close()
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:\n" + "".join(d + "\n" for d in deleted))
    print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0


def container(argv: list[str], ctx) -> int:
    from dockyard.cli import run, tty

    verbs = {"ls": ps, "list": ps, "ps": ps, "logs": tty.logs, "stop": stop, "kill": kill,
             "restart": restart, "rm": rm, "remove": rm, "wait": wait, "pause": pause,
             "unpause": unpause, "rename": rename, "top": top, "inspect": container_inspect,
             "stats": stats, "prune": prune, "run": run.run, "create": run.create,
             "start": run.start, "exec": tty.exec_, "attach": tty.attach,
             "update": update, "port": port, "diff": diff, "export": export,
             "commit": commit}
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard container COMMAND\n\nCommands:\n  "
              + "\n  ".join(sorted(verbs)))
        return 0
    func = verbs.get(argv[0])
    if func is None:
        print(f"dockyard: 'container {argv[0]}' is not a dockyard command.", file=sys.stderr)
        return 1
    return func(argv[1:], ctx)
