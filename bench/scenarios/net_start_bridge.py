"""What networking adds to a container start: `docker run --rm busybox:dyk true` on the
default bridge vs with `--network none`, both on our daemon. The same cost without the
daemon, the runtime and the CLI (NetworkManager.setup / release in a loop, per mode):
`.venv/bin/python -m bench.scenarios._net_inproc`."""

from bench.scenario import Metrics, Scenario
from bench.scenarios._daemon_peers import IMAGE
from bench.scenarios._net_peers import NetPeers


class NetStartBridge(Scenario):
    name = "net_start_bridge"
    description = (
        "`docker run --rm busybox:dyk true` against `dockyard daemon`: on the default bridge "
        "(netns, veth, address, /etc files; ours) vs `--network none` (reference). Target: "
        "networking adds < 20 ms (the difference of the medians)."
    )
    ours_label = "bridge"
    reference_label = "--network none"
    settle = 0.2
    runs = 15
    warmup = 3

    def __init__(self) -> None:
        self.peers = NetPeers(with_docker=False)

    def setup(self, workdir) -> None:
        self.peers.start(workdir)

    def teardown(self) -> None:
        self.peers.stop()

    def ours(self) -> Metrics:
        return self.peers.docker("ours", "run", "--rm", IMAGE, "true")

    def reference(self) -> Metrics:
        return self.peers.docker("ours", "run", "--rm", "--network", "none", IMAGE, "true")


SCENARIO = NetStartBridge()
