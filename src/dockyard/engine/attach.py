"""Attach: a container's stdio streamed between the monitor and the daemon.

The daemon opens a connection to the monitor's control socket and sends
  {"op": "attach", "id": ID, "stdin": bool, "stdin_once": bool}
The monitor answers {"ok": true} and the connection becomes a stream:

- monitor -> daemon: docker's multiplexed frames (a header of stream type
  1 stdout / 2 stderr, three zero bytes, big-endian uint32 length; then the
  bytes), for every chunk the container writes (a TTY's output is stdout).
  The monitor closes the connection once the container has exited and its
  output is drained.
- daemon -> monitor: stdin as frames of a big-endian uint32 length and the
  bytes; a zero length means the client closed its stdin (with stdin_once
  the container's stdin is closed then). The daemon closing the connection
  detaches.

An attach may come before the container is started (`docker run` attaches
between create and start): the monitor keeps it until the start.

Only the standard library here: the monitor process imports this module.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2}
MAX_BUFFER = 4 << 20  # an attacher that falls this far behind is cut off
RETRY = 0.05
LINGER = 5.0  # a finished stream waits this long for the daemon to close its side
_LEN = struct.Struct(">I")
_HEADER = struct.Struct(">BxxxI")


def frame(stream: str, data: bytes) -> bytes:
    """One docker multiplexed frame."""
    return _HEADER.pack(STREAM_IDS.get(stream, 1), len(data)) + data


def stdin_frame(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


# -- the monitor side -------------------------------------------------------------------

class Attachment:
    """One attach connection inside the monitor (driven by its selector loop).

    `mon` is the Monitor: its .sel (selector) and ._later(delay, fn) are used."""

    def __init__(self, mon: Any, conn: socket.socket, cid: str, req: dict, pending: bytes):
        self.mon = mon
        self.conn = conn
        self.cid = cid
        self.want_stdin = bool(req.get("stdin"))
        self.stdin_once = bool(req.get("stdin_once"))
        self.running: Any = None  # the monitor's Running once the container started
        self.out = bytearray()
        self.raw = bytearray(pending)  # unparsed stdin frames from the daemon
        self.to_stdin = bytearray()
        self.stdin_eof = False
        self.blocked = False  # stdin full: stop reading the connection
        self.retrying = False
        self.closed = False
        self.lingering = False  # finished: output sent, waiting for the daemon's EOF
        self._mask = 0
        self._update()
        if self.raw:  # stdin frames that came with the request (the zero frame too)
            self._parse_stdin()

    # selector registration: READ unless blocked, WRITE while output is buffered
    def _update(self) -> None:
        if self.closed:
            return
        if self.lingering:
            mask = selectors.EVENT_READ
        else:
            mask = (0 if self.blocked else selectors.EVENT_READ) | \
                (selectors.EVENT_WRITE if self.out else 0)
        if mask == self._mask:
            return
        sel = self.mon.sel
        try:
            if self._mask and mask:
                sel.modify(self.conn, mask, ("attach", self))
            elif mask:
                sel.register(self.conn, mask, ("attach", self))
            else:
                sel.unregister(self.conn)
        except (KeyError, ValueError, OSError):
            pass
        self._mask = mask

    def bind(self, running: Any) -> None:
        """The container started: receive its output, feed its stdin."""
        self.running = running
        running.sinks.append(self.sink)
        self.flush_stdin()

    def ready(self, mask: int) -> None:
        if self.lingering:
            self._discard_input()
            return
        if mask & selectors.EVENT_WRITE:
            self._send()
        if mask & selectors.EVENT_READ and not self.closed:
            self._receive()

    # -- output ---------------------------------------------------------------------------

    def sink(self, stream: str, data: bytes) -> None:
        if self.closed or self.lingering:
            return
        self.out += frame(stream, data)
        if len(self.out) > MAX_BUFFER:
            self.close()
            return
        self._send()

    def _send(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.conn.send(self.out)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            del self.out[:sent]
        self._update()

    # -- input ----------------------------------------------------------------------------

    def _receive(self) -> None:
        try:
            data = self.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the daemon detached
            self.close()
            return
        self.raw += data
        self._parse_stdin()

    def _parse_stdin(self) -> None:
        while len(self.raw) >= 4:
            (n,) = _LEN.unpack_from(self.raw)
            if len(self.raw) < 4 + n:
                break
            payload = bytes(self.raw[4:4 + n])
            del self.raw[:4 + n]
            if n == 0:
                self.stdin_eof = True
            elif self.want_stdin and not self.stdin_eof:
                self.to_stdin += payload
        self.flush_stdin()

    def flush_stdin(self) -> None:
        r = self.running
        if self.closed or self.lingering or r is None or r.finishing:
            return
        if self.to_stdin:
            if r.stdin < 0:
                self._retry()
                return
            try:
                while self.to_stdin:
                    n = os.write(r.stdin, self.to_stdin)
                    del self.to_stdin[:n]
            except BlockingIOError:
                self.blocked = True
                self._update()
                self._retry()
                return
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.EBADF, errno.EIO):
                    raise
                self.to_stdin.clear()
        if self.blocked:
            self.blocked = False
            self._update()
        if self.stdin_eof and self.stdin_once and not r.tty and r.stdin >= 0:
            os.close(r.stdin)
            r.stdin = -1

    def _retry(self) -> None:
        if self.retrying:
            return
        self.retrying = True

        def again() -> None:
            self.retrying = False
            self.flush_stdin()
        self.mon._later(RETRY, again)

    # -- the end ----------------------------------------------------------------------------

    def finish(self, timeout: float = 2.0) -> None:
        """The container exited: send what is buffered (bounded), then end the stream.

        Gracefully: the write side is shut down (the daemon reads the output, then
        EOF) and the connection is closed once the daemon has closed its side, its
        last stdin frames read and dropped. Closing a unix socket with unread data
        in it makes the peer's next read fail with ECONNRESET, and asyncio's
        StreamReader then raises that before handing over the output it had
        buffered: a client whose zero frame (stdin at EOF) crossed the exec's end
        lost the output."""
        if self.closed:
            return
        deadline = time.monotonic() + timeout
        try:
            self.conn.setblocking(True)
            while self.out and time.monotonic() < deadline:
                self.conn.settimeout(max(0.01, deadline - time.monotonic()))
                sent = self.conn.send(self.out)
                del self.out[:sent]
        except OSError:
            pass
        self.out.clear()
        try:
            self.conn.setblocking(False)
            self.conn.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._detach()
        self.lingering = True
        self.blocked = False
        self._update()
        self._discard_input()
        if not self.closed:
            self.mon._later(LINGER, self.close)

    def _discard_input(self) -> None:
        """(lingering) Read and drop what the daemon still sends; close at its EOF."""
        while not self.closed:
            try:
                data = self.conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return

    def close(self) -> None:
        if self.closed:
            return
        self._mask_off()
        self.closed = True
        self._detach()
        try:
            self.conn.close()
        except OSError:
            pass

    def _detach(self) -> None:
        """Stop being fed the container's output and forget the stream."""
        if self.running is not None and self.sink in self.running.sinks:
            self.running.sinks.remove(self.sink)
        pending = self.mon.pending_attach.get(self.cid)
        if pending and self in pending:
            pending.remove(self)
            if not pending:
                del self.mon.pending_attach[self.cid]
        attached = getattr(self.running, "attachments", None)
        if attached and self in attached:
            attached.remove(self)

    def _mask_off(self) -> None:
        if self._mask:
            try:
                self.mon.sel.unregister(self.conn)
            except (KeyError, ValueError, OSError):
                pass
            self._mask = 0


