"""`dockyard version` and `dockyard info`: docker's layouts, from GET /version and /info.

Both take `-f/--format` with docker's template fields: `{{.Server.Version}}`,
`{{.Client.APIVersion}}`, `{{json .}}` for version; the /info fields plus
`.ClientInfo` for info. The layouts follow the docker CLI's (a tabwriter with
min width 20 for version, "Key: value" lines for info); the client's Go
version is our Python version.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dockyard import __version__
from dockyard.client.api import API_VERSION, Client
from dockyard.client.transport import CannotConnect
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.main import Context

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
VERSION_USAGE = """Usage:  dockyard version [OPTIONS]

Show the Dockyard version information

Options:
  -f, --format string   Format output using a custom template
"""
INFO_USAGE = """Usage:  dockyard info [OPTIONS]

Display system-wide information

Options:
  -f, --format string   Format output using a custom template
"""


class GoView:
    """A JSON document seen through Go field names, for --format: `aliases` maps a Go
    field name to its JSON key (APIVersion -> ApiVersion); `{{json}}` gets the JSON."""

    def __init__(self, doc: dict, aliases: dict[str, str] | None = None,
                 children: dict[str, GoView | None] | None = None) -> None:
        self._doc = doc
        self._aliases = aliases or {}
        self._children = children or {}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._children:
            return self._children[name]
        key = self._aliases.get(name, name)
        if key in self._doc:
            return self._doc[key]
        raise AttributeError(name)

    def to_json(self) -> dict:
        out = dict(self._doc)
        for key, child in self._children.items():
            out[key] = child.to_json() if child is not None else None
        return out


def _parse(argv: list[str], verb: str, usage: str) -> str | None:
    """The --format value; SystemExit for help and bad flags (docker's 125)."""
    fmt = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("-f", "--format"):
            if not eq:
                i += 1
                if i >= len(argv):
                    _usage_error(f"flag needs an argument: {name}", verb)
                value = argv[i]
            fmt = value
        elif arg.startswith("-f") and not arg.startswith("--"):
            fmt = arg[2:]
        elif arg in ("-h", "--help"):
            print(usage, end="")
            raise SystemExit(0)
        elif arg.startswith("-"):
            _usage_error(f"unknown flag: {name}", verb)
        else:
            _usage_error(f'"dockyard {verb}" accepts no arguments.', verb)
        i += 1
    return fmt


def _usage_error(message: str, verb: str) -> None:
    print(f"{message}\nSee 'dockyard {verb} --help'.", file=sys.stderr)
    raise SystemExit(125)


def _arch() -> str:
    machine = os.uname().machine
    return GO_ARCH.get(machine, machine)


def _python() -> str:
    v = sys.version_info
    return f"python{v.major}.{v.minor}.{v.micro}"


def _tabbed(lines: list[str], minwidth: int = 20) -> str:
    """docker's tabwriter(minwidth 20, padding 1) for "key:\\tvalue" lines; lines
    without a tab end an alignment block."""
    out: list[str] = []
    block: list[tuple[str, str]] = []

    def flush() -> None:
        width = max([minwidth] + [len(k) + 1 for k, _ in block])
        out.extend((k.ljust(width) + v).rstrip() if v else k.ljust(width) for k, v in block)
        block.clear()

    for line in lines:
        key, tab, value = line.partition("\t")
        if tab:
            block.append((key, value))
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out) + "\n"


def _render(fmt: str, obj: GoView) -> int:
    """Print `obj` through a --format template; a template error is the user's, not the
    daemon's: printed as it is, exit 1 (like docker)."""
    from dockyard.cli.formatter import Template

    try:
        print(Template(fmt).render(obj))
    except InvalidArgument as e:
        print(e, file=sys.stderr)
        return 1
    return 0


# -- version ----------------------------------------------------------------------------

def _client_version(api_version: str) -> dict:
    return {"Platform": {"Name": "Dockyard"}, "Version": __version__,
            "ApiVersion": api_version, "DefaultAPIVersion": API_VERSION, "GitCommit": "",
            "GoVersion": _python(), "Os": sys.platform, "Arch": _arch(), "BuildTime": "",
            "Context": "default"}


