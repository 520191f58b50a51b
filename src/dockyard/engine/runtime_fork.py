"""Running our own runtime's commands in a forked copy of the monitor.

`dockyard-runtime create|start|delete|exec` each cost a new interpreter and its
imports (about 15 ms) before any work; a container start and its removal take
three of them. When the monitor's runtime is our own launcher, the monitor
(single-threaded, so fork is safe) forks and the child runs the runtime's
command line in-process on the modules the monitor has already imported.
The child sees what a fresh runtime process would: the given stdio, no other
descriptor, default signal dispositions. It never returns into the monitor.

The seccomp program of a bundle is compiled in the monitor before the fork
(linux/seccomp.py keeps compiled programs by profile), so Docker's default
profile is compiled once per monitor instead of once per container.
DOCKYARD_MONITOR_EXEC_RUNTIME=1 in the monitor's environment turns this off
(every command then runs the runtime executable, as for a foreign runtime).
"""

from __future__ import annotations

import json
import os
import signal
import sys

LAUNCHER_MARK = b"dockyard.devtools.launcher"


def is_our_launcher(path: str) -> bool:
    """True for the console script that dockyard.devtools.launcher writes."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return LAUNCHER_MARK in head


def preload() -> None:
    """Import what the runtime's commands need, once, in the monitor."""
    import dockyard.runtime.cli
    import dockyard.runtime.commands
    import dockyard.runtime.container
    import dockyard.runtime.init
    import dockyard.runtime.process
    import dockyard.runtime.rootfs  # noqa: F401


def precompile_seccomp(bundle: str) -> None:
    """Compile the bundle's seccomp profile here so forked creates find it compiled."""
    from dockyard.errors import DockyardError

    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.load(f)
        profile = (spec.get("linux") or {}).get("seccomp")
        if profile:
            from dockyard.linux.seccomp import SeccompFilter
            SeccompFilter.from_spec(profile)
    except (OSError, ValueError, AttributeError, DockyardError):
        return  # the runtime itself reports a bad bundle or profile, with context


def fork_runtime(argv: list[str], stdio: tuple[int, int, int]) -> int:
    """Fork; the child runs `dockyard-runtime <argv>` with `stdio` as fds 0-2 and exits
    with its status. Returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in a fresh interpreter
        high = [os.dup(fd) for fd in stdio]  # stdio may itself be 0-2
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        from dockyard.runtime.cli import main
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - report, never return into the monitor
        print(f"dockyard-runtime: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 0)
