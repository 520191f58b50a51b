"""The archive API's file system side (docker cp): stat, read a path as a tar,
extract a tar into a directory — of a running or a stopped container.

Every path is resolved by our own walk over O_PATH fds, one component at a
time with O_NOFOLLOW, relative to the fd of the directory above it: a symlink
is read and its target walked from the container's root fd (absolute) or the
fd stack (relative), and `..` pops that stack, never below the root. A
container flipping a symlink while we copy can change which of *its* files we
see, never make us leave its root (CVE-2018-15664). Nothing from the container
is executed or imported; copyUIDGID reads its /etc/passwd as data.

A running container is reached through /proc/<pid>/root (its own mount
namespace: volumes, binds and tmpfs at their places); a stopped one through
its root file system on the host, with its volume and bind sources switched in
at their mount points.
"""

from __future__ import annotations

import base64
import datetime
import errno
import json
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.errors import DockyardError, InvalidArgument, NotFound

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40

# Go's os.FileMode type bits (what the X-Docker-Container-Path-Stat "mode" carries)
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
GO_SOCKET, GO_SETUID, GO_SETGID, GO_CHARDEV, GO_STICKY = 1 << 24, 1 << 23, 1 << 22, 1 << 21, \
    1 << 20


LIVE_SKIP = frozenset({"/proc", "/sys", "/dev"})


class Forbidden(DockyardError):
    status = 403


def go_mode(mode: int) -> int:
    out = mode & 0o777
    if stat.S_ISDIR(mode):
        out |= GO_DIR
    elif stat.S_ISLNK(mode):
        out |= GO_SYMLINK
    elif stat.S_ISFIFO(mode):
        out |= GO_PIPE
    elif stat.S_ISSOCK(mode):
        out |= GO_SOCKET
    elif stat.S_ISCHR(mode):
        out |= GO_DEVICE | GO_CHARDEV
    elif stat.S_ISBLK(mode):
        out |= GO_DEVICE
    if mode & stat.S_ISUID:
        out |= GO_SETUID
    if mode & stat.S_ISGID:
        out |= GO_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_STICKY
    return out


