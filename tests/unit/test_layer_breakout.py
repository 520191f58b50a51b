"""Hostile layer tars: nothing outside the snapshot root may change.

Each case builds a malicious tar in memory and applies it to `root`; next to
the root sits `sentinel/` (a directory with a file) that must stay exactly as
it was. The result is either a clear InvalidArgument or a safe unpack.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.layers import LayerLimits, apply_layer, open_decompressed

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def state(top: Path, skip: set[Path]) -> dict[str, tuple]:
    result = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in dirnames + filenames + ["."]:
            path = Path(dirpath, name)
            st = os.lstat(path)
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            xattrs = sorted(os.listxattr(path, follow_symlinks=False))
            result[str(path)] = (st.st_mode, st.st_uid, st.st_mtime_ns, st.st_nlink, data,
                                 xattrs)
    return result


class Env:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        self.sentinel = tmp / "sentinel"
        self.sentinel.mkdir()
        (self.sentinel / "keep").write_text("precious")
        (tmp / "outside.txt").write_text("outside")
        self.before = state(tmp, {self.root})

    def apply(self, data: bytes, **kw: object) -> tuple[str, int]:
        return apply_layer(str(self.root), io.BytesIO(data), **kw)  # type: ignore[arg-type]

    def refused(self, data: bytes, match: str = "", **kw: object) -> None:
        with pytest.raises(InvalidArgument, match=match):
            self.apply(data, **kw)

    def intact(self) -> bool:
        return state(self.tmp, {self.root}) == self.before


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    assert e.intact(), "something outside the root changed"


def info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type = kind
    i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in kw.items():
        setattr(i, key, value)
    return i


def tar(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for i, data in members:
            if data is not None:
                i.size = len(data)
            tf.addfile(i, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def f(name: str, data: bytes = b"pwned", **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    return info(name, **kw), data


def d(name: str, **kw: object) -> tuple[tarfile.TarInfo, None]:
    return info(name, tarfile.DIRTYPE, **kw), None


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return info(name, tarfile.SYMTYPE, linkname=target), None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return info(name, tarfile.LNKTYPE, linkname=target), None


def with_typeflag(data: bytes, flag: bytes) -> bytes:
    """Patch the first header's typeflag and fix its checksum."""
    block = bytearray(data[:512])
    block[156:157] = flag
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + data[512:]


# --- `..` and absolute paths ------------------------------------------------------

def test_dotdot_file(env: Env) -> None:
    env.refused(tar(f("../sentinel/keep")), "contains '..'")


def test_dotdot_in_the_middle(env: Env) -> None:
    env.refused(tar(f("a/b/../../../sentinel/pwned")), "contains '..'")


def test_absolute_path_is_stripped(env: Env) -> None:
    env.apply(tar(f("/abs/file")))
    assert (env.root / "abs/file").read_bytes() == b"pwned"


def test_absolute_path_naming_the_sentinel(env: Env) -> None:
    target = str(env.sentinel / "keep")
    env.apply(tar(f(target)))
    assert (env.root / target.lstrip("/")).read_bytes() == b"pwned"


def test_dotdot_directory_entry(env: Env) -> None:
    env.refused(tar(d("../sentinel"), fmt=tarfile.GNU_FORMAT), "contains '..'")


# --- symlinked parents -----------------------------------------------------------

def test_relative_symlink_parent(env: Env) -> None:
    env.refused(tar(sym("link", "../sentinel"), f("link/pwned")), "symlink")


def test_absolute_symlink_parent(env: Env) -> None:
    env.refused(tar(sym("link", str(env.sentinel)), f("link/keep")), "symlink")


def test_symlink_to_dotdot_parent(env: Env) -> None:
    env.refused(tar(sym("up", ".."), f("up/sentinel/keep")), "symlink")


def test_symlink_chain_parent(env: Env) -> None:
    env.refused(tar(sym("b", str(env.sentinel)), sym("a", "b"), f("a/pwned")), "symlink")


