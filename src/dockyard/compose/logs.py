"""Containers' logs, prefixed and coloured like docker compose's (`web-1  | line`):
one thread per container reads GET /containers/{id}/logs and one printer writes
whole lines under a lock. Used by `logs` and by `up` in attached mode.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from dockyard.compose import convert
from dockyard.compose.backend import Backend, short_name

# docker compose's rainbow: cyan, yellow, green, magenta, blue, then the intense ones
COLORS = ("36", "33", "32", "35", "34", "1;36", "1;33", "1;32", "1;35", "1;34")


def display_name(project: str, c: dict[str, Any]) -> str:
    """`web-1` for `proj-web-1` (docker compose drops the project prefix)."""
    name = short_name(c)
    return name[len(project) + 1:] if name.startswith(project + "-") else name


class Printer:
    def __init__(self, names: list[str], color: bool, out: Any = None) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.color = color
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.colors: dict[str, str] = {}

    def prefix(self, name: str) -> str:
        text = f"{name.ljust(self.width)}  | "
        if not self.color:
            return text
        code = self.colors.setdefault(name, COLORS[len(self.colors) % len(COLORS)])
        return f"\x1b[{code}m{text}\x1b[0m"

    def line(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write(self.prefix(name) + text + "\n")
            self.out.flush()

    def event(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()


def follow(backend: Backend, c: dict[str, Any], name: str, printer: Printer,
           follow: bool, tail: str = "all", timestamps: bool = False,
           since: str | int | None = None, until: str | None = None,
           on_end: Callable[[], None] | None = None) -> None:
    """Copy one container's log lines to the printer (until it exits when following)."""
    from dockyard.client.stdcopy import demux
    from dockyard.errors import DockyardError

    own = Backend(backend.host)
    client = own.client
    params = {"stdout": 1, "stderr": 1, "follow": follow or None, "tail": tail,
              "timestamps": timestamps or None, "since": since, "until": until}
    pending = {1: b"", 2: b""}
    try:
        config = c.get("Config") or own.inspect(c["Id"]).get("Config") or {}
        tty = bool(config.get("Tty"))  # a summary has no Config: ask
        stream = client.raw_stream("GET", f"/containers/{c['Id']}/logs", params=params)
        with stream:
            chunks = ((1, data) for data in stream) if tty else demux(stream)
            for kind, data in chunks:
                buf = pending.get(kind, b"") + data
                *lines, pending[kind] = buf.split(b"\n")
                for ln in lines:
                    printer.line(name, ln.decode(errors="replace").rstrip("\r"))
        for rest in pending.values():
            if rest:
                printer.line(name, rest.decode(errors="replace"))
    except (DockyardError, OSError):
        pass
    finally:
        client.close()
        if on_end is not None:
            on_end()


def stream_logs(backend: Backend, project: str, containers: list[dict[str, Any]],
                follow_: bool, color: bool, tail: str = "all", timestamps: bool = False,
                since: str | None = None, until: str | None = None,
                prefix: bool = True) -> None:
    names = [display_name(project, c) for c in containers]
    printer = Printer(names, color)
    if not prefix:
        printer.prefix = lambda name: ""  # type: ignore[method-assign]
    threads = [threading.Thread(target=follow, args=(backend, c, n, printer, follow_, tail,
                                                     timestamps, since, until), daemon=True)
               for c, n in zip(containers, names, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)


def service_of(c: dict[str, Any]) -> str:
    return (c.get("Labels") or {}).get(convert.SERVICE, "")
