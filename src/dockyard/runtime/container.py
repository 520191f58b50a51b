"""The runtime's operations on one container: create, start, kill, delete, ...

This is the library the daemon calls in-process; runtime/cli.py is a thin
command line over it. Every function takes the state root and the id.
"""

import os
import time

from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.linux import cgroups
from dockyard.linux.signals import SIGKILL
from dockyard.runtime import hooks, jsonio
from dockyard.runtime import spec as specmod
from dockyard.runtime.state import ContainerState, write_json_atomic
from dockyard.runtime.sync import channel_pair


class ContainerError(DockyardError):
    pass


def _cgroup(state: ContainerState):
    return cgroups.open_cgroup(state.data["cgroup"])


def status_of(state: ContainerState) -> str:
    return state.status(frozen=lambda: _cgroup(state).is_frozen())


def create(root: str, container_id: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           preserve_fds: int = 0, systemd_cgroup: bool = False,
           console_fd: int = -1, subreaper: bool = False) -> ContainerState:
    """Create the container; its init waits for `start`. `console_fd` is an already
    connected console socket (for a foreground `run -t`), else `console_socket` a path.
    With `subreaper`, the caller becomes the init's parent (to wait for it)."""
    bundle = os.path.abspath(bundle)
    spec = specmod.load(bundle)
    linux = spec.get("linux") or {}
    cgroup_path = cgroups.path_from_spec(linux.get("cgroupsPath"), container_id,
                                         systemd_cgroup)
    # Everything up to cgroup.create() (in _join) overlaps the cgroup grace period
    # that cgroup_join.prime() started.
    from dockyard.runtime.init import InitConfig, load_console_support, stage1
    from dockyard.runtime.process import ProcessPlan
    process = ProcessPlan.from_spec(spec["process"], linux.get("seccomp"))
    if process.terminal and not console_socket and console_fd < 0:
        raise ContainerError("process.terminal is set but no --console-socket was given "
                             "to receive the tty")
    state = ContainerState.new(root, container_id, bundle, spec)
    state.data.update(rootfs=specmod.rootfs_path(spec, bundle), cgroup=cgroup_path)
    cgroup = cgroups.open_cgroup(cgroup_path)
    init_pid = 0
    parent = child = None
    try:
        state.save()
        os.mkfifo(state.fifo, 0o622)
        if console_socket:
            console_fd = _connect_console(console_socket)
        elif console_fd >= 0:
            load_console_support()
        parent, child = channel_pair()
        cfg = InitConfig(spec, state.data["rootfs"], process, cgroup, cgroup_path, state.fifo,
                         no_pivot, preserve_fds, console_fd)
        if subreaper:
            from dockyard.linux import libc
            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        stage1_pid = os.fork()
        if stage1_pid == 0:
            parent.close()
            stage1(cfg, child)
        child.close()
        init_pid = _follow_init(parent, spec, state, stage1_pid, cgroup)
    except BaseException:
        if init_pid:
            _kill_quietly(init_pid)
        _destroy(cgroup)
        state.remove()
        raise
    finally:
        for chan in (parent, child):
            if chan is not None:
                chan.close()
        if console_fd >= 0:
            os.close(console_fd)
    state.data["status"] = "created"
    state.save()
    if pid_file:
        _write_pid_file(pid_file, init_pid)
    return state


def _follow_init(chan, spec: dict, state: ContainerState, stage1_pid: int, cgroup) -> int:
    """Answer the init's requests until it reports ready; returns the init's pid."""
    init_pid = 0
    joined = False
    linux = spec.get("linux") or {}
    try:
        while True:
            kind, payload = chan.recv()
            if kind == "userns":
                _write_id_maps(int(payload), linux)
                chan.send("ok")
            elif kind == "pid":
                init_pid = int(payload)
                os.waitpid(stage1_pid, 0)
                state.data.update(pid=init_pid, start_time=_start_time(init_pid))
                state.save()
            elif kind in ("cgroupns", "hooks"):
                if not joined:
                    _join(cgroup, init_pid, spec)
                    joined = True
                if kind == "hooks":
                    state_json = _oci_state_json(state, "creating")
                    hooks.run_hooks(spec, "prestart", state_json)
                    hooks.run_hooks(spec, "createRuntime", state_json)
                    chan.send("ok", state_json.decode())  # for the init's own hooks
                else:
                    chan.send("ok")
            elif kind == "ready":
                return init_pid
            elif kind == "error":
                raise ContainerError(payload)
            else:
                raise ContainerError("container init exited before it was ready")
    except BaseException:
        if not init_pid:
            try:
                os.waitpid(stage1_pid, 0)
            except ChildProcessError:
                pass
        raise


def _join(cgroup, init_pid: int, spec: dict) -> None:
    """Put the init into the container's cgroup, then set the limits.

    Creating the cgroup waits for the grace period prime() started; the init
    built its root file system meanwhile."""
    from dockyard.runtime.cgroup_join import settle
    from dockyard.runtime.rootfs import device_rules
    cgroup.create()
    cgroup.add_pid(init_pid)
    settle()
    linux = spec.get("linux") or {}
    cgroup.apply({**(linux.get("resources") or {}), "devices": device_rules(spec)})


