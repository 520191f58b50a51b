"""Layer tars: apply one onto its own snapshot directory, diff, compress.

apply_layer unpacks an uncompressed layer tar into `root`, the directory of one
overlay snapshot: whiteouts become overlay-native ones (`.wh.x` -> a 0:0
character device `x`; `.wh..wh..opq` -> `trusted.overlay.opaque=y` on the
directory), so the snapshot stacks as an overlay lowerdir.

Layers are hostile input. Headers come from our own bounded reader (never
tarfile's extraction), paths are resolved by tarwalk (no `..`, no symlink ever
followed), entries are created with *at() calls relative to their parent's fd
with O_EXCL|O_NOFOLLOW. Choices where docker leaves room:
  - `..` anywhere in a path or hardlink target is refused (docker cleans it
    lexically); a leading `/` is stripped.
  - device nodes with allow_devices=False are skipped (as rootless docker does);
    whiteouts are still made (they are 0:0 devices overlay needs).
  - `trusted.overlay.*` xattrs in a tar are dropped: only our whiteout
    conversion may set overlay's own attributes.
  - hardlinks carry no metadata of their own; their target must be an earlier
    non-directory entry of this same layer.
  - times: mtime (and PAX atime, else atime = mtime) are set; directory times
    after the last entry, so later entries do not disturb them.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from dockyard.errors import InvalidArgument, SystemError_
from dockyard.image.compression import compress, open_decompressed
from dockyard.image.layerdiff import write_diff
from dockyard.image.tarreader import (
    BLOCKDEV,
    CHARDEV,
    DIRECTORY,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    CountingReader,
    LayerLimits,
    TarEntry,
    TarReader,
)
from dockyard.image.tarwalk import MissingDirectory, SafeRoot, show, split_path

__all__ = [
    "OPAQUE_MARKER",
    "OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "LayerLimits",
    "apply_layer",
    "compress",
    "open_decompressed",
    "write_diff",
]

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_SYSTEM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM,
                  errno.EMFILE, errno.ENFILE)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def apply_layer(root: str, stream: BinaryIO, *, limits: LayerLimits | None = None,
                allow_devices: bool = True) -> tuple[str, int]:
    """Unpack an uncompressed layer tar into `root`; return (diffID, uncompressed size)."""
    limits = limits or LayerLimits()
    reader = CountingReader(stream, limits.max_total_bytes)
    applier = _Applier(SafeRoot(root), limits, allow_devices)
    try:
        tar = TarReader(reader, limits)
        for entry in tar:
            applier.fs.release()
            try:
                applier.apply(entry, tar)
            except OSError as exc:
                what = f"layer: cannot apply {show(entry.name)!r}: {exc.strerror}"
                if exc.errno in _SYSTEM_ERRNOS:
                    raise SystemError_(what) from exc
                raise InvalidArgument(what) from exc
        reader.drain()
        applier.finish()
    finally:
        applier.fs.close()
    return reader.digest(), reader.count


class _Applier:
    def __init__(self, fs: SafeRoot, limits: LayerLimits, allow_devices: bool):
        self.fs = fs
        self.limits = limits
        self.allow_devices = allow_devices
        self.dir_times: dict[tuple[bytes, ...], tuple[int, int]] = {}
        self.is_root = os.geteuid() == 0

    def apply(self, entry: TarEntry, tar: TarReader) -> None:
        parts = split_path(entry.name, self.limits)
        where = show(entry.name)
        if not parts:
            if entry.type != DIRECTORY:
                raise InvalidArgument(f"layer: entry {where!r} would replace the root")
            self._dir_meta(self.fs.fd, entry, ())
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, entry, where)
            return
        if entry.type in (CHARDEV, BLOCKDEV) and not self.allow_devices:
            return  # skipped, as rootless docker does
        parent = self.fs.parent_fd(parts)
        old = self.fs.lstat(parent, base)
        if entry.type == DIRECTORY:
            if old is None or not stat.S_ISDIR(old.st_mode):
                self.fs.remove(parent, base, old)
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=parent)
            try:
                self._dir_meta(fd, entry, tuple(parts))
            finally:
                os.close(fd)
            return
        if entry.type == HARDLINK:
            self._hardlink(parts, parent, old, entry, where)
            return
        self.fs.remove(parent, base, old)
        if entry.type == REGULAR:
            self._regular(parent, base, entry, tar)
        elif entry.type == SYMLINK:
            self._symlink(parent, base, entry, where)
        else:
            if entry.type == FIFO:
                os.mkfifo(base, 0o600, dir_fd=parent)
            else:
                kind = stat.S_IFCHR if entry.type == CHARDEV else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(entry.devmajor, entry.devminor),
                         dir_fd=parent)
            self._special_meta(parent, base, entry)

    # -- entry kinds ---------------------------------------------------------

    def _regular(self, parent: int, base: bytes, entry: TarEntry, tar: TarReader) -> None:
        fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            while True:
                data = tar.read_data(_CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            self._chown(fd, entry)
            os.chmod(fd, entry.mode & 0o7777)
            self._xattrs(fd, entry)
            os.utime(fd, ns=self._times(entry))
        finally:
            os.close(fd)

    def _symlink(self, parent: int, base: bytes, entry: TarEntry, where: str) -> None:
        if not entry.linkname or b"\0" in entry.linkname or \
                len(entry.linkname) > self.limits.max_path_len:
            raise InvalidArgument(f"layer: invalid symlink target for {where!r}")
        os.symlink(entry.linkname, base, dir_fd=parent)
        if self.is_root:
            os.chown(base, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(base, ns=self._times(entry), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parts: list[bytes], parent: int, old: os.stat_result | None,
                  entry: TarEntry, where: str) -> None:
        target = split_path(entry.linkname, self.limits, "hardlink target")
        if not target:
            raise InvalidArgument(f"layer: hardlink {where!r} points at the root")
        try:
            tparent = self.fs.parent_fd(target, create=False)
            tst = self.fs.lstat(tparent, target[-1])
        except MissingDirectory:
            tst = None
        if tst is None:
            raise InvalidArgument(f"layer: hardlink {where!r} to {show(entry.linkname)!r}: "
                                  "target is not in this layer")
        if stat.S_ISDIR(tst.st_mode):
            raise InvalidArgument(f"layer: hardlink {where!r} points at a directory")
        if old is not None and (old.st_dev, old.st_ino) == (tst.st_dev, tst.st_ino):
            return  # already that file
        self.fs.remove(parent, parts[-1], old)
        os.link(target[-1], parts[-1], src_dir_fd=tparent, dst_dir_fd=parent,
                follow_symlinks=False)

    def _whiteout(self, parts: list[bytes], entry: TarEntry, where: str) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            fd = self.fs.dir_fd(parts[:-1])
            os.setxattr(fd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # other aufs metadata (.wh..wh.plnk ...): ignored, as docker does
        name = base[len(WHITEOUT_PREFIX):]
        if name in (b"", b".", b".."):
            raise InvalidArgument(f"layer: invalid whiteout {where!r}")
        parent = self.fs.parent_fd(parts)
        self.fs.remove(parent, name)
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        if self.is_root:
            os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=self._times(entry), dir_fd=parent, follow_symlinks=False)

    # -- metadata ------------------------------------------------------------

    def _times(self, entry: TarEntry) -> tuple[int, int]:
        atime = entry.atime_ns if entry.atime_ns is not None else entry.mtime_ns
        return atime, entry.mtime_ns

    def _chown(self, fd_or_path: int | str, entry: TarEntry) -> None:
        try:
            os.chown(fd_or_path, entry.uid, entry.gid)
        except PermissionError:
            if self.is_root:
                raise

    def _dir_meta(self, fd: int, entry: TarEntry, key: tuple[bytes, ...]) -> None:
        self._chown(fd, entry)
        os.chmod(fd, entry.mode & 0o7777)
        self._xattrs(fd, entry)
        self.dir_times[key] = self._times(entry)

    def _special_meta(self, parent: int, base: bytes, entry: TarEntry) -> None:
        """chown/chmod/xattrs/times of a device or fifo through an O_PATH fd."""
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            path = f"/proc/self/fd/{fd}"
            self._chown(path, entry)
            os.chmod(path, entry.mode & 0o7777)
            self._xattrs(path, entry)
            os.utime(path, ns=self._times(entry))
        finally:
            os.close(fd)

    def _xattrs(self, target: int | str, entry: TarEntry) -> None:
        for name in sorted(entry.xattrs):
            if name.startswith("trusted.overlay.") or "\0" in name:
                continue
            try:
                os.setxattr(target, name, entry.xattrs[name])
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise InvalidArgument(f"layer: xattr {name} of {show(entry.name)!r}: "
                                          f"{exc.strerror}") from None

    def finish(self) -> None:
        """Directory times, once nothing more is written below them."""
        self.fs.release()
        for key, times in self.dir_times.items():
            try:
                fd = self.fs.dir_fd(list(key), create=False)
            except (InvalidArgument, FileNotFoundError):
                continue  # replaced by a later entry
            os.utime(fd, ns=times)