def test_directory_replaced_by_symlink_then_written_through(env: Env) -> None:
    env.refused(tar(d("d"), f("d/ok", b"ok"), sym("d", str(env.sentinel)), f("d/keep")),
                "symlink")


def test_symlink_in_root_from_an_earlier_layer(env: Env) -> None:
    os.symlink(str(env.sentinel), env.root / "etc")  # as if unpacked by a lower layer
    env.refused(tar(f("etc/keep")), "symlink")


def test_symlink_from_earlier_layer_in_its_own_snapshot_dir(env: Env) -> None:
    lower = env.root / "lower"
    upper = env.root / "upper"
    lower.mkdir()
    upper.mkdir()
    apply_layer(str(lower), io.BytesIO(tar(sym("etc", str(env.sentinel)))))
    apply_layer(str(upper), io.BytesIO(tar(f("etc/keep"))))
    assert (upper / "etc/keep").read_bytes() == b"pwned"
    assert os.readlink(lower / "etc") == str(env.sentinel)


def test_file_replaces_symlink_instead_of_writing_through(env: Env) -> None:
    env.apply(tar(sym("keep", str(env.sentinel / "keep")), f("keep", b"mine")))
    assert (env.root / "keep").read_bytes() == b"mine"
    assert not (env.root / "keep").is_symlink()


def test_directory_entry_over_symlink_does_not_chmod_target(env: Env) -> None:
    env.apply(tar(sym("s", str(env.sentinel)), d("s", mode=0o777, uid=1234)))
    assert (env.root / "s").is_dir() and not (env.root / "s").is_symlink()


def test_symlink_kept_as_is_never_followed(env: Env) -> None:
    env.apply(tar(sym("out", "../../sentinel/keep")))
    assert os.readlink(env.root / "out") == "../../sentinel/keep"


# --- hardlinks -------------------------------------------------------------------

def test_hardlink_target_with_dotdot(env: Env) -> None:
    env.refused(tar(hard("h", "../sentinel/keep")), "contains '..'")


def test_hardlink_absolute_target_outside(env: Env) -> None:
    env.refused(tar(hard("h", str(env.sentinel / "keep"))), "not in this layer")


def test_hardlink_through_symlinked_dir(env: Env) -> None:
    env.refused(tar(sym("link", str(env.sentinel)), hard("h", "link/keep")), "symlink")


def test_hardlink_to_symlink_pointing_outside(env: Env) -> None:
    # links the symlink itself (linkat without FOLLOW); a later write replaces it
    env.apply(tar(sym("s", str(env.sentinel / "keep")), hard("h", "s"), f("h", b"mine")))
    assert (env.root / "h").read_bytes() == b"mine"
    assert os.readlink(env.root / "s") == str(env.sentinel / "keep")


def test_hardlink_to_directory(env: Env) -> None:
    env.refused(tar(d("dir"), hard("h", "dir")), "directory")


def test_hardlink_pax_linkpath_abuse(env: Env) -> None:
    h = info("h", tarfile.LNKTYPE, linkname="ok")
    h.pax_headers = {"linkpath": "../sentinel/keep"}
    env.refused(tar(f("ok"), (h, None)), "contains '..'")


# --- whiteouts -------------------------------------------------------------------

def test_whiteout_of_dotdot(env: Env) -> None:
    env.refused(tar(f(".wh..."), f("a/.wh..")), "invalid whiteout")


def test_whiteout_of_dot(env: Env) -> None:
    env.refused(tar(f("a/.wh..", b"")), "invalid whiteout")


@needs_root
def test_whiteout_through_symlink(env: Env) -> None:
    env.refused(tar(sym("link", str(env.sentinel)), f("link/.wh.keep", b"")), "symlink")


@needs_root
def test_opaque_marker_through_symlink(env: Env) -> None:
    env.refused(tar(sym("link", str(env.sentinel)), f("link/.wh..wh..opq", b"")), "symlink")


@needs_root
def test_whiteout_replaces_symlink_not_its_target(env: Env) -> None:
    env.apply(tar(sym("keep", str(env.sentinel / "keep")), f(".wh.keep", b"")))
    assert os.lstat(env.root / "keep").st_rdev == 0


