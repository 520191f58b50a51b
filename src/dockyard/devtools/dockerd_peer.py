"""The real dockerd as a test peer, on private everything.

`DockerdPeer.start()` brings up Debian's dockerd 20.10 with its own socket,
data root, exec root, pid file, config file, trust key, cgroup parent, its
own managed containerd (under exec-root/data-root) and a Linux bridge we
create ourselves; firewall handling is off, so the host's iptables is left
alone. Extra OCI runtimes are registered with --add-runtime. `stop()` undoes
all of it: containers, dockerd, its containerd and shims, stray container
processes, mounts under the temp dir, veths, the bridge, cgroups, files.

Used by tests/compat/conftest.py; usable on its own for experiments:

    peer = DockerdPeer.start({"dyk-runc": "/usr/sbin/runc"})
    peer.docker("run", "--rm", "--runtime", "dyk-runc", "busybox:dyk", "echo", "hi")
    peer.stop()
"""

from __future__ import annotations

import errno
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/local/bin/docker"     # official v28 CLI; negotiates API 1.41 with 20.10
DOCKER_CLI_FALLBACK = "/usr/bin/docker"  # Debian's 20.10 CLI
IMAGE = "busybox:dyk"
CGROUP_ROOT = "/sys/fs/cgroup"


class PeerError(RuntimeError):
    pass


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, **kw)


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _subnet_in_use(prefix: str) -> bool:
    out = _run(["ip", "-4", "-o", "addr", "show"]).stdout
    return f" {prefix}." in out


def create_bridge() -> tuple[str, str]:
    """Create `dyktest<N>` with 10.213.<N>.1/24 for the first free N; returns (name, cidr)."""
    for n in range(64):
        name, prefix = f"dyktest{n}", f"10.213.{n}"
        if _link_exists(name) or _subnet_in_use(prefix):
            continue
        if _run(["ip", "link", "add", "name", name, "type", "bridge"]).returncode != 0:
            continue  # lost a race with someone else; try the next one
        cidr = f"{prefix}.1/24"
        for argv in (["ip", "addr", "add", cidr, "dev", name], ["ip", "link", "set", name, "up"]):
            r = _run(argv)
            if r.returncode != 0:
                _run(["ip", "link", "del", name])
                raise PeerError(f"{' '.join(argv)}: {r.stderr.strip()}")
        return name, cidr
    raise PeerError("no free dyktest<N> bridge name / 10.213.<N>.0/24 subnet")


def delete_bridge(name: str) -> None:
    if not _link_exists(name):
        return
    # veths dockerd failed to remove would outlive the bridge: delete them first
    for port in os.listdir(f"/sys/class/net/{name}/brif") if os.path.isdir(
            f"/sys/class/net/{name}/brif") else []:
        _run(["ip", "link", "del", port])
    _run(["ip", "link", "del", name])


