"""Idle memory of `dockyard daemon` + monitor vs dockerd + containerd, and what one running
container costs the engine (our monitor vs a containerd-shim-runc-v2)."""

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import DaemonScenario, memory_kb

CONTAINERS = 10


class DaemonIdleMemory(DaemonScenario):
    name = "daemon_idle_memory"
    description = (
        "Memory metric scenario; the timed action is only `docker version`. Extra metrics: "
        "idle_pss_mb / idle_rss_mb, the engine with no container (dockyard: daemon + monitor; "
        "docker: dockerd + containerd), read from /proc/PID/smaps_rollup after the version "
        f"call; then {CONTAINERS} `sleep 60` containers are started and, per container, "
        "monitor_pss_per_container_kb (growth of our monitor's PSS / the shims' PSS) and "
        "engine_pss_per_container_kb (growth of all engine processes), then they are removed."
    )
    settle = 1.0

    def run(self, side: str) -> Metrics:
        return self.peers.docker(side, "version")

    def check(self, side: str) -> Metrics:
        peers = self.peers
        peers.remove_all(side)
        idle_pss, idle_rss = memory_kb(peers.engine_pids(side))
        idle_monitor = memory_kb(peers.monitor_pids(side))[0]
        peers.run_detached(side, CONTAINERS, "idle")
        try:
            running = peers.running_ids(side)
            if len(running) != CONTAINERS:
                raise RuntimeError(f"{len(running)} containers running, expected {CONTAINERS}")
            busy_pss = memory_kb(peers.engine_pids(side))[0]
            busy_monitor = memory_kb(peers.monitor_pids(side))[0]
        finally:
            peers.remove_all(side)
        return {"idle_pss_mb": idle_pss / 1024,
                "idle_rss_mb": idle_rss / 1024,
                "monitor_pss_per_container_kb": (busy_monitor - idle_monitor) / CONTAINERS,
                "engine_pss_per_container_kb": (busy_pss - idle_pss) / CONTAINERS}


SCENARIO = DaemonIdleMemory()
