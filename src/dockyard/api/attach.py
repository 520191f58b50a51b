"""POST /containers/{id}/attach: the hijacked connection (`101 UPGRADED`).

The 101 response is written by aiohttp (a StreamResponse sends its headers at
prepare); then the transport is handed to `RawStream`, a plain asyncio
protocol, so the client's bytes (stdin) arrive raw, a half-close (the CLI's
CloseWrite after stdin EOF) is seen as EOF while output keeps flowing, and
the connection's end is told back to aiohttp's protocol.

The container's stdio comes from the monitor (engine/attach.py): multiplexed
frames, passed through without a TTY and unwrapped with one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from dockyard.api.server import SERVER_HEADER, api_version, backend, query_bool
from dockyard.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from dockyard.engine.attach import parse_frames, stdin_frame
from dockyard.errors import Conflict, DockyardError, InvalidArgument, SystemError_

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


class RawStream(asyncio.Protocol):
    """The hijacked client connection."""

    def __init__(self, transport: asyncio.Transport, previous: Any, tail: bytes = b""):
        self.transport = transport
        self.previous = previous  # aiohttp's protocol: told when the connection ends
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        if tail:
            self.incoming.put_nowait(tail)
        self.lost = asyncio.Event()
        self.on_lost: list[Callable[[], None]] = []
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._eof = False

    def data_received(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def eof_received(self) -> bool:
        self._eof = True
        self.incoming.put_nowait(b"")
        return True  # keep our side open: the output still flows

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set()
        self._can_write.set()
        for fn in self.on_lost:
            with contextlib.suppress(Exception):
                fn()
        if not self._eof:
            self.incoming.put_nowait(b"")
        with contextlib.suppress(Exception):
            self.previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def write(self, data: bytes) -> None:
        if self.lost.is_set() or self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        self.transport.write(data)
        await self._can_write.wait()

    def close(self) -> None:
        if not self.transport.is_closing():
            with contextlib.suppress(OSError):
                if self.transport.can_write_eof():
                    self.transport.write_eof()
            self.transport.close()


class ThreadFeed:
    """Bytes from a worker thread to the event loop, batched (one wake-up and one write
    for whatever piled up, not one per log line) and bounded (the worker waits while
    `limit` bytes are unread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 1 << 20):
        self.loop = loop
        self.limit = limit
        self.cond = threading.Condition()
        self.items: list[bytes] = []
        self.size = 0
        self.done = False  # the worker finished
        self.closed = False  # the reader went away
        self.wake = asyncio.Event()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads
            self.loop.call_soon_threadsafe(self.wake.set)

    def put(self, data: bytes) -> bool:
        """(worker) Queue `data`; False once the reader went away."""
        with self.cond:
            while self.size >= self.limit and not self.closed:
                self.cond.wait()
            if self.closed:
                return False
            first = not self.items
            self.items.append(data)
            self.size += len(data)
        if first:  # else a wake-up is on its way already
            self._wake()
        return True

    def finish(self) -> None:
        """(worker) No more data."""
        with self.cond:
            self.done = True
        self._wake()

    async def get(self) -> bytes | None:
        """(loop) Everything queued, joined; None at the end."""
        while True:
            with self.cond:
                if self.items:
                    data = b"".join(self.items)
                    self.items.clear()
                    self.size = 0
                    self.cond.notify_all()
                    return data
                if self.done:
                    return None
                self.wake.clear()
            await self.wake.wait()

    def close(self) -> None:
        """(loop) The reader went away: the worker's next put fails."""
        with self.cond:
            self.closed = True
            self.items.clear()
            self.cond.notify_all()


def on_stopping(request: web.Request, fn: Callable[[], None]) -> asyncio.Task:
    """Call fn() when the daemon shuts down (long streams end then); cancel when done."""
    stopping = backend(request).stopping

    async def watch() -> None:
        await stopping.wait()
        with contextlib.suppress(Exception):
            fn()
    return asyncio.ensure_future(watch())


def close_transport(request: web.Request) -> Callable[[], None]:
    def close() -> None:
        if request.transport is not None:
            request.transport.close()
    return close


async def hijack(request: web.Request, content_type: str) -> tuple[web.StreamResponse,
                                                                    RawStream]:
    """Answer 101 UPGRADED and take the connection over."""
    resp = web.StreamResponse(status=101, reason="UPGRADED", headers={
        "Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp",
        "Server": SERVER_HEADER})
    await resp.prepare(request)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    previous = request.protocol
    tail = bytes(getattr(previous, "_message_tail", b"") or b"")
    with contextlib.suppress(AttributeError):
        previous._message_tail = b""
    raw = RawStream(transport, previous, tail)  # type: ignore[arg-type]
    transport.set_protocol(raw)
    transport.resume_reading()
    return resp, raw


