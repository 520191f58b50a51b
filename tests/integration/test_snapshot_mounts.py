"""Real overlayfs mounts of snapshots: long lowerdir lists, whiteouts, diffs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.image.layers import apply_layer, write_diff
from dockyard.image.snapshot import PAGE_SIZE, Snapshotter, mount_all, unmount_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def chain(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield mnt
    while os.path.ismount(mnt):
        unmount_all(str(mnt))


def tar_bytes(*members: tuple[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack(data: bytes):
    def fill(path: str) -> None:
        apply_layer(path, io.BytesIO(data))
    return fill


def test_128_layers_mount_and_read_bottom(tmp_path: Path, target: Path) -> None:
    root = tmp_path / ("a-rather-long-directory-name-for-the-snapshotter-root" * 2)
    s = Snapshotter(str(root))
    parent = None
    for i in range(128):
        s.create_layer(chain(i), parent, writer_for(i))
        parent = chain(i)
    mounts = s.prepare("ctr", parent)
    options = ",".join(mounts[0]["options"])
    assert len(options) > PAGE_SIZE  # absolute paths are too long: compaction is exercised
    mount_all(mounts, str(target))
    try:
        assert (target / "bottom.txt").read_text() == "layer 0"
        assert (target / "top").read_text() == "127"  # upper layers win
        (target / "written").write_text("rw")
    finally:
        unmount_all(str(target))
    assert Path(s.diff_dirs("ctr")[1], "written").read_text() == "rw"
    view = s.view("v", parent)
    mount_all(view, str(target))
    try:
        assert (target / "bottom.txt").read_text() == "layer 0"
        with pytest.raises(OSError):
            (target / "nope").write_text("x")
    finally:
        unmount_all(str(target))
    s.remove("ctr")
    s.remove("v")
    shutil.rmtree(root)


def writer_for(i: int):
    def fill(path: str) -> None:
        Path(path, "top").write_text(str(i))
        if i == 0:
            Path(path, "bottom.txt").write_text("layer 0")
    return fill


def test_whiteouts_through_overlay_and_diff_back(tmp_path: Path, target: Path) -> None:
    s = Snapshotter(str(tmp_path / "snap"))
    s.create_layer(chain(0), None, unpack(tar_bytes(
        ("a", b"a"), ("b", b"b"), ("dir", None), ("dir/x", b"x"), ("keep", b"k"))))
    s.create_layer(chain(1), chain(0), unpack(tar_bytes(
        (".wh.a", b""), ("dir", None), ("dir/.wh..wh..opq", b""), ("dir/y", b"y"))))
    mount_all(s.view("v", chain(1)), str(target))
    try:
        assert sorted(os.listdir(target)) == ["b", "dir", "keep"]
        assert os.listdir(target / "dir") == ["y"]
    finally:
        unmount_all(str(target))

    # a container deletes, creates and replaces a directory; diff its upper dir
    mount_all(s.prepare("ctr", chain(1)), str(target))
    try:
        os.unlink(target / "b")
        (target / "c").write_text("c")
        shutil.rmtree(target / "dir")
        (target / "dir").mkdir()
        (target / "dir/z").write_text("z")
    finally:
        unmount_all(str(target))
    out = io.BytesIO()
    diff_id, size = write_diff(*s.diff_dirs("ctr"), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = set(tf.getnames())
    assert {".wh.b", "c", "dir", "dir/.wh..wh..opq", "dir/z"} <= names
    assert not any("overlay" in k for k in names)

    # the diff applied as a new layer gives the same view as the container had
    s.create_layer(chain(2), chain(1), unpack(out.getvalue()))
    mount_all(s.view("v2", chain(2)), str(target))
    try:
        assert sorted(os.listdir(target)) == ["c", "dir", "keep"]
        assert os.listdir(target / "dir") == ["z"]
    finally:
        unmount_all(str(target))
    assert diff_id.startswith("sha256:") and size == len(out.getvalue())
