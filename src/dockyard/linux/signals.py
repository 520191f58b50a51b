"""Signal numbers and handlers without importing `signal`.

`import signal` imports `enum` (3-4 ms here) to wrap the numbers in IntEnums;
the runtime's hot path needs only the plain numbers and signal(2), which the
C module under `signal`, `_signal`, provides as they are.
"""

try:
    from _signal import (
        SIG_DFL,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGPIPE,
        SIGQUIT,
        SIGTERM,
        SIGUSR1,
        SIGUSR2,
        SIGXFSZ,
    )
    from _signal import signal as set_handler
except ImportError:  # not CPython: the public module
    from signal import (
        SIG_DFL,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGPIPE,
        SIGQUIT,
        SIGTERM,
        SIGUSR1,
        SIGUSR2,
        SIGXFSZ,
    )
    from signal import signal as set_handler

# CPython ignores these at start-up; an ignored signal stays ignored across execve, so
# a program we start must get them back to their defaults first.
PYTHON_IGNORED = (SIGPIPE, SIGXFSZ)
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(__import__("os").uname().machine)
_UNCATCHABLE = (9, 19)  # SIGKILL, SIGSTOP


def restore_defaults() -> None:
    """Every signal at its default disposition before exec'ing someone else's program:
    CPython's start-up changes undone, and whatever the runtime itself inherited (an
    ignored signal stays ignored across execve) not passed on."""
    for sig in range(1, 65):
        if sig in _UNCATCHABLE:
            continue
        try:
            set_handler(sig, SIG_DFL)
        except (OSError, ValueError):
            _raw_default(sig)  # 32 and 33: glibc refuses them, the kernel does not


def _raw_default(sig: int) -> None:
    import ctypes  # already loaded by dockyard.linux.libc: no import from disk

    from dockyard.linux.libc import libc

    if _SYS_RT_SIGACTION is None or ctypes.sizeof(ctypes.c_void_p) != 8:
        return
    # struct kernel_sigaction {handler, flags, restorer, mask}: all zero is SIG_DFL
    action = (ctypes.c_ulong * 4)()
    libc.syscall(_SYS_RT_SIGACTION, sig, ctypes.byref(action), None, 8)


def parse(value: str | int) -> int:
    """A signal by number or name, with or without SIG ("9", "KILL", "SIGKILL")."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    import signal  # only here: see the module docstring

    try:
        return int(getattr(signal.Signals, text if text.startswith("SIG") else "SIG" + text))
    except AttributeError:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"Invalid signal: {value}") from None


__all__ = [
    "PYTHON_IGNORED",
    "SIGHUP",
    "SIGINT",
    "SIGKILL",
    "SIGPIPE",
    "SIGQUIT",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGXFSZ",
    "SIG_DFL",
    "parse",
    "restore_defaults",
    "set_handler",
]
