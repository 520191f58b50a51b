"""The container process: everything between the finished rootfs and execve.

`ProcessPlan.from_spec` does all the work that may import or allocate (caps
masks, the seccomp program, the environment) *before* the init enters the
container's root. `finish` and `exec` then use os-level calls only: after
pivot_root no Python import and no user/host name lookup may happen
(CVE-2019-14271 class), and `block_imports` makes sure none can.
"""

import errno
import os
import resource
import sys

from dockyard.errors import DockyardError
from dockyard.linux import libc
from dockyard.linux.capabilities import CapPlan, set_keepcaps
from dockyard.linux.signals import restore_defaults
from dockyard.runtime.spec import RLIMITS

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(DockyardError):
    """The user's program cannot be run (docker maps these to exit 126/127)."""


def _host_binaries() -> set[tuple[int, int]]:
    """(dev, inode) of the interpreter running the runtime and its libpython."""
    found = set()
    for path in (sys.executable, "/proc/self/exe"):
        try:
            st = os.stat(path)
            found.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    with open("/proc/self/maps") as f:
        for line in f:
            if "libpython" in line and line.rstrip().endswith(".so.1.0"):
                st = os.stat(line.split(maxsplit=5)[5].strip())
                found.add((st.st_dev, st.st_ino))
                break
    return found


class ProcessPlan:
    """What the init needs to become the user's process, decided before it starts."""

    def __init__(self, *, args: list[str], env: dict[str, str], cwd: str, uid: int, gid: int,
                 groups: list[int], umask: int | None, rlimits: list[tuple[int, int, int]],
                 caps: CapPlan, no_new_privileges: bool, oom_score_adj: int | None,
                 terminal: bool, seccomp, host_binaries: set[tuple[int, int]]):
        self.args = args
        self.env = env
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.umask = umask
        self.rlimits = rlimits
        self.caps = caps
        self.no_new_privileges = no_new_privileges
        self.oom_score_adj = oom_score_adj
        self.terminal = terminal
        self.seccomp = seccomp  # a compiled SeccompFilter, or None
        self.host_binaries = host_binaries

    @classmethod
    def from_spec(cls, process: dict, seccomp_spec: dict | None) -> "ProcessPlan":
        user = process.get("user") or {}
        env = dict(e.split("=", 1) for e in process.get("env") or ())
        filt = None
        if seccomp_spec:
            from dockyard.linux.seccomp import SeccompFilter
            filt = SeccompFilter.from_spec(seccomp_spec)
        return cls(
            args=list(process["args"]), env=env, cwd=process.get("cwd") or "/",
            uid=user.get("uid", 0), gid=user.get("gid", 0),
            groups=list(user.get("additionalGids") or ()), umask=user.get("umask"),
            rlimits=[(RLIMITS[r["type"]], r["soft"], r["hard"])
                     for r in process.get("rlimits") or ()],
            caps=CapPlan.from_spec(process.get("capabilities")),
            no_new_privileges=bool(process.get("noNewPrivileges")),
            oom_score_adj=process.get("oomScoreAdj"), terminal=bool(process.get("terminal")),
            seccomp=filt, host_binaries=_host_binaries(),
        )

    # --- from here on: no imports --------------------------------------------------

    def set_rlimits(self) -> None:
        for kind, soft, hard in self.rlimits:
            resource.setrlimit(kind, (soft, hard))

    def set_oom_score_adj(self) -> None:
        if self.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(self.oom_score_adj))

    def default_home(self) -> None:
        """HOME from the container's /etc/passwd when the spec sets none, as runc does
        (a plain file read: no NSS, which would load the container's libraries)."""
        if "HOME" in self.env:
            return
        home = "/"
        try:
            with open("/etc/passwd", "rb") as f:
                for line in f.read(1 << 20).split(b"\n"):
                    fields = line.split(b":")
                    if len(fields) >= 6 and fields[2] == str(self.uid).encode():
                        home = fields[5].decode(errors="replace") or "/"
                        break
        except OSError:
            pass
        self.env["HOME"] = home

    def resolve(self) -> str:
        """Find the program as execve would, refusing the runtime's own interpreter."""
        name = self.args[0]
        if "/" in name:
            candidates = [name]
        else:
            path = self.env.get("PATH", DEFAULT_PATH)
            candidates = [os.path.join(d or ".", name) for d in path.split(":")]
        denied = None
        for candidate in candidates:
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_mode & 0o170000) != 0o100000:  # not a regular file
                denied = candidate
                continue
            if not os.access(candidate, os.X_OK):
                denied = candidate
                continue
            self._refuse_host_binary(candidate, 0)
            return candidate
        if denied:
            raise ExecError(f'exec: "{name}": permission denied')
        if "/" in name:
            raise ExecError(f'exec: "{name}": stat {name}: no such file or directory')
        raise ExecError(f'exec: "{name}": executable file not found in $PATH')

    def _refuse_host_binary(self, path: str, depth: int) -> None:
        # Running the runtime's interpreter inside the container (e.g. via
        # /proc/self/exe, directly or as a script's interpreter) would let the
        # container overwrite it on the host (CVE-2019-5736 class).
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in self.host_binaries:
            raise ExecError(f'exec: "{self.args[0]}": refusing to run the runtime\'s own binary')
        if depth >= 4:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            head = os.read(fd, 256)
        finally:
            os.close(fd)
        if head.startswith(b"#!"):
            interp = head[2:].split(b"\n", 1)[0].strip().split()
            if interp:
                try:
                    self._refuse_host_binary(interp[0].decode(), depth + 1)
                except OSError:
                    pass

    def finish(self, preserve_fds: int, keep_fds: tuple[int, ...]) -> None:
        """Privileges, fds and cwd, in runc's order. Seccomp is loaded last (in exec)
        when no_new_privileges is set, else here, before the capabilities go."""
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        _close_other_fds(preserve_fds, keep_fds)
        if self.no_new_privileges:
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        elif self.seccomp is not None:
            self.seccomp.load()
        self.caps.drop_bounding()
        set_keepcaps(True)
        os.setgroups(self.groups)
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        set_keepcaps(False)
        self.caps.apply()
        if self.umask is not None:
            os.umask(self.umask)
        self.chdir()

    def chdir(self) -> None:
        try:
            os.chdir(self.cwd)
        except OSError as e:
            raise ExecError(f"chdir to cwd ({self.cwd!r}) set in config.json failed: "
                            f"{os.strerror(e.errno)}") from None
        # a cwd outside the root (e.g. a leaked host fd, CVE-2024-21626) reads "(unreachable)"
        if not os.getcwd().startswith("/"):
            raise ExecError("current working directory is outside of the container root")

    def exec(self, path: str) -> None:
        restore_defaults()  # SIGPIPE, SIGXFSZ: not ignored in the container, as with runc
        if self.no_new_privileges and self.seccomp is not None:
            self.seccomp.load()
        os.execve(path, self.args, self.env)


def _close_other_fds(preserve_fds: int, keep: tuple[int, ...]) -> None:
    """Only fds 0-2 and the preserved ones may reach the container's process."""
    last_preserved = 2 + preserve_fds
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= last_preserved:
            if fd > 2:
                os.set_inheritable(fd, True)
            continue
        if fd in keep:
            os.set_inheritable(fd, False)
            continue
        try:
            os.close(fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise


def block_imports() -> None:
    """Make any import of a module not yet loaded fail instead of reading the container's
    files: called right after the init enters the container's root."""
    sys.meta_path[:] = []
    sys.path_hooks[:] = []
    sys.path_importer_cache.clear()
    sys.path[:] = []
