"""Container logs on disk: docker's `json-file` and `local` drivers (writers with
rotation, record codecs) and `none`.

The writers run in the monitor process: they stay cheap to import (os, json and
time; gzip and threading only once a rotated file is compressed) and never block
for long (compression runs in a background thread).

json-file, one line per record, as docker writes them:
  {"log":"hi\\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}
local (moby's daemon/logger/local): each entry is a protobuf LogEntry
  {1: source string, 2: time_nano int64, 3: line bytes (no trailing newline),
   4: partial bool}
framed by its length as a 4-byte big-endian integer before and after it.
A line longer than 16 KiB is split into pieces like docker's partial messages.

Rotation (both drivers): at max-size the file is renamed <path>.1 (older ones
shift up to <path>.<max-file - 1>); with compress, <path>.1 becomes
<path>.1.gz in the background. Defaults: json-file none; local 20 MiB, 5
files, compressed (docker's).
"""

from __future__ import annotations

import json
import os
import time

MAX_LINE = 16 * 1024
LOCAL_MAX_SIZE = 20 * 1024 * 1024
LOCAL_MAX_FILE = 5
FRAME = 4  # bytes of each length prefix/suffix in the local format
MAX_ENTRY = 1_000_000  # docker's reader refuses bigger entries too
# the options docker's drivers accept (the common tag/labels/env ones included)
_COMMON_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")
DRIVER_OPTS = {"json-file": ("max-file", "max-size", "compress", *_COMMON_OPTS),
               "local": ("max-file", "max-size", "compress", *_COMMON_OPTS)}


def rfc3339_nano(ts: float | None = None) -> str:
    ns = time.time_ns() if ts is None else int(ts * 1e9)
    return rfc3339_ns(ns)