def _start_time(pid: int) -> int:
    from dockyard.runtime.state import process_start_time
    return process_start_time(pid) or 0


def _oci_state_json(state: ContainerState, status: str) -> bytes:
    return jsonio.dumps(state.oci_state(status)).encode()


def _write_id_maps(pid: int, linux: dict) -> None:
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key) or ())
        if lines:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)


def _connect_console(path: str) -> int:
    import socket

    from dockyard.runtime.init import load_console_support
    load_console_support()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise ContainerError(f"cannot connect to console socket {path}: {e.strerror}") from None
    return sock.detach()


def _write_pid_file(path: str, pid: int) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _destroy(cgroup) -> None:
    """Remove a failed create's cgroup, which may not even exist yet."""
    if not cgroup.exists():
        return
    try:
        cgroup.kill_all(SIGKILL)
    except (OSError, DockyardError):
        pass  # destroy() below reports what is really left
    cgroup.destroy()


def start(root: str, container_id: str) -> ContainerState:
    state = ContainerState.load(root, container_id)
    status = status_of(state)
    if status != "created":
        raise Conflict(f"cannot start a container that has {_stopped_or(status)}")
    try:
        fd = os.open(state.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise ContainerError("cannot start an already running container") from None
    try:
        os.unlink(state.fifo)
        os.write(fd, b"0")
    finally:
        os.close(fd)
    state.data["status"] = "running"
    state.save()
    spec = state.config()
    if (spec.get("hooks") or {}).get("poststart"):
        try:
            hooks.run_hooks(spec, "poststart", _oci_state_json(state, "running"))
        except hooks.HookError:
            kill(root, container_id, SIGKILL)
            raise
    return state


def _stopped_or(status: str) -> str:
    return "stopped" if status == "stopped" else f"status {status}"


def state_of(root: str, container_id: str) -> dict:
    state = ContainerState.load(root, container_id)
    return state.oci_state(status_of(state))


def list_all(root: str) -> list[dict]:
    return [s.oci_state(status_of(s)) for s in ContainerState.all(root)]


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    state = ContainerState.load(root, container_id)
    status = status_of(state)
    if status == "stopped" or status == "creating":
        raise ContainerError("container not running")
    if all_processes:
        _cgroup(state).kill_all(sig)
        return
    os.kill(state.pid, sig)


def delete(root: str, container_id: str, force: bool = False) -> None:
    try:
        state = ContainerState.load(root, container_id)
    except NotFound:
        path = os.path.join(root, container_id)
        if os.path.isdir(path):  # an aborted create: no state.json yet
            import shutil
            shutil.rmtree(path, ignore_errors=True)
        if force:
            return
        raise
    status = status_of(state)
    cgroup = _cgroup(state)
    if status in ("running", "paused") and not force:
        raise Conflict(f"cannot delete container {container_id} that is not stopped: {status}")
    if status != "stopped":
        if status == "paused":
            cgroup.thaw()
        _kill_quietly(state.pid)
        cgroup.kill_all(SIGKILL)
        _wait_gone(state)
    spec = state.config()
    if (spec.get("hooks") or {}).get("poststop"):
        try:
            hooks.run_hooks(spec, "poststop", _oci_state_json(state, "stopped"))
        except hooks.HookError:
            pass  # poststop failures are logged, never fatal (runtime spec)
    cgroup.destroy()
    state.remove()


def _wait_gone(state: ContainerState, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state.alive() and time.monotonic() < deadline:
        time.sleep(0.002)


def pause(root: str, container_id: str) -> None:
    state = ContainerState.load(root, container_id)
    status = status_of(state)
    if status != "running":
        raise ContainerError(f"container not running: {status}" if status != "paused"
                             else "container already paused")
    _cgroup(state).freeze()


def resume(root: str, container_id: str) -> None:
    state = ContainerState.load(root, container_id)
    if status_of(state) != "paused":
        raise ContainerError("container not paused")
    _cgroup(state).thaw()


def update(root: str, container_id: str, resources: dict) -> None:
    state = ContainerState.load(root, container_id)
    if status_of(state) == "stopped":
        raise ContainerError("container not running")
    _cgroup(state).apply(resources)
    spec = state.config()
    linux = spec.setdefault("linux", {})
    merged = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    write_json_atomic(os.path.join(state.dir, "config.json"), spec)


def pids(root: str, container_id: str) -> list[int]:
    state = ContainerState.load(root, container_id)
    return _cgroup(state).pids()


def stats(root: str, container_id: str) -> dict:
    state = ContainerState.load(root, container_id)
    if status_of(state) == "stopped":
        raise ContainerError("container not running")
    return _cgroup(state).stats()


def oom_count(root: str, container_id: str) -> int:
    state = ContainerState.load(root, container_id)
    return _cgroup(state).oom_kill_count()
