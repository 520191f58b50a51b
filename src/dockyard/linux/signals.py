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


def restore_defaults() -> None:
    """Undo CPython's start-up changes before exec'ing someone else's program."""
    for sig in PYTHON_IGNORED:
        set_handler(sig, SIG_DFL)


__all__ = ["PYTHON_IGNORED", "SIGHUP", "SIGINT", "SIGKILL", "SIGPIPE", "SIGQUIT", "SIGTERM",
           "SIGUSR1", "SIGUSR2", "SIGXFSZ", "SIG_DFL", "restore_defaults", "set_handler"]
