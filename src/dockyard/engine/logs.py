"""Reading a container's log (json-file or local, with their rotated and compressed
files): tail, since/until, timestamps, follow."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO

from dockyard.engine.logfile import decode_entry, log_files, parse_record, rfc3339_ns, split_frames
from dockyard.engine.model import parse_time

POLL = 0.05
CHUNK = 1 << 20

Entry = tuple[str, str, str]  # (stream, line, time)
Rec = tuple[str, str, str, float | None]  # an Entry and its unix time when known


def is_local(path: str) -> bool:
    """The local driver's file is local-logs/container.log; json-file's <id>-json.log."""
    return not path.endswith("-json.log")


class Cursor:
    """One log file read from where it was left: complete records only."""

    def __init__(self, name: str, local: bool):
        self.local = local
        self.buf = bytearray()
        if name.endswith(".gz"):
            import gzip

            self.f: IO[bytes] = gzip.open(name, "rb")  # noqa: SIM115
            self.ino = -1
        else:
            self.f = open(name, "rb")  # noqa: SIM115 - kept open while following
            self.ino = os.fstat(self.f.fileno()).st_ino
        self.torn = False

    def poll(self) -> list[Rec]:
        """The records readable now (to the end of the file as it is)."""
        out: list[Rec] = []
        while not self.torn:
            try:
                chunk = self.f.read(CHUNK)
            except (OSError, EOFError):  # a corrupt or truncated .gz
                self.torn = True
                break
            if not chunk:
                break
            self.buf += chunk
            out += self._parse()
        return out

    def _parse(self) -> list[Rec]:
        out: list[Rec] = []
        if self.local:
            try:
                bodies, used = split_frames(self.buf)
            except ValueError:
                bodies, used = [], len(self.buf)
                self.torn = True
            del self.buf[:used]
            for body in bodies:
                try:
                    source, ns, line, partial = decode_entry(body)
                except ValueError:
                    continue
                text = line.decode("utf-8", "replace") + ("" if partial else "\n")
                out.append((source or "stdout", text, rfc3339_ns(ns), ns / 1e9))
            return out
        end = self.buf.rfind(b"\n")
        if end < 0:
            return out
        lines = bytes(self.buf[:end]).split(b"\n")
        del self.buf[:end + 1]
        for raw in lines:
            rec = parse_record(raw)
            if rec is not None:
                out.append((rec[0], rec[1], rec[2], None))
        return out

    def close(self) -> None:
        self.f.close()


def _file_records(name: str, local: bool) -> list[Rec]:
    try:
        cur = Cursor(name, local)
    except FileNotFoundError:
        if name.endswith(".gz"):
            return []
        return _file_records(name + ".gz", local)  # its compression just finished
    try:
        return cur.poll()
    finally:
        cur.close()


def _keep(rec: Rec, since: float | None, until: float | None) -> bool:
    if since is None and until is None:
        return True
    ts = rec[3] if rec[3] is not None else parse_time(rec[2])
    if since is not None and ts < since:
        return False
    return not (until is not None and ts > until)


def _out(rec: Rec, timestamps: bool) -> Entry:
    stream, line, ts, _ = rec
    return (stream, f"{ts} {line}" if timestamps else line, ts)


def read(path: str, *, follow: bool = False, since: float | None = None,
         until: float | None = None, tail: int | None = None, timestamps: bool = False,
         running: Callable[[], bool] = lambda: False,
         stop: threading.Event | None = None) -> Iterator[Entry]:
    """The log records at `path` (and its rotated files), json-file or local.

    `tail` keeps the last N (None or negative: all); `since`/`until` are unix times;
    with `follow`, new records are yielded while running() is true (or `stop` is set).
    """
    local = is_local(path)
    names = log_files(path)
    rotated = [n for n in names if n != path]
    # the current file's cursor is kept: following goes on exactly where history ends
    try:
        current: Cursor | None = Cursor(path, local)
    except FileNotFoundError:
        current = None
    try:
        latest = [r for r in current.poll() if _keep(r, since, until)] if current else []
        if tail is not None and tail >= 0:
            recent: deque[Rec] = deque(latest[-tail:] if tail else [], maxlen=tail)
            for name in reversed(rotated):  # newest first, only as far back as needed
                if len(recent) >= tail:
                    break
                older = [r for r in _file_records(name, local) if _keep(r, since, until)]
                for rec in reversed(older):
                    if len(recent) >= tail:
                        break
                    recent.appendleft(rec)
            history: list[Rec] | deque[Rec] = recent
        else:
            history = [r for name in rotated for r in _file_records(name, local)
                       if _keep(r, since, until)] + latest
        for rec in history:
            yield _out(rec, timestamps)
        if not follow or (until is not None and until <= time.time()):
            return
        yield from _follow(path, local, current, since, until, timestamps, running, stop)
    finally:
        if current is not None:
            current.close()


def _follow(path: str, local: bool, cur: Cursor | None, since: float | None,
            until: float | None, timestamps: bool, running: Callable[[], bool],
            stop: threading.Event | None) -> Iterator[Entry]:
    opened: list[Cursor] = []  # cursors opened here (the caller closes its own)
    try:
        while not (stop is not None and stop.is_set()):
            if cur is None:
                try:
                    cur = Cursor(path, local)
                    opened.append(cur)
                except FileNotFoundError:
                    cur = None
            recs = cur.poll() if cur is not None else []
            for rec in recs:
                if _keep(rec, since, until):
                    yield _out(rec, timestamps)
            if recs:
                continue
            try:
                if cur is not None and os.stat(path).st_ino != cur.ino:
                    # rotated: the rest of the old file (still open), then the new one
                    for rec in cur.poll():
                        if _keep(rec, since, until):
                            yield _out(rec, timestamps)
                    cur = None
                    continue
            except FileNotFoundError:
                pass
            if not running():
                if cur is not None:
                    rest = cur.poll()
                    if rest:
                        for rec in rest:
                            if _keep(rec, since, until):
                                yield _out(rec, timestamps)
                        continue
                return
            if until is not None and time.time() > until:
                return
            time.sleep(POLL)
    finally:
        for c in opened:
            c.close()
