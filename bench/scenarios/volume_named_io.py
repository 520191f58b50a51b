"""Sequential write (256 MB, conv=fsync) and read-back in a named volume, inside a busybox
container of `dockyard daemon`, vs the host directory directly."""

from pathlib import Path

from bench.scenarios._volume_io import VolumeIO


class VolumeNamedIO(VolumeIO):
    name = "volume_named_io"
    description = ("dd 256 MB (conv=fsync) then read it back, in a named volume mounted "
                   "in a running busybox container (`docker exec`), vs busybox dd on a host "
                   "directory of the same file system.")

    def mount_args(self, workdir: Path) -> list[str]:
        return ["-v", "bench-vol:/io"]


SCENARIO = VolumeNamedIO()
