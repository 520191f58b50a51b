"""What the volume I/O scenarios share: sequential write (dd, conv=fsync) and read-back
of a file inside a running busybox container of `dockyard daemon`, through a named volume
or a bind mount, against the same busybox dd on the host directory directly.

Not a scenario (the leading underscore keeps discovery away).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from bench.scenario import Metrics, Scenario, Skip
from bench.scenarios._daemon_peers import IMAGE, DaemonPeers, DockyardDaemon

SIZE_MB = 256
# busybox dd prints no timing here: /proc/uptime (10 ms steps) around each step
SCRIPT = ("read a _ < /proc/uptime; "
          "dd if=/dev/zero of={d}/bench.bin bs=1M count={n} conv=fsync 2>/dev/null; "
          "read b _ < /proc/uptime; dd if={d}/bench.bin of=/dev/null bs=1M 2>/dev/null; "
          "read c _ < /proc/uptime; rm {d}/bench.bin; echo T $a $b $c")
_TIMES = re.compile(r"^T ([0-9.]+) ([0-9.]+) ([0-9.]+)$", re.MULTILINE)


def dd_metrics(output: str) -> Metrics:
    """write_s and read_s, and the MB/s of each, from the script's time marks."""
    m = _TIMES.search(output)
    if not m:
        raise RuntimeError(f"unexpected output: {output[-300:]}")
    a, b, c = (float(x) for x in m.groups())
    write, read = max(b - a, 0.01), max(c - b, 0.01)
    # the timed figure is the dd's own time on both sides (not `docker exec`'s start-up)
    return {"write_s": write, "read_s": read, "seconds": write + read}


class VolumeIO(Scenario):
    """ours: `docker exec` of the dd script in a container whose /io is `mount_args`;
    reference: the same busybox dd on the host directory."""

    ours_label = "dockyard container"
    reference_label = "host"
    target = ">= 0.95x the host's throughput (time ratio <= 1.05)"
    target_ratio = 1.05
    runs = 6
    warmup = 1
    kind = ""

    def __init__(self) -> None:
        self.peers = DaemonPeers()
        self.host_dir = Path()
        self.busybox = "/bin/busybox"

    def mount_args(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def setup(self, workdir: Path) -> None:
        from dockyard.devtools.dockerd_peer import pick_cli

        if not Path(self.busybox).exists():
            raise Skip("busybox not installed")
        self.peers.cli = pick_cli()
        root = workdir / "dockyard"
        root.mkdir()
        self.peers.ours = DockyardDaemon(root).start()
        self.peers._import_busybox(workdir)
        self.host_dir = workdir / "host-dir"
        self.host_dir.mkdir()
        r = self.peers.docker_quiet("ours", "run", "-d", "--name", "volume-io",
                                    *self.mount_args(workdir), IMAGE, "sleep", "3600")
        if r.returncode != 0:
            raise RuntimeError(f"docker run: {r.stderr.strip()}")

    def teardown(self) -> None:
        self.peers.stop()
        self.peers.ours = None

    def _timed(self, argv: list[str], env: dict | None = None) -> Metrics:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} -> {r.returncode}: {r.stderr[-300:]}")
        return dd_metrics(r.stdout)

    def ours(self) -> Metrics:
        script = SCRIPT.format(d="/io", n=SIZE_MB)
        return self._timed([self.peers.cli, "exec", "volume-io", "sh", "-c", script],
                           self.peers.env("ours"))

    def reference(self) -> Metrics:
        script = SCRIPT.format(d=str(self.host_dir), n=SIZE_MB)
        return self._timed([self.busybox, "sh", "-c", script])

    def prepare_ours(self) -> None:
        os.sync()  # the previous side's writeback must not land in this run
        time.sleep(0.2)

    prepare_reference = prepare_ours
