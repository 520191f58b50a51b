"""Hijacked connections: attach and exec start turn the HTTP connection into a raw
bidirectional byte stream.

The client sends `Connection: Upgrade` / `Upgrade: tcp`; the daemon answers
`101 UPGRADED` and from then on the socket carries the container's streams
(raw with a TTY, stdcopy frames without). Like the docker CLI we also accept
a plain `200` whose body is the stream (old daemons), de-chunking it if needed.
Half-close of stdin is shutdown(SHUT_WR) on the socket.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dockyard.client.transport import error_for
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from typing import Self

MAX_HEADER = 64 * 1024


class HijackedStream:
    """The container's streams over a hijacked connection.

    recv()/read() give the daemon's bytes (b"" at the end), sendall()/write()
    send stdin, close_write() half-closes stdin, close() drops the connection."""

    def __init__(self, sock: socket.socket, status: int, headers: dict[str, str],
                 pending: bytes = b"") -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._pending = pending
        self._chunked = status != 101 and "chunked" in headers.get("transfer-encoding", "")
        length = headers.get("content-length")
        self._left = int(length) if status != 101 and length and length.isdigit() else None
        self._chunk_left = 0
        self._chunk_started = False
        self._done = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    # -- reading --------------------------------------------------------------------------
    def _raw(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self.sock.recv(n)

    def _raw_line(self) -> bytes:
        line = b""
        while b"\r\n" not in line:
            data = self._raw(1 if not self._pending else len(self._pending))
            if not data:
                return line
            line += data
            if len(line) > MAX_HEADER:
                raise DockyardError("malformed chunked stream from the daemon")
        line, _, rest = line.partition(b"\r\n")
        self._pending = rest + self._pending
        return line

    def _recv_chunked(self, n: int) -> bytes:
        while not self._done:
            if self._chunk_left:
                data = self._raw(min(n, self._chunk_left))
                if not data:
                    self._done = True
                    return b""
                self._chunk_left -= len(data)
                return data
            if self._chunk_started:
                self._raw_line()  # the CRLF after a chunk's data
            size_line = self._raw_line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self._done = True
                if not size_line:
                    return b""
                raise DockyardError("malformed chunked stream from the daemon") from None
            self._chunk_started = True
            if size == 0:
                self._done = True
            self._chunk_left = size
        return b""

    def recv(self, n: int = 65536) -> bytes:
        if self._chunked:
            return self._recv_chunked(n)
        if self._left is not None:
            if self._left <= 0:
                return b""
            data = self._raw(min(n, self._left))
            self._left -= len(data)
            return data
        return self._raw(n)

    read = recv

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.recv(65536)
            if not data:
                return
            yield data

    # -- writing --------------------------------------------------------------------------
    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    write = sendall

    def close_write(self) -> None:
        """Half-close: the daemon sees EOF on the container's stdin, we keep reading."""
        if type(self.sock).__name__ == "SSLSocket":
            # Python's ssl cannot send close_notify and keep reading
            raise DockyardError("closing stdin is not supported over TLS connections")
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already gone: nothing left to close

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_bytes(method: str, path: str, host: str, body: bytes | None,
                  headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: Upgrade",
             "Upgrade: tcp"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read the response's status line and headers; returns (status, headers, leftover)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise DockyardError("the daemon closed the connection before answering")
        buf += data
        if len(buf) > MAX_HEADER:
            raise DockyardError("response header from the daemon too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DockyardError(f"malformed response from the daemon: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def hijack(sock: socket.socket, method: str, path: str, host: str,
           body: bytes | None = None, headers: dict[str, str] | None = None) -> HijackedStream:
    """Send the upgrade request on `sock` and return the stream once the daemon
    answers 101 (or a streaming 200); HTTP errors raise their DockyardError."""
    try:
        sock.sendall(request_bytes(method, path, host, body, headers or {}))
        status, head, rest = read_head(sock)
        stream = HijackedStream(sock, status, head, rest)
        if status >= 400:
            sock.settimeout(10)  # an error body without a length ends when the daemon closes
            try:
                raw = b"".join(stream)
            except TimeoutError:
                raw = b""
            raise error_for(status, _message(raw, status))
        if status not in (101, 200):
            raise DockyardError(f"unexpected answer to an upgrade request: {status}")
    except BaseException:
        sock.close()
        raise
    return stream


def _message(raw: bytes, status: int) -> str:
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    except ValueError:
        pass
    return raw.decode(errors="replace").strip() or f"HTTP status {status}"
