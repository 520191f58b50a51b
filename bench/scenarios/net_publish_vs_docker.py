"""Throughput through a published port on loopback: ours (kernel DNAT) vs Docker's (its
userland proxy, docker-proxy), a 256 MB HTTP download from busybox httpd."""

import os

from bench.scenario import Metrics, Scenario
from bench.scenarios._net_peers import SIZE_MB, NetPeers, download


class NetPublishVsDocker(Scenario):
    name = "net_publish_vs_docker"
    description = (
        f"GET of a {SIZE_MB} MB file from busybox httpd through a port published on "
        "127.0.0.1: `dockyard daemon` (kernel DNAT) vs a private dockerd 20.10 with its "
        "userland proxy (docker-proxy; iptables off)."
    )
    reference_label = "docker (userland proxy)"
    runs = 7
    warmup = 2

    def __init__(self) -> None:
        self.peers = NetPeers(with_docker=True)
        self.ports: dict[str, int] = {}

    def setup(self, workdir) -> None:
        self.peers.start(workdir)
        for side in ("ours", "reference"):
            self.ports[side], _ = self.peers.serve(side, f"bench-web-{os.getpid()}-{side}")

    def teardown(self) -> None:
        self.peers.stop()

    def ours(self) -> Metrics:
        download("127.0.0.1", self.ports["ours"])
        return {}

    def reference(self) -> Metrics:
        download("127.0.0.1", self.ports["reference"])
        return {}


SCENARIO = NetPublishVsDocker()
