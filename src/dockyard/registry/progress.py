"""Progress of pulls and pushes, and three ways to show it.

The registry client calls a `Progress` (status lines, per-layer statuses, byte
counts); a renderer turns those into output:

- `TTYRenderer`: docker's terminal display: one line per layer, redrawn in
  place with ANSI cursor moves ("a1b2c3d4e5f6: Downloading [==>   ] 1.2MB/3.4MB").
- `PlainRenderer`: for pipes and logs: one line per status change, no bars.
- `JSONRenderer`: the Engine API's JSON messages ({"status", "progressDetail",
  "progress", "id"}), handed to a callback (the daemon streams them).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

BAR_WIDTH = 50


def human_size(size: float) -> str:
    """docker's units.HumanSize: decimal units, 4 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def progress_bar(current: int, total: int) -> str:
    """docker's bar: "[=====>      ]  1.2MB/3.4MB" (just the count without a total)."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(BAR_WIDTH, int(current / total * 100) // 2)
    bar = "=" * filled + ">" + " " * (BAR_WIDTH - filled)
    return f"[{bar}] {human_size(current):>8}/{human_size(total)}"


class Renderer(Protocol):
    def message(self, status: str, id: str | None = None,
                current: int | None = None, total: int | None = None) -> None: ...

    def error(self, message: str) -> None: ...


class Progress:
    """What the registry client reports; thread-unsafe, used from one event loop."""

    def __init__(self, renderer: Renderer | None = None, *, interval: float = 0.1):
        self.renderer = renderer
        self.interval = interval
        self._last_bytes: dict[str, float] = {}

    def status(self, message: str, id: str | None = None) -> None:
        """A line of its own ("Digest: ...") or a layer's new status ("Waiting")."""
        if self.renderer is not None:
            self.renderer.message(message, id)

    def layer_started(self, id: str, status: str) -> None:
        """A layer appears: "Pulling fs layer", "Preparing"."""
        self.status(status, id)

    def bytes(self, id: str, action: str, current: int, total: int) -> None:
        """`current` of `total` bytes moved; updates are throttled to `interval`."""
        now = time.monotonic()
        if current < total and now - self._last_bytes.get(id, 0.0) < self.interval:
            return
        self._last_bytes[id] = now
        if self.renderer is not None:
            self.renderer.message(action, id, current, total)

    def layer_done(self, id: str, status: str) -> None:
        """A layer's final word: "Download complete", "Pull complete", "Pushed"."""
        self._last_bytes.pop(id, None)
        self.status(status, id)

    def error(self, message: str) -> None:
        if self.renderer is not None:
            self.renderer.error(message)


def _line(status: str, id: str | None, current: int | None, total: int | None) -> str:
    text = f"{id}: {status}" if id else status
    if current is not None:
        text += " " + progress_bar(current, total or 0)
    return text


class TTYRenderer:
    """docker's terminal display: a line per id, updated in place.

    Lines with an id are remembered by position; an update moves the cursor up
    to that line, clears it, writes it again and moves back down. A line
    without an id ends the block: ids seen before it are not redrawn again.
    """

    def __init__(self, out: TextIO | None = None):
        self.out = out if out is not None else sys.stdout
        self._rows: dict[str, int] = {}

    def message(self, status: str, id: str | None = None,
                current: int | None = None, total: int | None = None) -> None:
        out = self.out
        if id is None:
            self._rows = {}
            out.write(status + "\n")
            out.flush()
            return
        if id not in self._rows:
            self._rows[id] = len(self._rows)
            out.write("\n")
        up = len(self._rows) - self._rows[id]
        out.write(f"\x1b[{up}A\x1b[2K\r{_line(status, id, current, total)}\r\x1b[{up}B")
        out.flush()

    def error(self, message: str) -> None:
        self._rows = {}
        self.out.write(message + "\n")
        self.out.flush()


class PlainRenderer:
    """One line per status change; byte counts are not printed."""

    def __init__(self, out: TextIO | None = None):
        self.out = out if out is not None else sys.stdout
        self._last: dict[str, str] = {}

    def message(self, status: str, id: str | None = None,
                current: int | None = None, total: int | None = None) -> None:
        if id is not None:
            if current is not None or self._last.get(id) == status:
                return
            self._last[id] = status
        self.out.write(_line(status, id, None, None) + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()


class JSONRenderer:
    """The Engine API's progress messages, as dicts, to `sink` (or kept in .messages)."""

    def __init__(self, sink: Callable[[dict], None] | None = None):
        self.messages: list[dict] = []
        self._sink = sink if sink is not None else self.messages.append

    def message(self, status: str, id: str | None = None,
                current: int | None = None, total: int | None = None) -> None:
        msg: dict = {"status": status}
        if id is not None:
            detail: dict = {}
            if current is not None:
                detail["current"] = current
                if total:
                    detail["total"] = total
            msg["progressDetail"] = detail
            if current is not None:
                msg["progress"] = progress_bar(current, total or 0)
            msg["id"] = id
        self._sink(msg)

    def error(self, message: str) -> None:
        self._sink({"errorDetail": {"message": message}, "error": message})


def json_lines(out: TextIO) -> JSONRenderer:
    """A JSONRenderer writing one JSON object per line to `out`."""
    def write(msg: dict) -> None:
        out.write(json.dumps(msg) + "\r\n")
        out.flush()
    return JSONRenderer(write)


def for_stream(out: TextIO | None = None) -> Progress:
    """A Progress for a CLI: the TTY display on a terminal, plain lines otherwise."""
    out = out if out is not None else sys.stdout
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Progress(TTYRenderer(out) if tty else PlainRenderer(out))