def attach_op(mon: Any, conn: socket.socket, req: dict) -> None:
    """The monitor's "attach" and "resize" requests."""
    cid = req.get("id", "")
    if req.get("op") == "resize":
        r = mon.running.get(cid)
        if r is not None and r.tty and r.stdin >= 0:
            resize(r.stdin, int(req.get("h") or 0), int(req.get("w") or 0))
        mon._send(conn, {"ok": True})
        return
    try:
        mon.sel.unregister(conn)
    except (KeyError, ValueError):
        pass
    rest = mon.bufs.pop(conn, b"")
    mon._send(conn, {"ok": True})
    if conn.fileno() < 0:  # gone already
        return
    att = Attachment(mon, conn, cid, req, rest)
    r = mon.running.get(cid)
    if r is not None and not r.finishing:
        r.attachments.append(att)
        att.bind(r)
    else:
        mon.pending_attach.setdefault(cid, []).append(att)


def resize(fd: int, height: int, width: int) -> None:
    """Set a pty's window size (the monitor holds the master)."""
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


# -- the daemon side ----------------------------------------------------------------------

def parse_frames(buf: bytearray, emit: Callable[[int, bytes], None]) -> None:
    """Take every complete multiplexed frame off the front of `buf`."""
    while len(buf) >= 8:
        kind, n = _HEADER.unpack_from(buf)
        if len(buf) < 8 + n:
            return
        emit(kind, bytes(buf[8:8 + n]))
        del buf[:8 + n]