def _client_lines(c: dict) -> list[str]:
    api = c["ApiVersion"]
    if api != c["DefaultAPIVersion"]:
        api += f" (downgraded from {c['DefaultAPIVersion']})"
    return ["Client: " + c["Platform"]["Name"], f" Version:\t{c['Version']}",
            f" API version:\t{api}", f" Python version:\t{c['GoVersion']}",
            f" OS/Arch:\t{c['Os']}/{c['Arch']}", f" Context:\t{c['Context']}"]


def _lang(toolchain: str) -> str:
    """dockerd reports its Go version ("go1.19"), ours its Python one ("python3.11.2")."""
    return "Python" if toolchain.startswith("python") else "Go"


def _server_lines(s: dict) -> list[str]:
    name = (s.get("Platform") or {}).get("Name", "")
    lines = ["", "Server:" + (f" {name}" if name else "")]
    components = s.get("Components") or [
        {"Name": "Engine", "Version": s.get("Version", ""),
         "Details": {k: s.get(k, "") for k in ("ApiVersion", "MinAPIVersion", "GoVersion",
                                                "GitCommit", "BuildTime", "Os", "Arch",
                                                "Experimental")}}]
    for comp in components:
        details = comp.get("Details") or {}
        lines.append(f" {comp.get('Name', '')}:")
        if comp.get("Name") == "Engine":
            d = {k: str(details.get(k, "")) for k in (
                "ApiVersion", "MinAPIVersion", "GoVersion", "GitCommit", "BuildTime", "Os",
                "Arch", "Experimental")}
            lines += [f"  Version:\t{comp.get('Version', '')}",
                      f"  API version:\t{d['ApiVersion']} (minimum version {d['MinAPIVersion']})",
                      f"  {_lang(d['GoVersion'])} version:\t{d['GoVersion']}",
                      f"  Git commit:\t{d['GitCommit']}",
                      f"  Built:\t{d['BuildTime']}", f"  OS/Arch:\t{d['Os']}/{d['Arch']}",
                      f"  Experimental:\t{d['Experimental']}"]
        else:
            lines.append(f"  Version:\t{comp.get('Version', '')}")
            lines += [f"  {k}:\t{v}" for k, v in details.items()]
    return lines


def version(argv: list[str], ctx: Context) -> int:
    fmt = _parse(argv, "version", VERSION_USAGE)
    client = Client(getattr(ctx, "host", None))
    server: dict | None = None
    error: DockyardError | None = None
    try:
        server = client.get("/version")
    except DockyardError as e:
        error = e
    finally:
        client.close()
    negotiated = client.api_version if server is not None else API_VERSION
    c = _client_version(negotiated)
    if fmt is not None:
        view = GoView({}, children={
            "Client": GoView(c, {"APIVersion": "ApiVersion"}),
            "Server": GoView(server, {"APIVersion": "ApiVersion"}) if server else None})
        if error is None:
            return _render(fmt, view)
    else:
        lines = _client_lines(c)
        if server is not None:
            lines += _server_lines(server)
        print(_tabbed(lines), end="")
    if error is not None:
        _print_error(error)
        return 1
    return 0


def _print_error(error: DockyardError) -> None:
    if isinstance(error, CannotConnect):
        print(error, file=sys.stderr)
    else:
        print(f"Error response from daemon: {error}", file=sys.stderr)


# -- info ---------------------------------------------------------------------------------

