"""What the image scenarios share: the Distribution registry on loopback, a private dockerd
(with the docker CLI), a private `dockyard daemon` (driven by the dockyard CLI with -H, as
dockerd is by the docker CLI), and the ~300 MB Debian + python3 rootfs tar.

Every helper that is not timed checks what it claims: a removal leaves no blob and no layer
cached on that side, a push left every byte of the image in the (previously empty) registry.
Not a scenario (the leading underscore keeps discovery away).
"""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from bench.proc import CommandFailed, run
from bench.scenario import Metrics, Skip
from dockyard.devtools.daemon import dockyard_cli

REPOSITORY = "bench/debian-python3"
# The rootfs is ~300 MB; gzip takes it to ~130 MB. Less than this in the registry after a
# push means some layer was not uploaded.
MIN_UPLOAD = 100 * 1000 * 1000
TIMEOUT = 600.0
MANIFEST_ACCEPT = ("application/vnd.docker.distribution.manifest.v2+json, "
                   "application/vnd.oci.image.manifest.v1+json")


class ImagePeers:
    """Registry + dockerd + dockyard daemon, started by `start` and stopped by `stop`."""

    def __init__(self) -> None:
        self.registry = None  # DistributionRegistry
        self.dockerd = None  # DockerdPeer
        self.daemon = None  # DockyardDaemon
        self.data_root = ""
        self.rootfs_tar = ""
        self.dockyard = dockyard_cli()

    # -- lifecycle ----------------------------------------------------------------

    def start(self, workdir: Path) -> None:
        from dockyard.devtools.distribution import BINARY, DistributionRegistry
        from dockyard.devtools.dockerd_peer import DockerdPeer, peer_missing

        if not os.access(BINARY, os.X_OK):
            raise Skip(f"{BINARY} missing (apt-get install docker-registry)")
        missing = peer_missing()
        if missing:
            raise Skip(f"no dockerd peer: {missing}")
        if not os.access(self.dockyard, os.X_OK):
            raise Skip(f"{self.dockyard} not found (bash scripts/setup.sh)")
        from bench.fixtures import debian_python_rootfs
        from dockyard.devtools.daemon import DockyardDaemon

        self.rootfs_tar = debian_python_rootfs()
        self.daemon = DockyardDaemon(workdir / "dockyard").start()
        self.data_root = str(self.daemon.data_root)
        self.registry = DistributionRegistry(str(workdir / "registry")).start()
        self.dockerd = DockerdPeer.start({})
        # the peer imports busybox:dyk for the tests; a layer the image pulls cannot share
        self.docker_quiet("rmi", "-f", "busybox:dyk")

    def stop(self) -> None:
        problems: list[str] = []
        if self.daemon is not None:
            problems += [f"dockyard daemon: {p}" for p in self.daemon.stop()]
            self.daemon = None
        if self.dockerd is not None:
            problems += [f"dockerd peer: {p}" for p in self.dockerd.stop()]
            self.dockerd = None
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        if problems:
            raise RuntimeError("; ".join(problems))

    @property
    def ref(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}:latest"

    # -- the two CLIs -------------------------------------------------------------

    def _dockyard_argv(self, *args: str) -> list[str]:
        return [self.dockyard, "-H", self.daemon.host, *args]

    def dockyard_run(self, *args: str) -> Metrics:
        """A timed-style run of the dockyard CLI against our daemon (raises CommandFailed)."""
        run(self._dockyard_argv(*args), timeout=TIMEOUT)
        return {}

    def docker_run(self, *args: str) -> Metrics:
        """A timed-style run of the docker CLI against the private dockerd."""
        run([self.dockerd.cli, *args], env=self.dockerd.env(), timeout=TIMEOUT)
        return {}

    def dockyard_quiet(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._dockyard_argv(*args), capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)

    def docker_quiet(self, *args: str) -> subprocess.CompletedProcess:
        return self.dockerd.docker(*args, check=False, timeout=TIMEOUT)

    # -- untimed preparation and checks --------------------------------------------

    def remove_dockyard_image(self) -> None:
        """rmi + prune -a; then no blob, no ingest and no snapshot may be left."""
        self.dockyard_quiet("rmi", "-f", self.ref)
        r = self.dockyard_quiet("image", "prune", "-a", "-f")
        if r.returncode != 0:
            raise CommandFailed(f"dockyard image prune: {r.stderr.strip()}")
        left = _files_under(os.path.join(self.data_root, "image", "content", "blobs"),
                            os.path.join(self.data_root, "image", "content", "ingest"),
                            os.path.join(self.data_root, "snapshots", "snapshots"))
        if left:
            raise RuntimeError(f"dockyard still caches {len(left)} file(s) after rmi + prune, "
                               f"e.g. {left[0]}")
        os.sync()  # the other side's next run does not pay for our dirty pages

    def remove_docker_image(self) -> None:
        """rmi + prune -a; then no image and no layer may be left in dockerd."""
        self.docker_quiet("rmi", "-f", self.ref)
        r = self.docker_quiet("image", "prune", "-a", "-f")
        if r.returncode != 0:
            raise CommandFailed(f"docker image prune: {r.stderr.strip()}")
        images = self.docker_quiet("images", "-aq").stdout.split()
        if images:
            raise RuntimeError(f"dockerd still has images after rmi + prune: {images}")
        layerdb = (self.dockerd.tmp / "data" / "image" / self.dockerd.storage_driver
                   / "layerdb" / "sha256")
        if layerdb.is_dir() and any(layerdb.iterdir()):
            raise RuntimeError(f"dockerd still has layers in {layerdb}")
        os.sync()

    def empty_registry(self) -> None:
        """A new, empty registry on the same port: nothing to skip (HEAD) or mount from."""
        self.registry.reset()
        if _blob_bytes(self.registry.storage):
            raise RuntimeError("registry storage not empty after reset")

    def check_pushed(self) -> Metrics:
        """The registry holds the tag, every blob of its manifest with the announced size,
        and at least MIN_UPLOAD bytes of blobs; returns {"uploaded_mb": ...}."""
        base = f"http://{self.registry.host}/v2/{REPOSITORY}"
        req = urllib.request.Request(f"{base}/manifests/latest",
                                     headers={"Accept": MANIFEST_ACCEPT})
        with urllib.request.urlopen(req, timeout=30) as resp:
            manifest = json.loads(resp.read())
        for desc in [manifest["config"], *manifest["layers"]]:
            head = urllib.request.Request(f"{base}/blobs/{desc['digest']}", method="HEAD")
            with urllib.request.urlopen(head, timeout=30) as resp:
                size = int(resp.headers.get("Content-Length", -1))
            if size != desc["size"]:
                raise RuntimeError(f"registry blob {desc['digest']}: {size} bytes, "
                                   f"manifest says {desc['size']}")
        stored = _blob_bytes(self.registry.storage)
        layers = sum(d["size"] for d in manifest["layers"])
        if stored < max(layers, MIN_UPLOAD):
            raise RuntimeError(f"registry holds {stored} bytes of blobs, expected at least "
                               f"{max(layers, MIN_UPLOAD)}")
        return {"uploaded_mb": stored / 1e6}

    def check_dockyard_has_image(self) -> None:
        r = self.dockyard_quiet("image", "inspect", self.ref)
        if r.returncode != 0:
            raise RuntimeError(f"dockyard has no {self.ref} after the run: {r.stderr.strip()}")

    def check_docker_has_image(self) -> None:
        r = self.docker_quiet("image", "inspect", self.ref)
        if r.returncode != 0:
            raise RuntimeError(f"docker has no {self.ref} after the run: {r.stderr.strip()}")


def _blob_bytes(storage: str) -> int:
    """Bytes of blob data in a Distribution registry's filesystem storage."""
    blobs = os.path.join(storage, "docker", "registry", "v2", "blobs")
    total = 0
    for base, _dirs, files in os.walk(blobs):
        if "data" in files:
            total += os.lstat(os.path.join(base, "data")).st_size
    return total


def _files_under(*dirs: str) -> list[str]:
    found: list[str] = []
    for d in dirs:
        for base, subdirs, files in os.walk(d):
            found += [os.path.join(base, f) for f in files]
            if d.endswith("snapshots"):
                found += [os.path.join(base, s) for s in subdirs]
                subdirs.clear()
    return found