async def attach(request: web.Request) -> web.StreamResponse:
    engine = backend(request).containers
    c = await asyncio.to_thread(engine.get, request.match_info["id"])
    if c.state.Paused:
        raise Conflict(f"container {c.id} is paused, unpause the container before attach")
    tty = bool(c.config.get("Tty"))
    want = {1: query_bool(request, "stdout"), 2: query_bool(request, "stderr")}
    want_stdin = query_bool(request, "stdin") and bool(c.config.get("OpenStdin"))
    stream, logs = query_bool(request, "stream", True), query_bool(request, "logs")
    if not stream and not logs:
        raise InvalidArgument("stream or logs must be set")
    # the query's detachKeys, else the daemon's "detach-keys", else ctrl-p,ctrl-q
    keys_text = request.query.get("detachKeys") or getattr(engine, "detach_keys", "")
    keys = parse_detach_keys(keys_text) if keys_text else DEFAULT_DETACH_KEYS
    if not stream:  # logs=1 alone: the log so far, then the end
        version = tuple(int(p) for p in api_version(request).split(".") if p.isdigit())
        resp, raw = await hijack(request, MULTIPLEXED if not tty and version >= (1, 42)
                                 else RAW)
        try:
            await _replay_logs(engine, c.id, raw, tty, want)
        except (ConnectionResetError, BrokenPipeError, OSError):
            pass
        raw.close()
        return resp
    try:
        reader, writer = await asyncio.open_unix_connection(engine.monitor.socket_path)
    except OSError as e:
        raise SystemError_(f"cannot reach the container monitor: {e}") from None
    try:
        writer.write((json.dumps({"op": "attach", "id": c.id, "stdin": want_stdin,
                                  "stdin_once": bool(c.config.get("StdinOnce"))})
                      + "\n").encode())
        answer = json.loads(await reader.readline() or b"{}")
        if not answer.get("ok"):
            raise SystemError_(answer.get("error") or "attach failed")
        engine.emit(c, "attach")
        version = tuple(int(p) for p in api_version(request).split(".") if p.isdigit())
        multiplexed = not tty and version >= (1, 42)
        resp, raw = await hijack(request, MULTIPLEXED if multiplexed else RAW)
        if logs:  # docker replays the log before the live stream (the monitor buffers it)
            try:
                await _replay_logs(engine, c.id, raw, tty, want)
            except (ConnectionResetError, BrokenPipeError, OSError):
                raw.close()
                return resp

        def detached() -> None:
            with contextlib.suppress(Exception):
                engine.emit(c, "detach")
        await _pump(request, raw, reader, writer, tty, want, want_stdin, keys, detached)
        return resp
    finally:
        writer.close()


async def _replay_logs(engine: Any, cid: str, raw: RawStream, tty: bool,
                       want: dict[int, bool]) -> None:
    """The container's log so far, as attach output (logs=1)."""
    loop = asyncio.get_running_loop()
    feed = ThreadFeed(loop)
    stop = threading.Event()

    def produce() -> None:
        try:
            for stream, line, _ts in engine.logs(cid, stop=stop):
                kind = 2 if stream == "stderr" else 1
                if want.get(kind):
                    data = line.encode()
                    if not feed.put(data if tty else _header(kind, len(data)) + data):
                        return
        except (DockyardError, OSError):  # the `none` driver: nothing to replay
            pass
        finally:
            feed.finish()

    loop.run_in_executor(None, produce)
    try:
        while (data := await feed.get()) is not None:
            await raw.write(data)
    finally:
        stop.set()
        feed.close()


async def _pump(request: web.Request, raw: RawStream, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter, tty: bool, want: dict[int, bool],
                want_stdin: bool, detach_keys: bytes | None = DEFAULT_DETACH_KEYS,
                on_detach: Callable[[], None] | None = None) -> None:
    """Stream between the client and the monitor. With a TTY the client's stdin is
    scanned for the detach keys, as docker does: on a match the session ends (the
    keys never reach the container, which keeps running)."""
    scanner = DetachScanner(detach_keys) if tty and want_stdin and detach_keys else None

    async def stdin() -> None:
        while True:
            data = await raw.incoming.get()
            if not want_stdin:
                if not data:
                    return
                continue
            if scanner is not None and data:
                data, detach = scanner.feed(data)
                if data:
                    writer.write(stdin_frame(data))
                    await writer.drain()
                if detach:
                    if on_detach is not None:
                        on_detach()
                    raw.close()
                    writer.close()  # the monitor drops the attachment
                    return
                continue
            if not data and scanner is not None and scanner.held:
                writer.write(stdin_frame(scanner.held))  # a sequence's start, then EOF
            writer.write(stdin_frame(data))  # b"" -> the zero frame: stdin closed
            await writer.drain()
            if not data:
                return

    raw.on_lost.append(writer.close)  # detach: the monitor drops the attachment
    feeder = asyncio.ensure_future(stdin())
    watcher = on_stopping(request, raw.close)
    buf = bytearray()
    out: list[bytes] = []

    def emit(kind: int, data: bytes) -> None:
        if want.get(kind, False):
            out.append(data if tty else bytes(_header(kind, len(data))) + data)

    try:
        while not raw.lost.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            parse_frames(buf, emit)
            if out:
                data = b"".join(out)
                out.clear()
                await raw.write(data)
    except (ConnectionResetError, BrokenPipeError, OSError):
        pass
    finally:
        watcher.cancel()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionResetError):
            await feeder
        raw.close()


def _header(kind: int, size: int) -> bytes:
    return bytes([kind, 0, 0, 0]) + size.to_bytes(4, "big")
