"""The C library handle shared by every syscall wrapper.

ctypes calls go through `call`, which turns a -1 return into OSError with the
errno, so callers never check return codes by hand.
"""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def call(func, *args, what: str = "") -> int:
    """Call a libc function; raise OSError(errno) if it returns -1."""
    ret = func(*args)
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what or func.__name__}: {os.strerror(err)}")
    return ret


def syscall(number: int, *args, what: str = "") -> int:
    """A raw syscall by number, for calls glibc does not wrap."""
    return call(libc.syscall, number, *args, what=what or f"syscall {number}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return call(
        libc.prctl,
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5),
        what="prctl",
    )


# prctl options used across modules
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
