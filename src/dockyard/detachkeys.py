"""docker's detach keys: the `--detach-keys` syntax and the scanner that finds the
sequence in an attached stdin. Both ends use it: the daemon (which ends the attach
session on a match) and the CLI (which, like docker's, scans its own stdin too).
Standard library only: the CLI imports it.
"""

from __future__ import annotations

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
# docker's key names: ctrl-@ (0), ctrl-a..ctrl-z (1-26), ctrl-[ ctrl-\\ ctrl-] ctrl-^ ctrl-_
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse_detach_keys(text: str) -> bytes:
    """docker's --detach-keys syntax ("ctrl-p,ctrl-q", "a,DEL") -> the bytes."""
    out = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            out += key.encode()[:1]
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in _CTRL:
            out.append(_CTRL.index(key[5]))
        elif key == "DEL":
            out.append(127)
        else:
            from dockyard.errors import InvalidArgument

            raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in a stdin stream, like docker's escape proxy: bytes
    that may start the sequence are held back; the sequence itself never passes."""

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS):
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes to pass on, whether the sequence was typed)"""
        out = bytearray()
        for i in range(len(data)):
            b = data[i:i + 1]
            if b == self.keys[len(self.held):len(self.held) + 1]:
                self.held += b
                if len(self.held) == len(self.keys):
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if b == self.keys[:1]:
                self.held = b
            else:
                out += b
        return bytes(out), False
