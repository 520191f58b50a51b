"""`dockyard events` / `dockyard system events`: the daemon's event stream (GET /events).

Flags as docker's: -f/--filter key=value (repeatable), --since and --until (unix
seconds, RFC 3339 dates or durations like 10m before now), --format (a Go
template over docker's events.Message, `json` for one JSON object a line).
The default line is docker's: `<time> <type> <action> <actor id> (k=v, ...)`.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any

from dockyard.cli.formatter import Template
from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, parse_flags, timestamp
from dockyard.errors import DockyardError

USAGE = """Usage:  dockyard events [OPTIONS]

Get real time events from the server

Options:
  -f, --filter filter   Filter output based on conditions provided
      --format string   Format output using a custom template:
                        'json':             Print in JSON format
                        'TEMPLATE':         Print output using the given Go template.
      --since string    Show all events created since timestamp
      --until string    Stream events until this timestamp
"""
FLAGS = [Flag("filter", LIST, "f"), Flag("format", VALUE, default=""),
         Flag("since", VALUE, default=""), Flag("until", VALUE, default="")]
# Go field names of events.Message -> their JSON keys
GO_FIELDS = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope",
             "Time": "time", "TimeNano": "timeNano"}


class EventView:
    """An event message seen through Go's field names ({{.ID}}, {{.Time}}...);
    {{json .}} prints docker's JSON."""

    def __init__(self, msg: dict):
        self._msg = msg

    def __getattr__(self, name: str) -> Any:
        msg = self.__dict__.get("_msg") or {}
        key = GO_FIELDS.get(name, name)
        if key in msg:
            return msg[key]
        if name in GO_FIELDS or name in ("Type", "Action", "Actor"):
            return "" if name not in ("Time", "TimeNano") else 0
        raise AttributeError(name)

    def to_json(self) -> dict:
        return self._msg


def _time(msg: dict) -> str:
    """Go's RFC3339NanoFixed in local time: 2024-05-01T10:00:00.123456789Z."""
    ns = int(msg.get("timeNano") or 0) or int(msg.get("time") or 0) * 1_000_000_000
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    offset = t.utcoffset() or datetime.timedelta(0)
    if offset:
        minutes = int(offset.total_seconds() // 60)
        sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
        zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    else:
        zone = "Z"
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}" + zone


def pretty(msg: dict) -> str:
    actor = msg.get("Actor") or {}
    line = f"{_time(msg)} {msg.get('Type', '')} {msg.get('Action', '')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def _filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f'invalid argument "{item}" for "-f, --filter" flag: '
                             "bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def _parse(argv: list[str]):
    try:
        p = parse_flags(argv, FLAGS)
        if p.args:
            raise FlagError('"dockyard events" accepts no arguments.')
    except FlagError as e:
        if str(e) == "help requested":
            print(USAGE, end="")
            raise SystemExit(0) from None
        print(f"{e}\nSee 'dockyard events --help'.\n\n{USAGE}", file=sys.stderr, end="")
        raise SystemExit(1) from None
    return p


def events(argv: list[str], ctx) -> int:
    import json

    from dockyard.client.api import Client

    p = _parse(argv)
    params: dict[str, Any] = {}
    for name in ("since", "until"):
        if p[name]:
            params[name] = timestamp(p[name])
    filters = _filters(p["filter"])
    if filters:
        params["filters"] = json.dumps(filters)
    fmt = p["format"]
    template = Template("{{json .}}" if fmt == "json" else fmt) if fmt else None
    client = Client(getattr(ctx, "host", None))
    try:
        for msg in client.stream_json("GET", "/events", params=params):
            line = template.render(EventView(msg)) if template else pretty(msg)
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    except DockyardError as e:
        if type(e).__name__ == "CannotConnect":
            raise
        print(f"Error response from daemon: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
