"""`docker run -d busybox:dyk sleep 60` then `docker rm -f`, against both daemons."""

import itertools
import os
from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._daemon_peers import IMAGE, DaemonPeers


class ContainerRunDRm(Scenario):
    name = "container_run_d_rm"
    description = (
        "`docker run -d --name N busybox:dyk sleep 60` then `docker rm -f N`, both timed, with "
        "the official docker CLI against `dockyard daemon` and a private dockerd 20.10 "
        "(containerd, runc)."
    )
    settle = 0.2
    ours_label = "dockyard"
    reference_label = "docker"
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        self.peers = DaemonPeers()
        self._ids = itertools.count(1)

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)

    def _run(self, side: str) -> Metrics:
        name = f"bench-{os.getpid()}-{side}-{next(self._ids)}"
        self.peers.docker(side, "run", "-d", "--name", name, IMAGE, "sleep", "60")
        self.peers.docker(side, "rm", "-f", name)
        return {}

    def ours(self) -> Metrics:
        return self._run("ours")

    def reference(self) -> Metrics:
        return self._run("reference")

    def _check(self, side: str) -> None:
        left = self.peers.docker_quiet(side, "ps", "-aq").stdout.split()
        if left:
            raise RuntimeError(f"rm -f left containers: {left}")

    def check_ours(self) -> None:
        self._check("ours")

    def check_reference(self) -> None:
        self._check("reference")

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = ContainerRunDRm()