def bytes_size(size: float) -> str:
    """docker's units.BytesSize: binary units, 4 significant digits."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{units[i]}"


def _client_info() -> dict:
    return {"Debug": False, "Version": __version__, "DefaultAPIVersion": API_VERSION,
            "GitCommit": "", "GoVersion": _python(), "Os": sys.platform, "Arch": _arch(),
            "BuildTime": "", "Context": "default", "Plugins": [], "Warnings": None}


def _security_lines(options: list) -> list[str]:
    lines = [" Security Options:"]
    for opt in options or []:
        fields = dict(kv.partition("=")[::2] for kv in str(opt).split(","))
        lines.append(f"  {fields.pop('name', opt)}")
        lines += [f"   {k.title()}: {v}" for k, v in fields.items()]
    return lines


def _server_info_lines(info: dict) -> list[str]:
    g = info.get
    lines = [" Containers: " + str(g("Containers", 0)),
             "  Running: " + str(g("ContainersRunning", 0)),
             "  Paused: " + str(g("ContainersPaused", 0)),
             "  Stopped: " + str(g("ContainersStopped", 0)),
             f" Images: {g('Images', 0)}",
             f" Server Version: {g('ServerVersion', '')}",
             f" Storage Driver: {g('Driver', '')}"]
    lines += [f"  {k}: {v}" for k, v in (g("DriverStatus") or [])]
    lines += [f" Logging Driver: {g('LoggingDriver', '')}",
              f" Cgroup Driver: {g('CgroupDriver', '')}",
              f" Cgroup Version: {g('CgroupVersion', '')}",
              " Plugins:"]
    plugins = g("Plugins") or {}
    for kind in ("Volume", "Network", "Authorization", "Log"):
        if plugins.get(kind):
            lines.append(f"  {kind}: {' '.join(plugins[kind])}")
    swarm = (g("Swarm") or {}).get("LocalNodeState") or "inactive"
    lines += [f" Swarm: {swarm}",
              f" Runtimes: {' '.join(sorted(g('Runtimes') or {}))}",
              f" Default Runtime: {g('DefaultRuntime', '')}",
              f" Init Binary: {g('InitBinary', '')}",
              f" containerd version: {(g('ContainerdCommit') or {}).get('ID', '')}",
              f" runc version: {(g('RuncCommit') or {}).get('ID', '')}",
              f" init version: {(g('InitCommit') or {}).get('ID', '')}"]
    if g("SecurityOptions"):
        lines += _security_lines(g("SecurityOptions"))
    lines += [f" Kernel Version: {g('KernelVersion', '')}",
              f" Operating System: {g('OperatingSystem', '')}",
              f" OSType: {g('OSType', '')}",
              f" Architecture: {g('Architecture', '')}",
              f" CPUs: {g('NCPU', 0)}",
              f" Total Memory: {bytes_size(float(g('MemTotal') or 0))}",
              f" Name: {g('Name', '')}",
              f" ID: {g('ID', '')}",
              f" Docker Root Dir: {g('DockerRootDir', '')}",
              f" Debug Mode: {str(bool(g('Debug'))).lower()}"]
    if g("Debug"):
        lines += [f"  File Descriptors: {g('NFd', 0)}", f"  Goroutines: {g('NGoroutines', 0)}",
                  f"  System Time: {g('SystemTime', '')}",
                  f"  EventsListeners: {g('NEventsListener', 0)}"]
    for label, key in (("HTTP Proxy", "HttpProxy"), ("HTTPS Proxy", "HttpsProxy"),
                       ("No Proxy", "NoProxy")):
        if g(key):
            lines.append(f" {label}: {g(key)}")
    if g("Labels"):
        lines += [" Labels:"] + [f"  {label}" for label in g("Labels")]
    lines.append(f" Experimental: {str(bool(g('ExperimentalBuild'))).lower()}")
    registry = g("RegistryConfig") or {}
    insecure = [n for n, c in sorted((registry.get("IndexConfigs") or {}).items())
                if not c.get("Secure", True)] + list(registry.get("InsecureRegistryCIDRs") or [])
    if insecure:
        lines += [" Insecure Registries:"] + [f"  {r}" for r in insecure]
    if registry.get("Mirrors"):
        lines += [" Registry Mirrors:"] + [f"  {m}" for m in registry["Mirrors"]]
    lines.append(f" Live Restore Enabled: {str(bool(g('LiveRestoreEnabled'))).lower()}")
    if g("ProductLicense"):
        lines.append(f" Product License: {g('ProductLicense')}")
    return lines


def info(argv: list[str], ctx: Context) -> int:
    fmt = _parse(argv, "info", INFO_USAGE)
    client = Client(getattr(ctx, "host", None))
    try:
        data: dict | None = client.get("/info")
        error: DockyardError | None = None
    except DockyardError as e:
        data, error = None, e
    finally:
        client.close()
    ci = _client_info()
    if fmt is not None:
        if error is None:
            return _render(fmt, GoView({**(data or {})}, children={"ClientInfo": GoView(ci)}))
    else:
        lines = ["Client:", f" Version:    {ci['Version']}", f" Context:    {ci['Context']}",
                 " Debug Mode: false", "", "Server:"]
        if data is not None:
            lines += _server_info_lines(data)
        print("\n".join(lines))
        if data is not None:
            print()
            for warning in data.get("Warnings") or []:
                print(warning if warning.startswith("WARNING") else f"WARNING: {warning}",
                      file=sys.stderr)
    if error is not None:
        _print_error(error)
        return 1
    return 0


# -- system df, system prune, the `system` noun -------------------------------------------

def _human(size: float) -> str:
    from dockyard.units import human_size
    return human_size(size, 4)  # units.HumanSize


def _with_percent(part: int, total: int) -> str:
    return f"{_human(part)} ({part * 100 // total}%)" if total > 0 else _human(part)


def _active(c: dict) -> bool:
    state = c.get("State") or ""
    return any(s in state for s in ("running", "paused", "restarting"))


def df_summary(doc: dict) -> list[list[str]]:
    """`docker system df`'s rows (docker's reclaimable arithmetic)."""
    images, containers = doc.get("Images") or [], doc.get("Containers") or []
    layers = doc.get("LayersSize") or 0
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
               if i.get("Containers") and i.get("Size", -1) != -1
               and i.get("SharedSize", -1) != -1)
    rw = sum(c.get("SizeRw") or 0 for c in containers)
    idle_rw = sum(c.get("SizeRw") or 0 for c in containers if not _active(c))
    volumes = doc.get("Volumes") or []
    vol_size = sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in volumes)
    vol_idle = sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in volumes
                   if not (v.get("UsageData") or {}).get("RefCount"))
    cache = doc.get("BuildCache") or []
    cache_size = sum(b.get("Size", 0) for b in cache)
    cache_idle = sum(b.get("Size", 0) for b in cache if not b.get("InUse")
                     and not b.get("Shared"))
    return [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            ["Images", str(len(images)), str(sum(1 for i in images if i.get("Containers"))),
             _human(layers), _with_percent(layers - used, layers)],
            ["Containers", str(len(containers)), str(sum(1 for c in containers if _active(c))),
             _human(rw), _with_percent(idle_rw, rw)],
            ["Local Volumes", str(len(volumes)),
             str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount"))),
             _human(vol_size), _with_percent(vol_idle, vol_size)],
            ["Build Cache", str(len(cache)), str(sum(1 for b in cache if b.get("InUse"))),
             _human(cache_size), _human(cache_idle)]]


def _df_verbose(doc: dict) -> str:
    import time

    from dockyard.cli.container import ps_row, tabwriter
    from dockyard.units import human_duration, human_size

    now = time.time()
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE",
             "CONTAINERS"]]
    for i in doc.get("Images") or []:
        size, shared = i.get("Size", 0), i.get("SharedSize", 0)
        names = [t.rpartition(":")[::2] for t in i.get("RepoTags") or []] or [("<none>",
                                                                                "<none>")]
        for repo, tag in names:
            rows.append([repo, tag, i["Id"].removeprefix("sha256:")[:12],
                         human_duration(now - (i.get("Created") or 0)) + " ago",
                         human_size(size, 3), human_size(shared, 3),
                         human_size(size - shared, 3), str(i.get("Containers", 0))])
    out = "Images space usage:\n\n" + tabwriter(rows, 10, 3)
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS",
             "NAMES"]]
    for c in doc.get("Containers") or []:
        r = ps_row(c, True, now)
        rows.append([r["ID"], r["Image"], r["Command"], r["LocalVolumes"],
                     human_size(c.get("SizeRw") or 0, 3), r["RunningFor"], r["Status"],
                     r["Names"]])
    out += "\nContainers space usage:\n\n" + tabwriter(rows, 10, 3)
    rows = [["VOLUME NAME", "LINKS", "SIZE"]]
    for v in doc.get("Volumes") or []:
        usage = v.get("UsageData") or {}
        rows.append([v.get("Name", ""), str(usage.get("RefCount", 0)),
                     human_size(max(0, usage.get("Size", 0)), 3)])
    out += "\nLocal Volumes space usage:\n\n" + tabwriter(rows, 10, 3)
    cache = doc.get("BuildCache") or []
    out += f"\nBuild cache usage: {_human(sum(b.get('Size', 0) for b in cache))}\n\n"
    rows = [["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]]
    from dockyard.engine.model import parse_time

    for b in cache:
        created, used = (parse_time(b.get(k) or "") for k in ("CreatedAt", "LastUsedAt"))
        rows.append([b.get("ID", ""), b.get("Type", ""), human_size(b.get("Size", 0), 3),
                     human_duration(now - created) + " ago" if created else "",
                     human_duration(now - used) + " ago" if used else "",
                     str(b.get("UsageCount", 0)), "true" if b.get("Shared") else "false"])
    return out + tabwriter(rows, 10, 3)


def df(argv: list[str], ctx: Context) -> int:
    from dockyard.cli.container import _parse as parse_flags
    from dockyard.cli.container import print_table, tabwriter
    from dockyard.cli.runflags import VALUE, Flag

    p = parse_flags("system df", "[OPTIONS]", argv,
                    [Flag("verbose", short="v"), Flag("format", VALUE, default="")], 0, 0)
    with Client(getattr(ctx, "host", None)) as client:
        doc = client.get("/system/df") or {}
    if p["verbose"] and not p["format"]:
        print(_df_verbose(doc), end="")
        return 0
    rows = df_summary(doc)
    if p["format"]:
        from dockyard.cli.formatter import Template

        keys = ["Type", "TotalCount", "Active", "Size", "Reclaimable"]
        items = [dict(zip(keys, r)) for r in rows[1:]]
        fmt = p["format"]
        if not fmt.startswith("table"):
            print_table(items, fmt)
            return 0
        template = Template("table " + fmt[5:].lstrip())
        lines = [template.header(dict(zip(keys, rows[0]))).split("\t")]
        lines += [template.render(item).split("\t") for item in items]
        print(tabwriter(lines, 10, 3), end="")
        return 0
    print(tabwriter(rows, 10, 3), end="")
    return 0


def prune(argv: list[str], ctx: Context) -> int:
    """docker system prune: stopped containers, then dangling (-a: unused) images;
    networks, volumes and build cache have nothing to prune here yet."""
    from dockyard.cli.container import _filters
    from dockyard.cli.container import _parse as parse_flags
    from dockyard.cli.runflags import LIST, Flag

    p = parse_flags("system prune", "[OPTIONS]", argv,
                    [Flag("all", short="a"), Flag("force", short="f"), Flag("volumes"),
                     Flag("filter", LIST)], 0, 0)
    if not p["force"]:
        images = ("all images without at least one container associated to them"
                  if p["all"] else "all dangling images")
        items = ["all stopped containers", "all networks not used by at least one container"]
        if p["volumes"]:
            items.append("all anonymous volumes not used by at least one container")
        items += [images, "all build cache" if p["all"] else "unused build cache"]
        sys.stdout.write("WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
                         + "\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    filters = _filters(p["filter"]) or {}
    reclaimed = 0
    with Client(getattr(ctx, "host", None)) as client:
        report = client.post("/containers/prune", params={"filters": filters or None}) or {}
        reclaimed += report.get("SpaceReclaimed") or 0
        deleted = report.get("ContainersDeleted") or []
        if deleted:
            print("Deleted Containers:\n" + "".join(d + "\n" for d in deleted))
        image_filters = {**filters, "dangling": {"false" if p["all"] else "true": True}}
        report = client.post("/images/prune", params={"filters": image_filters}) or {}
        reclaimed += report.get("SpaceReclaimed") or 0
        entries = report.get("ImagesDeleted") or []
        if entries:
            print("Deleted Images:")
            for entry in entries:
                for kind, text in entry.items():
                    print(f"{kind.lower()}: {text}")
            print()
    print(f"Total reclaimed space: {_human(reclaimed)}")
    return 0


def _events(argv: list[str], ctx: Context) -> int:
    from dockyard.cli.events import events  # imported only when used, like every verb

    return events(argv, ctx)


def system(argv: list[str], ctx: Context) -> int:
    verbs = {"df": df, "prune": prune, "info": info, "version": version, "events": _events}
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard system COMMAND\n\nManage Dockyard\n\nCommands:\n  "
              + "\n  ".join(sorted(verbs)))
        return 0
    func = verbs.get(argv[0])
    if func is None:
        print(f"dockyard: 'system {argv[0]}' is not a dockyard command.", file=sys.stderr)
        return 1
    return func(argv[1:], ctx)
