"""Functional tests of layer tars: apply, diff, whiteouts, compression."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image import compression
from dockyard.image.layers import (
    LayerLimits,
    apply_layer,
    compress,
    open_decompressed,
    write_diff,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, mknod, trusted xattrs)")


def snapshot_tree(root: Path) -> dict[str, tuple]:
    """Everything a layer must preserve, per path (hardlinks as groups)."""
    result: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    extra = (extra, inodes.setdefault(st.st_ino, rel))
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {k: os.getxattr(path, k) for k in sorted(os.listxattr(path))}
            mtime = st.st_mtime_ns // 10**9
            result[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime,
                           extra, xattrs)
    return result


def make_tree(root: Path) -> None:
    """A tree like an overlay upper dir: every kind of entry, whiteouts, an opaque dir."""
    (root / "bin").mkdir()
    (root / "bin/prog").write_bytes(b"\x7fELF" + bytes(5000))
    os.chmod(root / "bin/prog", 0o4755)  # setuid
    (root / "bin/sgid").write_bytes(b"g")
    os.chmod(root / "bin/sgid", 0o2711)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)  # sticky
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.link(root / "etc/passwd", root / "etc/passwd-hardlink")
    os.symlink("/etc/passwd", root / "etc/abs-link")
    os.symlink("../bin/prog", root / "etc/rel-link")
    os.symlink("/nonexistent/outside", root / "dangling")
    (root / "home").mkdir()
    (root / "home/user").mkdir(mode=0o700)
    (root / "home/user/data").write_bytes(os.urandom(100_000))
    (root / "home/ünïcode name").write_text("x")
    (root / "empty").write_bytes(b"")
    os.setxattr(root / "bin/prog", "user.comment", b"hello")
    os.mkfifo(root / "fifo", 0o640)
    if ROOT:
        os.chown(root / "home/user", 1000, 1000)
        os.chown(root / "home/user/data", 1000, 1001)
        os.lchown(root / "etc/rel-link", 7, 8)
        os.setxattr(root / "bin/prog", "trusted.binary", bytes(range(256)))
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
        os.mknod(root / "etc/deleted", stat.S_IFCHR, 0)  # overlay whiteout
        (root / "opaque").mkdir()
        (root / "opaque/new").write_text("n")
        os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    t = 1_600_000_000
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(Path(dirpath, name), (t, t), follow_symlinks=False)
            t += 17
    os.utime(root, (t, t))


def tar_of(entries_root: Path) -> bytes:
    out = io.BytesIO()
    write_diff([], str(entries_root), out)
    return out.getvalue()


def test_round_trip_preserves_everything(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    make_tree(src)
    out = io.BytesIO()
    diff_id, size = write_diff([], str(src), out)
    data = out.getvalue()
    assert size == len(data)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    applied_id, applied_size = apply_layer(str(dst), io.BytesIO(data))
    assert (applied_id, applied_size) == (diff_id, size)
    assert snapshot_tree(dst) == snapshot_tree(src)
    # the same tree gives the same bytes (deterministic order and headers)
    assert tar_of(dst) == data


@needs_root
def test_whiteouts_become_tar_markers_and_back(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    data = tar_of(src)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = {m.name: m for m in tf.getmembers()}
    assert "etc/.wh.deleted" in names and names["etc/.wh.deleted"].isreg()
    assert "opaque/.wh..wh..opq" in names
    assert "etc/deleted" not in names
    assert not any("trusted.overlay" in k for m in names.values() for k in m.pax_headers)
    assert names["etc/passwd-hardlink"].islnk()
    assert names["etc/passwd-hardlink"].linkname == "etc/passwd"
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(str(dst), io.BytesIO(data))
    st = os.lstat(dst / "etc/deleted")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dst / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (dst / "etc/.wh.deleted").exists()


def build_tar(members: list[tuple[tarfile.TarInfo, bytes | None]],
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644 if kind != tarfile.DIRTYPE else 0o755
    for key, value in kw.items():
        setattr(info, key, value)
    return info


@needs_root
def test_whiteout_entries_apply_overlay_style(tmp_path: Path) -> None:
    data = build_tar([
        (entry("a/", tarfile.DIRTYPE), None),
        (entry("a/.wh.gone"), b""),
        (entry("a/.wh..wh..opq"), b""),
        (entry("a/.wh..wh.plnk"), b""),  # aufs metadata: ignored
        (entry("b/c/.wh.x"), b""),  # parents created on the way
    ])
    apply_layer(str(tmp_path), io.BytesIO(data))
    assert os.lstat(tmp_path / "a/gone").st_rdev == 0
    assert stat.S_ISCHR(os.lstat(tmp_path / "b/c/x").st_mode)
    assert os.getxattr(tmp_path / "a", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "a")) == ["gone"]


def test_gnu_and_ustar_formats_and_long_names(tmp_path: Path) -> None:
    long = "d/" + "x" * 200 + "/" + "y" * 120
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        root = tmp_path / str(fmt)
        root.mkdir()
        data = build_tar([
            (entry(long, mtime=1234567890), b"content"),
            (entry("l", tarfile.SYMTYPE, linkname="t" * 300), None),
        ], fmt)
        apply_layer(str(root), io.BytesIO(data))
        assert (root / long).read_bytes() == b"content"
        assert os.readlink(root / "l") == "t" * 300
        assert os.stat(root / long).st_mtime == 1234567890
    ustar = tmp_path / "ustar"
    ustar.mkdir()
    data = build_tar([(entry("p/" * 60 + "f"), b"u")], tarfile.USTAR_FORMAT)
    apply_layer(str(ustar), io.BytesIO(data))
    assert (ustar / ("p/" * 60 + "f")).read_bytes() == b"u"


def test_diff_id_stable_and_over_whole_stream(tmp_path: Path) -> None:
    data = build_tar([(entry("f"), b"hello")])
    ids = set()
    for i in range(3):
        root = tmp_path / str(i)
        root.mkdir()
        ids.add(apply_layer(str(root), io.BytesIO(data)))
    assert ids == {("sha256:" + hashlib.sha256(data).hexdigest(), len(data))}


def test_later_entry_replaces_earlier(tmp_path: Path) -> None:
    data = build_tar([
        (entry("x"), b"one"),
        (entry("x"), b"two"),
        (entry("d/", tarfile.DIRTYPE), None),
        (entry("d/f"), b"f"),
        (entry("d"), b"now a file"),
        (entry("s", tarfile.SYMLNK if hasattr(tarfile, "SYMLNK") else tarfile.SYMTYPE,
               linkname="x"), None),
        (entry("s"), b"file over symlink"),
    ])
    apply_layer(str(tmp_path), io.BytesIO(data))
    assert (tmp_path / "x").read_bytes() == b"two"
    assert (tmp_path / "d").read_bytes() == b"now a file"
    assert not (tmp_path / "s").is_symlink()


def test_devices_skipped_when_not_allowed(tmp_path: Path) -> None:
    data = build_tar([
        (entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None),
        (entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (entry("dev/ok"), b"x"),
    ])
    apply_layer(str(tmp_path), io.BytesIO(data), allow_devices=False)
    assert sorted(os.listdir(tmp_path / "dev")) == ["ok"]


def test_directory_times_set_after_contents(tmp_path: Path) -> None:
    data = build_tar([
        (entry("d/", tarfile.DIRTYPE, mtime=1000), None),
        (entry("d/a"), b"a"),
        (entry("d/b"), b"b"),
    ])
    apply_layer(str(tmp_path), io.BytesIO(data))
    assert os.stat(tmp_path / "d").st_mtime == 1000


def test_entry_limits(tmp_path: Path) -> None:
    data = build_tar([(entry(f"f{i}"), b"") for i in range(20)])
    with pytest.raises(InvalidArgument, match="more than 10 tar entries"):
        apply_layer(str(tmp_path), io.BytesIO(data), limits=LayerLimits(max_entries=10))


@pytest.mark.parametrize("algo", ["gzip", "zstd"])
def test_compress_round_trip(tmp_path: Path, algo: str) -> None:
    payload = os.urandom(1 << 20) + b"compressible " * 400_000 + os.urandom(1000)
    out = io.BytesIO()
    digest, size = compress(io.BytesIO(payload), out, algo)
    blob = out.getvalue()
    assert size == len(blob) < len(payload)
    assert digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert open_decompressed(io.BytesIO(blob)).read(-1) is not None
    reader = open_decompressed(io.BytesIO(blob))
    chunks = []
    while chunk := reader.read(65536):
        chunks.append(chunk)
    assert b"".join(chunks) == payload
    path = tmp_path / f"blob.{algo}"
    path.write_bytes(blob)
    tool = "gzip" if algo == "gzip" else "zstd"
    subprocess.run([tool, "-t", "-q", str(path)], check=True)
    if algo == "gzip":
        assert gzip.decompress(blob) == payload
        # one gzip member (pigz-style), not several
        assert blob.count(b"\x1f\x8b\x08") >= 1 and blob[:2] == b"\x1f\x8b"
        assert subprocess.run(["gzip", "-dc", str(path)], capture_output=True,
                              check=True).stdout == payload


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_gzip_output_independent_of_threads(threads: int) -> None:
    payload = b"".join(hashlib.sha256(str(i).encode()).hexdigest().encode()
                       for i in range(200_000))
    outs = []
    for n in (1, threads):
        out = io.BytesIO()
        compress(io.BytesIO(payload), out, "gzip", threads=n)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    assert gzip.decompress(outs[0]) == payload


def test_compress_empty_and_small() -> None:
    for payload in (b"", b"x"):
        for algo in ("gzip", "zstd"):
            out = io.BytesIO()
            compress(io.BytesIO(payload), out, algo)
            assert open_decompressed(io.BytesIO(out.getvalue())).read(100) == payload


def test_compress_unknown_algorithm() -> None:
    with pytest.raises(InvalidArgument, match="unsupported compression: lz4"):
        compress(io.BytesIO(b""), io.BytesIO(), "lz4")


def test_open_decompressed_multi_member_gzip_and_plain(tmp_path: Path) -> None:
    tar = build_tar([(entry("f"), b"data")])
    blob = gzip.compress(tar[:700]) + gzip.compress(tar[700:]) + bytes(30)
    diff_id, size = apply_layer(str(tmp_path), open_decompressed(io.BytesIO(blob)))
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest() and size == len(tar)
    assert open_decompressed(io.BytesIO(tar)).read(len(tar) + 10) == tar


def test_corrupt_gzip_is_invalid(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(build_tar([(entry("f"), os.urandom(5000))])))
    blob[200:210] = b"0123456789"
    with pytest.raises(InvalidArgument):
        apply_layer(str(tmp_path), open_decompressed(io.BytesIO(bytes(blob))))
    with pytest.raises(InvalidArgument, match="truncated"):
        apply_layer(str(tmp_path), open_decompressed(io.BytesIO(bytes(blob[:100]))))


def test_gzip_block_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "BLOCK_SIZE", 1000)
    for n in (0, 999, 1000, 1001, 5000):
        payload = os.urandom(n // 2) + bytes(n - n // 2)
        out = io.BytesIO()
        compress(io.BytesIO(payload), out, "gzip")
        assert gzip.decompress(out.getvalue()) == payload


def test_read_ahead_gives_the_same_bytes_and_errors():
    import io

    from dockyard.image.compression import ReadAhead

    data = bytes(range(256)) * 9000
    with ReadAhead(io.BytesIO(data), chunk=1000, depth=2) as r:
        got = r.read(10) + r.read(123456) + r.read()
    assert got == data

    class Broken(io.BytesIO):
        def read(self, n=-1):
            raise OSError("disk on fire")

    with ReadAhead(Broken()) as r, pytest.raises(OSError, match="disk on fire"):
        r.read()

    with ReadAhead(io.BytesIO(data), chunk=100, depth=1) as r:
        assert r.read(5) == data[:5]  # closing early must not hang on a full queue
