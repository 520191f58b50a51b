"""50 `docker run -d busybox:dyk sleep 60` at once, against both daemons; time and memory."""

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import DaemonScenario, host_used_kb, memory_kb

COUNT = 50


class Container50Concurrent(DaemonScenario):
    name = "container_50_concurrent"
    description = (
        f"{COUNT} `docker run -d busybox:dyk sleep 60` started at once (one thread each), "
        "timed until every one has returned (the container is running then; checked with "
        "`docker ps`), then removed untimed. Extra metrics, taken with the containers running: "
        "growth of the summed PSS of the engine processes (dockyard: daemon + monitor; docker: "
        "dockerd + containerd + shims) and of host memory in use (MemTotal - MemAvailable) "
        "since just before the run."
    )
    # removing 50 containers frees cgroups, mounts and veths partly asynchronously
    settle = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.before: tuple[int, int] = (0, 0)

    def prepare(self, side: str) -> None:
        self.peers.remove_all(side)
        self.before = (memory_kb(self.peers.engine_pids(side))[0], host_used_kb())

    def run(self, side: str) -> Metrics:
        self.peers.run_detached(side, COUNT, "c50")
        return {}

    def check(self, side: str) -> Metrics:
        pss = memory_kb(self.peers.engine_pids(side))[0]
        used = host_used_kb()
        running = self.peers.running_ids(side)
        self.peers.remove_all(side)
        if len(running) != COUNT:
            raise RuntimeError(f"{len(running)} containers running, expected {COUNT}")
        return {"engine_pss_mb": pss / 1024,
                "engine_pss_growth_mb": (pss - self.before[0]) / 1024,
                "host_used_growth_mb": (used - self.before[1]) / 1024}


SCENARIO = Container50Concurrent()