def _rfc3339(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


@dataclass
class Found:
    parent: int | None  # O_PATH fd of the directory holding it (None: the root)
    name: str
    fd: int  # O_PATH fd of the entry itself
    st: os.stat_result
    path: str  # its path in the container


def _process_root(pid: int, cid: str) -> int:
    """An O_PATH fd of /proc/<pid>/root if <pid> still is the container's process (its
    cgroup names the container): the /proc/<pid> fd pins that very process, so a pid
    reused by a host process meanwhile fails instead of exposing the host's root."""
    try:
        proc = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        fd = os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        try:
            cgroups = os.read(fd, 1 << 16).decode(errors="replace")
        finally:
            os.close(fd)
        if cid not in cgroups:
            return -1
        return os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
    except OSError:
        return -1
    finally:
        os.close(proc)


class ContainerRoot:
    def __init__(self, engine: Any, c: Any):
        self.c = c
        self.table: dict[str, str] = {}
        self.fd = -1
        if c.state.Running and c.state.Pid:
            self.fd = _process_root(c.state.Pid, c.id)
        self.live = self.fd >= 0
        if self.fd < 0:
            from dockyard.engine.containerfs import _mounted_rootfs
            self.fd = os.open(_mounted_rootfs(engine, c), os.O_PATH | os.O_DIRECTORY
                              | os.O_CLOEXEC)
            for p in c.extra.get("mountpoints") or []:
                if p.get("Type") in ("volume", "bind") and p.get("Source"):
                    self.table[p["Destination"]] = p["Source"]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ContainerRoot:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mount_fd(self, path: str, flags: int = os.O_PATH) -> int | None:
        """A stopped container's volume or bind source mounted at `path` (trusted host
        paths), opened with `flags`."""
        source = self.table.get(path)
        if source is None:
            return None
        try:
            return os.open(source, flags | os.O_CLOEXEC)
        except OSError:
            return None

    def mount_dir(self, path: str) -> int | None:
        return self.mount_fd(path, os.O_RDONLY | os.O_DIRECTORY)

    def lookup(self, path: str, follow_last: bool) -> Found:
        """Walk `path` inside the root (see the module doc). FileNotFoundError,
        NotADirectoryError or ELOOP when it cannot be walked."""
        stack: list[tuple[int, str]] = [(os.dup(self.fd), "/")]
        parts = [p for p in path.split("/") if p not in ("", ".")]
        links = 0
        try:
            while parts:
                part = parts.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                parent, parent_path = stack[-1]
                here = posixpath.join(parent_path, part)
                fd = os.open(part, _PATH, dir_fd=parent)
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                    target = os.readlink(part, dir_fd=parent)
                    os.close(fd)
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                    if target.startswith("/"):
                        for f, _ in stack[1:]:
                            os.close(f)
                        del stack[1:]
                    parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                    continue
                mounted = self.mount_fd(here)
                if mounted is not None:
                    os.close(fd)
                    fd, st = mounted, os.fstat(mounted)
                if parts and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", here)
                stack.append((fd, here))
            fd, where = stack.pop()
            parent = stack[-1][0] if stack else None
            if parent is not None:
                stack.pop()
            found = Found(parent, posixpath.basename(where) or "/", fd, os.fstat(fd), where)
            return found
        finally:
            for f, _ in stack:
                os.close(f)

    @staticmethod
    def release(found: Found) -> None:
        os.close(found.fd)
        if found.parent is not None:
            os.close(found.parent)


def _not_found(ref: str, path: str) -> NotFound:
    # dockerd names the container as the request did (compose asks by id)
    return NotFound(f"Could not find the file {path} in container {ref}")


def _clean(path: str) -> str:
    """docker's absolute path that keeps a trailing "/" or "/."."""
    if not path:
        raise InvalidArgument("path must not be empty")  # docker: 400 for a missing path
    clean = posixpath.normpath("/" + path)
    clean = "/" + clean.lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def _name(path: str) -> str:
    if path.endswith("/."):
        return "."
    return posixpath.basename(path.rstrip("/")) or "/"


def _lookup(root: ContainerRoot, ref: str, path: str, follow: bool) -> Found:
    try:
        return root.lookup(path, follow)
    except FileNotFoundError:
        raise _not_found(ref, path) from None
    except OSError as e:
        raise InvalidArgument(f"lstat {path}: {e.strerror.lower() if e.strerror else e}") \
            from None


def _stat(root: ContainerRoot, ref: str, path: str) -> tuple[dict, Found]:
    follow = path.endswith(("/", "/.")) or path == "/"
    found = _lookup(root, ref, path, follow)
    if path.endswith(("/", "/.")) and not stat.S_ISDIR(found.st.st_mode):
        root.release(found)
        raise InvalidArgument(f"lstat {path}: not a directory")
    link = ""
    if stat.S_ISLNK(found.st.st_mode):
        try:
            target = root.lookup(path, True)
            link = target.path
            root.release(target)
        except OSError:
            text = os.readlink(found.name, dir_fd=found.parent) if found.parent is not None \
                else ""
            link = posixpath.normpath(posixpath.join(posixpath.dirname(found.path), text))
    st = found.st
    return {"name": _name(path), "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime_ns), "linkTarget": link}, found


def stat_header(info: dict) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


def stat_path(engine: Any, ref: str, path: str) -> dict:
    """HEAD /containers/{id}/archive: docker's ContainerPathStat."""
    c = engine.get(ref)
    path = _clean(path)
    with ContainerRoot(engine, c) as root:
        info, found = _stat(root, ref, path)
        root.release(found)
    return info


def archive_path(engine: Any, ref: str, path: str) -> tuple[dict, Any]:
    """GET: (the stat, a function writing the tar of `path` to a binary stream)."""
    from dockyard.tarcopy import TreeWriter

    c = engine.get(ref)
    path = _clean(path)
    root = ContainerRoot(engine, c)
    try:
        info, found = _stat(root, ref, path)
    except BaseException:
        root.close()
        raise

    def write(out: BinaryIO) -> None:
        # a running container's kernel file systems are mount points only, as in docker's
        # view of its root file system
        writer = TreeWriter(out, root.mount_dir, skip=LIVE_SKIP if root.live else frozenset())
        try:
            if stat.S_ISDIR(found.st.st_mode):
                writer.dir(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                   dir_fd=found.fd), info["name"], found.path)
            elif found.parent is not None:
                writer.add(found.parent, found.name, info["name"], found.path)
            writer.close()
        finally:
            root.release(found)
            root.close()
        engine.emit(c, "archive-path")
    return info, write


def extract_to_dir(engine: Any, ref: str, path: str, stream: BinaryIO, *,
                   no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """PUT: unpack the tar `stream` into the directory `path` of the container."""
    from dockyard.tarcopy import extract

    c = engine.get(ref)
    path = _clean(path)
    owner = None
    if copy_uid_gid:
        from dockyard.engine.containerfs import _mounted_rootfs
        from dockyard.engine.users import resolve
        user = resolve(_mounted_rootfs(engine, c), c.config.get("User") or "")
        owner = (user.uid, user.gid)
    with ContainerRoot(engine, c) as root:
        found = _lookup(root, ref, path, True)
        try:
            if not stat.S_ISDIR(found.st.st_mode):
                raise InvalidArgument("extraction point is not a directory")
            if c.host_config.get("ReadonlyRootfs") and not _on_rw_mount(c, found.path):
                raise Forbidden("container rootfs is marked read-only")
            extract(f"/proc/self/fd/{found.fd}", stream,
                    no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, owner=owner)
        finally:
            root.release(found)
    engine.emit(c, "extract-to-dir")


def _on_rw_mount(c: Any, path: str) -> bool:
    best, rw = "", False
    for p in c.extra.get("mountpoints") or []:
        dest = p["Destination"]
        if (path == dest or path.startswith(dest.rstrip("/") + "/")) and len(dest) > len(best):
            best, rw = dest, bool(p.get("RW", True))
    return rw
