"""Joining the container's cgroup off the critical path.

A write to cgroup.procs takes the kernel's cgroup_threadgroup_rwsem for
writing, which first waits for an RCU grace period (10-15 ms here; runc pays
it too), holding cgroup_mutex (so a cgroup mkdir waits as well); writes that
follow within about one more grace period are cheap. So the runtime
`prime()`s at start-up: a forked child makes a no-op move of the runtime into
the cgroup it is already in, and the grace period runs while the runtime
imports, reads the config and plans the container, and while the init
stages build the container's namespaces and root file system. The init is
moved into its cgroup afterwards, cheaply, before it may run anything.

The primer repeats its no-op move every few milliseconds (each one cheap once
the first has waited) until `settle()` ends it after the real join: when the
runtime's own start-up is short (run in a fork of the monitor, no interpreter
to start) the join would otherwise come after the kernel had gone back to the
slow path.
"""

import os

_primed = False
_primer = 0
KEEP_WARM_EVERY = 0.003  # seconds between the primer's moves (well under a grace period)
KEEP_WARM_FOR = 0.5  # the primer gives up by itself after this long


def prime() -> int:
    """Start the grace period now, in a child (0 if nothing could be primed, or if
    this process did already). Only `os` is used: this runs before other imports."""
    global _primed
    if _primed:
        return 0
    _primed = True
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    candidates = []
    for line in lines:
        _hid, ctrls, path = line.split(":", 2)
        path = path.rstrip("/")
        if ctrls and not ctrls.startswith("name="):
            candidates.append(f"/sys/fs/cgroup/{ctrls}{path}/cgroup.procs")
        elif not ctrls:
            candidates += [f"/sys/fs/cgroup{path}/cgroup.procs",
                           f"/sys/fs/cgroup/unified{path}/cgroup.procs"]
    procs = next((c for c in candidates if os.path.exists(c)), None)
    if procs is None:
        return 0
    global _primer
    parent = os.getpid()
    primer = os.fork()
    if primer == 0:
        try:
            _keep_warm(procs, parent)
        finally:
            os._exit(0)
    _primer = primer
    return primer


def _keep_warm(procs: str, parent: int) -> None:
    import time

    deadline = time.monotonic() + KEEP_WARM_FOR
    with open(procs, "w") as f:
        while os.getppid() == parent and time.monotonic() < deadline:
            f.write(str(parent))
            f.flush()
            time.sleep(KEEP_WARM_EVERY)


def settle() -> None:
    """The join is done: stop the primer (reaped here, or by whoever inherits it)."""
    global _primer
    if not _primer:
        return
    pid, _primer = _primer, 0
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
