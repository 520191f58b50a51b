"""`dockyard push` vs `docker push` of a ~300 MB one-layer image to an empty local registry."""

from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._image_peers import ImagePeers


class ImagePush(Scenario):
    name = "image_push"
    description = (
        "Push a ~300 MB one-layer image to an empty local registry: a debootstrapped Debian 12 "
        "+ python3, imported once in setup with `dockyard import` / `docker import`, pushed to "
        "the Distribution registry on loopback. Before every run (untimed) the registry is replaced by an empty one on the "
        "same port, so no blob can be skipped (HEAD) or cross-mounted; after every run "
        "(untimed) the tag, every blob's size and the registry's blob bytes (`uploaded_mb`) "
        "are checked. NOT the same work on both sides: Dockyard gzips layers at import time "
        "(its content store keeps the compressed blob), so its push only uploads ~130 MB; "
        "dockerd keeps layers uncompressed and gzips them (one core) during every push. "
        "`image_import_push` counts compression on both sides. Reference: Debian's dockerd "
        "20.10 (private instance) with the docker CLI."
    )
    target = "<= 0.5"
    target_ratio = 0.5
    reference_label = "docker"
    runs = 3
    warmup = 1

    def __init__(self) -> None:
        self.peers = ImagePeers()

    def setup(self, workdir: Path) -> None:
        self.peers.start(workdir)
        p = self.peers
        p.docker_run("import", p.rootfs_tar, p.ref)
        p.dockyard_run("import", p.rootfs_tar, p.ref)

    def prepare_ours(self) -> None:
        self.peers.empty_registry()

    def prepare_reference(self) -> None:
        self.peers.empty_registry()

    def ours(self) -> Metrics:
        return self.peers.dockyard_run("push", self.peers.ref)

    def reference(self) -> Metrics:
        return self.peers.docker_run("push", self.peers.ref)

    def check_ours(self) -> Metrics:
        return self.peers.check_pushed()

    def check_reference(self) -> Metrics:
        return self.peers.check_pushed()

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = ImagePush()
