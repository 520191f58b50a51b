"""Reading a container's json-file log: tail, since/until, timestamps, follow."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from dockyard.engine.logfile import log_files, parse_record
from dockyard.engine.model import parse_time

POLL = 0.05

Entry = tuple[str, str, str]  # (stream, line, time)


def _records(path: str) -> Iterator[Entry]:
    for name in log_files(path):
        try:
            with open(name, "rb") as f:
                for raw in f:
                    rec = parse_record(raw)
                    if rec is not None:
                        yield rec
        except FileNotFoundError:
            continue


def _keep(rec: Entry, since: float | None, until: float | None) -> bool:
    if since is None and until is None:
        return True
    ts = parse_time(rec[2])
    if since is not None and ts < since:
        return False
    return not (until is not None and ts > until)


def _out(rec: Entry, timestamps: bool) -> Entry:
    stream, line, ts = rec
    return (stream, f"{ts} {line}" if timestamps else line, ts)


def read(path: str, *, follow: bool = False, since: float | None = None,
         until: float | None = None, tail: int | None = None, timestamps: bool = False,
         running: Callable[[], bool] = lambda: False,
         stop: threading.Event | None = None) -> Iterator[Entry]:
    """The log records of the json-file at `path` (and its rotated files).

    `tail` keeps the last N (None or negative: all); `since`/`until` are unix times;
    with `follow`, new records are yielded while running() is true (or `stop` is set).
    """
    if tail is not None and tail >= 0:
        recent: deque[Entry] = deque(maxlen=tail)
        for rec in _records(path):
            if _keep(rec, since, until):
                recent.append(rec)
        for rec in recent:
            yield _out(rec, timestamps)
    else:
        for rec in _records(path):
            if _keep(rec, since, until):
                yield _out(rec, timestamps)
    if not follow or (until is not None and until <= time.time()):
        return
    yield from _follow(path, since, until, timestamps, running, stop)


def _follow(path: str, since: float | None, until: float | None, timestamps: bool,
            running: Callable[[], bool], stop: threading.Event | None) -> Iterator[Entry]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - reopened on rotation
    except FileNotFoundError:
        return
    f.seek(0, os.SEEK_END)
    ino = os.fstat(f.fileno()).st_ino
    partial = b""
    try:
        while not (stop is not None and stop.is_set()):
            chunk = f.read()
            if chunk:
                partial += chunk
                *lines, partial = partial.split(b"\n")
                for raw in lines:
                    rec = parse_record(raw)
                    if rec is not None and _keep(rec, since, until):
                        yield _out(rec, timestamps)
                continue
            try:
                if os.stat(path).st_ino != ino:  # rotated: continue in the new file
                    f.close()
                    f = open(path, "rb")  # noqa: SIM115
                    ino = os.fstat(f.fileno()).st_ino
                    partial = b""
                    continue
            except FileNotFoundError:
                pass
            if not running():
                rest = f.read()
                if rest:
                    partial += rest
                    continue
                return
            if until is not None and time.time() > until:
                return
            time.sleep(POLL)
    finally:
        f.close()
