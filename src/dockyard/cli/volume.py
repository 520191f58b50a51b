"""`dockyard volume create|ls|inspect|rm|prune` with docker's flags and output."""

from __future__ import annotations

import json
import sys

from dockyard.cli.runflags import LIST, VALUE, Flag
from dockyard.errors import DockyardError
from dockyard.units import human_size

USAGE = """Usage:  dockyard volume COMMAND

Manage volumes

Commands:
  create      Create a volume
  inspect     Display detailed information on one or more volumes
  ls          List volumes
  prune       Remove unused local volumes
  rm          Remove one or more volumes

Run 'dockyard volume COMMAND --help' for more information on a command."""
COLUMNS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "CreatedAt": "CREATED"}


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


class _Row(dict):
    """A volume for --format: docker's fields, Labels as "k=v,..." and Label "k"."""

    NA = ("Availability", "Group", "Links", "Size", "Status")  # cluster/df-only: "N/A"

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if key == "Labels":
            labels = dict.get(self, "Labels") or {}
            return ",".join(f"{k}={v}" for k, v in labels.items())
        if key in self.NA and key not in self:
            return "N/A"
        return dict.__getitem__(self, key)


def create(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse

    p = _parse("volume create", "[OPTIONS] [VOLUME]", argv,
               [Flag("driver", VALUE, "d", "local"), Flag("opt", LIST, "o"),
                Flag("label", LIST), Flag("name", VALUE, default="")], 0, 1)
    name = p.args[0] if p.args else p["name"]
    if p.args and p["name"]:
        print("Conflicting options: either specify --name or provide positional arg, "
              "not both", file=sys.stderr)
        return 1
    body = {"Name": name, "Driver": p["driver"], "DriverOpts": _kv(p["opt"]),
            "Labels": _kv(p["label"])}
    client = _client(ctx)
    try:
        v = client.post("/volumes/create", body=body)
    except DockyardError as e:
        print(_err(e), file=sys.stderr)
        return 1
    finally:
        client.close()
    print(v["Name"])
    return 0


def _filters(items: list[str]) -> dict[str, list[str]] | None:
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            print(f'invalid argument "{item}" for "-f, --filter" flag: bad format of filter '
                  "(expected name=value)", file=sys.stderr)
            raise SystemExit(1)
        out.setdefault(key.strip().lower(), []).append(value)
    return out or None


def ls(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse
    from dockyard.cli.formatter import print_formatted

    p = _parse("volume ls", "[OPTIONS]", argv,
               [Flag("quiet", short="q"), Flag("filter", LIST, "f"),
                Flag("format", VALUE, default="")], 0, 0)
    filters = _filters(p["filter"])
    client = _client(ctx)
    try:
        doc = client.get("/volumes", {"filters": json.dumps(filters) if filters else None})
    except DockyardError as e:
        print(_err(e), file=sys.stderr)
        return 1
    finally:
        client.close()
    vols = sorted(doc.get("Volumes") or [], key=lambda v: v["Name"])
    if p["quiet"] and not p["format"]:
        for v in vols:
            print(v["Name"])
        return 0
    fmt = p["format"] or "table {{.Driver}}\t{{.Name}}"
    if fmt == "json":
        fmt = "{{json .}}"
    print_formatted([_Row(v) for v in vols], fmt, COLUMNS)
    return 0


def inspect(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse, _print_inspect_format

    p = _parse("volume inspect", "[OPTIONS] VOLUME [VOLUME...]", argv,
               [Flag("format", VALUE, "f", "")], 1)
    client = _client(ctx)
    found, status = [], 0
    try:
        for name in p.args:
            try:
                found.append(client.get(f"/volumes/{name}"))
            except DockyardError as e:
                print(_err(e), file=sys.stderr)
                status = 1
    finally:
        client.close()
    if p["format"]:
        _print_inspect_format(found, p["format"])
    else:
        print(json.dumps(found, indent=4))
    return status


def rm(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse

    p = _parse("volume rm", "[OPTIONS] VOLUME [VOLUME...]", argv,
               [Flag("force", short="f")], 1)
    client = _client(ctx)
    status = 0
    try:
        for name in p.args:
            try:
                client.delete(f"/volumes/{name}", {"force": "1" if p["force"] else None})
                print(name)
            except DockyardError as e:
                print(_err(e), file=sys.stderr)
                status = 1
    finally:
        client.close()
    return status


def prune(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse

    p = _parse("volume prune", "[OPTIONS]", argv,
               [Flag("force", short="f"), Flag("all", short="a"), Flag("filter", LIST)], 0, 0)
    filters = _filters(p["filter"]) or {}
    if p["all"]:
        filters["all"] = ["true"]
    if not p["force"]:
        what = "all local volumes not used by at least one container" if p["all"] \
            else "all anonymous local volumes not used by at least one container"
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ",
              end="", flush=True)
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    client = _client(ctx)
    try:
        report = client.post("/volumes/prune",
                             {"filters": json.dumps(filters) if filters else None}) or {}
    except DockyardError as e:
        print(_err(e), file=sys.stderr)
        return 1
    finally:
        client.close()
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for name in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0


VERBS = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm,
         "remove": rm, "prune": prune}


def volume(argv: list[str], ctx) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    verb = VERBS.get(argv[0])
    if verb is None:
        print(f'dockyard: \'volume {argv[0]}\' is not a docker command.\n'
              "See 'dockyard volume --help'", file=sys.stderr)
        return 1
    return verb(argv[1:], ctx)
