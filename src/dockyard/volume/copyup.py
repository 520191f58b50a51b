"""Copy-up: an empty volume first mounted over a path that has content in the
image gets that content (owners, modes, times, xattrs, symlinks, hard links,
devices) before the container starts, as docker does.

Both sides are walked through directory fds: the source path is resolved with
openat2(RESOLVE_IN_ROOT) inside the container's root, every entry below is
opened with O_NOFOLLOW relative to its parent's fd, and entries are created in
the volume with *at() calls and O_EXCL. A symlink in the image (or one a
container made in its upper layer) is copied as a symlink, never followed.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.linux.openat2 import open_in_root

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def is_empty(path: str) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def copy_up(rootfs: str, inside: str, volume_dir: str) -> bool:
    """Copy `inside` (a path in the container root `rootfs`) into the empty
    `volume_dir`. Returns False when there was nothing to copy (no such directory)."""
    try:
        src = open_in_root(rootfs, inside, _DIR & ~os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            return False
        raise
    try:
        dst = os.open(volume_dir, _DIR)
        try:
            if os.listdir(dst):
                return False  # not empty: docker copies only into an empty volume
            _Copier().tree(src, dst)
            st = os.fstat(src)
            _meta(dst, st, src)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


def _xattrs(src: int | str, dst: int | str, dir_fd_name: tuple[int, str] | None = None) -> None:
    try:
        names = os.listxattr(src)
    except OSError:
        return
    for name in names:
        if name.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                raise


def _meta(fd: int, st: os.stat_result, src_fd: int | None = None) -> None:
    os.chown(fd, st.st_uid, st.st_gid)
    os.chmod(fd, stat.S_IMODE(st.st_mode))
    if src_fd is not None:
        _xattrs(src_fd, fd)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


class _Copier:
    def __init__(self) -> None:
        self.links: dict[tuple[int, int], tuple[int, str]] = {}  # (dev, ino) -> (dir fd, name)
        self.kept: list[int] = []  # dir fds kept open for hard link sources

    def tree(self, src: int, dst: int) -> None:
        try:
            self._dir(src, dst)
        finally:
            for fd in self.kept:
                os.close(fd)

    def _dir(self, src: int, dst: int) -> None:
        keep = False
        with os.scandir(src) as it:
            names = [e.name for e in it]
        for name in names:
            try:
                st = os.stat(name, dir_fd=src, follow_symlinks=False)
            except FileNotFoundError:
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dst)
                s = os.open(name, _DIR, dir_fd=src)
                try:
                    d = os.open(name, _DIR, dir_fd=dst)
                    try:
                        self._dir(s, d)
                        _meta(d, st, s)
                    finally:
                        os.close(d)
                finally:
                    os.close(s)
                continue
            if st.st_nlink > 1 and (st.st_dev, st.st_ino) in self.links:
                ldir, lname = self.links[(st.st_dev, st.st_ino)]
                os.link(lname, name, src_dir_fd=ldir, dst_dir_fd=dst, follow_symlinks=False)
                continue
            if stat.S_ISREG(mode):
                self._file(src, dst, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                         follow_symlinks=False)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                if stat.S_ISCHR(mode) and st.st_rdev == 0:
                    continue  # an overlay whiteout: not content
                os.mknod(name, (mode & ~0o7777) | 0o600, st.st_rdev, dir_fd=dst)
                self._special_meta(src, dst, name, st)
            else:
                continue  # sockets are not copied (docker skips them too)
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = (dst, name)
                keep = True
        if keep:
            self.kept.append(os.dup(dst))
            # the stored (fd, name) pairs must stay valid after the caller closes dst
            new = self.kept[-1]
            for key, (fd, lname) in list(self.links.items()):
                if fd == dst:
                    self.links[key] = (new, lname)

    def _file(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
        try:
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                        | os.O_CLOEXEC, 0o600, dir_fd=dst)
            try:
                left = st.st_size
                while left > 0:
                    try:
                        n = os.copy_file_range(s, d, min(left, 1 << 30))
                    except OSError as e:
                        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                           errno.EOPNOTSUPP):
                            raise
                        n = os.sendfile(d, s, None, min(left, 1 << 30))
                    if n == 0:
                        break
                    left -= n
                _meta(d, st, s)
            finally:
                os.close(d)
        finally:
            os.close(s)

    def _special_meta(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
        try:
            path = f"/proc/self/fd/{fd}"
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
