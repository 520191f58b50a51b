"""Showing the daemon's JSON progress messages (pull, push, load, import) like docker's CLI.

On a terminal each layer (a message with an "id") keeps one line that is
redrawn in place with its progress bar; elsewhere (pipes, logs) a line is
printed per status change and byte-count updates are left out. {"stream"}
text is written as it is; {"aux"} values are collected for the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO


class ProgressDisplay:
    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        self.out = out
        if tty is None:
            try:
                tty = out.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.aux: list[Any] = []
        self._rows: dict[str, int] = {}   # tty: id -> line index in the current block
        self._last: dict[str, str] = {}   # plain: id -> last status printed

    def show(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        if "aux" in msg:
            self.aux.append(msg["aux"])
            return
        if msg.get("stream") is not None:
            self._end_block()
            self.out.write(str(msg["stream"]))
        elif "status" in msg:
            ident = msg.get("id")
            status = str(msg["status"])
            if ident:
                self._layer(str(ident), status, msg)
            else:
                self._end_block()
                self.out.write(status + "\n")
        self.out.flush()

    def _end_block(self) -> None:
        self._rows = {}

    def _layer(self, ident: str, status: str, msg: dict) -> None:
        detail = msg.get("progressDetail") or {}
        has_bytes = isinstance(detail, dict) and "current" in detail
        if not self.tty:
            if has_bytes or self._last.get(ident) == status:
                return
            self._last[ident] = status
            self.out.write(f"{ident}: {status}\n")
            return
        text = f"{ident}: {status}"
        if msg.get("progress"):
            text += " " + str(msg["progress"])
        if ident not in self._rows:
            self._rows[ident] = len(self._rows)
            self.out.write("\n")
        up = len(self._rows) - self._rows[ident]
        # up to the layer's line, clear it, write it, back down
        self.out.write(f"\x1b[{up}A\x1b[2K\r{text}\r\x1b[{up}B")


def display(messages: Iterable[Any], out: TextIO | None, tty: bool | None = None) -> list[Any]:
    """Show every message on `out` (None: consume them silently); returns the aux values."""
    if out is None:
        aux = []
        for msg in messages:
            if isinstance(msg, dict) and "aux" in msg:
                aux.append(msg["aux"])
        return aux
    shown = ProgressDisplay(out, tty)
    for msg in messages:
        shown.show(msg)
    return shown.aux
