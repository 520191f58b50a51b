"""COPY/ADD semantics written as layer tars (no daemon): destinations, directory
contents, wildcards, --chmod/--chown/--parents/--exclude, archives, and the image
root view (layers, deletions, symlinks resolved inside the root)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.build.context import BuildContext
from dockyard.build.copy import CopyOptions, copy_context, parse_chmod
from dockyard.build.layers import LayerWriter
from dockyard.build.rootview import RootView, lookup_user
from dockyard.errors import InvalidArgument


def _ctx(tmp_path: Path, files: dict[str, bytes | None], modes: dict[str, int] | None = None
         ) -> BuildContext:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1000
            info.mode = (modes or {}).get(name, 0o644)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, (modes or {}).get(name, 0o755)
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return BuildContext.from_stream(buf, str(tmp_path))


def _layer(tmp_path: Path, ctx: BuildContext, sources: list[str], dest: str,
           view: RootView | None = None, workdir: str = "/", **opts) -> dict[str, tarfile.TarInfo]:
    out = io.BytesIO()
    w = LayerWriter(out, view or RootView([]), opts.get("owner"))
    copy_context(ctx, sources, dest, workdir, w, CopyOptions(**opts), str(tmp_path))
    w.close()
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_file_to_path_and_to_directory(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"a.txt": b"a", "dir": None, "dir/b": b"b", "dir/sub": None,
                          "dir/sub/c": b"c"})
    assert set(_layer(tmp_path, ctx, ["a.txt"], "/x/y")) == {"x", "x/y"}
    assert set(_layer(tmp_path, ctx, ["a.txt"], "/x/")) == {"x", "x/a.txt"}
    # a directory's contents, not the directory itself
    assert set(_layer(tmp_path, ctx, ["dir"], "/app")) == {"app", "app/b", "app/sub",
                                                           "app/sub/c"}
    assert set(_layer(tmp_path, ctx, ["a.txt"], "rel/", workdir="/w")) == {"w", "w/rel",
                                                                          "w/rel/a.txt"}
    with pytest.raises(InvalidArgument, match="must be a directory and end with a /"):
        _layer(tmp_path, ctx, ["a.txt", "dir/b"], "/x")
    # as docker: a matched directory's contents land in the destination (one level flat)
    assert set(_layer(tmp_path, ctx, ["dir/*"], "/m/")) == {"m", "m/b", "m/c"}


def test_modes_owner_mtime(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"run.sh": b"#!/bin/sh\n"}, {"run.sh": 0o755})
    m = _layer(tmp_path, ctx, ["run.sh"], "/bin/")["bin/run.sh"]
    assert (m.mode, m.uid, m.gid, m.mtime) == (0o755, 0, 0, 1000)
    m = _layer(tmp_path, ctx, ["run.sh"], "/bin/", owner=(1000, 50),
               chmod=parse_chmod("640"))["bin/run.sh"]
    assert (m.mode, m.uid, m.gid) == (0o640, 1000, 50)
    with pytest.raises(InvalidArgument):
        parse_chmod("u+x")


def test_parents_and_exclude(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"x/a.txt": b"a", "y/b.txt": b"b", "y/skip.tmp": b"t"})
    got = _layer(tmp_path, ctx, ["x/a.txt", "y/b.txt"], "/dst/", parents=True)
    assert {"dst/x/a.txt", "dst/y/b.txt"} <= set(got)
    got = _layer(tmp_path, ctx, ["y"], "/dst", exclude=["*.tmp", "**/*.tmp"])
    assert "dst/b.txt" in got and "dst/skip.tmp" not in got


def test_add_extracts_local_archives(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg/file")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    ctx = _ctx(tmp_path, {"pkg.tgz": raw.getvalue(), "plain.txt": b"p"})
    got = _layer(tmp_path, ctx, ["pkg.tgz"], "/opt/", extract=True)
    assert "opt/pkg/file" in got and "opt/pkg.tgz" not in got
    assert "opt/plain.txt" in _layer(tmp_path, ctx, ["plain.txt"], "/opt/", extract=True)


def test_add_refuses_archive_escapes(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    ctx = _ctx(tmp_path, {"evil.tar": raw.getvalue()})
    with pytest.raises(InvalidArgument, match=r"\.\."):
        _layer(tmp_path, ctx, ["evil.tar"], "/x/", extract=True)


def test_layer_applies_with_the_hardened_extraction(tmp_path: Path) -> None:
    from dockyard.image.layers import apply_layer

    ctx = _ctx(tmp_path, {"d": None, "d/" + "long-name-" * 12: b"x" * 700, "d/ü": b"u"})
    out = io.BytesIO()
    w = LayerWriter(out, RootView([]))
    copy_context(ctx, ["d"], "/app/", "/", w, CopyOptions(), str(tmp_path))
    w.close()
    out.seek(0)
    root = tmp_path / "applied"
    root.mkdir()
    apply_layer(str(root), out)
    assert (root / "app" / ("long-name-" * 12)).read_bytes() == b"x" * 700
    assert (root / "app" / "ü").read_bytes() == b"u"


# -- the image root view ----------------------------------------------------------------------

def _layers(tmp_path: Path) -> RootView:
    low, high = tmp_path / "low", tmp_path / "high"
    (low / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/x\n")
    (low / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    (low / "usr" / "bin").mkdir(parents=True)
    (low / "old").write_text("gone")
    os.symlink("usr/bin", low / "bin")
    (high / "etc").mkdir(parents=True)
    (high / "etc" / "hostname").write_text("h")
    os.symlink("/etc", high / "link-abs")
    os.symlink("../../..", high / "up")
    if os.geteuid() == 0:
        os.mknod(high / "old", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    return RootView([str(high), str(low)])


def test_root_view(tmp_path: Path) -> None:
    view = _layers(tmp_path)
    assert view.is_dir("/etc") and view.lstat("/etc/hostname") and view.lstat("/etc/passwd")
    assert view.resolve("/bin/tool") == "/usr/bin/tool"
    assert view.resolve("/link-abs/passwd") == "/etc/passwd"
    assert view.resolve("/up/etc") == "/etc"  # never above the root
    assert view.listdir("/etc") == ["group", "hostname", "passwd"]
    if os.geteuid() == 0:
        assert view.lstat("/old") is None and "old" not in view.listdir("/")
    assert lookup_user(view, "app") == (1000, 1000)
    assert lookup_user(view, "app:staff") == (1000, 50)
    assert lookup_user(view, "7:8") == (7, 8)
    with pytest.raises(LookupError):
        lookup_user(view, "nobody-here")


def test_copy_follows_destination_links_inside_the_image(tmp_path: Path) -> None:
    view = _layers(tmp_path)
    ctx = _ctx(tmp_path, {"tool": b"t"})
    got = _layer(tmp_path, ctx, ["tool"], "/bin/", view)
    assert "usr/bin/tool" in got and "bin/tool" not in got
    # parents copied up with the image's own metadata
    assert got["usr"].mode == os.stat(tmp_path / "low" / "usr").st_mode & 0o7777
