"""What the daemon scenarios share: a private `dockyard daemon` and a private dockerd (with
its own containerd, default runtime runc), both with busybox:dyk imported, both driven by the
same official docker CLI with DOCKER_HOST set per side; and memory readings (PSS, RSS from
/proc/PID/smaps_rollup) of each side's engine processes.

Engine processes: ours are the daemon and its monitor (the containers are the monitor's
children, not counted); the reference's are dockerd, its containerd and the
containerd-shim-runc-v2 processes (one per container).

Not a scenario (the leading underscore keeps discovery away).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.proc import CommandFailed, run
from bench.scenario import Metrics, Scenario, Skip
from dockyard.devtools import daemon as devtools_daemon
from dockyard.devtools.daemon import dockyard_cli

IMAGE = "busybox:dyk"
TIMEOUT = 60.0


# -- memory of a set of processes ------------------------------------------------------------

def _rollup(pid: int) -> dict[str, int]:
    """Pss and Rss (kB) of one process from smaps_rollup; {} when it is gone."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    found[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return {}
    return found


def memory_kb(pids: list[int]) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) in kB of `pids`."""
    pss = rss = 0
    for pid in pids:
        r = _rollup(pid)
        pss += r.get("Pss", 0)
        rss += r.get("Rss", 0)
    return pss, rss


def host_used_kb() -> int:
    """MemTotal - MemAvailable from /proc/meminfo, in kB."""
    values: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return values["MemTotal"] - values["MemAvailable"]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


# -- our daemon ------------------------------------------------------------------------------

class DockyardDaemon(devtools_daemon.DockyardDaemon):
    """dockyard.devtools' private daemon, plus what the benchmarks need: the docker CLI's
    environment (a config directory of its own) and the engine's pids (memory)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.cli_config = self.root / "cli"
        self.monitor_pid = 0

    def start(self) -> DockyardDaemon:
        super().start()
        self.monitor_pid = _read_pid(self.exec_root / "monitor.pid")
        return self

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = f"unix://{self.sock}"
        env["DOCKER_CONFIG"] = str(self.cli_config)
        return env

    def engine_pids(self) -> list[int]:
        if not self.monitor_pid or not os.path.exists(f"/proc/{self.monitor_pid}"):
            self.monitor_pid = _read_pid(self.exec_root / "monitor.pid")
        return [p for p in (self.proc.pid, self.monitor_pid) if p]


# -- both sides ------------------------------------------------------------------------------

