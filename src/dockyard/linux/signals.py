"""Signal numbers and handlers without importing `signal`.

`import signal` imports `enum` (3-4 ms here) to wrap the numbers in IntEnums;
the runtime's hot path needs only the plain numbers and signal(2), which the
C module under `signal`, `_signal`, provides as they are.
"""

try:
    from _signal import SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2
    from _signal import signal as set_handler
except ImportError:  # not CPython: the public module
    from signal import SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2
    from signal import signal as set_handler

__all__ = ["SIGHUP", "SIGINT", "SIGKILL", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2",
           "set_handler"]