# --- header abuse ----------------------------------------------------------------

def test_pax_path_overrides_safe_name(env: Env) -> None:
    i = info("harmless")
    i.pax_headers = {"path": "../sentinel/keep"}
    env.refused(tar((i, b"pwned")), "contains '..'")


def test_nul_in_pax_path(env: Env) -> None:
    i = info("harmless")
    i.pax_headers = {"path": "ok\x00/../../sentinel/keep"}
    env.refused(tar((i, b"pwned")), "NUL")


def test_gnu_longname_with_dotdot(env: Env) -> None:
    env.refused(tar(f("a" * 120 + "/../../sentinel/keep"), fmt=tarfile.GNU_FORMAT), "'..'")


def test_overlong_path(env: Env) -> None:
    env.refused(tar(f("/".join(["d" * 200] * 30))), "exceeds")


def test_overlong_component(env: Env) -> None:
    env.refused(tar(f("x" * 300)), "longer than 255")


def test_entry_replacing_root(env: Env) -> None:
    env.refused(tar(sym("./", str(env.sentinel))), "replace the root")
    env.refused(tar(f("/", b"x")), "replace the root")


def test_too_many_entries(env: Env) -> None:
    env.refused(tar(*[f(f"f{i}", b"") for i in range(50)]), "more than 20 tar entries",
                limits=LayerLimits(max_entries=20))


def test_decompression_bomb_stops_early(env: Env) -> None:
    header = tarfile.TarInfo("bomb")
    header.size = 1 << 40  # claims a terabyte
    blob = gzip.compress(header.tobuf(tarfile.PAX_FORMAT) + bytes(8 << 20))
    assert len(blob) < 100_000
    with pytest.raises(InvalidArgument, match="larger than the limit"):
        apply_layer(str(env.root), open_decompressed(io.BytesIO(blob)),
                    limits=LayerLimits(max_total_bytes=2 << 20))
    assert os.path.getsize(env.root / "bomb") <= 2 << 20


def test_huge_pax_header_refused_before_reading(env: Env) -> None:
    i = info("x")
    i.pax_headers = {"comment": "A" * (2 << 20)}
    env.refused(tar((i, b"")), "exceeds")


def test_gnu_sparse_type(env: Env) -> None:
    env.refused(with_typeflag(tar(f("sparse", b"x" * 600)), b"S"), "sparse")


def test_pax_sparse_headers(env: Env) -> None:
    i = info("sparse")
    i.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                     "GNU.sparse.name": "sparse", "GNU.sparse.realsize": "99999"}
    env.refused(tar((i, b"x")), "sparse")


def test_unknown_entry_type(env: Env) -> None:
    env.refused(with_typeflag(tar(f("vol", b"")), b"V"), "unsupported tar entry type")


def test_bad_checksum(env: Env) -> None:
    data = bytearray(tar(f("a")))
    data[0] ^= 1
    env.refused(bytes(data), "checksum")


def test_truncated_file_data(env: Env) -> None:
    data = tar(f("a", b"x" * 2000))
    env.refused(data[:1024], "truncated")


def test_devices_refused_when_not_allowed(env: Env) -> None:
    env.apply(tar((info("sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None),
                  (info("mem", tarfile.CHRTYPE, devmajor=1, devminor=1), None)),
              allow_devices=False)
    assert os.listdir(env.root) == []


@needs_root
def test_overlay_xattrs_in_tar_are_dropped(env: Env) -> None:
    i = info("dir", tarfile.DIRTYPE)
    i.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                     "SCHILY.xattr.trusted.overlay.opaque": "y",
                     "SCHILY.xattr.user.ok": "1"}
    env.apply(tar((i, None)))
    assert os.listxattr(env.root / "dir") == ["user.ok"]


def test_xattr_bomb(env: Env) -> None:
    i = info("x")
    i.pax_headers = {f"SCHILY.xattr.user.a{n}": "v" * 1000 for n in range(100)}
    env.refused(tar((i, b"")), "xattrs", limits=LayerLimits(max_xattr_bytes=10_000))
