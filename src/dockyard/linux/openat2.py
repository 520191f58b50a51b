"""openat2(2): open a path resolved inside a directory the kernel keeps us in.

RESOLVE_IN_ROOT makes the kernel treat `dirfd` as the root for the whole
lookup: `..` stops there and absolute symlinks restart there, atomically, so a
container flipping a symlink while we resolve cannot lead us to a host path
(the CVE-2018-15664 / CVE-2021-30465 class). The kernel answers EAGAIN when a
concurrent rename could have let the lookup escape; we retry.
"""

from __future__ import annotations

import ctypes
import errno
import os

from dockyard.linux.libc import libc

SYS_OPENAT2 = 437  # x86_64 and aarch64 share it
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """An fd for `path` looked up under `dirfd` with `resolve` rules (O_CLOEXEC added)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path) or b"."
    for _ in range(64):
        fd = libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd),
                          ctypes.c_char_p(raw), ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EINTR):
            continue
        raise OSError(err, os.strerror(err), os.fsdecode(raw))
    raise OSError(errno.EAGAIN, "openat2: lookup kept racing with renames", os.fsdecode(raw))


def open_in_root(root: str | int, path: str | bytes, flags: int = os.O_PATH,
                 mode: int = 0) -> int:
    """Open `path` (absolute or not) as if `root` were `/`; symlinks never leave it."""
    if isinstance(root, int):
        return openat2(root, path, flags, mode)
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return openat2(rfd, path, flags, mode)
    finally:
        os.close(rfd)


def fd_path(fd: int) -> str:
    """Where the kernel says an fd is (for checks and messages)."""
    return os.readlink(f"/proc/self/fd/{fd}")
