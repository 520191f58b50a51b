"""The base images `dockyard image bootstrap` builds, and their cached layers.

Each Debian image is its parent's layers plus one layer: the difference between
two debootstrapped trees (e.g. minbase+python3 against minbase), so python,
redis and debian share their first layer as the official images do. busybox is
Debian's busybox-static in a tree of applet links (devtools/busybox.py).

Cache (/var/cache/dockyard-bootstrap, DOCKYARD_BOOTSTRAP_CACHE), keyed by the
package set, the mirror and the recipe version:
    debs/                 debootstrap's package cache
    rootfs/<key>/         a cleaned tree (+ <key>.json: its epoch and versions)
    layers/<key>.tar      a layer (+ .json: diff id and size)
A second run finds every layer and only (re)loads the images; --refresh rebuilds.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.bootstrap import rootfs as rf
from dockyard.bootstrap.mirror import debian_mirror, image_sources
from dockyard.errors import DockyardError, InvalidArgument

CACHE = os.environ.get("DOCKYARD_BOOTSTRAP_CACHE", "/var/cache/dockyard-bootstrap")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the official python images' PATH, duplicate included
PYTHON_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"

Log = Callable[[str], None]


@dataclass
class Spec:
    name: str                          # what --only takes
    tags: list[str]
    packages: list[str] = field(default_factory=list)  # on top of the parent's
    parent: str | None = None
    recipe: Callable[[str], None] | None = None  # adjusts the tree after clean-up
    revision: int = 1                  # of the recipe: part of the cache key
    config: Callable[[dict], dict] = lambda meta: {}  # the image config's "config"
    description: str = ""


# -- recipes (run on the cleaned tree, before mtimes are clamped) -----------------------------

def _symlink(root: str, rel: str, target: str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.lexists(path):
        os.symlink(target, path)


def _python_recipe(root: str) -> None:
    _symlink(root, "usr/local/bin/python", "/usr/bin/python3")
    _symlink(root, "usr/local/bin/pip", "/usr/bin/pip3")
    # the official image's pip installs into the system; Debian's refuses (PEP 668)
    for marker in os.listdir(os.path.join(root, "usr/lib")):
        path = os.path.join(root, "usr/lib", marker, "EXTERNALLY-MANAGED")
        if marker.startswith("python3") and os.path.exists(path):
            os.unlink(path)


REDIS_ENTRYPOINT = """#!/bin/sh
set -e
# as the official image's: options alone (or a .conf file) mean redis-server
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
\tset -- redis-server "$@"
fi
# started as root: hand the data directory to redis and drop to it
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
\tfind . \\! -user redis -exec chown redis '{}' +
\texec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then
\tumask 0077
fi
exec "$@"
"""


def _user_ids(root: str, name: str) -> tuple[int, int]:
    with open(os.path.join(root, "etc/passwd")) as f:
        for line in f:
            parts = line.split(":")
            if parts[0] == name:
                return int(parts[2]), int(parts[3])
    raise DockyardError(f"no user {name} in the image")


def _renumber(root: str, name: str, new_id: int) -> tuple[int, int]:
    """Give user and group `name` the id `new_id` (the official redis image's 999) when
    it is free, and the files they own with it."""
    uid, gid = _user_ids(root, name)
    taken = set()
    for table in ("etc/passwd", "etc/group"):
        with open(os.path.join(root, table)) as f:
            taken |= {int(line.split(":")[2]) for line in f if line.count(":") >= 3
                      and not line.startswith(name + ":")}
    if new_id in taken or (uid, gid) == (new_id, new_id):
        return uid, gid
    for table in ("etc/passwd", "etc/group"):
        path = os.path.join(root, table)
        with open(path) as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            parts = line.split(":")
            if parts[0] == name:
                parts[2] = str(new_id)
                if table == "etc/passwd":
                    parts[3] = str(new_id)
                lines[i] = ":".join(parts)
        with open(path, "w") as f:
            f.writelines(lines)
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            st = os.lstat(path)
            if st.st_uid == uid or st.st_gid == gid:
                os.chown(path, new_id if st.st_uid == uid else st.st_uid,
                         new_id if st.st_gid == gid else st.st_gid, follow_symlinks=False)
    return new_id, new_id


def _redis_recipe(root: str) -> None:
    uid, gid = _renumber(root, "redis", 999)
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    os.chmod(data, 0o755)
    os.chown(data, uid, gid)
    rf.write_file(root, "usr/local/bin/docker-entrypoint.sh", REDIS_ENTRYPOINT, 0o755)


def _version(meta: dict, package: str) -> str:
    v = meta.get("versions", {}).get(package, "")
    return v.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("debian", ["debian:bookworm-slim", "debian:bookworm", "debian:12-slim", "debian:12"],
         config=lambda meta: {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["bash"]},
         description="Debian 12 minbase, slim"),
    Spec("python", ["python:3.11-slim", "python:3-slim", "python:3.11-slim-bookworm",
                    "python:slim"],
         packages=["ca-certificates", "netbase", "tzdata", "python3", "python3-pip"],
         parent="debian", recipe=_python_recipe,
         config=lambda meta: {"Env": [f"PATH={PYTHON_PATH}", "LANG=C.UTF-8",
                                      f"PYTHON_VERSION={_version(meta, 'python3.11')}"],
                              "Cmd": ["python3"]},
         description="Debian's python3 + pip; python -> python3"),
    Spec("python-flask", ["dockyard/python-flask:latest", "dockyard/python-flask:3.11"],
         packages=["python3-flask", "python3-redis"], parent="python",
         config=lambda meta: {"Env": [f"PATH={PYTHON_PATH}", "LANG=C.UTF-8",
                                      f"PYTHON_VERSION={_version(meta, 'python3.11')}"],
                              "Cmd": ["python3"]},
         description="python + Flask and redis-py from Debian (no apt needed in builds)"),
    Spec("redis", ["redis:7", "redis:7-bookworm", "redis:latest", "redis:alpine",
                   "redis:7-alpine"],
         packages=["redis-server"], parent="debian", recipe=_redis_recipe, revision=2,
         config=lambda meta: {
             "Env": [f"PATH={DEFAULT_PATH}", f"REDIS_VERSION={_version(meta, 'redis-server')}"],
             "Entrypoint": ["docker-entrypoint.sh"],
             "Cmd": ["redis-server", "--protected-mode", "no"],
             "WorkingDir": "/data", "Volumes": {"/data": {}},
             "ExposedPorts": {"6379/tcp": {}}},
         description="Debian's redis-server on 0.0.0.0:6379, /data a volume"),
    Spec("busybox", ["busybox:latest", "busybox:stable"],
         config=lambda meta: {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
         description="Debian's busybox-static"),
)}
DEFAULT = ["busybox", "debian", "python", "redis"]


def chain(name: str) -> list[Spec]:
    """The spec and its ancestors, base first."""
    out: list[Spec] = []
    spec: Spec | None = SPECS[name]
    while spec is not None:
        out.insert(0, spec)
        spec = SPECS[spec.parent] if spec.parent else None
    return out


def select(names: list[str] | None) -> list[Spec]:
    """--only names (spec names or any of their tags, repository alone allowed)."""
    if not names:
        return [SPECS[n] for n in DEFAULT]
    out: list[Spec] = []
    for want in names:
        found = [s for s in SPECS.values() if want == s.name or want in s.tags
                 or any(t.split(":")[0] == want for t in s.tags)]
        if not found:
            raise InvalidArgument(f"no bootstrap image {want!r}; known: "
                                  + ", ".join(s.tags[0] for s in SPECS.values()))
        out += [s for s in found[:1] if s not in out]
    return out


# -- the cache --------------------------------------------------------------------------------

@dataclass
class Layer:
    path: str
    diff_id: str
    size: int
    created_by: str


@dataclass
class Built:
    spec: Spec
    layers: list[Layer]
    config: bytes                     # the image config, as loaded

    @property
    def image_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()


class Builder:
    def __init__(self, cache: str = CACHE, log: Log = print, refresh: bool = False) -> None:
        self.cache = cache
        self.log = log
        self.refresh = refresh
        self._mirror: str | None = None
        self._refreshed: set[str] = set()

    @property
    def mirror(self) -> str:
        if self._mirror is None:
            self._mirror = debian_mirror(rf.SUITE)
        return self._mirror

    def _lock(self):
        os.makedirs(self.cache, exist_ok=True)
        f = open(os.path.join(self.cache, ".lock"), "w")  # noqa: SIM115 - closed by caller
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def _stale(self, key: str) -> bool:
        """With --refresh, each key is rebuilt once per run."""
        if self.refresh and key not in self._refreshed:
            self._refreshed.add(key)
            return True
        return False

    # -- Debian trees ----------------------------------------------------------------------------
    def _key(self, spec_chain: list[Spec]) -> str:
        packages = [p for s in spec_chain for p in s.packages]
        recipes = [f"@{s.name}.{s.revision}" for s in spec_chain if s.recipe]
        return rf.cache_key(packages + recipes, self.mirror)

    def rootfs(self, spec_chain: list[Spec]) -> tuple[str, dict]:
        """The cleaned tree of a Debian spec chain and its meta (epoch, versions)."""
        key = self._key(spec_chain)
        root = os.path.join(self.cache, "rootfs", key)
        meta_path = root + ".json"
        if self._stale("rootfs-" + key):
            rf.remove(meta_path)
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                return root, json.load(f)
        rf.remove(root)
        # layers made from an earlier tree of this key would not match the new one
        for path in glob.glob(os.path.join(self.cache, "layers", f"*{key}*")):
            rf.remove(path)
        tmp = root + ".tmp"
        rf.unmount_under(tmp)
        rf.remove(tmp)
        os.makedirs(os.path.dirname(root), exist_ok=True)
        packages = [p for s in spec_chain for p in s.packages]
        started = time.monotonic()
        rf.debootstrap(tmp, packages, self.mirror, os.path.join(self.cache, "debs"), self.log)
        epoch = rf.release_epoch(tmp)
        rf.clean(tmp, image_sources(rf.SUITE))
        for spec in spec_chain:
            if spec.recipe:
                spec.recipe(tmp)
        meta = {"epoch": epoch, "packages": sorted(packages), "versions": _versions(tmp)}
        rf.clamp_mtimes(tmp, epoch)
        os.rename(tmp, root)
        _write_json(meta_path, meta)
        self.log(f"  built {' + '.join(s.name for s in spec_chain)} in "
                 f"{time.monotonic() - started:.0f}s")
        return root, meta

    def _layer(self, key: str, make: Callable[[str], tuple[str, int]],
               created_by: str) -> Layer:
        path = os.path.join(self.cache, "layers", key + ".tar")
        if self._stale("layer-" + key):
            rf.remove(path + ".json")
        if os.path.exists(path + ".json") and os.path.exists(path):
            with open(path + ".json") as f:
                doc = json.load(f)
            return Layer(path, doc["diff_id"], doc["size"], created_by)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        diff_id, size = make(path)
        _write_json(path + ".json", {"diff_id": diff_id, "size": size})
        return Layer(path, diff_id, size, created_by)

    def debian_layers(self, name: str) -> tuple[list[Layer], dict]:
        specs = chain(name)
        layers: list[Layer] = []
        meta: dict = {}
        for i, spec in enumerate(specs):
            root, meta = self.rootfs(specs[:i + 1])
            key = self._key(specs[:i + 1])
            if i == 0:
                what = f"debootstrap --variant={rf.VARIANT} {rf.SUITE}"
                layers.append(self._layer(key, lambda p, r=root: rf.write_tar(r, p), what))
            else:
                base, _ = self.rootfs(specs[:i])
                what = (f"debootstrap --variant={rf.VARIANT} --include="
                        + ",".join(spec.packages) + f" {rf.SUITE}, less {specs[i - 1].name}'s files")
                layers.append(self._layer(f"{key}-on-{self._key(specs[:i])}",
                                          lambda p, r=root, b=base: rf.write_diff_tar(b, r, p),
                                          what))
        return layers, meta

    @staticmethod
    def _busybox_key() -> str:
        with open(BUSYBOX, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        return f"busybox-{digest[:16]}-r{rf.RECIPE}"

    def busybox_layers(self) -> tuple[list[Layer], dict]:
        from dockyard.devtools.busybox import make_rootfs

        epoch = int(os.stat(BUSYBOX).st_mtime)
        key = self._busybox_key()

        def make(path: str) -> tuple[str, int]:
            with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
                root = os.path.join(tmp, "rootfs")
                make_rootfs(root, BUSYBOX)
                for d in ("home", "var/spool/mail", "var/www", "usr/sbin"):
                    os.makedirs(os.path.join(root, d), exist_ok=True)
                os.chmod(root, 0o755)
                rf.clamp_mtimes(root, epoch)
                return rf.write_tar(root, path)
        layer = self._layer(key, make, f"busybox-static ({BUSYBOX})")
        return [layer], {"epoch": epoch}

    def build(self, spec: Spec) -> Built:
        lock = self._lock()
        try:
            if spec.name == "busybox":
                layers, meta = self.busybox_layers()
            else:
                layers, meta = self.debian_layers(spec.name)
        finally:
            lock.close()
        return Built(spec, layers, image_config(spec, layers, meta))


    def prune(self) -> list[str]:
        """Remove cached trees and layers no current spec uses (an older recipe, package
        set or mirror); returns their names. debootstrap's package cache stays."""
        keep = {self._busybox_key()} if os.path.exists(BUSYBOX) else set()
        for spec in SPECS.values():
            if spec.name == "busybox":
                continue
            specs = chain(spec.name)
            for i in range(len(specs)):
                keep.add(self._key(specs[:i + 1]))
                if i:
                    keep.add(f"{self._key(specs[:i + 1])}-on-{self._key(specs[:i])}")
        removed = []
        lock = self._lock()
        try:
            for sub in ("rootfs", "layers"):
                top = os.path.join(self.cache, sub)
                for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
                    key = name.split(".", 1)[0]
                    if key not in keep:
                        rf.unmount_under(os.path.join(top, name))
                        rf.remove(os.path.join(top, name))
                        if f"{sub}/{key}" not in removed:
                            removed.append(f"{sub}/{key}")
        finally:
            lock.close()
        return removed


def _versions(root: str) -> dict[str, str]:
    out, name = {}, ""
    with open(os.path.join(root, "var/lib/dpkg/status")) as f:
        for line in f:
            if line.startswith("Package: "):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("Version: ") and name:
                out[name] = line.split(":", 1)[1].strip()
    return out


def _write_json(path: str, doc: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)


def image_config(spec: Spec, layers: list[Layer], meta: dict) -> bytes:
    """The image's config JSON: reproducible (no host name, no build time)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(meta["epoch"]))
    doc = {
        "architecture": _arch(),
        "config": spec.config(meta),
        "created": created,
        "history": [{"created": created, "created_by": layer.created_by,
                     "comment": "dockyard image bootstrap"} for layer in layers],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def remove_cache(cache: str = CACHE) -> None:
    shutil.rmtree(cache, ignore_errors=True)
