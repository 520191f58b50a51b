"""A container's file system seen from outside: diff, export, commit and sizes
(docker diff / export / commit, ps -s, system df).

The container's snapshot is an overlay: its upper directory holds every change
(0:0 character devices are deletions, `trusted.overlay.opaque=y` marks a
directory that replaced the lower one). Lower directories are walked through
directory fds opened with O_NOFOLLOW, so a symlink in an image layer never
leads out of it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any, BinaryIO

from dockyard.engine import config as cfgmod
from dockyard.errors import DockyardError, NotFound
from dockyard.linux.mount import is_mount_point

MODIFIED, ADDED, DELETED = 0, 1, 2
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What the runtime creates in the rootfs to mount over: dockerd keeps these in a
# separate init layer, so they are never part of diff or commit.
INIT_PATHS = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv",
                        "/dev", "/proc", "/sys", "/etc/mtab", "/dev/shm", "/dev/pts",
                        "/dev/console"})


def snapshot_key(cid: str) -> str:
    return f"container-{cid}"


# -- diff ------------------------------------------------------------------------------

def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def _lower_stat(lowers: list[int], name: str) -> os.stat_result | None:
    """The entry `name` as the lower layers show it (top first), None if absent."""
    for fd in lowers:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return None if _is_whiteout(st) else st
    return None


def _lower_dirs(lowers: list[int], name: str) -> list[int]:
    """Open `name` in each lower until one hides the ones below it."""
    out = []
    for fd in lowers:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode):
            break  # a file or whiteout hides the layers below
        child = os.open(name, _DIR, dir_fd=fd)
        out.append(child)
        if _opaque(child):
            break
    return out


def _walk(upper: int, lowers: list[int], prefix: str, out: list[dict]) -> None:
    with os.scandir(upper) as it:
        names = sorted((e.name for e in it), key=os.fsencode)
    for name in names:
        path = prefix + name
        try:
            st = os.stat(name, dir_fd=upper, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        if _is_whiteout(st):
            if path not in INIT_PATHS:
                out.append({"Path": path, "Kind": DELETED})
            continue
        below = _lower_stat(lowers, name)
        kind: int | None = ADDED if below is None else MODIFIED
        if not stat.S_ISDIR(st.st_mode):
            if path not in INIT_PATHS:
                out.append({"Path": path, "Kind": kind})
            continue
        fd = os.open(name, _DIR, dir_fd=upper)
        try:
            opaque = _opaque(fd)
            # a copied-up parent directory whose metadata is unchanged is no change (docker)
            if below is not None and not opaque and stat.S_ISDIR(below.st_mode) \
                    and below.st_mode == st.st_mode and below.st_mtime_ns == st.st_mtime_ns:
                kind = None
            children = [] if opaque else _lower_dirs(lowers, name)
            try:
                mark = len(out)
                _walk(fd, children, path + "/", out)
                if kind is not None and path not in INIT_PATHS:
                    out.insert(mark, {"Path": path, "Kind": kind})
            finally:
                for child in children:
                    os.close(child)
        finally:
            os.close(fd)


def changes(engine: Any, ref: str) -> list[dict]:
    """docker diff: [{"Path", "Kind"}], Kind 0 modified, 1 added, 2 deleted."""
    c = engine.get(ref)
    lower_paths, upper_path = engine.images.snapshots.diff_dirs(snapshot_key(c.id))
    out: list[dict] = []
    upper = os.open(upper_path, _DIR)
    lowers: list[int] = []
    try:
        for path in lower_paths:
            lowers.append(os.open(path, _DIR))
        _walk(upper, lowers, "/", out)
    finally:
        for fd in [upper, *lowers]:
            os.close(fd)
    _drop_init_parents(out)
    return out


def _drop_init_parents(out: list[dict]) -> None:
    """/etc or /dev reported as modified only because the runtime made a mount point
    in it: dockerd shows nothing for them."""
    paths = {e["Path"] for e in out}
    for entry in list(out):
        p = entry["Path"]
        if entry["Kind"] == MODIFIED and any(i.startswith(p + "/") for i in INIT_PATHS) \
                and not any(q.startswith(p + "/") for q in paths):
            out.remove(entry)


# -- export ----------------------------------------------------------------------------

def _mounted_rootfs(engine: Any, c: Any) -> str:
    """The container's merged root, mounted now if it is not (a stopped container after
    a daemon restart)."""
    from dockyard.image.snapshot import mount_all

    rootfs = os.path.join(c.path, "rootfs")
    with engine._cond:  # start mounts it too
        if not is_mount_point(rootfs):
            mount_all(engine.images.snapshots.mounts(snapshot_key(c.id)), rootfs)
    return rootfs


def export(engine: Any, ref: str, out: BinaryIO) -> None:
    """docker export: a tar of the container's whole file system."""
    from dockyard.image.layerdiff import write_diff

    c = engine.get(ref)
    write_diff([], _mounted_rootfs(engine, c), out)


