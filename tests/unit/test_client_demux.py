"""stdcopy frames: dockyard.client.stdcopy.demux over bytes, files, sockets and
chunk iterables, with partial reads, empty and large frames, and bad input."""

from __future__ import annotations

import io
import socket
import threading

import pytest

from dockyard.client.stdcopy import STDERR, STDIN, STDOUT, collect, demux, frame
from dockyard.errors import DockyardError, InvalidArgument


def _joined(pieces: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Merge consecutive pieces of the same stream (a frame may come in pieces)."""
    out: list[tuple[int, bytes]] = []
    for stream, data in pieces:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + data)
        else:
            out.append((stream, data))
    return out


def test_frame_header_layout() -> None:
    assert frame(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(STDERR, b"x" * 0x01020304)[:8] == b"\x02\x00\x00\x00\x01\x02\x03\x04"
    with pytest.raises(InvalidArgument):
        frame(7, b"")


def test_frames_from_bytes() -> None:
    data = frame(STDOUT, b"hi\n") + frame(STDERR, b"err\n") + frame(STDIN, b"in")
    assert list(demux(data)) == [(STDOUT, b"hi\n"), (STDERR, b"err\n"), (STDIN, b"in")]


def test_empty_stream_and_empty_frames() -> None:
    assert list(demux(b"")) == []
    data = frame(STDOUT, b"") + frame(STDERR, b"e") + frame(STDOUT, b"")
    assert list(demux(data)) == [(STDERR, b"e")]


class Trickle(io.RawIOBase):
    """A reader that returns at most `step` bytes per read: partial reads everywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        take = self.step if n < 0 else min(n, self.step)
        chunk = self.data[self.pos:self.pos + take]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("step", [1, 3, 7, 8, 9, 4096])
def test_partial_reads(step: int) -> None:
    frames = [(STDOUT, b"a" * 10), (STDERR, b"b" * 3), (STDOUT, b"c" * 17), (STDERR, b"")]
    data = b"".join(frame(s, d) for s, d in frames)
    got = _joined(list(demux(Trickle(data, step))))
    assert got == [(s, d) for s, d in frames if d]


def test_chunk_iterable_splitting_headers() -> None:
    data = frame(STDOUT, b"hello") + frame(STDERR, b"world")
    chunks = [data[:3], b"", data[3:10], data[10:14], data[14:]]
    assert collect(chunks) == (b"hello", b"world")


def test_large_frame_comes_out_in_pieces_of_at_most_bufsize() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    pieces = list(demux(io.BytesIO(frame(STDOUT, payload)), bufsize=65536))
    assert len(pieces) > 1
    assert all(s == STDOUT and len(d) <= 65536 for s, d in pieces)
    assert b"".join(d for _, d in pieces) == payload


def test_over_a_socket() -> None:
    a, b = socket.socketpair()
    frames = [(STDOUT, b"x" * 100_000), (STDERR, b"boom\n"), (STDOUT, b"end\n")]

    def writer() -> None:
        with b:
            for s, d in frames:
                data = frame(s, d)
                for i in range(0, len(data), 5000):  # arbitrary write boundaries
                    b.sendall(data[i:i + 5000])

    t = threading.Thread(target=writer)
    t.start()
    with a:
        assert _joined(list(demux(a))) == frames
    t.join()


def test_unknown_stream_type() -> None:
    bad = b"\x05\x00\x00\x00\x00\x00\x00\x01x"
    with pytest.raises(InvalidArgument, match="unrecognized input header.*5"):
        list(demux(bad))


def test_error_after_good_frames_keeps_what_came_before() -> None:
    seen: list = []
    with pytest.raises(InvalidArgument):
        seen.extend(demux(frame(STDOUT, b"ok") + b"\x09" + b"\x00" * 7))
    assert seen == [(STDOUT, b"ok")]


def test_truncated_header() -> None:
    with pytest.raises(DockyardError, match="frame header"):
        list(demux(frame(STDOUT, b"ok") + b"\x01\x00\x00"))


def test_truncated_payload() -> None:
    data = frame(STDOUT, b"0123456789")[:-4]
    out: list = []
    with pytest.raises(DockyardError, match="6 of 10 bytes"):
        out.extend(demux(data))
    assert out == [(STDOUT, b"012345")]


def test_systemerr_frame_raises_with_message() -> None:
    data = frame(STDOUT, b"x") + frame(3, b"container gone")
    with pytest.raises(DockyardError, match="error from daemon in stream: container gone"):
        list(demux(data))


def test_unreadable_source() -> None:
    with pytest.raises(InvalidArgument):
        list(demux(42))
