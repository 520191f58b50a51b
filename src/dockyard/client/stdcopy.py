"""docker's stdcopy framing: the multiplexed stdout/stderr of a container without a TTY.

Each frame is an 8-byte header then the payload:

    [stream, 0, 0, 0, size(uint32, big-endian)] payload[size]

stream 0 is stdin, 1 stdout, 2 stderr, 3 an error from the daemon (its payload
is the message). `demux` yields (stream, bytes) as payload bytes arrive, so a
large frame may come out in several pieces; frames of size 0 yield nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator

from dockyard.errors import DockyardError, InvalidArgument

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_LEN = 8


def frame(stream: int, data: bytes) -> bytes:
    """One frame as the daemon writes it (for servers and tests)."""
    if not 0 <= stream <= SYSTEMERR:
        raise InvalidArgument(f"unknown stream type {stream}")
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def reader(source) -> Callable[[int], bytes]:
    """A `read(n) -> bytes` (b"" at the end) for a socket, file object, bytes, or an
    iterable of byte chunks."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)).read
    for name in ("recv", "read1", "read"):
        fn = getattr(source, name, None)
        if callable(fn):
            return fn
    if isinstance(source, Iterable):
        chunks = iter(source)

        def read(_n: int) -> bytes:
            for chunk in chunks:
                if chunk:
                    return bytes(chunk)
            return b""
        return read
    raise InvalidArgument(f"cannot read a multiplexed stream from {type(source).__name__}")


def demux(source, bufsize: int = 65536) -> Iterator[tuple[int, bytes]]:
    """Parse multiplexed frames from `source` into (stream, bytes) pieces."""
    read = reader(source)
    buf = bytearray()
    while True:
        while len(buf) < HEADER_LEN:
            chunk = read(bufsize)
            if not chunk:
                if buf:
                    raise DockyardError(f"multiplexed stream ended inside a frame header "
                                        f"({len(buf)} of {HEADER_LEN} bytes)")
                return
            buf += chunk
        stream, size = buf[0], int.from_bytes(buf[4:8], "big")
        if stream > SYSTEMERR:
            raise InvalidArgument(f"unrecognized input header in multiplexed stream: {stream}")
        del buf[:HEADER_LEN]
        if stream == SYSTEMERR:
            while len(buf) < size:
                chunk = read(bufsize)
                if not chunk:
                    break
                buf += chunk
            raise DockyardError("error from daemon in stream: "
                                + bytes(buf[:size]).decode(errors="replace"))
        left = size
        while left:
            if not buf:
                chunk = read(bufsize)
                if not chunk:
                    raise DockyardError(f"multiplexed stream ended inside a frame "
                                        f"({size - left} of {size} bytes)")
                buf += chunk
            take = min(left, len(buf))
            piece = bytes(buf[:take])
            del buf[:take]
            left -= take
            yield stream, piece


def collect(source) -> tuple[bytes, bytes]:
    """All of stdout and all of stderr of a multiplexed stream."""
    out: list[bytes] = []
    err: list[bytes] = []
    for stream, data in demux(source):
        (err if stream == STDERR else out).append(data)
    return b"".join(out), b"".join(err)
