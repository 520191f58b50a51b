"""`docker run --rm busybox:dyk true` against `dockyard daemon` and a private dockerd."""

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import IMAGE, DaemonScenario


class ContainerRunRm(DaemonScenario):
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

    def run(self, side: str) -> Metrics:
        return self.peers.docker(side, "run", "--rm", IMAGE, "true")


SCENARIO = ContainerRunRm()
