"""Path resolution inside a root directory that never follows a symlink.

Every path of a layer is split into components here (`..` refused, a leading
`/` stripped like docker does) and walked from an fd of the root with
openat(O_DIRECTORY|O_NOFOLLOW), so neither `..`, an absolute symlink, a
relative symlink nor a symlink written by an earlier entry can lead a write
outside the root. Final entries are created relative to their parent's fd.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from dockyard.errors import InvalidArgument
from dockyard.image.tarreader import LayerLimits

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE_MAX = 128


class MissingDirectory(InvalidArgument):
    """A directory to be walked through does not exist (and was not to be created)."""


def show(path: bytes) -> str:
    return os.fsdecode(path)


def split_path(path: bytes, limits: LayerLimits, what: str = "path") -> list[bytes]:
    """Components of a tar path; [] is the root itself. Refuses `..`, NUL and long paths."""
    if b"\0" in path:
        raise InvalidArgument(f"layer: {what} {show(path)!r} contains a NUL byte")
    if len(path) > limits.max_path_len:
        raise InvalidArgument(f"layer: {what} of {len(path)} bytes exceeds "
                              f"{limits.max_path_len}: {show(path[:64])!r}...")
    parts = [p for p in path.split(b"/") if p not in (b"", b".")]
    for part in parts:
        if part == b"..":
            raise InvalidArgument(f"layer: {what} {show(path)!r} contains '..'")
        if len(part) > limits.max_name_len:
            raise InvalidArgument(f"layer: {what} {show(path[:64])!r}... has a component "
                                  f"longer than {limits.max_name_len} bytes")
    return parts


class SafeRoot:
    """An open root directory and a small cache of directory fds below it."""

    def __init__(self, root: str):
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: dict[tuple[bytes, ...], int] = {}
        self._retired: list[int] = []  # forgotten fds, still open until release()

    def close(self) -> None:
        self.invalidate()
        self.release()
        os.close(self.fd)

    def invalidate(self) -> None:
        """Forget cached directory fds (after anything was removed or replaced).

        The fds stay open until release(), so fds handed out for the entry being
        applied stay valid (and never get reused for another directory) meanwhile.
        """
        self._retired.extend(self._cache.values())
        self._cache.clear()

    def release(self) -> None:
        """Close forgotten fds: call between entries, when no handed-out fd is in use."""
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()

    def dir_fd(self, parts: list[bytes], create: bool = True) -> int:
        """An fd of the directory at `parts`: owned here, valid until release()."""
        if not parts:
            return self.fd
        key = tuple(parts)
        fd = self._cache.get(key)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], create)
        fd = self._open_dir(parent, parts, create)
        if len(self._cache) >= _CACHE_MAX:
            self.invalidate()
        self._cache[key] = fd
        return fd

    def parent_fd(self, parts: list[bytes], create: bool = True) -> int:
        return self.dir_fd(parts[:-1], create)

    def _open_dir(self, parent: int, parts: list[bytes], create: bool) -> int:
        name = parts[-1]
        where = show(b"/".join(parts))
        for _ in range(2):
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise MissingDirectory(f"layer: no such directory: {where}") from None
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass  # a dangling symlink: the open above reports it
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise InvalidArgument(f"layer: path through a symlink: {where} "
                                          "is a symlink") from None
                raise InvalidArgument(f"layer: path through a non-directory: {where}") from None
        raise InvalidArgument(f"layer: cannot create directory {where}")

    @staticmethod
    def lstat(parent: int, name: bytes) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, parent: int, name: bytes, st: os.stat_result | None = None) -> None:
        """Remove whatever is at parent/name (a directory recursively), never following links."""
        if st is None:
            st = self.lstat(parent, name)
            if st is None:
                return
        if stat.S_ISDIR(st.st_mode):
            self.invalidate()
            shutil.rmtree(os.fsdecode(name), dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
