"""Inputs the benchmarks share, built once and cached outside the repository.

`debian_python_rootfs()` is a debootstrapped Debian 12 (minbase) with python3:
about 300 MB unpacked, the size of a real application base image. Building it
takes minutes and the Debian mirror, so it is cached under
/var/cache/dockyard-bench (DOCKYARD_BENCH_CACHE) and reused by later runs.
"""

import os
import subprocess
import tarfile

CACHE = os.environ.get("DOCKYARD_BENCH_CACHE", "/var/cache/dockyard-bench")
SUITE = "bookworm"


def debian_python_rootfs() -> str:
    """Path of a rootfs tarball (uncompressed tar) of Debian + python3."""
    tar_path = os.path.join(CACHE, f"debian-{SUITE}-python3.tar")
    if os.path.exists(tar_path):
        return tar_path
    os.makedirs(CACHE, exist_ok=True)
    root = os.path.join(CACHE, f"debian-{SUITE}-python3.rootfs")
    if not os.path.exists(os.path.join(root, "usr/bin/python3")):
        subprocess.run(["rm", "-rf", root], check=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip",
                        SUITE, root], check=True, stdout=subprocess.DEVNULL)
    tmp = tar_path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name)
    os.rename(tmp, tar_path)
    return tar_path


if __name__ == "__main__":
    print(debian_python_rootfs())