class DaemonPeers:
    """Our daemon + a private dockerd, started by `start` and stopped by `stop`."""

    def __init__(self) -> None:
        self.ours: DockyardDaemon | None = None
        self.dockerd = None  # DockerdPeer
        self.cli = ""
        self._batch = 0

    def start(self, workdir: Path) -> None:
        from dockyard.devtools.dockerd_peer import DockerdPeer, peer_missing, pick_cli

        missing = peer_missing()
        if missing:
            raise Skip(f"no dockerd peer: {missing}")
        if not os.access(dockyard_cli(), os.X_OK):
            raise Skip(f"{dockyard_cli()} not found (bash scripts/setup.sh)")
        self.cli = pick_cli()
        root = workdir / "dockyard"
        root.mkdir()
        self.ours = DockyardDaemon(root).start()
        self._import_busybox(workdir)
        self.dockerd = DockerdPeer.start({}, cli=self.cli)  # imports busybox:dyk itself

    def _import_busybox(self, workdir: Path) -> None:
        from dockyard.devtools.busybox import make_rootfs

        rootfs = make_rootfs(str(workdir / "rootfs"))
        tar_path = workdir / "busybox.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(rootfs, arcname=".")
        r = self.docker_quiet("ours", "import", "-c", 'CMD ["sh"]', str(tar_path), IMAGE)
        if r.returncode != 0:
            raise RuntimeError(f"docker import into dockyard: {r.stderr.strip()}")

    def stop(self) -> None:
        problems: list[str] = []
        if self.ours is not None:
            if self.ours.proc.poll() is None:
                try:  # a failure here must not leave both daemons running
                    self.remove_all("ours")
                except Exception as e:  # noqa: BLE001 - reported below, after the stops
                    problems.append(f"dockyard: removing containers: {e}")
            problems += [f"dockyard: {p}" for p in self.ours.stop()]
            self.ours = None
        if self.dockerd is not None:
            problems += [f"dockerd peer: {p}" for p in self.dockerd.stop()]
            self.dockerd = None
        if problems:
            raise RuntimeError("; ".join(problems))

    # -- the docker CLI on either side ------------------------------------------------------

    def env(self, side: str) -> dict[str, str]:
        return self.ours.env() if side == "ours" else self.dockerd.env()

    def docker(self, side: str, *args: str, timeout: float = TIMEOUT) -> Metrics:
        """A timed-style run of the docker CLI (raises CommandFailed); no extra metrics (the
        CLI is the same binary on both sides)."""
        run([self.cli, *args], env=self.env(side), timeout=timeout)
        return {}

    def docker_quiet(self, side: str, *args: str,
                     timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([self.cli, *args], env=self.env(side), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                              check=False)

    def run_detached(self, side: str, count: int, label: str) -> None:
        """Start `count` `docker run -d busybox:dyk sleep 60` at once (threads); raises
        CommandFailed if any fails."""
        # explicit unique names: the daemons' generated names are not what is measured (and
        # dockyard's generator gave two concurrent runs the same name: a 409 Conflict)
        self._batch += 1
        prefix = f"bench-{os.getpid()}-{label}-{side}-{self._batch}"

        def one(i: int) -> None:
            self.docker(side, "run", "-d", "--name", f"{prefix}-{i}", IMAGE, "sleep", "60")

        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(one, range(count)))

    def running_ids(self, side: str) -> list[str]:
        r = self.docker_quiet(side, "ps", "-q")
        if r.returncode != 0:
            raise CommandFailed(f"docker ps: {r.stderr.strip()}")
        return r.stdout.split()

    def remove_all(self, side: str) -> None:
        """rm -f every container of that side; then none may be left."""
        r = self.docker_quiet(side, "ps", "-aq")
        ids = r.stdout.split()
        if ids:
            r = self.docker_quiet(side, "rm", "-f", *ids, timeout=120)
            if r.returncode != 0:
                raise CommandFailed(f"docker rm -f: {r.stderr.strip()}")
        left = self.docker_quiet(side, "ps", "-aq").stdout.split()
        if left:
            raise RuntimeError(f"{side}: containers left after rm -f: {left}")

    # -- memory --------------------------------------------------------------------------------

    def engine_pids(self, side: str) -> list[int]:
        """ours: daemon + monitor; reference: dockerd + containerd + shims."""
        if side == "ours":
            return self.ours.engine_pids()
        return [self.dockerd.proc.pid, *self.dockerd_helper_pids()]

    def dockerd_helper_pids(self, shims_only: bool = False) -> list[int]:
        """containerd and the containerd-shim-runc-v2 processes of the private dockerd."""
        from dockyard.devtools.dockerd_peer import pids_matching

        found = []
        for pid in pids_matching(str(self.dockerd.tmp)):
            argv = _cmdline(pid)
            name = os.path.basename(argv[0]) if argv else ""
            if name.startswith("containerd-shim") or (name == "containerd" and not shims_only):
                found.append(pid)
        return found

    def monitor_pids(self, side: str) -> list[int]:
        """What exists per container: our monitor (one for all) / the shims (one each)."""
        if side == "ours":
            self.ours.engine_pids()  # refreshes monitor_pid
            return [self.ours.monitor_pid] if self.ours.monitor_pid else []
        return self.dockerd_helper_pids(shims_only=True)


class DaemonScenario(Scenario):
    """A scenario run through the same docker CLI against `dockyard daemon` ("ours") and
    a private dockerd ("reference"). Subclasses define `run(side)` and may define
    `prepare(side)` and `check(side)`; by default a check insists nothing is left."""

    ours_label = "dockyard"
    reference_label = "docker"
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        self.peers = DaemonPeers()

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)

    def teardown(self) -> None:
        self.peers.stop()

    def run(self, side: str) -> Metrics | None:
        raise NotImplementedError

    def prepare(self, side: str) -> None:
        """Untimed, before each run."""

    def check(self, side: str) -> Metrics | None:
        """Untimed, after each run: by default, no container may be left."""
        left = self.peers.docker_quiet(side, "ps", "-aq").stdout.split()
        if left:
            raise RuntimeError(f"{self.name} left containers: {left}")
        return None

    def ours(self) -> Metrics | None:
        return self.run("ours")

    def reference(self) -> Metrics | None:
        return self.run("reference")

    def prepare_ours(self) -> None:
        self.prepare("ours")

    def prepare_reference(self) -> None:
        self.prepare("reference")

    def check_ours(self) -> Metrics | None:
        return self.check("ours")

    def check_reference(self) -> Metrics | None:
        return self.check("reference")