def rfc3339_ns(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_size(text: str | int | None) -> int:
    """docker's max-size (go-units FromHumanSize: decimal units): "10m", "1.5g", "512k"."""
    if text in (None, "", -1, "-1"):
        return -1
    if isinstance(text, int):
        return text
    t = text.strip().lower()
    t = t.removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS and t[-1:] else ""
    number = t[:-1].strip() if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    if value < 0 or number.startswith(("+", ".")) or not number[:1].isdigit():
        raise ValueError(f"invalid size: '{text}'")
    return int(value * _SIZE_UNITS[unit])


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def log_config(driver: str, opts: dict) -> tuple[int, int, bool]:
    """(max size, max files, compress) of a driver's options; ValueError with docker's
    messages for a bad value."""
    local = driver == "local"
    max_size = LOCAL_MAX_SIZE if local else -1
    max_file = LOCAL_MAX_FILE if local else 1
    compress = local
    if "max-size" in opts:
        try:
            max_size = parse_size(str(opts["max-size"]))
        except ValueError as e:
            raise ValueError(f"invalid value for max-size: {opts['max-size']}: {e}") from None
    if "max-file" in opts:
        text = str(opts["max-file"])
        try:
            max_file = int(text)
        except ValueError:
            raise ValueError(f'invalid value for max-file: {text}: strconv.Atoi: parsing '
                             f'"{text}": invalid syntax') from None
    if "compress" in opts:
        try:
            compress = _parse_bool(str(opts["compress"]))
        except ValueError as e:
            raise ValueError(f"invalid boolean value for compress: {e}") from None
    if local:
        if max_size < 0 and "max-size" in opts:
            raise ValueError("max-size must not be negative")
        if max_file < 0:
            raise ValueError("max-file must not be negative")
        if compress and max_file <= 1:
            raise ValueError("compression cannot be enabled when max file count is 1")
    else:
        if max_file < 1:
            raise ValueError("max-file cannot be less than 1")
    return max_size, max_file, compress


def validate_opts(driver: str, opts: dict) -> None:
    """A LogConfig's options, checked at create like dockerd (InvalidArgument: a 400)."""
    from dockyard.errors import InvalidArgument

    allowed = DRIVER_OPTS.get(driver)
    if allowed is None:
        return
    for key in opts:
        if key not in allowed:
            if driver == "local":
                raise InvalidArgument(f"unknown log opt '{key}' for log driver local")
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    try:
        log_config(driver, opts)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


# -- the local format's codec ----------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf does: negatives take ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_entry(source: str, time_nano: int, line: bytes, partial: bool = False) -> bytes:
    """One framed local-format entry (proto3: default values are left out)."""
    body = bytearray()
    if source:
        src = source.encode()
        body += b"\x0a" + _varint(len(src)) + src
    if time_nano:
        body += b"\x10" + _varint(time_nano)
    if line:
        body += b"\x1a" + _varint(len(line)) + line
    if partial:
        body += b"\x20\x01"
    size = len(body).to_bytes(FRAME, "big")
    return size + bytes(body) + size


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def decode_entry(body: bytes) -> tuple[str, int, bytes, bool]:
    """A LogEntry's bytes (without its frame) -> (source, time_nano, line, partial);
    fields we do not use (partial metadata, attributes) are skipped."""
    source, time_nano, line, partial = "", 0, b"", False
    pos = 0
    while pos < len(body):
        key, pos = _read_varint(body, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(body, pos)
            if field == 2:
                time_nano = value - (1 << 64) if value >= 1 << 63 else value
            elif field == 4:
                partial = bool(value)
        elif wire == 2:
            size, pos = _read_varint(body, pos)
            if pos + size > len(body):
                raise ValueError("truncated field")
            data = body[pos:pos + size]
            pos += size
            if field == 1:
                source = data.decode("utf-8", "replace")
            elif field == 3:
                line = bytes(data)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(body):
            raise ValueError("truncated field")
    return source, time_nano, line, partial


def split_frames(buf: bytes | bytearray) -> tuple[list[bytes], int]:
    """Complete entries at the front of `buf` -> (their bodies, bytes used).
    A frame whose suffix disagrees with its prefix ends the scan (a torn file)."""
    out = []
    pos = 0
    n = len(buf)
    while pos + FRAME <= n:
        size = int.from_bytes(buf[pos:pos + FRAME], "big")
        end = pos + FRAME + size + FRAME
        if size > MAX_ENTRY or end > n:
            break
        if buf[end - FRAME:end] != buf[pos:pos + FRAME]:
            raise ValueError("log entry header and footer disagree")
        out.append(bytes(buf[pos + FRAME:end - FRAME]))
        pos = end
    return out, pos


# -- writers -------------------------------------------------------------------------------

class _RotatingFile:
    """Appends encoded records; rotates at max_size (see the module's doc)."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1,
                 compress: bool = False):
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.compress = compress and self.max_file > 1
        self._compressor = None  # the background thread compressing <path>.1
        self.fd = -1
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o640)
        self.size = os.fstat(self.fd).st_size

    def encode(self, stream: str, data: bytes) -> bytes:
        raise NotImplementedError

    def write(self, stream: str, data: bytes) -> None:
        raw = self.encode(stream, data)
        if self.max_size > 0 and self.size > 0 and self.size + len(raw) > self.max_size:
            self._rotate()
        os.write(self.fd, raw)
        self.size += len(raw)

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        if self.max_file > 1:
            if self._compressor is not None:  # shifting <path>.1 must wait for it
                self._compressor.join()
                self._compressor = None
            for i in range(self.max_file - 1, 0, -1):
                for suffix in ("", ".gz"):
                    src = f"{self.path}.{i}{suffix}"
                    if not os.path.exists(src):
                        continue
                    if i + 1 >= self.max_file:
                        _unlink(src)
                    else:
                        os.replace(src, f"{self.path}.{i + 1}{suffix}")
            os.replace(self.path, f"{self.path}.1")
            if self.compress:
                import threading

                self._compressor = threading.Thread(
                    target=compress_file, args=(f"{self.path}.1",), daemon=True,
                    name="log-compress")
                self._compressor.start()
        else:
            os.truncate(self.path, 0)
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def compress_file(path: str) -> None:
    """<path> -> <path>.gz (through a temporary file), then <path> goes."""
    import gzip
    import shutil

    tmp = f"{path}.gz.tmp"
    try:
        with open(path, "rb") as src, \
                open(tmp, "wb", opener=lambda p, f: os.open(p, f, 0o640)) as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, f"{path}.gz")
        _unlink(path)
    except OSError:  # the container went away meanwhile: nothing to keep
        _unlink(tmp)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class JSONFileWriter(_RotatingFile):
    def encode(self, stream: str, data: bytes) -> bytes:
        text = data.decode("utf-8", "replace")
        return (json.dumps({"log": text, "stream": stream, "time": rfc3339_nano()},
                           ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class LocalWriter(_RotatingFile):
    def encode(self, stream: str, data: bytes) -> bytes:
        # docker stores the line without its newline; a piece without one is partial
        if data.endswith(b"\n"):
            return encode_entry(stream, time.time_ns(), data[:-1])
        return encode_entry(stream, time.time_ns(), data, partial=True)


class NoneWriter:
    def write(self, stream: str, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def open_writer(driver: str, path: str, opts: dict) -> _RotatingFile | NoneWriter:
    if driver == "none":
        return NoneWriter()
    try:
        max_size, max_file, compress = log_config(driver, opts)
    except ValueError:  # checked at create; an old record must not stop the start
        max_size, max_file, compress = log_config(driver, {})
    if driver == "local":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return LocalWriter(path, max_size, max_file, compress)
    return JSONFileWriter(path, max_size, max_file, compress)


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
    """The rotated files oldest first (<path>.N or, compressed, <path>.N.gz), then the
    current one."""
    rotated = []
    i = 1
    while True:
        if os.path.exists(f"{path}.{i}"):  # also while its compression runs
            rotated.append(f"{path}.{i}")
        elif os.path.exists(f"{path}.{i}.gz"):
            rotated.append(f"{path}.{i}.gz")
        else:
            break
        i += 1
    return list(reversed(rotated)) + ([path] if os.path.exists(path) else [])


def parse_record(line: bytes) -> tuple[str, str, str] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec.get("stream", "stdout"), rec.get("log", ""), rec.get("time", "")
