"""Mount safety in the runtime (CVE-2021-30465 class): a mount point resolved with
secure_join whose path component is swapped for a symlink to a host directory before
the mount happens must not get the mount on the host path. The runtime pins the
destination with openat2(RESOLVE_IN_ROOT) and mounts onto /proc/self/fd/N.

The mount is done in a forked child in its own private mount namespace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.linux import mount as m
from dockyard.linux import namespaces as ns
from dockyard.runtime import rootfs as rfs
from dockyard.runtime.paths import secure_join

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ns.unshare(ns.CLONE_NEWNS)
            m.mount(None, "/", None, m.MS_PRIVATE | m.MS_REC)
            code = fn()
        except BaseException as e:  # noqa: BLE001 - reported through the exit status
            os.write(2, f"child: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_swapped_component_never_mounts_on_the_host(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "a" / "b").mkdir(parents=True)
    host = tmp_path / "host-target"
    (host / "b").mkdir(parents=True)
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("mounted")

    def race() -> int:
        dest = secure_join(str(root), "/a/b")  # resolved while /a is a directory
        os.rename(root / "a", root / "a-old")  # ...then the container swaps it
        os.symlink(str(host), root / "a")
        step = rfs.MountStep("/a/b", str(source), "bind", m.MS_BIND | m.MS_REC, "",
                             bind=True)
        try:
            rfs._bind(str(root), dest, step)
        except (FileNotFoundError, NotADirectoryError):
            pass  # refused: fine
        leaked = (host / "b" / "marker").exists()
        return 3 if leaked else 0

    assert _in_child(race) == 0
    assert not (host / "b" / "marker").exists()


def test_pinned_destination_resolves_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "in" / "d").mkdir(parents=True)
    os.symlink("/in", root / "abs")  # absolute symlinks restart at the container's root
    dest = secure_join(str(root), "/abs/d")
    assert dest == str(root / "in" / "d")
    with rfs._Pinned(str(root), str(root / "abs" / "d")) as target:
        assert os.readlink(target) == str(root / "in" / "d")
