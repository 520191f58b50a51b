"""The overlay snapshotter: one directory per layer chainID, mounts returned, not made.

Layout under `root` (containerd's model, docker's overlay2 short links):

    snapshots/<id>/fs        the layer's files (committed) or the upper dir (active)
    snapshots/<id>/work      overlay's workdir (active snapshots only)
    snapshots/<id>/meta.json {"kind", "name", "parent"}; written before the rename
    l/<26 chars>             -> ../snapshots/<id>/fs, short names for lowerdir lists
    tmp/                     creations in progress (flock'ed; removed at next start)
    trash/                   removals in progress
    locks/<id>.lock          serialises creators of one chainID

<id> is the chainID's hex (`sha512-<hex>` for sha512) for layers and
`k-<sha256 of key>` for active and view snapshots. A snapshot appears by one
rename of a complete directory, so a kill -9 never leaves a half one visible;
two creators of one chainID are serialised by a lock and the rename decides.

Mounts are dicts in the OCI shape with absolute paths (lowerdirs through the
short links). Past 128 layers or so those options exceed the page size a mount
option string may have; mount_all() then mounts with paths relative to the
snapshotter root from a thread that unshared its cwd (CLONE_FS) and chdir'ed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.fsutil import fsync_dir, remove_later
from dockyard.image import digest
from dockyard.linux import mount as mnt
from dockyard.linux.namespaces import unshare

CLONE_FS = 0x00000200
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_DEPTH = 500  # overlayfs' own limit of lower layers


def _short(snap_id: str) -> str:
    return base64.b32encode(hashlib.sha256(snap_id.encode()).digest()).decode()[:26]


class Snapshotter:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        for sub in ("snapshots", "l", "tmp", "trash", "locks"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self._cleanup()

    # -- paths and ids -----------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @staticmethod
    def _chain_id(chain_id: str) -> str:
        algo, hexpart = digest.split(chain_id)
        return hexpart if algo == "sha256" else f"{algo}-{hexpart}"

    @staticmethod
    def _key_id(key: str) -> str:
        if not key or not isinstance(key, str) or "\0" in key or len(key) > 1024:
            raise InvalidArgument(f"invalid snapshot key: {key!r}")
        return "k-" + hashlib.sha256(key.encode()).hexdigest()

    def _find(self, name: str) -> str:
        """The id of an active/view snapshot `name`, else of the layer `name`."""
        if not name:
            raise InvalidArgument("invalid snapshot key: ''")
        snap_id = self._key_id(name)
        if os.path.isdir(self._path("snapshots", snap_id)):
            return snap_id
        if digest.is_valid(name):
            snap_id = self._chain_id(name)
            if os.path.isdir(self._path("snapshots", snap_id)):
                return snap_id
        raise NotFound(f"no such snapshot: {name}")

    def _meta(self, snap_id: str) -> dict:
        try:
            with open(self._path("snapshots", snap_id, "meta.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise NotFound(f"no such snapshot: {snap_id}") from None

    # -- start-up clean-up ---------------------------------------------------------

    def _cleanup(self) -> None:
        tmp = self._path("tmp")
        for name in os.listdir(tmp):
            path = os.path.join(tmp, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its creator is alive
            else:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        trash = self._path("trash")
        for name in os.listdir(trash):
            shutil.rmtree(os.path.join(trash, name), ignore_errors=True)
        links = self._path("l")
        for name in os.listdir(links):
            if not os.path.exists(os.path.join(links, name)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(links, name))

    # -- creation ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, snap_id: str) -> Iterator[None]:
        fd = os.open(self._path("locks", snap_id + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _create(self, snap_id: str, meta: dict, fill: Callable[[str], None] | None,
                work: bool) -> bool:
        """Build snapshots/<snap_id> in tmp/ and rename it in; False if it already existed."""
        tmp = tempfile.mkdtemp(prefix=snap_id[:16] + "-", dir=self._path("tmp"))
        lock = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # tells _cleanup its creator lives
            os.mkdir(os.path.join(tmp, "fs"), 0o755)
            if work:
                os.mkdir(os.path.join(tmp, "work"), 0o700)
            if fill is not None:
                fill(os.path.join(tmp, "fs"))
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, self._path("snapshots", snap_id))
            except OSError:
                if os.path.isdir(self._path("snapshots", snap_id)):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return False  # another creator won
                raise
            fsync_dir(self._path("snapshots"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(lock)
        self._ensure_link(snap_id)
        return True

    def _ensure_link(self, snap_id: str) -> str:
        link = self._path("l", _short(snap_id))
        target = os.path.join("..", "snapshots", snap_id, "fs")
        try:
            if os.readlink(link) == target:
                return link
        except FileNotFoundError:
            pass
        tmp = f"{link}.{os.getpid()}.{threading.get_ident()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, link)
        return link

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self._path("snapshots", self._chain_id(chain_id)))

    def create_layer(self, chain_id: str, parent: str | None,
                     fill: Callable[[str], None]) -> None:
        """Make the layer snapshot `chain_id` on `parent`; fill(dir) unpacks it. Idempotent."""
        snap_id = self._chain_id(chain_id)
        if parent is not None and not self.exists(parent):
            raise NotFound(f"no such parent snapshot: {parent}")
        if self.exists(chain_id):
            return
        with self._locked(snap_id):
            if self.exists(chain_id):
                return
            self._create(snap_id, {"kind": "committed", "name": chain_id, "parent": parent},
                         fill, work=False)

    def layer_path(self, chain_id: str) -> str:
        path = self._path("snapshots", self._chain_id(chain_id), "fs")
        if not os.path.isdir(path):
            raise NotFound(f"no such snapshot: {chain_id}")
        return path

    # -- active snapshots and views --------------------------------------------------

    def _chain(self, parent: str | None) -> list[str]:
        """Ids of `parent` and its ancestors, top first."""
        ids: list[str] = []
        while parent is not None:
            if len(ids) >= MAX_DEPTH:
                raise InvalidArgument(f"snapshot chain deeper than {MAX_DEPTH} layers")
            snap_id = self._chain_id(parent)
            try:
                parent = self._meta(snap_id)["parent"]
            except NotFound:
                raise NotFound(f"no such snapshot: {parent}") from None
            ids.append(snap_id)
        return ids

    def _new(self, key: str, parent_chain: str | None, kind: str) -> list[dict]:
        snap_id = self._key_id(key)
        self._chain(parent_chain)  # the parents must exist
        with self._locked(snap_id):
            if os.path.isdir(self._path("snapshots", snap_id)) or not self._create(
                    snap_id, {"kind": kind, "name": key, "parent": parent_chain}, None,
                    work=kind == "active"):
                raise Conflict(f"snapshot {key} already exists")
        return self.mounts(key)

    def prepare(self, key: str, parent_chain: str | None) -> list[dict]:
        """A writable snapshot `key` over `parent_chain` (a container's rootfs): its mounts."""
        return self._new(key, parent_chain, "active")

    def view(self, key: str, parent_chain: str | None) -> list[dict]:
        """A read-only snapshot `key` of `parent_chain`: its mounts."""
        return self._new(key, parent_chain, "view")

    def mounts(self, key: str) -> list[dict]:
        snap_id = self._key_id(key)
        meta = self._meta(snap_id)
        fs = self._path("snapshots", snap_id, "fs")
        lowers = self._chain(meta["parent"])
        if meta["kind"] == "view":
            if not lowers:
                return [{"type": "bind", "source": fs, "options": ["ro", "rbind"]}]
            if len(lowers) == 1:
                src = self._path("snapshots", lowers[0], "fs")
                return [{"type": "bind", "source": src, "options": ["ro", "rbind"]}]
        elif not lowers:
            return [{"type": "bind", "source": fs, "options": ["rw", "rbind"]}]
        lowerdir = ":".join(self._ensure_link(i) for i in lowers)
        options = ["index=off"]
        if meta["kind"] == "active":
            options += [f"workdir={self._path('snapshots', snap_id, 'work')}",
                        f"upperdir={fs}"]
        options.append(f"lowerdir={lowerdir}")
        return [{"type": "overlay", "source": "overlay", "options": options}]

    def diff_dirs(self, key: str) -> tuple[list[str], str]:
        """(lower dirs top first, upper dir) of an active snapshot, for write_diff."""
        snap_id = self._key_id(key)
        meta = self._meta(snap_id)
        if meta["kind"] != "active":
            raise InvalidArgument(f"snapshot {key} is not an active snapshot")
        lowers = [self._path("snapshots", i, "fs") for i in self._chain(meta["parent"])]
        return lowers, self._path("snapshots", snap_id, "fs")

    # -- listing, usage, removal --------------------------------------------------------

    def _metas(self) -> Iterator[tuple[str, dict]]:
        for snap_id in sorted(os.listdir(self._path("snapshots"))):
            with contextlib.suppress(NotFound):
                yield snap_id, self._meta(snap_id)

    def list(self) -> list[str]:
        """Names of all snapshots: chainIDs of layers, keys of active snapshots and views."""
        return [meta["name"] for _, meta in self._metas()]

    def entries(self) -> list[tuple[str, str]]:
        """(name, kind) of every snapshot; kind is committed (a layer, named by its
        chainID), active (a container's rootfs) or view."""
        return [(meta["name"], meta["kind"]) for _, meta in self._metas()]

    def layers_in_use(self) -> set[str]:
        """ChainIDs of the layers that active snapshots and views stand on."""
        used: set[str] = set()
        for _, meta in self._metas():
            if meta["kind"] == "committed":
                continue
            parent = meta.get("parent")
            while parent and parent not in used and len(used) < MAX_DEPTH * 1024:
                used.add(parent)
                try:
                    parent = self._meta(self._chain_id(parent)).get("parent")
                except NotFound:
                    break
        return used

    def usage(self, key: str) -> int:
        """Bytes of the snapshot's own files (each inode counted once), as docker's SizeRw."""
        top = self._path("snapshots", self._find(key), "fs")
        seen: set[int] = set()
        total = 0
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size if not stat.S_ISDIR(st.st_mode) else 0
        return total

    def remove(self, key_or_chain: str) -> None:
        snap_id = self._find(key_or_chain)
        meta = self._meta(snap_id)
        if meta["kind"] == "committed":
            for other, m in self._metas():
                if m.get("parent") == meta["name"] and other != snap_id:
                    raise Conflict(f"snapshot {key_or_chain} is in use by {m['name']}")
        trash = tempfile.mkdtemp(dir=self._path("trash"))
        os.rename(self._path("snapshots", snap_id), os.path.join(trash, snap_id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path("l", _short(snap_id)))
        remove_later(trash)


# -- mounting the returned mounts -----------------------------------------------------


def _overlay_data(options: list[str]) -> tuple[int, str]:
    flags, _, data = mnt.parse_options(options)
    return flags, data


def _relative(data: str) -> tuple[str, str]:
    """(common dir, data with lowerdir/upperdir/workdir paths made relative to it)."""
    fields = [opt.split("=", 1) for opt in data.split(",")]
    paths = [p for k, v in fields if k == "lowerdir" for p in v.split(":")]
    paths += [v for k, v in fields if k in ("upperdir", "workdir")]
    common = os.path.commonpath(paths)
    out = []
    for field in fields:
        if field[0] == "lowerdir":
            field = [field[0], ":".join(os.path.relpath(p, common) for p in field[1].split(":"))]
        elif field[0] in ("upperdir", "workdir"):
            field = [field[0], os.path.relpath(field[1], common)]
        out.append("=".join(field))
    return common, ",".join(out)


def _mount_from(cwd: str, flags: int, data: str, target: str) -> None:
    """mount(2) overlay with relative paths from `cwd`, in a thread with its own cwd."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            unshare(CLONE_FS)  # this thread's cwd only; the process keeps its own
            os.chdir(cwd)
            mnt.mount("overlay", target, "overlay", flags, data)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name="overlay-mount")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def mount_all(mounts: list[dict], target: str) -> None:
    """Mount what a Snapshotter returned on `target` (needs root)."""
    target = os.path.abspath(target)
    for m in mounts:
        flags, data = _overlay_data(m.get("options", []))
        if m["type"] == "bind":
            mnt.mount(m["source"], target, None, flags | mnt.MS_BIND)
            if flags & mnt.MS_RDONLY:
                mnt.mount(None, target, None, flags | mnt.MS_BIND | mnt.MS_REMOUNT)
        elif m["type"] == "overlay":
            if len(data) < PAGE_SIZE:
                mnt.mount(m.get("source", "overlay"), target, "overlay", flags, data)
                continue
            cwd, rel = _relative(data)
            if len(rel) >= PAGE_SIZE:
                raise InvalidArgument(f"overlay mount options of {len(rel)} bytes exceed the "
                                      f"page size even relative to {cwd}")
            _mount_from(cwd, flags, rel, target)
        else:
            raise InvalidArgument(f"unsupported mount type: {m['type']}")


def unmount_all(target: str) -> None:
    mnt.umount(os.path.abspath(target))
