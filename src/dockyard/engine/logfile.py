"""Container logs: docker's json-file driver (writer with rotation, reader) and `none`.

The writer runs in the monitor process: it must stay cheap to import (os and
json only) and never block. One line per record, as docker writes them:
{"log":"hi\\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}.
A line longer than 16 KiB is split into records like docker's partial messages.
"""

from __future__ import annotations

import json
import os
import time

MAX_LINE = 16 * 1024


def rfc3339_nano(ts: float | None = None) -> str:
    ns = time.time_ns() if ts is None else int(ts * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def parse_size(text: str | int | None) -> int:
    """docker's max-size: "10m", "1g", "512k", bytes."""
    if text in (None, "", -1, "-1"):
        return -1
    if isinstance(text, int):
        return text
    t = text.strip().lower().removesuffix("b")
    scale = 1
    for suffix, mult in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)):
        if t.endswith(suffix):
            t, scale = t[:-1], mult
            break
    return int(float(t) * scale)


class JSONFileWriter:
    """Appends records; rotates <path> -> <path>.1 ... <path>.<max_file-1> at max_size."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1):
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        record = json.dumps({"log": text, "stream": stream, "time": rfc3339_nano()},
                            ensure_ascii=False, separators=(",", ":")) + "\n"
        raw = record.encode()
        if self.max_size > 0 and self.size > 0 and self.size + len(raw) > self.max_size:
            self._rotate()
        os.write(self.fd, raw)
        self.size += len(raw)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                try:
                    os.replace(src, f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
        else:
            os.truncate(self.path, 0)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o640)
        self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class NoneWriter:
    def write(self, stream: str, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def open_writer(driver: str, path: str, opts: dict) -> JSONFileWriter | NoneWriter:
    if driver == "none":
        return NoneWriter()
    return JSONFileWriter(path, parse_size(opts.get("max-size")),
                          int(opts.get("max-file") or 1))


class LineSplitter:
    """Bytes from one stream -> complete lines (with their "\\n") and 16 KiB pieces."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0 or nl >= MAX_LINE:
                if len(self.buf) >= MAX_LINE:
                    out.append(self.buf[:MAX_LINE])
                    self.buf = self.buf[MAX_LINE:]
                    continue
                return out
            out.append(self.buf[:nl + 1])
            self.buf = self.buf[nl + 1:]

    def flush(self) -> list[bytes]:
        rest, self.buf = self.buf, b""
        return [rest] if rest else []


# -- reading (engine side) ---------------------------------------------------------------


def log_files(path: str) -> list[str]:
    """The rotated files oldest first, then the current one."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return list(reversed(rotated)) + ([path] if os.path.exists(path) else [])


def parse_record(line: bytes) -> tuple[str, str, str] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec.get("stream", "stdout"), rec.get("log", ""), rec.get("time", "")
