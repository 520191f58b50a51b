"""The line protocol between the runtime and the container's init stages.

Two pipes, one per direction; each message is one line written with a single
write(2), so messages from two writers (stage 1 and stage 2) never interleave.
Pipes instead of sockets keep the `socket` module out of the hot path.
"""

import os


class SyncError(Exception):
    pass


class Channel:
    def __init__(self, rfd: int, wfd: int):
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    def send(self, kind: str, payload: str = "") -> None:
        line = f"{kind}:{payload}".replace("\n", " ") + "\n"
        os.write(self.wfd, line.encode())

    def recv(self) -> tuple[str, str]:
        """Next message; ("eof", "") when every writer has gone."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                return "eof", ""
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        kind, _, payload = line.decode(errors="replace").partition(":")
        return kind, payload

    def expect(self, kind: str) -> str:
        got, payload = self.recv()
        if got == "error":
            raise SyncError(payload)
        if got != kind:
            raise SyncError(f"container init: expected {kind!r}, got {got!r}")
        return payload

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def channel_pair() -> tuple[Channel, Channel]:
    """(parent side, child side)."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    return Channel(up_r, down_w), Channel(down_r, up_w)