def mounts_under(root: str) -> list[str]:
    """Mount points at or below `root` in our mount namespace, deepest first."""
    root = root.rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            point = point.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: str) -> list[str]:
    """Lazily unmount everything below `root`; returns what is still mounted."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return []
        for p in points:
            _run(["umount", "-l", p])
    return mounts_under(root)


def pids_matching(needle: str) -> list[int]:
    """Pids whose command line mentions `needle` (our private temp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            pids.append(int(entry))
    return pids


def cgroup_dirs(parent: str) -> list[str]:
    """Our cgroup parent in every mounted hierarchy (v1 controllers and v2)."""
    dirs = []
    if os.path.isdir(CGROUP_ROOT):
        if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            candidates = [CGROUP_ROOT]
        else:
            candidates = [os.path.join(CGROUP_ROOT, d) for d in os.listdir(CGROUP_ROOT)]
        for base in candidates:
            d = os.path.join(base, parent.lstrip("/"))
            if os.path.isdir(d):
                dirs.append(d)
    return dirs


def pids_in_cgroups(dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        for sub, _, files in os.walk(d):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(sub, "cgroup.procs")) as f:
                        pids.update(int(x) for x in f.read().split())
                except OSError:
                    pass
    return pids


def remove_cgroups(dirs: list[str]) -> None:
    for d in dirs:
        for sub, _, _ in sorted(os.walk(d), key=lambda t: t[0].count("/"), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass


def kill_pids(pids: list[int] | set[int], grace: float = 3.0) -> None:
    """SIGTERM the given pids, wait up to `grace`, then SIGKILL the rest."""
    pids = set(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)}
            time.sleep(0.05)
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_in_pty(argv: list[str], env: dict[str, str], timeout: float = 30.0,
               stdin_data: bytes = b"") -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as its stdin/stdout/stderr; returns (rc, output)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        if stdin_data:
            os.write(master, stdin_data)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(argv, timeout, output=b"".join(chunks))
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:  # EIO: every slave end is closed
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                # the CLI exited; drain what is left without blocking
                while select.select([master], [], [], 0.05)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    chunks.append(data)
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
    return rc, b"".join(chunks).decode(errors="replace")


@dataclass
class DockerdPeer:
    tmp: Path
    bridge: str
    bridge_cidr: str
    cgroup_parent: str
    cli: str
    proc: subprocess.Popen | None = None
    storage_driver: str = "overlay2"
    runtimes: dict[str, str] = field(default_factory=dict)
    created_run_dirs: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)  # e.g. --userland-proxy=true

    # ----------------------------------------------------------------- paths
    @property
    def sock(self) -> Path:
        return self.tmp / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def log_path(self) -> Path:
        return self.tmp / "dockerd.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.tmp / "cli")   # keep ~/.docker untouched
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        return env

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no dockerd log)"

    # ------------------------------------------------------------------ CLI
    def docker(self, *args: str, check: bool = True, timeout: float = 30.0,
               input: str | None = None) -> subprocess.CompletedProcess:
        argv = [self.cli, *args]
        try:
            r = subprocess.run(argv, check=False, capture_output=True, text=True, env=self.env(),
                               timeout=timeout, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"timed out after {timeout}s: docker {' '.join(args)}\n"
                            f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        if check and r.returncode != 0:
            raise PeerError(f"docker {' '.join(args)} -> rc {r.returncode}\n"
                            f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def docker_pty(self, *args: str, timeout: float = 30.0) -> tuple[int, str]:
        try:
            return run_in_pty([self.cli, *args], self.env(), timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.output or b"").decode(errors="replace")
            raise PeerError(f"timed out after {timeout}s (pty): docker {' '.join(args)}\n"
                            f"output: {out!r}") from None

    def inspect(self, name: str) -> dict:
        return json.loads(self.docker("inspect", "--type", "container", name).stdout)[0]

    # ------------------------------------------------------------- lifecycle
    @classmethod
    def start(cls, runtimes: dict[str, str], storage_driver: str | None = None,
              cli: str | None = None, extra_args: list[str] | None = None) -> DockerdPeer:
        tmp = Path(tempfile.mkdtemp(prefix="dyk-dockerd-", dir="/tmp"))
        created = [d for d in ("/run/docker", "/run/containerd") if not os.path.exists(d)]
        bridge, cidr = create_bridge()
        peer = cls(tmp=tmp, bridge=bridge, bridge_cidr=cidr, cgroup_parent=f"/{bridge}",
                   cli=cli or pick_cli(), runtimes=dict(runtimes), created_run_dirs=created,
                   extra_args=list(extra_args or []))
        try:
            drivers = [storage_driver] if storage_driver else ["overlay2", "vfs"]
            for i, driver in enumerate(drivers):
                peer.storage_driver = driver
                try:
                    peer._launch()
                    break
                except PeerError:
                    if i == len(drivers) - 1:
                        raise
                    peer._stop_daemon()
                    shutil.rmtree(tmp / "data", ignore_errors=True)
            peer._import_busybox()
        except BaseException:
            peer.stop()
            raise
        return peer

    def _launch(self) -> None:
        # our own config file: /etc/docker/daemon.json is never read, and the libtrust
        # key (a daemon.json-only setting) stays out of /etc/docker/key.json
        config = {"deprecated-key-path": str(self.tmp / "key.json")}
        (self.tmp / "daemon.json").write_text(json.dumps(config) + "\n")
        argv = [
            DOCKERD,
            "-H", self.host,
            "--config-file", str(self.tmp / "daemon.json"),
            "--data-root", str(self.tmp / "data"),
            "--exec-root", str(self.tmp / "exec"),
            "--pidfile", str(self.tmp / "docker.pid"),
            "--bridge", self.bridge,
            "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--userland-proxy=false",
            "--storage-driver", self.storage_driver,
            "--cgroup-parent", self.cgroup_parent,
            "--exec-opt", "native.cgroupdriver=cgroupfs",
        ]
        for name, path in self.runtimes.items():
            argv += ["--add-runtime", f"{name}={path}"]
        argv += self.extra_args
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"dockerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.sock.exists():
                r = subprocess.run([self.cli, "version", "--format", "{{.Server.Version}}"],
                                   check=False, capture_output=True, text=True, env=self.env(),
                                   timeout=10)
                if r.returncode == 0 and r.stdout.strip():
                    return
            time.sleep(0.1)
        raise PeerError(f"dockerd did not answer within 30s:\n{self.log_tail()}")

    def _import_busybox(self) -> None:
        from dockyard.devtools.busybox import make_rootfs

        rootfs = self.tmp / "rootfs"
        make_rootfs(str(rootfs))
        tar = self.tmp / "rootfs.tar"
        r = _run(["tar", "-C", str(rootfs), "--numeric-owner", "--owner=0", "--group=0",
                  "-cf", str(tar), "."])
        if r.returncode != 0:
            raise PeerError(f"tar: {r.stderr}")
        self.docker("import", "--change", 'CMD ["sh"]', str(tar), IMAGE)
        shutil.rmtree(rootfs, ignore_errors=True)
        tar.unlink()

    def _stop_daemon(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # its containerd, the shims and anything else started with our paths
        kill_pids(pids_matching(str(self.tmp)))

    def stop(self) -> list[str]:
        """Tear everything down; returns a list of problems (empty when clean)."""
        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                ids = self.docker("ps", "-aq", timeout=15).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=30)
            except PeerError as e:
                problems.append(f"removing containers: {e}")
        self._stop_daemon()
        cgroups = cgroup_dirs(self.cgroup_parent)
        stray = pids_in_cgroups(cgroups)
        if stray:
            problems.append(f"container processes left in {self.cgroup_parent}: {sorted(stray)}")
            kill_pids(stray)
        left = pids_matching(str(self.tmp))
        if left:
            problems.append(f"processes survived SIGKILL: {left}")
        still = unmount_all(str(self.tmp))
        if still:
            problems.append(f"could not unmount: {still}")
        delete_bridge(self.bridge)
        remove_cgroups(cgroups)
        if not still:
            shutil.rmtree(self.tmp, ignore_errors=True)
        # dockerd and the shims create these fixed paths; drop them if we made them
        for d in self.created_run_dirs:
            for sub in ("plugins", "s"):
                try:
                    os.rmdir(os.path.join(d, sub))
                except OSError:
                    pass
            try:
                os.rmdir(d)
            except OSError:
                pass
        return problems


def peer_missing() -> str | None:
    """Why the dockerd peer cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.access(DOCKERD, os.X_OK):
        return f"{DOCKERD} missing"
    for tool in ("containerd", "containerd-shim-runc-v2", "ip", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return None


def pick_cli() -> str:
    """The v28 CLI if it can talk to the 20.10 daemon, else Debian's own."""
    for cli in (DOCKER_CLI, DOCKER_CLI_FALLBACK):
        if os.access(cli, os.X_OK):
            return cli
    raise PeerError("no docker CLI found")
