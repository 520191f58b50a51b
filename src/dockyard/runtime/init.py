"""The container's init, in two stages forked from the runtime.

stage 1: joins/creates the user namespace (the parent writes the id maps),
         creates the other namespaces, forks stage 2 (pid 1 of a new pid
         namespace) and exits.
stage 2: builds the root file system, waits while the runtime moves it into
         the container's cgroup, sets the limits and runs the prestart hooks,
         then pivots, drops privileges, reports ready, waits on exec.fifo for
         `start`, and execs the user's program.
The stages run while the runtime waits for the cgroup (see cgroup_join): they
join it late, which is why a new cgroup namespace is made by stage 2, once
it is in its cgroup.
Neither stage ever returns into the caller: both end in execve or os._exit.
"""

import os
import sys

from dockyard.linux import namespaces as ns
from dockyard.linux.libc import PR_SET_DUMPABLE, call, libc, prctl
from dockyard.runtime import rootfs as rfs
from dockyard.runtime.hooks import run_hooks
from dockyard.runtime.process import ProcessPlan, block_imports
from dockyard.runtime.sync import Channel


class InitConfig:
    """Everything the init stages need, prepared by the runtime before forking."""

    def __init__(self, spec: dict, rootfs: str, process: ProcessPlan, cgroup, cgroup_path: str,
                 fifo: str, no_pivot: bool = False, preserve_fds: int = 0,
                 console_fd: int = -1):
        self.spec = spec
        self.rootfs = rootfs
        self.process = process
        self.cgroup = cgroup  # a Cgroup of dockyard.linux.cgroups
        self.cgroup_path = cgroup_path
        self.fifo = fifo
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.console_fd = console_fd  # a connected --console-socket, when process.terminal
        self.fifo_fd = -1

    @property
    def linux(self) -> dict:
        return self.spec.get("linux") or {}

    def namespaces(self) -> dict[str, str]:
        """type -> path ('' for a new namespace)."""
        return {n["type"]: n.get("path") or "" for n in self.linux.get("namespaces") or ()}


def _fail(chan: Channel, err: BaseException, code: int = 1) -> None:
    """Report `err` to the runtime and end this process: a forked stage must never
    return into the runtime's own code, whatever happens while reporting."""
    if os.environ.get("DOCKYARD_DEBUG"):
        sys.excepthook(type(err), err, err.__traceback__)
    try:
        chan.send("error", _describe(err))
    finally:
        os._exit(code)