# -- commit ----------------------------------------------------------------------------

def commit(engine: Any, ref: str, *, reference: str | None = None, comment: str = "",
           author: str = "", pause: bool = True, changes_: list[str] | None = None,
           config: dict | None = None) -> str:
    """docker commit: the container's image plus one layer of its changes; returns the id."""
    from dockyard.image.changes import apply_changes

    c = engine.get(ref)
    user = apply_changes(dict(config or {}), changes_ or [])
    merged = cfgmod.merge_image_config(user, c.config)
    merged = {k: v for k, v in merged.items() if k in _IMAGE_CONFIG_KEYS}
    if not merged.get("Labels"):
        merged["Labels"] = None
    paused_here = False
    if pause and c.state.Running and not c.state.Paused and not c.state.Restarting:
        engine.pause(c.id)  # a consistent file system while the layer is written
        paused_here = True
    try:
        lowers, upper = engine.images.snapshots.diff_dirs(snapshot_key(c.id))
        image_id = engine.images.commit(
            c.image, lowers, upper, config=merged, reference=reference, author=author,
            comment=comment, created_by=" ".join(c.config.get("Cmd") or []),
            exclude=INIT_PATHS)
        engine.emit(c, "commit", comment=comment, imageID=image_id,
                    imageRef=reference or "")
        return image_id
    finally:
        if paused_here:
            with contextlib.suppress(DockyardError):
                engine.unpause(c.id)


_IMAGE_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                      "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env",
                      "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
                      "Entrypoint", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")


# -- sizes -----------------------------------------------------------------------------

def sizes(engine: Any, c: Any) -> tuple[int, int]:
    """(SizeRw, SizeRootFs) as docker's: the upper dir's bytes; plus the image's."""
    try:
        rw = engine.images.snapshots.usage(snapshot_key(c.id))
    except (NotFound, OSError):
        rw = 0
    try:
        image = engine.images.get(c.image).size
    except DockyardError:
        image = 0
    return rw, rw + image


def disk_usage(engine: Any) -> dict:
    """GET /system/df: images (with shared sizes and container counts), containers
    with their sizes, volumes; BuildCache is filled by the API from the builder
    (api/build.py cache_usage)."""
    from dockyard.engine.listing import summary

    images = engine.images.list()
    containers = engine.store.list()
    users: dict[str, int] = {}
    for c in containers:
        users[c.image] = users.get(c.image, 0) + 1
    chain_users: dict[str, int] = {}
    chain_size: dict[str, int] = {}
    for image in images:
        for chain, layer in zip(image.chain_ids, image.layers):
            chain_users[chain] = chain_users.get(chain, 0) + 1
            chain_size[chain] = layer.uncompressed_size or 0
    image_rows = []
    for image in images:
        shared = sum(chain_size[ch] for ch in image.chain_ids if chain_users[ch] > 1)
        image_rows.append({
            "Id": image.id, "ParentId": image.parent or "",
            "RepoTags": list(image.repo_tags), "RepoDigests": list(image.repo_digests),
            "Created": int(image.created_unix), "Size": image.size, "SharedSize": shared,
            "VirtualSize": image.size, "Labels": image.labels or None,
            "Containers": users.get(image.id, 0)})
    container_rows = []
    for c in containers:
        row = summary(c)
        row["SizeRw"], row["SizeRootFs"] = sizes(engine, c)
        container_rows.append(row)
    return {"LayersSize": sum(chain_size.values()), "Images": image_rows,
            "Containers": container_rows, "Volumes": engine.volumes.usage(),
            "BuildCache": []}
