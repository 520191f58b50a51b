"""`dockyard pull` vs `docker pull` of a ~300 MB one-layer image from a local registry."""

from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._image_peers import ImagePeers


class ImagePull(Scenario):
    name = "image_pull"
    description = (
        "Pull a ~300 MB one-layer image from a local registry: a debootstrapped Debian 12 + "
        "python3 (one gzip layer of ~130 MB, pushed once in setup by docker) from the "
        "Distribution registry on loopback; download, "
        "verify, decompress and unpack into the layer store (Dockyard's overlay snapshotter, "
        "dockerd's overlay2). Before every run (untimed) that side removes the image "
        "(`rmi` + `image prune -a -f`; checked: no blob, ingest, snapshot or layer left) and "
        "syncs; after every run the image is checked to be there. Reference: Debian's dockerd "
        "20.10 (private instance) with the docker CLI."
    )
    target = "<= 1.0"
    target_ratio = 1.0
    reference_label = "docker"
    runs = 3
    warmup = 1

    def __init__(self) -> None:
        self.peers = ImagePeers()

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)
        p = self.peers
        p.docker_run("import", p.rootfs_tar, p.ref)
        p.docker_run("push", p.ref)
        p.check_pushed()

    def prepare_ours(self) -> None:
        self.peers.remove_dockyard_image()

    def prepare_reference(self) -> None:
        self.peers.remove_docker_image()

    def ours(self) -> Metrics:
        return self.peers.dockyard_run("pull", self.peers.ref)

    def reference(self) -> Metrics:
        return self.peers.docker_run("pull", self.peers.ref)

    def check_ours(self) -> None:
        self.peers.check_dockyard_has_image()

    def check_reference(self) -> None:
        self.peers.check_docker_has_image()

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = ImagePull()
