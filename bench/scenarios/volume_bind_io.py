"""Sequential write (256 MB, conv=fsync) and read-back in a bind mount, inside a busybox
container of `dockyard daemon`, vs the host directory directly."""

from pathlib import Path

from bench.scenarios._volume_io import VolumeIO


class VolumeBindIO(VolumeIO):
    name = "volume_bind_io"
    description = ("dd 256 MB (conv=fsync) then read it back, in a bind-mounted host "
                   "directory of a running busybox container (`docker exec`), vs busybox dd "
                   "on that directory from the host.")

    def mount_args(self, workdir: Path) -> list[str]:
        bind = workdir / "bind-dir"
        bind.mkdir()
        return ["-v", f"{bind}:/io"]


SCENARIO = VolumeBindIO()
