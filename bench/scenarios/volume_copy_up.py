"""Copy-up of a 10,000-file image directory into a fresh named volume: `docker run --rm
-v <new volume>:/data copyup:dyk true` against `dockyard daemon` and a private dockerd."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import DaemonScenario

FILES = 10_000
COPYUP_IMAGE = "copyup:dyk"


class VolumeCopyUp(DaemonScenario):
    name = "volume_copy_up"
    description = (f"`docker run --rm -v <fresh volume>:/data {COPYUP_IMAGE} true` where the "
                   f"image's /data holds {FILES:,} small files (copied into the empty volume "
                   "before the container starts), with the official docker CLI against "
                   "`dockyard daemon` and a private dockerd 20.10.")
    target = "<= 1.0"
    target_ratio = 1.0
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.current = ""

    def setup(self, workdir: Path) -> None:
        super().setup(workdir)
        from dockyard.devtools.busybox import make_rootfs

        root = Path(make_rootfs(str(workdir / "copyup-rootfs")))
        data = root / "data"
        for i in range(FILES // 100):
            sub = data / f"d{i:03d}"
            sub.mkdir(parents=True)
            for j in range(100):
                (sub / f"f{j:03d}").write_text(f"{i}/{j}\n")
        tar_path = workdir / "copyup.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(str(root), arcname=".")
        for side in ("ours", "reference"):
            r = self.peers.docker_quiet(side, "import", "-c", 'CMD ["sh"]', str(tar_path),
                                        COPYUP_IMAGE, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"{side}: docker import: {r.stderr.strip()}")

    def prepare(self, side: str) -> None:
        self.count += 1
        self.current = f"copyup-{side}-{self.count}"

    def run(self, side: str) -> Metrics:
        return self.peers.docker(side, "run", "--rm", "-v", f"{self.current}:/data",
                                 COPYUP_IMAGE, "true")

    def check(self, side: str) -> Metrics | None:
        super().check(side)
        r = self.peers.docker_quiet(side, "volume", "inspect", self.current)
        if r.returncode != 0:
            raise RuntimeError(f"volume inspect: {r.stderr.strip()}")
        mountpoint = json.loads(r.stdout)[0]["Mountpoint"]
        found = sum(len(files) for _, _, files in os.walk(mountpoint))
        self.peers.docker_quiet(side, "volume", "rm", self.current)
        if found != FILES:
            raise RuntimeError(f"{side}: {found} files copied up, expected {FILES}")
        return None


SCENARIO = VolumeCopyUp()
