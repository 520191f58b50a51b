"""Diff an overlay upper directory into a layer tar (for commit and build).

The upper directory of an overlay mount already is the change set: a 0:0
character device is a deletion (-> `.wh.<name>`), a directory with
`trusted.overlay.opaque=y` replaced the lower one (-> `.wh..wh..opq`), every
other entry is new or changed. The walk is fd-relative and never follows a
symlink (a container may still be writing there). Output is deterministic:
entries sorted by name bytes, directories before their contents, PAX format,
mtime in whole seconds and no atime/ctime/user names, as docker writes layers.
`trusted.overlay.*` xattrs (overlay's own bookkeeping) are never written.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from typing import BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.image.compression import HashingWriter

_OPAQUE_XATTR = "trusted.overlay.opaque"
_REFUSED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def write_diff(lowers: list[str], upper: str, out: BinaryIO) -> tuple[str, int]:
    """Write the changes in `upper` (over `lowers`, top first) as a layer tar to `out`.

    Returns (diffID, size of the uncompressed tar). `lowers` are checked to exist;
    the diff itself needs only the upper dir, as we mount without redirect_dir
    and metacopy (an upper using them is refused).
    """
    for lower in lowers:
        if not os.path.isdir(lower):
            raise InvalidArgument(f"no such lower directory: {lower}")
    writer = HashingWriter(out)
    root = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=writer, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tar:
            _Differ(tar).walk(root, "")
    finally:
        os.close(root)
    return writer.digest(), writer.count


def _xattrs(target: int | str) -> dict[str, bytes]:
    """xattrs of an fd, or of a path whose last component is never followed."""
    nofollow = {} if isinstance(target, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(target, **nofollow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    result = {}
    for name in sorted(names):
        if name in _REFUSED_XATTRS:
            raise InvalidArgument(f"upper directory uses overlay {name}: not supported")
        if name.startswith("trusted.overlay."):
            continue
        try:
            result[name] = os.getxattr(target, name, **nofollow)
        except OSError:
            continue  # removed meanwhile
    return result


class EntryWriter:
    """Tar entries for files opened relative to a directory fd, never following links:
    the headers (mode, owner, mtime, xattrs) and regular files with hard links kept.
    Shared by the layer diff here and the archive API's tree writer (tarcopy.py)."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.links: dict[tuple[int, int], str] = {}

    def _info(self, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
        return info

    def _file(self, dfd: int, name: str, path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info = self._info(path, st, {})
            info.type = tarfile.LNKTYPE
            info.linkname = self.links[key]
            self.tar.addfile(info)
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            info = self._info(path, st, _xattrs(fd))
            info.type = tarfile.REGTYPE
            info.size = st.st_size
            with os.fdopen(os.dup(fd), "rb") as src:
                self.tar.addfile(info, _Exact(src, st.st_size))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self.links[key] = path


class _Differ(EntryWriter):

    def _whiteout(self, name: str, st: os.stat_result) -> None:
        info = self._info(name, st, {})
        info.type = tarfile.REGTYPE
        info.size = 0
        self.tar.addfile(info)

    def walk(self, dfd: int, prefix: str) -> None:
        with os.scandir(dfd) as it:
            names = sorted((e.name for e in it), key=os.fsencode)
        for name in names:
            path = prefix + name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                self._whiteout(prefix + ".wh." + name, st)
            elif stat.S_ISDIR(mode):
                self._dir(dfd, name, path)
            elif stat.S_ISREG(mode):
                self._file(dfd, name, path, st)
            else:
                self._special(dfd, name, path, st)

    def _dir(self, dfd: int, name: str, path: str) -> None:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            xattrs = _xattrs(fd)
            opaque = _opaque(fd)
            info = self._info(path + "/", st, xattrs)
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            if opaque:
                self._whiteout(path + "/.wh..wh..opq", st)
            self.walk(fd, path + "/")
        finally:
            os.close(fd)

    def _special(self, dfd: int, name: str, path: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            info = self._info(path, st, {})
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(os.readlink(name, dir_fd=dfd))
        else:
            xattrs = _xattrs(f"/proc/self/fd/{dfd}/{name}")
            info = self._info(path, st, xattrs)
            if stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                return  # sockets are not part of a layer, as in docker
        self.tar.addfile(info)


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE_XATTR) == b"y"
    except OSError:
        return False


class _Exact:
    """Exactly `size` bytes of a file that may be changing: cut or zero-padded."""

    def __init__(self, src: BinaryIO, size: int):
        self._src = src
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._src.read(n) if n else b""
        if len(data) < n:
            data += bytes(n - len(data))
        self._left -= len(data)
        return data
