"""Throughput through a published port (DNAT) vs straight to the container's address, both
on our daemon: a 256 MB HTTP download from busybox httpd, timed from the host."""

import os

from bench.scenario import Metrics, Scenario
from bench.scenarios._net_peers import SIZE_MB, NetPeers, download


class NetPublishThroughput(Scenario):
    name = "net_publish_throughput"
    description = (
        f"GET of a {SIZE_MB} MB file from busybox httpd in a container of `dockyard daemon`: "
        "through its published port on 127.0.0.1 (kernel DNAT, ours) vs straight to the "
        "container's bridge address (reference). Target: >= 0.9x the direct throughput."
    )
    ours_label = "published port"
    reference_label = "direct"
    target = "<= 1.11 (throughput >= 0.9x direct)"
    target_ratio = 1.11
    runs = 7
    warmup = 2

    def __init__(self) -> None:
        self.peers = NetPeers(with_docker=False)
        self.port = 0
        self.ip = ""

    def setup(self, workdir) -> None:
        self.peers.start(workdir)
        self.port, self.ip = self.peers.serve("ours", f"bench-web-{os.getpid()}")

    def teardown(self) -> None:
        self.peers.stop()

    def ours(self) -> Metrics:
        download("127.0.0.1", self.port)
        return {}

    def reference(self) -> Metrics:
        download(self.ip, 80)
        return {}


SCENARIO = NetPublishThroughput()
