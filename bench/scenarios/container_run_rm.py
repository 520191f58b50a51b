"""`docker run --rm busybox:dyk true` against `dockyard daemon` and a private dockerd."""

from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._daemon_peers import IMAGE, DaemonPeers


class ContainerRunRm(Scenario):
    name = "container_run_rm"
    description = (
        "`docker run --rm busybox:dyk true` (create, attach, start, wait, remove) with the "
        "official docker CLI, against `dockyard daemon` and a private dockerd 20.10 "
        "(containerd, runc)."
    )
    target = "<= 0.25"
    target_ratio = 0.25
    # cgroup.procs writes and cgroup removals of one side must not ride on (or pay for)
    # the other side's RCU grace period; dockerd also finishes some cleanup asynchronously.
    settle = 0.2
    ours_label = "dockyard"
    reference_label = "docker"
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        self.peers = DaemonPeers()

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)

    def _run(self, side: str) -> Metrics:
        return self.peers.docker(side, "run", "--rm", IMAGE, "true")

    def ours(self) -> Metrics:
        return self._run("ours")

    def reference(self) -> Metrics:
        return self._run("reference")

    def _check(self, side: str) -> None:
        left = self.peers.docker_quiet(side, "ps", "-aq").stdout.split()
        if left:
            raise RuntimeError(f"--rm left containers: {left}")

    def check_ours(self) -> None:
        self._check("ours")

    def check_reference(self) -> None:
        self._check("reference")

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = ContainerRunRm()
