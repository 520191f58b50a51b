"""Network namespaces kept alive as files (like `ip netns`), without forking.

A network namespace lives as long as a process is in it or a file is bound
to it. The engine creates one per container *before* the container runs, so
it can wire the veth, the addresses and the DNS sockets first and hand the
file to the runtime (OCI `linux.namespaces[{type: network, path: ...}]`).

unshare(CLONE_NEWNET) and setns(2) on a network namespace act on the calling
*thread* only, so everything here happens in short-lived threads: the daemon
is threaded and asyncio-driven and must never fork (DESIGN.md), and its
main thread must stay in the host's namespace. Sockets (netlink, the DNS
server's UDP/TCP) made by such a thread stay in the namespace they were made
in after the thread ends, which is what `run_in` is for.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dockyard.linux import mount as _mount
from dockyard.linux.namespaces import CLONE_NEWNET, setns, unshare

T = TypeVar("T")


def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a fresh thread and return its result or raise its error."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    t = threading.Thread(target=target, name="dockyard-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_mounted(path: str) -> bool:
    """True if `path` is a mount point in our mount namespace (a netns file is one)."""
    from dockyard.linux.mount import is_mount_point

    return is_mount_point(path)


def prepare_dir(directory: str) -> None:
    """Make `directory` a shared mount point, as `ip netns` does for /run/netns.

    With shared propagation, a namespace file unmounted here is also unmounted
    in mount namespaces copied from ours in the meantime (containers'), so
    deleting a netns never leaves it pinned by a stale copy of its mount.
    """
    os.makedirs(directory, mode=0o711, exist_ok=True)
    try:
        _mount.mount("", directory, "none", _mount.MS_SHARED | _mount.MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        _mount.mount(directory, directory, None, _mount.MS_BIND | _mount.MS_REC)
        _mount.mount("", directory, "none", _mount.MS_SHARED | _mount.MS_REC)


def create(path: str) -> str:
    """Create a new network namespace bound to the file `path`; return the path.

    Raises FileExistsError if `path` already holds a namespace.
    """
    create_with(path, lambda: None)
    return path


def create_with(path: str, fn: Callable[..., T], *args: Any) -> T:
    """create(path), then fn(*args) inside the new namespace by the same thread (one
    thread instead of create + run_in); returns fn's result. If fn fails, the
    namespace goes again."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    mounted = []

    def make() -> T:
        unshare(CLONE_NEWNET)
        # This thread now sits alone in the new namespace; it ends right after,
        # so it never needs to go back.
        _mount.mount("/proc/thread-self/ns/net", path, None, _mount.MS_BIND)
        mounted.append(True)
        return fn(*args)

    try:
        return _in_thread(make)
    except BaseException:
        if mounted:
            delete(path)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
        raise


def delete(path: str) -> None:
    """Unbind and remove a namespace file; nothing happens if it is already gone."""
    while True:
        try:
            _mount.umount(path, _mount.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # not (or no longer) mounted
                break
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run_in(path: str, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a thread that joined the network namespace at `path`.

    Sockets fn creates are bound to that namespace for their whole life; the
    thread itself ends after fn returns, so the caller never changes namespace.
    """
    def enter_and_run() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn(*args)

    return _in_thread(enter_and_run)


def socket_in(path: str, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket created inside the namespace at `path` (it stays there)."""
    return run_in(path, socket.socket, family, type_, proto)
