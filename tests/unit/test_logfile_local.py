"""The `local` log driver's format (moby's daemon/logger/local: protobuf LogEntry framed
by big-endian lengths), its rotation and compression, the options' checks, and the
reader (tail, since/until, timestamps, follow) over both drivers' files."""

from __future__ import annotations

import gzip
import os
import threading
import time
from pathlib import Path

import pytest

from dockyard.detachkeys import DetachScanner, parse_detach_keys
from dockyard.engine import logs
from dockyard.engine.logfile import (
    LocalWriter,
    decode_entry,
    encode_entry,
    log_config,
    open_writer,
    parse_size,
    split_frames,
    validate_opts,
)
from dockyard.errors import InvalidArgument


def test_encode_matches_protobuf_bytes() -> None:
    # hand-checked against the proto: 1:"stdout", 2:varint 1, 3:"hi", 4:true
    raw = encode_entry("stdout", 1, b"hi", partial=True)
    body = b"\x0a\x06stdout" + b"\x10\x01" + b"\x1a\x02hi" + b"\x20\x01"
    assert raw == len(body).to_bytes(4, "big") + body + len(body).to_bytes(4, "big")


def test_defaults_are_left_out_and_round_trip() -> None:
    assert encode_entry("", 0, b"") == b"\0\0\0\0" * 2  # proto3: an empty message
    ns = 1_700_000_000_123_456_789
    raw = encode_entry("stderr", ns, b"x" * 300)  # a two-byte length varint
    bodies, used = split_frames(raw + raw[:7])  # a torn entry at the end waits
    assert used == len(raw) and len(bodies) == 1
    assert decode_entry(bodies[0]) == ("stderr", ns, b"x" * 300, False)
    assert decode_entry(encode_entry("stdout", -5, b"a")[4:-4])[1] == -5  # int64


def test_decode_skips_unknown_fields() -> None:
    # 5: partial metadata (a message), 6: attrs, 9: a fixed64, 10: a fixed32
    body = (b"\x1a\x01a" + b"\x2a\x04\x08\x01\x10\x00" + b"\x32\x00"
            + b"\x49" + b"\0" * 8 + b"\x55" + b"\0" * 4 + b"\x20\x01")
    assert decode_entry(body) == ("", 0, b"a", True)
    with pytest.raises(ValueError):
        decode_entry(b"\x1a\x05ab")  # truncated
    with pytest.raises(ValueError):
        split_frames(b"\0\0\0\x01a\0\0\0\x02")  # header and footer disagree


def test_sizes_and_options() -> None:
    assert parse_size("20m") == 20_000_000 and parse_size("1.5k") == 1500
    assert parse_size("10MiB") == 10_000_000 and parse_size("512") == 512
    with pytest.raises(ValueError, match="invalid size: 'abc'"):
        parse_size("abc")
    assert log_config("local", {}) == (20 * 1024 * 1024, 5, True)
    assert log_config("json-file", {}) == (-1, 1, False)
    assert log_config("local", {"max-size": "1k", "max-file": "2", "compress": "false"}) \
        == (1000, 2, False)
    for opts, message in [
        ({"foo": "1"}, "unknown log opt 'foo' for log driver local"),
        ({"max-size": "x"}, "invalid value for max-size: x: invalid size: 'x'"),
        ({"max-file": "y"}, 'invalid value for max-file: y: strconv.Atoi: parsing "y"'),
        ({"max-file": "-1", "compress": "false"}, "max-file must not be negative"),
        ({"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
        ({"compress": "maybe"}, "invalid boolean value for compress"),
    ]:
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
            validate_opts("local", opts)
    with pytest.raises(InvalidArgument, match="unknown log opt 'foo' for json-file log"):
        validate_opts("json-file", {"foo": "1"})
    validate_opts("local", {"max-file": "1", "compress": "false", "tag": "x"})


def _wait(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_local_writer_rotates_and_compresses(tmp_path: Path) -> None:
    path = str(tmp_path / "local-logs" / "container.log")
    w = open_writer("local", path, {"max-size": "200", "max-file": "3"})
    assert isinstance(w, LocalWriter)
    for i in range(40):
        w.write("stdout", f"line {i}\n".encode())
    w.write("stderr", b"no newline")
    w.close()
    _wait(lambda: not os.path.exists(path + ".1"))  # the background compression
    names = sorted(os.listdir(tmp_path / "local-logs"))
    assert names == ["container.log", "container.log.1.gz", "container.log.2.gz"]
    with gzip.open(path + ".1.gz") as f:
        bodies, _ = split_frames(f.read())
    assert bodies and all(decode_entry(b)[0] == "stdout" for b in bodies)
    got = list(logs.read(path))
    assert got[-1][:2] == ("stderr", "no newline")  # partial: no newline added
    lines = [line for _, line, _ in got[:-1]]
    assert lines == [f"line {i}\n" for i in range(40 - len(lines), 40)]  # oldest dropped
    assert [e[1] for e in logs.read(path, tail=3)] == ["line 38\n", "line 39\n",
                                                       "no newline"]
    assert list(logs.read(path, tail=0)) == []


def test_json_file_writer_still_rotates(tmp_path: Path) -> None:
    path = str(tmp_path / "abc-json.log")
    w = open_writer("json-file", path, {"max-size": "300", "max-file": "2"})
    for i in range(20):
        w.write("stdout", f"j{i}\n".encode())
    w.close()
    assert os.path.exists(path + ".1") and not os.path.exists(path + ".2")
    assert [e[1] for e in logs.read(path, tail=2)] == ["j18\n", "j19\n"]


def test_reader_since_until_timestamps(tmp_path: Path) -> None:
    path = str(tmp_path / "container.log")
    with open(path, "wb") as f:
        f.writelines(encode_entry("stdout", sec * 10**9 + 5, f"r{i}".encode())
                     for i, sec in enumerate((100, 200, 300)))
    got = list(logs.read(path, since=150, until=250, timestamps=True))
    assert got == [("stdout", "1970-01-01T00:03:20.000000005Z r1\n",
                    "1970-01-01T00:03:20.000000005Z")]


def test_follow_across_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "local-logs" / "container.log")
    w = open_writer("local", path, {"max-size": "100", "max-file": "2", "compress": "false"})
    w.write("stdout", b"before\n")
    done = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for _, line, _ in logs.read(path, follow=True, running=lambda: not done.is_set()):
            seen.append(line)

    t = threading.Thread(target=follow)
    t.start()
    _wait(lambda: seen == ["before\n"])
    for i in range(30):  # a rotation every third entry, slower than the reader's polls
        w.write("stdout", f"f{i}\n".encode())
        time.sleep(0.03)
    w.close()
    _wait(lambda: seen[-1:] == ["f29\n"])
    done.set()
    t.join(5)
    assert seen == ["before\n"] + [f"f{i}\n" for i in range(30)]  # all, once, in order


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@,ctrl-\\,DEL") == b"a\x00\x1c\x7f"
    with pytest.raises(InvalidArgument, match=r"Invalid detach keys \(ctrl-\) provided"):
        parse_detach_keys("ctrl-")
    s = DetachScanner()
    assert s.feed(b"ab\x10") == (b"ab", False)  # a possible start is held back
    assert s.feed(b"c") == (b"\x10c", False)  # ...and passed once it is not one
    assert s.feed(b"x\x10") == (b"x", False)
    assert s.feed(b"\x11rest") == (b"", True)  # across reads; the keys never pass
