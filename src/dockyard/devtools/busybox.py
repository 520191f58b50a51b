"""A busybox root file system and OCI bundles built from Debian's busybox-static.

Used by the demo, the tests and the benchmarks: a complete, tiny rootfs that
needs no network and no image.
"""

import json
import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"
DIRS = ("bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "root", "var", "run", "usr/bin")


def applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True)
    return [a for a in out.stdout.split() if a and "/" not in a]


def make_rootfs(root: str, busybox: str = BUSYBOX) -> str:
    """Fill `root` with busybox and a symlink per applet; returns `root`."""
    for d in DIRS:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    for name in applets(busybox):
        link = os.path.join(root, "bin", name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return root


def make_bundle(bundle: str, args: list[str], *, terminal: bool = False, spec: dict | None = None,
                rootfs_src: str | None = None) -> str:
    """Create an OCI bundle at `bundle` running `args` in a busybox rootfs.

    The config is `spec` if given, else the default spec of `dockyard-runtime spec`.
    A ready rootfs at `rootfs_src` is copied (cheaper than rebuilding).
    """
    from dockyard.runtime.defaults import default_spec

    os.makedirs(bundle, exist_ok=True)
    rootfs = os.path.join(bundle, "rootfs")
    if rootfs_src:
        shutil.copytree(rootfs_src, rootfs, symlinks=True)
    else:
        make_rootfs(rootfs)
    config = spec if spec is not None else default_spec()
    config["process"]["args"] = list(args)
    config["process"]["terminal"] = terminal
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle
