"""Joining the container's cgroup off the critical path.

A write to cgroup.procs takes the kernel's cgroup_threadgroup_rwsem for
writing, which first waits for an RCU grace period (10-15 ms here; runc pays
it too), holding cgroup_mutex (so a cgroup mkdir waits as well); writes that
follow within about one more grace period are cheap. So the runtime:
- `prime()`s at start-up: a forked child makes a no-op move of the runtime
  into the cgroup it is already in, so the grace period runs while the
  runtime imports, reads the config and plans the container;
- then creates the container's cgroup and moves itself in (cheap now), so the
  init stages it forks are born in the cgroup;
- and `move`s back out, cheaply too, once the stages exist.
"""

import os


def prime() -> int:
    """Start the grace period now, in a child (0 if nothing could be primed).

    Only `os` is used: this runs before the runtime's other imports."""
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
    parent = os.getpid()
    primer = os.fork()
    if primer == 0:
        try:
            with open(procs, "w") as f:
                f.write(str(parent))
        finally:
            os._exit(0)
    return primer


def current_procs_files(pid: int | None = None) -> list[str]:
    """The cgroup.procs files of the cgroups `pid` (default: this process) is in."""
    from dockyard.linux.cgroups.common import cgroup_mounts, parse_proc_cgroup, v1_controllers

    with open(f"/proc/{pid or 'self'}/cgroup") as f:
        lines = parse_proc_cgroup(f.read())
    files = []
    for _root, point, fstype, superopts in cgroup_mounts():
        want = [] if fstype == "cgroup2" else sorted(v1_controllers(superopts))
        for hid, ctrls, path in lines:
            if (fstype == "cgroup2" and hid == "0") or (want and sorted(ctrls) == want):
                procs = os.path.join(point + path.rstrip("/"), "cgroup.procs")
                if os.path.exists(procs):
                    files.append(procs)
                break
    return files


def move(pid: int, procs_files: list[str]) -> None:
    """Write `pid` into each file (cheap right after a join: the grace period is paid)."""
    for procs in procs_files:
        with open(procs, "w") as f:
            f.write(str(pid))
