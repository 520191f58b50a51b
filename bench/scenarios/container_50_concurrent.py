"""50 `docker run -d busybox:dyk sleep 60` at once, against both daemons; time and memory."""

from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._daemon_peers import DaemonPeers, host_used_kb, memory_kb

COUNT = 50


class Container50Concurrent(Scenario):
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
    ours_label = "dockyard"
    reference_label = "docker"
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        self.peers = DaemonPeers()
        self.before: tuple[int, int] = (0, 0)

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)

    def _prepare(self, side: str) -> None:
        self.peers.remove_all(side)
        self.before = (memory_kb(self.peers.engine_pids(side))[0], host_used_kb())

    def prepare_ours(self) -> None:
        self._prepare("ours")

    def prepare_reference(self) -> None:
        self._prepare("reference")

    def ours(self) -> Metrics:
        self.peers.run_detached("ours", COUNT, "c50")
        return {}

    def reference(self) -> Metrics:
        self.peers.run_detached("reference", COUNT, "c50")
        return {}

    def _check(self, side: str) -> Metrics:
        pss = memory_kb(self.peers.engine_pids(side))[0]
        used = host_used_kb()
        running = self.peers.running_ids(side)
        self.peers.remove_all(side)
        if len(running) != COUNT:
            raise RuntimeError(f"{len(running)} containers running, expected {COUNT}")
        return {"engine_pss_mb": pss / 1024,
                "engine_pss_growth_mb": (pss - self.before[0]) / 1024,
                "host_used_growth_mb": (used - self.before[1]) / 1024}

    def check_ours(self) -> Metrics:
        return self._check("ours")

    def check_reference(self) -> Metrics:
        return self._check("reference")

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = Container50Concurrent()
