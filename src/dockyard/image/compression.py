"""Layer compression: gzip on several cores (pigz-style), zstd, and sniffing readers.

Parallel gzip: the input is cut into 1 MiB blocks, each deflated on its own
thread (zlib releases the GIL) with the previous block's last 32 KiB as its
dictionary, ended with a sync flush (the last one with Z_FINISH); the raw
deflate pieces joined make one ordinary single-member gzip stream, as pigz
writes it, readable by every gzip reader. The CRC is computed in order while
the workers deflate.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Self

from dockyard.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK_SIZE = 1 << 20
_WINDOW = 32 * 1024
ALGORITHMS = ("gzip", "zstd")


class HashingWriter:
    """Writes through to `out`, hashing and counting the bytes."""

    def __init__(self, out: BinaryIO, algo: str = "sha256"):
        self._out = out
        self._hash = hashlib.new(algo)
        self.count = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._hash.update(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def digest(self) -> str:
        return f"{self._hash.name}:{self._hash.hexdigest()}"


def _read_full(src: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0:
        data = src.read(n)
        if not data:
            break
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def _deflate(block: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    if zdict:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(block) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _gzip(src: BinaryIO, out: HashingWriter, level: int, threads: int) -> None:
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    out.write(GZIP_MAGIC + b"\x08\x00" + b"\0\0\0\0" + bytes([xfl, 255]))
    crc = total = 0
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, threads),
                            thread_name_prefix="gzip") as pool:
        block = _read_full(src, BLOCK_SIZE)
        zdict = b""
        while True:
            following = _read_full(src, BLOCK_SIZE) if block else b""
            last = not following
            pending.append(pool.submit(_deflate, block, zdict, level, last))
            crc = zlib.crc32(block, crc)
            total += len(block)
            while len(pending) > 2 * threads or (pending and pending[0].done()):
                out.write(pending.popleft().result())
            if last:
                break
            zdict = block[-_WINDOW:]
            block = following
        while pending:
            out.write(pending.popleft().result())
    out.write(struct.pack("<II", crc, total & 0xFFFFFFFF))


def compress(src: BinaryIO, dst: BinaryIO, algo: str = "gzip", threads: int = 2,
             level: int | None = None) -> tuple[str, int]:
    """Compress `src` into `dst`; return (digest of the compressed bytes, compressed size)."""
    out = HashingWriter(dst)
    if algo == "gzip":
        _gzip(src, out, 6 if level is None else level, threads)
    elif algo == "zstd":
        import zstandard

        cctx = zstandard.ZstdCompressor(level=3 if level is None else level,
                                        threads=threads if threads > 1 else 0)
        cctx.copy_stream(src, out, read_size=BLOCK_SIZE, write_size=BLOCK_SIZE)
    else:
        raise InvalidArgument(f"unsupported compression: {algo} (use one of "
                              f"{', '.join(ALGORITHMS)})")
    return out.digest(), out.count


class _Prefixed:
    """A stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data + self._stream.read(n - len(data)) if n > len(data) else data
        return self._stream.read(n)

    def readable(self) -> bool:
        return True


class _GzipReader:
    """Multi-member gzip decompression with bounded output per read()."""

    def __init__(self, stream: _Prefixed):
        self._stream = stream
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._tail = b""  # compressed input not yet consumed
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = BLOCK_SIZE
        while not self._eof:
            if not self._tail:
                self._tail = self._stream.read(BLOCK_SIZE)
                if not self._tail:
                    if not self._d.eof:
                        raise InvalidArgument("layer: truncated gzip stream")
                    self._eof = True
                    break
            data = self._d.decompress(self._tail, n)
            self._tail = self._d.unconsumed_tail
            if self._d.eof:
                # at the end, unused_data holds the rest (unconsumed_tail repeats it)
                self._next_member(self._d.unused_data)
            if data:
                return data
        return b""

    def _next_member(self, rest: bytes) -> None:
        self._tail = b""
        if len(rest) < 2:
            rest += _read_full(self._stream, 2 - len(rest))  # type: ignore[arg-type]
        if rest.startswith(GZIP_MAGIC):
            self._tail = rest
            self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            return
        while rest:  # only zero padding may follow the last member
            if rest.strip(b"\0"):
                raise InvalidArgument("layer: trailing garbage after gzip stream")
            rest = self._stream.read(BLOCK_SIZE)
        self._eof = True

    def readable(self) -> bool:
        return True


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """Sniff gzip / zstd / plain by magic and return a reader of the plain bytes."""
    head = _read_full(stream, 4)
    prefixed = _Prefixed(head, stream)
    if head.startswith(GZIP_MAGIC):
        return _GzipReader(prefixed)  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[return-value]
            prefixed, read_size=BLOCK_SIZE, read_across_frames=True, closefd=False)
    return prefixed  # type: ignore[return-value]


class ReadAhead:
    """Reads `src` in a background thread, a few chunks ahead of the consumer.

    Decompressing (zlib releases the GIL) then runs on the second core while the
    consumer unpacks files: a pull's unpack is otherwise one thread doing both.
    """

    _END = object()

    def __init__(self, src: BinaryIO, chunk: int = 1 << 20, depth: int = 8):
        import queue
        import threading

        self._src = src
        self._chunk = chunk
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._buffer = b""
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True,
                                        name="layer-read-ahead")
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._src.read(self._chunk)
                self._queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._queue.put(exc)

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buffer) < n):
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                break
            self._buffer += item
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def close(self) -> None:
        """Stop the producer (draining what it queued) and wait for it."""
        import queue

        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
