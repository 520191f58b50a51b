"""A strict, bounded tar header reader for layer tars (hostile input).

Reads USTAR, PAX (`x` records) and GNU long names (`L`/`K`) from a stream,
yielding one TarEntry per member with names as raw bytes. Every size it reads
into memory is bounded by LayerLimits; sparse files, multi-volume and other
exotic types are refused. Global PAX headers (`g`) are ignored, as docker does.
The stream is read through a CountingReader that hashes every byte (the diffID)
and stops at the uncompressed size limit (decompression bombs).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard.errors import InvalidArgument

BLOCK = 512
GiB = 1 << 30

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHARDEV = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_REGULAR_TYPES = (b"0", b"\0", b"7")  # 7 = contiguous file, read as a regular one
_HEADER_ONLY = (HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO)


@dataclass(frozen=True)
class LayerLimits:
    """Bounds on what one layer tar may make us read, allocate or create."""

    max_entries: int = 1_000_000
    max_total_bytes: int = 10 * GiB  # uncompressed tar stream
    max_path_len: int = 4096
    max_name_len: int = 255  # one path component
    max_xattr_bytes: int = 256 * 1024  # per entry, names + values
    max_header_bytes: int = 1 << 20  # one PAX or GNU long-name header


@dataclass
class TarEntry:
    name: bytes
    type: bytes
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    atime_ns: int | None = None
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


_DECODE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, EOFError)
try:  # zstandard's error type, when the module is there
    import zstandard as _zstd

    _DECODE_ERRORS += (_zstd.ZstdError,)
except ImportError:  # pragma: no cover - zstandard is a dependency
    pass


class CountingReader:
    """Reads a stream, hashing and counting every byte; refuses past `limit` bytes."""

    def __init__(self, stream: BinaryIO, limit: int, algo: str = "sha256"):
        self._stream = stream
        self._limit = limit
        self._hash = hashlib.new(algo)
        self.count = 0

    def read(self, n: int) -> bytes:
        try:
            data = self._stream.read(n)
        except _DECODE_ERRORS as exc:
            raise InvalidArgument(f"layer: corrupt compressed data: {exc}") from exc
        except OSError as exc:  # gzip.BadGzipFile and friends
            raise InvalidArgument(f"layer: unreadable data: {exc}") from exc
        if data:
            self.count += len(data)
            if self.count > self._limit:
                raise InvalidArgument(f"layer: larger than the limit of {self._limit} bytes "
                                      "(uncompressed)")
            self._hash.update(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        chunks = []
        while n > 0:
            data = self.read(min(n, 1 << 20))
            if not data:
                raise InvalidArgument(f"layer: truncated tar in {what}")
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            data = self.read(min(n, 1 << 20))
            if not data:
                raise InvalidArgument(f"layer: truncated tar in {what}")
            n -= len(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return f"{self._hash.name}:{self._hash.hexdigest()}"


def _padding(size: int) -> int:
    return -size % BLOCK


def _number(field_: bytes, what: str) -> int:
    if field_ and field_[0] & 0x80:  # base-256 (GNU / star)
        if field_[0] == 0xFF:
            raise InvalidArgument(f"layer: negative {what} in tar header")
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"layer: invalid {what} {text!r} in tar header") from None


def _cstr(field_: bytes) -> bytes:
    return field_.split(b"\0", 1)[0]


def _check_checksum(block: bytes) -> None:
    expected = _number(block[148:156], "checksum")
    rest = block[:148] + block[156:]
    unsigned = sum(rest) + 8 * 32
    signed = unsigned - 256 * sum(1 for b in rest if b > 127)
    if expected not in (unsigned, signed):
        raise InvalidArgument("layer: tar header checksum mismatch")


def _pax_time_ns(value: bytes, key: str) -> int:
    text = value.decode("ascii", "replace")
    whole, _, frac = text.partition(".")
    if not whole.lstrip("-").isdigit() or (frac and not frac.isdigit()) or whole.startswith("-"):
        raise InvalidArgument(f"layer: invalid pax {key} {text!r}")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or "0")


def parse_pax(data: bytes) -> dict[str, bytes]:
    """Records `<len> <key>=<value>\\n` -> {key: raw value}; strict about lengths."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            if data[pos:].strip(b"\0"):
                raise InvalidArgument("layer: malformed pax header")
            break
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise InvalidArgument("layer: malformed pax record length")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise InvalidArgument("layer: malformed pax record")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise InvalidArgument("layer: malformed pax record")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def _apply_pax(entry: TarEntry, pax: dict[str, bytes], limits: LayerLimits) -> None:
    xattr_bytes = 0
    for key, value in pax.items():
        if key.startswith("GNU.sparse."):
            raise InvalidArgument("layer: sparse files are not supported")
        if key == "path":
            entry.name = value
        elif key == "linkpath":
            entry.linkname = value
        elif key in ("size", "uid", "gid"):
            if not value.isdigit():
                raise InvalidArgument(f"layer: invalid pax {key} {value!r}")
            setattr(entry, key, int(value))
        elif key == "mtime":
            entry.mtime_ns = _pax_time_ns(value, key)
        elif key == "atime":
            entry.atime_ns = _pax_time_ns(value, key)
        elif key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            xattr_bytes += len(name) + len(value)
            if xattr_bytes > limits.max_xattr_bytes:
                raise InvalidArgument(f"layer: xattrs of {entry.name!r} exceed "
                                      f"{limits.max_xattr_bytes} bytes")
            entry.xattrs[name] = value


