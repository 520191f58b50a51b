"""`docker run -d busybox:dyk sleep 60` then `docker rm -f`, against both daemons."""

import itertools
import os

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import IMAGE, DaemonScenario


class ContainerRunDRm(DaemonScenario):
    name = "container_run_d_rm"
    description = (
        "`docker run -d --name N busybox:dyk sleep 60` then `docker rm -f N`, both timed, with "
        "the official docker CLI against `dockyard daemon` and a private dockerd 20.10 "
        "(containerd, runc)."
    )
    settle = 0.2

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    def run(self, side: str) -> Metrics:
        name = f"bench-{os.getpid()}-{side}-{next(self._ids)}"
        self.peers.docker(side, "run", "-d", "--name", name, IMAGE, "sleep", "60")
        self.peers.docker(side, "rm", "-f", name)
        return {}


SCENARIO = ContainerRunDRm()
