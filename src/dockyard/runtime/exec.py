"""`exec`: start another process inside a running container.

Like create, in two stages: the first joins the container's cgroup and
namespaces (the pid namespace only applies to children), the second is the
process itself, which enters the container's root through the mount
namespace and then behaves like the init's last steps.
"""

import os

from dockyard.errors import Conflict
from dockyard.linux import cgroups
from dockyard.linux import namespaces as ns
from dockyard.linux.libc import PR_SET_DUMPABLE, prctl
from dockyard.runtime.init import _fail, _setup_console, fork_reporting_pid, load_console_support
from dockyard.runtime.process import ProcessPlan, block_imports
from dockyard.runtime.spec import validate_process
from dockyard.runtime.state import ContainerState
from dockyard.runtime.sync import Channel, channel_pair


def exec_process(root: str, container_id: str, process: dict, *, console_fd: int = -1,
                 preserve_fds: int = 0) -> int:
    """Start `process` (an OCI process object) in the container; returns its host pid.

    The caller must be a child subreaper to wait for it (it is a grandchild)."""
    from dockyard.runtime.container import ContainerError, status_of

    state = ContainerState.load(root, container_id)
    status = status_of(state)
    if status in ("stopped", "creating"):
        raise ContainerError("cannot exec in a stopped container")
    if status == "paused":
        raise Conflict("cannot exec in a paused container")
    validate_process(process, "process")
    spec = state.config()
    plan = ProcessPlan.from_spec(process, (spec.get("linux") or {}).get("seccomp"))
    if plan.terminal:
        load_console_support()
    kinds = [n["type"] for n in (spec.get("linux") or {}).get("namespaces") or ()]
    cgroup = cgroups.open_cgroup(state.data["cgroup"])
    parent, child = channel_pair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        _join(state.pid, kinds, cgroup, plan, child, console_fd, preserve_fds)
    child.close()
    try:
        target = 0
        while True:
            kind, payload = parent.recv()
            if kind == "pid":
                target = int(payload)
                os.waitpid(pid, 0)
            elif kind == "ready":
                return target
            elif kind == "error":
                raise ContainerError(payload)
            else:
                raise ContainerError("exec failed: the process exited before it was ready")
    finally:
        parent.close()


def _join(init_pid: int, kinds: list[str], cgroup, plan: ProcessPlan, chan: Channel,
          console_fd: int, preserve_fds: int) -> None:
    try:
        prctl(PR_SET_DUMPABLE, 0)  # see init.stage1
        fds = {k: os.open(f"/proc/{init_pid}/ns/{ns.NAMESPACES[k][1]}",
                          os.O_RDONLY | os.O_CLOEXEC) for k in kinds}
        cgroup.add_pid(os.getpid())
        for kind in ns.JOIN_ORDER:
            if kind in fds:
                ns.setns(fds[kind], ns.NAMESPACES[kind][0])
                os.close(fds[kind])
        if fork_reporting_pid(chan) == 0:
            _process(plan, chan, console_fd, preserve_fds)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent
        _fail(chan, e)


def _process(plan: ProcessPlan, chan: Channel, console_fd: int, preserve_fds: int) -> None:
    try:
        block_imports()
        if plan.terminal:
            _setup_console(console_fd)
        plan.set_rlimits()
        plan.set_oom_score_adj()
        plan.default_home()
        path = plan.resolve()
        plan.finish(preserve_fds, (chan.rfd, chan.wfd))
        chan.send("ready")
        plan.exec(path)
    except BaseException as e:  # noqa: BLE001
        _fail(chan, e, 127 if "exec:" in str(e) else 1)