class TarReader:
    """Iterate the members of a tar; read a member's data before asking for the next."""

    def __init__(self, reader: CountingReader, limits: LayerLimits):
        self._r = reader
        self._limits = limits
        self._left = 0  # data bytes of the current member not yet read
        self._pad = 0
        self.entries = 0

    def read_data(self, n: int) -> bytes:
        n = min(n, self._left)
        if n <= 0:
            return b""
        data = self._r.read(n)
        if not data:
            raise InvalidArgument("layer: truncated tar in file data")
        self._left -= len(data)
        return data

    def _meta(self, size: int, what: str) -> bytes:
        if size > self._limits.max_header_bytes:
            raise InvalidArgument(f"layer: {what} of {size} bytes exceeds "
                                  f"{self._limits.max_header_bytes}")
        data = self._r.read_exact(size, what)
        self._r.skip(_padding(size), what)
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            self._r.skip(self._left + self._pad, "file data")
            self._left = self._pad = 0
            block = self._r.read(BLOCK)
            if not block:
                return  # no end-of-archive marker: tolerated, as by docker
            if len(block) < BLOCK:
                block += self._r.read_exact(BLOCK - len(block), "header")
            if block == bytes(BLOCK):
                return  # end of archive (the caller drains the rest)
            self.entries += 1
            if self.entries > self._limits.max_entries:
                raise InvalidArgument(f"layer: more than {self._limits.max_entries} tar entries")
            _check_checksum(block)
            typ = block[156:157]
            size = _number(block[124:136], "size")
            if typ in (b"x", b"X"):
                pax.update(parse_pax(self._meta(size, "pax header")))
                if sum(len(k) + len(v) for k, v in pax.items()) > self._limits.max_header_bytes:
                    raise InvalidArgument("layer: pax headers too large")
                continue
            if typ == b"g":
                self._meta(size, "global pax header")  # ignored, as docker does
                continue
            if typ in (b"L", b"K"):
                value = self._meta(size, "gnu long name").rstrip(b"\0")
                if typ == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            entry = self._entry(block, typ, size)
            if long_name is not None:
                entry.name = long_name
            if long_link is not None:
                entry.linkname = long_link
            _apply_pax(entry, pax, self._limits)
            pax, long_name, long_link = {}, None, None
            if entry.type in _HEADER_ONLY:
                entry.size = 0
            self._left, self._pad = entry.size, _padding(entry.size)
            yield entry

    def _entry(self, block: bytes, typ: bytes, size: int) -> TarEntry:
        if typ == b"S":
            raise InvalidArgument("layer: sparse files are not supported")
        magic = block[257:263]
        name = _cstr(block[0:100])
        if magic == b"ustar\0":  # POSIX: prefix field
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if typ in _REGULAR_TYPES:
            if typ == b"\0" and name.endswith(b"/"):
                typ = DIRECTORY  # pre-POSIX directory
            else:
                typ = REGULAR
        elif typ not in _HEADER_ONLY:
            raise InvalidArgument(f"layer: unsupported tar entry type {typ!r} for {name!r}")
        mtime = _number(block[136:148], "mtime")
        return TarEntry(
            name=name, type=typ, mode=_number(block[100:108], "mode"),
            uid=_number(block[108:116], "uid"), gid=_number(block[116:124], "gid"),
            size=size, mtime_ns=mtime * 1_000_000_000, linkname=_cstr(block[157:257]),
            devmajor=_number(block[329:337], "devmajor") if magic[:5] == b"ustar" else 0,
            devminor=_number(block[337:345], "devminor") if magic[:5] == b"ustar" else 0,
        )
