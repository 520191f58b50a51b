"""Tar streams for `cp`: write a tree from a directory fd, extract one into a
directory, rebase entry names — used by the archive API (engine side) and by
`dockyard cp` (client side) alike.

Writing walks fds with O_NOFOLLOW (symlinks are archived, never followed);
`mounts` maps a relative path to a directory to read instead (a stopped
container's volumes). Extracting reuses the hardened layer applier (no `..`,
no path through a symlink, *at() calls with O_EXCL|O_NOFOLLOW); `.wh.` names
are not whiteouts here, and `no_overwrite_dir_non_dir` / a fixed owner are the
archive API's noOverwriteDirNonDir and copyUIDGID.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.image.layerdiff import EntryWriter, _xattrs
from dockyard.image.layers import _Applier
from dockyard.image.tarreader import DIRECTORY, HARDLINK, CountingReader, LayerLimits, TarReader
from dockyard.image.tarwalk import SafeRoot, show, split_path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeWriter(EntryWriter):
    """Entries under `top` (the archive name of the starting point)."""

    def __init__(self, out: BinaryIO, mounts: Callable[[str], int | None] | None = None,
                 skip: frozenset[str] = frozenset()):
        super().__init__(tarfile.open(fileobj=out, mode="w|",  # type: ignore[call-overload]  # noqa: SIM115
                                      format=tarfile.PAX_FORMAT))
        self.mounts = mounts or (lambda _rel: None)
        self.skip = skip  # paths whose contents are never walked into (/proc, /sys...)
        self.count = 0

    def close(self) -> None:
        self.tar.close()

    def add(self, parent: int, name: str, arcname: str, rel: str) -> None:
        """Add parent/name (never followed) as `arcname`; `rel` is its container path.
        An entry that vanished or cannot be read (a process's /proc entry...) is left out."""
        try:
            self._add(parent, name, arcname, rel)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return
        except OSError as e:
            if e.errno not in (errno.EIO, errno.ENXIO, errno.EINVAL, errno.ENODEV,
                               errno.ESRCH):
                raise

    def _add(self, parent: int, name: str, arcname: str, rel: str) -> None:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self.dir(os.open(name, _DIR, dir_fd=parent), arcname, rel,
                     walk=rel not in self.skip)
        elif stat.S_ISREG(mode):
            self._file(parent, name, arcname, st)
        elif stat.S_ISLNK(mode):
            info = self._info(arcname, st, {})
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(os.readlink(name, dir_fd=parent))
            self.tar.addfile(info)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self._info(arcname, st, {})
            if stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
            else:
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        self.count += 1

    def dir(self, fd: int, arcname: str, rel: str, walk: bool = True) -> None:
        """Archive the directory open at `fd` (closed here) and what is below it."""
        try:
            other = self.mounts(rel)
            if other is not None:
                os.close(fd)
                fd = other
            st = os.fstat(fd)
            info = self._info(arcname, st, _xattrs(fd))
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            if not walk:
                return
            with os.scandir(fd) as it:
                names = sorted((e.name for e in it), key=os.fsencode)
            for name in names:
                self.add(fd, name, f"{arcname.rstrip('/')}/{name}", f"{rel.rstrip('/')}/{name}")
        finally:
            os.close(fd)


class _CopyApplier(_Applier):
    def __init__(self, fs: SafeRoot, limits: LayerLimits, *, no_overwrite: bool,
                 owner: tuple[int, int] | None, rename: Callable[[bytes], bytes | None] | None):
        super().__init__(fs, limits, allow_devices=True)
        self.no_overwrite = no_overwrite
        self.owner = owner
        self.rename = rename

    def apply(self, entry, tar) -> None:  # type: ignore[no-untyped-def]
        if self.rename is not None:
            name = self.rename(entry.name)
            if name is None:
                return  # outside what is copied (docker's rebase skips it)
            entry.name = name
            if entry.type == HARDLINK:
                entry.linkname = self.rename(entry.linkname) or entry.linkname
        if self.owner is not None:
            entry.uid, entry.gid = self.owner
        parts = split_path(entry.name, self.limits)
        if not parts:
            return  # "." onto the existing target directory: left as it is (docker)
        if self.no_overwrite:
            parent = self.fs.parent_fd(parts)
            old = self.fs.lstat(parent, parts[-1])
            if old is not None:
                is_dir = entry.type == DIRECTORY
                if stat.S_ISDIR(old.st_mode) and not is_dir:
                    raise InvalidArgument(f'cannot overwrite directory "{show(entry.name)}" '
                                          "with non-directory")
                if not stat.S_ISDIR(old.st_mode) and is_dir:
                    raise InvalidArgument(f'cannot overwrite non-directory '
                                          f'"{show(entry.name)}" with directory')
        super().apply(entry, tar)

    def _whiteout(self, parts, entry, where) -> None:  # type: ignore[no-untyped-def]
        """`.wh.` names are plain names to cp, but we do not create aufs markers."""
        return


def extract(root: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
            owner: tuple[int, int] | None = None,
            rename: Callable[[bytes], bytes | None] | None = None) -> int:
    """Unpack a tar into the directory `root` (a path, or /proc/self/fd/N); returns the
    number of bytes read."""
    limits = LayerLimits()
    reader = CountingReader(stream, limits.max_total_bytes)
    applier = _CopyApplier(SafeRoot(root), limits, no_overwrite=no_overwrite_dir_non_dir,
                           owner=owner, rename=rename)
    try:
        tar = TarReader(reader, limits)
        for entry in tar:
            applier.fs.release()
            try:
                applier.apply(entry, tar)
            except OSError as exc:
                raise InvalidArgument(f"cannot extract {show(entry.name)!r}: "
                                      f"{exc.strerror}") from exc
            except InvalidArgument as exc:  # the layer applier's words, said for cp
                raise InvalidArgument(str(exc).removeprefix("layer: ")) from None
        reader.drain()
        applier.finish()
    finally:
        applier.fs.close()
    return reader.count


def renamer(old: str, new: str) -> Callable[[bytes], bytes | None]:
    """docker's RebaseArchiveEntries as a name mapping: `old` and `old/...` become
    `new` and `new/...`; other names are dropped."""
    o, n = os.fsencode(old), os.fsencode(new)

    def rename(name: bytes) -> bytes | None:
        name = name.rstrip(b"/") or name
        if name == o or name.startswith(o + b"/"):
            return n + name[len(o):]
        return None
    return rename
