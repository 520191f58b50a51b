"""Inputs the benchmarks share, built once and cached outside the repository.

`debian_python_rootfs()` is a debootstrapped Debian 12 (minbase) with python3:
about 300 MB unpacked, the size of a real application base image. Building it
takes minutes and the Debian mirror, so it is cached under
/var/cache/dockyard-bench (DOCKYARD_BENCH_CACHE) and reused by later runs.

It is built with `dockyard image bootstrap`'s code (dockyard.bootstrap.rootfs:
debootstrap from the mirror apt uses, with its package cache, and a reproducible
tar), but left whole: no slim clean-up, so the benchmarks keep their size.
"""

import os

from dockyard.bootstrap import images, rootfs
from dockyard.bootstrap.mirror import debian_mirror

CACHE = os.environ.get("DOCKYARD_BENCH_CACHE", "/var/cache/dockyard-bench")
SUITE = rootfs.SUITE
PACKAGES = ["python3", "python3-pip"]


def debian_python_rootfs() -> str:
    """Path of a rootfs tarball (uncompressed tar) of Debian + python3."""
    tar_path = os.path.join(CACHE, f"debian-{SUITE}-python3.tar")
    if os.path.exists(tar_path):
        return tar_path
    os.makedirs(CACHE, exist_ok=True)
    root = os.path.join(CACHE, f"debian-{SUITE}-python3.rootfs")
    if not os.path.exists(os.path.join(root, "usr/bin/python3")):
        rootfs.remove(root)
        rootfs.debootstrap(root, PACKAGES, debian_mirror(SUITE),
                           os.path.join(images.CACHE, "debs"), log=lambda line: None)
    rootfs.write_tar(root, tar_path)
    return tar_path


if __name__ == "__main__":
    print(debian_python_rootfs())