def fork_reporting_pid(chan: Channel) -> int:
    """fork(); the parent reports the child's host pid to the runtime, and the child
    waits until that report is out, so the runtime hears "pid" before anything the
    child says (0 in the child, as with fork)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # end of file once the parent has reported and closed its end
        os.close(r)
        return 0
    os.close(r)
    chan.send("pid", str(pid))
    os.close(w)
    return pid


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is None and err.args[1:]:
        return str(err.args[1])
    if isinstance(err, (OSError, ValueError, KeyError)) or type(err).__module__.startswith(
            "dockyard"):
        return str(err)
    return f"{type(err).__name__}: {err}"


def stage1(cfg: InitConfig, chan: Channel) -> None:
    try:
        # not dumpable: no process of the container may open /proc/<pid>/exe (the host's
        # interpreter) or our memory while we run inside it (CVE-2019-5736 class)
        prctl(PR_SET_DUMPABLE, 0)
        # opened before a user namespace could take the right to open it away
        cfg.fifo_fd = os.open(cfg.fifo, os.O_RDWR | os.O_CLOEXEC)
        wanted = cfg.namespaces()
        fds = {kind: os.open(path, os.O_RDONLY | os.O_CLOEXEC)
               for kind, path in wanted.items() if path}
        for kind in ns.JOIN_ORDER:  # user first, mount last
            if kind in fds:
                ns.setns(fds.pop(kind), ns.NAMESPACES[kind][0])
        if wanted.get("user") == "":
            ns.unshare(ns.CLONE_NEWUSER)
            chan.send("userns", str(os.getpid()))
            chan.expect("ok")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for kind, path in wanted.items():
            if not path and kind not in ("user", "cgroup"):
                flags |= ns.NAMESPACES[kind][0]
        if flags:
            ns.unshare(flags)
        if fork_reporting_pid(chan) == 0:
            stage2(cfg, chan)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent
        _fail(chan, e)


def stage2(cfg: InitConfig, chan: Channel) -> None:
    try:
        wanted = cfg.namespaces()
        spec, proc = cfg.spec, cfg.process
        if wanted.get("cgroup") == "":
            # the namespace's root is the cgroup we are in: wait to be in the container's
            chan.send("cgroupns")
            chan.expect("ok")
            ns.unshare(ns.CLONE_NEWCGROUP)
        new_mnt = "mount" in wanted and not wanted["mount"]
        if new_mnt:
            rootfs = _RootfsBuilder(cfg, wanted)
            rootfs.before_cgroup()
        if "uts" in wanted and spec.get("hostname"):
            name = spec["hostname"].encode()
            call(libc.sethostname, name, len(name), what="sethostname")
        chan.send("hooks")  # the runtime moves us into the cgroup, sets limits, runs hooks
        state = chan.expect("ok").encode()  # the OCI state, for our own hooks' stdin
        if new_mnt:
            rootfs.after_cgroup()
        run_hooks(spec, "createContainer", state)
        fifo = cfg.fifo_fd
        proc.set_rlimits()
        if "mount" in wanted and not wanted["mount"]:
            rfs.pivot(cfg.rootfs, cfg.no_pivot)
        else:
            os.chroot(cfg.rootfs)
            os.chdir("/")
        block_imports()
        _after_pivot(cfg)
        if proc.terminal:
            _setup_console(cfg.console_fd)
        proc.set_oom_score_adj()
        proc.default_home()
        path = proc.resolve()
        proc.finish(cfg.preserve_fds, (fifo, chan.rfd, chan.wfd))
        chan.send("ready")
        os.read(fifo, 1)  # blocks until `start`
        run_hooks(spec, "startContainer", state)
        proc.exec(path)
    except BaseException as e:  # noqa: BLE001
        _fail(chan, e)


class _RootfsBuilder:
    """Mounts in two parts: those before the first cgroup mount are made while the
    runtime waits for the container's cgroup; that mount and the rest, once the
    cgroup exists (a cgroup mount shows the container's own cgroup)."""

    def __init__(self, cfg: InitConfig, wanted: dict[str, str]):
        self.cfg = cfg
        self.wanted = wanted
        self.steps = rfs.plan_mounts(cfg.spec, os.path.dirname(cfg.rootfs))
        self.split = next((i for i, s in enumerate(self.steps)
                           if s.fstype in ("cgroup", "cgroup2") and not s.bind),
                          len(self.steps))

    def _mount(self, steps: list) -> None:
        rfs.mount_all(self.cfg.rootfs, steps, self.cfg.cgroup_path,
                      cgroupns="cgroup" in self.wanted,
                      newnet=self.wanted.get("network") == "")

    def before_cgroup(self) -> None:
        rfs.prepare_root(self.cfg.rootfs, rfs.propagation_flags(self.cfg.spec))
        self._mount(self.steps[:self.split])

    def after_cgroup(self) -> None:
        cfg, steps = self.cfg, self.steps
        self._mount(steps[self.split:])
        dests = {s.destination.rstrip("/") for s in steps}
        rfs.create_devices(cfg.rootfs, rfs.plan_devices(cfg.spec),
                           bind_from_host="user" in self.wanted)
        rfs.create_dev_symlinks(cfg.rootfs, has_devpts="/dev/pts" in dests,
                                has_proc="/proc" in dests)


def _after_pivot(cfg: InitConfig) -> None:
    linux = cfg.linux
    for key, value in (linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    rfs.readonly_paths(linux.get("readonlyPaths") or [])
    rfs.mask_paths(linux.get("maskedPaths") or [])
    if (cfg.spec.get("root") or {}).get("readonly"):
        rfs.readonly_root()


def _setup_console(console_fd: int) -> None:
    """A pty from the container's devpts; the master goes to --console-socket."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    sock = _CONSOLE_SOCKET(fileno=console_fd)
    sock.sendmsg([name.encode()], [(_SOL_SOCKET, _SCM_RIGHTS, _pack_fd(master))])
    sock.close()
    os.close(master)
    try:
        console = "/dev/console"
        if not os.path.exists(console):
            os.close(os.open(console, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        from dockyard.linux.mount import MS_BIND, mount  # already loaded: not an import
        mount(name, console, None, MS_BIND)
    except OSError:
        pass  # /dev/console is a convenience; the tty itself is what matters
    os.login_tty(slave)


def load_console_support() -> None:
    """Import what the console needs before the init enters the container."""
    global _CONSOLE_SOCKET, _SOL_SOCKET, _SCM_RIGHTS, _pack_fd
    import array
    import socket
    _CONSOLE_SOCKET = socket.socket
    _SOL_SOCKET, _SCM_RIGHTS = socket.SOL_SOCKET, socket.SCM_RIGHTS
    _pack_fd = lambda fd: array.array("i", [fd])


_CONSOLE_SOCKET = _SOL_SOCKET = _SCM_RIGHTS = _pack_fd = None
