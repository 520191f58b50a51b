"""`dockyard import` + `push` vs `docker import` + `push`: compression counted on both sides."""

from pathlib import Path

from bench.scenario import Metrics, Scenario
from bench.scenarios._image_peers import ImagePeers


class ImageImportPush(Scenario):
    name = "image_import_push"
    description = (
        "Import a ~300 MB rootfs tar and push it to an empty local registry: a debootstrapped "
        "Debian 12 + python3 imported as a one-layer image, then pushed to the Distribution "
        "registry on loopback; both commands timed. "
        "This is the fair comparison for the push target: Dockyard gzips the layer during "
        "import (parallel, all cores) and also unpacks it into its snapshotter; dockerd "
        "stores the layer uncompressed at import and gzips it during push (one core). Before "
        "every run (untimed) that side's image is removed (`rmi` + `image prune -a -f`; "
        "checked: nothing cached) and the registry replaced by an empty one; after every run "
        "the registry is checked to hold every byte (`uploaded_mb`). Reference: Debian's "
        "dockerd 20.10 (private instance) with the docker CLI."
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

    def prepare_ours(self) -> None:
        self.peers.remove_dockyard_image()
        self.peers.empty_registry()

    def prepare_reference(self) -> None:
        self.peers.remove_docker_image()
        self.peers.empty_registry()

    def ours(self) -> Metrics:
        p = self.peers
        p.dockyard_run("import", p.rootfs_tar, p.ref)
        return p.dockyard_run("push", p.ref)

    def reference(self) -> Metrics:
        p = self.peers
        p.docker_run("import", p.rootfs_tar, p.ref)
        return p.docker_run("push", p.ref)

    def check_ours(self) -> Metrics:
        return self.peers.check_pushed()

    def check_reference(self) -> Metrics:
        return self.peers.check_pushed()

    def teardown(self) -> None:
        self.peers.stop()


SCENARIO = ImageImportPush()
