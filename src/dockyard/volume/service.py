"""The local volume driver as a service: create, get, list (filters), remove, prune,
references by containers, and mounting volumes created with driver options.

References (which containers use a volume) are kept in memory, as dockerd
does: the engine registers each container's volumes at create and at start-up
(from its store) and drops them at removal. A volume with references cannot
be removed (409, docker's "volume is in use - [ids]").

Driver options follow docker's local driver: `type`, `device`, `o` (mount(8)
options, e.g. type=tmpfs,device=tmpfs,o=size=64m or type=none,o=bind,
device=/srv/x). Such a volume is mounted on its _data directory when a running
container first needs it and unmounted when the last one stops.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemError_
from dockyard.volume.store import (
    ANONYMOUS_LABEL,
    Volume,
    VolumeStore,
    anonymous_name,
    check_name,
    dir_size,
    is_mount,
)

LOCAL_OPTIONS = ("type", "device", "o")
FILTERS = ("dangling", "driver", "label", "name")
PRUNE_FILTERS = ("label", "label!", "all")
TRUE, FALSE = ("true", "1"), ("false", "0")


def check_options(name: str, options: dict[str, str]) -> None:
    """docker's local driver: only type, device and o; a type needs a device."""
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    if options.get("type") and not options.get("device"):
        raise InvalidArgument(f'create {name}: missing required option: "device"')
    if options.get("device") and not options.get("type"):
        raise InvalidArgument(f'create {name}: missing required option: "type"')


def _label_match(labels: dict[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == value


class VolumeService:
    def __init__(self, data_root: str):
        self.store = VolumeStore(os.path.join(data_root, "volumes"))
        self.lock = threading.RLock()
        self.refs: dict[str, set[str]] = {}  # volume -> container ids using it
        self.active: dict[str, set[str]] = {}  # volume -> running containers (mounted)

    # -- create, get --------------------------------------------------------------------

    def create(self, name: str | None = None, driver: str = "local",
               options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               *, anonymous: bool = False) -> Volume:
        """docker volume create: an existing volume of that name is returned as is."""
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f"error looking up volume plugin {driver}: plugin "
                           f'"{driver}" not found')
        options = {str(k): str(v) for k, v in (options or {}).items()}
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        if not name:
            name, anonymous = anonymous_name(), True
        check_name(name)
        check_options(name, options)
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        with self.lock:
            if self.store.exists(name):
                return self.store.get(name)
            try:
                return self.store.add(Volume(name=name, driver=driver, labels=labels,
                                             options=options, anonymous=anonymous))
            except FileExistsError:
                return self.store.get(name)

    def get(self, name: str) -> Volume:
        return self.store.get(name)

    def inspect(self, name: str) -> dict:
        return self.get(name).to_json()

    # -- references -----------------------------------------------------------------------

    def ref(self, name: str, cid: str) -> None:
        with self.lock:
            self.store.get(name)  # NotFound if it went meanwhile
            self.refs.setdefault(name, set()).add(cid)

    def unref(self, name: str, cid: str) -> None:
        with self.lock:
            users = self.refs.get(name)
            if users is not None:
                users.discard(cid)
                if not users:
                    del self.refs[name]

    def users(self, name: str) -> list[str]:
        with self.lock:
            return sorted(self.refs.get(name, ()))

    # -- mounting (volumes with driver options) -----------------------------------------------

    def acquire(self, name: str, cid: str) -> str:
        """The volume's host path for running container `cid`, mounted if it needs to be."""
        with self.lock:
            v = self.store.get(name)
            users = self.active.setdefault(name, set())
            if v.options.get("type") and not is_mount(v.mountpoint):
                self._mount(v)
            users.add(cid)
            return v.mountpoint

    def release(self, name: str, cid: str) -> None:
        """`cid` stopped: unmount the volume when it was its last running user."""
        with self.lock:
            users = self.active.get(name)
            if users is None or cid not in users:
                return
            users.discard(cid)
            if users:
                return
            del self.active[name]
            try:
                v = self.store.get(name)
            except NotFound:
                return
            if v.options.get("type") and is_mount(v.mountpoint):
                self._unmount(v)

    def _mount(self, v: Volume) -> None:
        from dockyard.linux import mount as m
        opts = [o for o in v.options.get("o", "").split(",") if o]
        flags, _prop, data = m.parse_options(opts)
        fstype = v.options["type"]
        device = v.options.get("device", "")
        try:
            if flags & m.MS_BIND:
                m.mount(device, v.mountpoint, None, flags & (m.MS_BIND | m.MS_REC))
                if flags & ~(m.MS_BIND | m.MS_REC):
                    m.mount(None, v.mountpoint, None, flags | m.MS_REMOUNT | m.MS_BIND)
            else:
                m.mount(device, v.mountpoint, None if fstype == "none" else fstype,
                        flags, data)
        except OSError as e:
            raise SystemError_(f"error while mounting volume '{v.mountpoint}': failed to "
                               f"mount local volume: mount {device}:{v.mountpoint}, "
                               f"flags: {flags:#x}, data: {data}: {e.strerror}") from None

    def _unmount(self, v: Volume) -> None:
        from dockyard.linux import mount as m
        try:
            m.umount(v.mountpoint, m.MNT_DETACH)
        except OSError:
            pass

    def reset_active(self, running: Iterable[tuple[str, str]]) -> None:
        """At start-up: (volume, container) pairs of the containers still running."""
        with self.lock:
            self.active.clear()
            for name, cid in running:
                self.active.setdefault(name, set()).add(cid)

    # -- list, remove, prune ------------------------------------------------------------------

    def list(self, filters: dict[str, list[str]] | None = None) -> list[Volume]:
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key, values in filters.items():
            if key not in FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
            if key == "dangling":
                for value in values:
                    if value.lower() not in TRUE + FALSE:
                        raise InvalidArgument(f"invalid filter 'dangling={value}'")
        out = []
        with self.lock:
            for v in self.store.list():
                if self._matches(v, filters):
                    out.append(v)
        return out

    def _matches(self, v: Volume, filters: dict[str, list[str]]) -> bool:
        if "name" in filters and not any(n in v.name for n in filters["name"]):
            return False
        if "driver" in filters and v.driver not in filters["driver"]:
            return False
        if "label" in filters and not all(_label_match(v.labels, lb)
                                          for lb in filters["label"]):
            return False
        if "label!" in filters and any(_label_match(v.labels, lb)
                                       for lb in filters["label!"]):
            return False
        if "dangling" in filters:
            want = filters["dangling"][-1].lower() in TRUE
            if bool(self.refs.get(v.name)) == want:
                return False
        return True

    def remove(self, name: str, force: bool = False) -> None:
        with self.lock:
            try:
                v = self.store.get(name)
            except NotFound:
                if force:
                    return
                raise
            users = sorted(self.refs.get(name, ()))
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{' '.join(users)}]")
            if is_mount(v.mountpoint):
                self._unmount(v)
            self.store.delete(name)
            self.active.pop(name, None)

    def prune(self, filters: dict[str, list[str]] | None = None,
              all_volumes: bool = False) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones, or all with `all_volumes` (the "all"
        filter, or an API older than 1.42). Returns (names, bytes reclaimed)."""
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
        if filters.get("all"):
            value = filters.pop("all")[-1].lower()
            if value not in TRUE + FALSE:
                raise InvalidArgument(f"invalid filter 'all={value}'")
            all_volumes = all_volumes or value in TRUE
        deleted, reclaimed = [], 0
        with self.lock:
            for v in self.store.list():
                if self.refs.get(v.name) or not self._matches(v, filters):
                    continue
                if not all_volumes and not v.anonymous:
                    continue
                size = 0 if v.options.get("type") else dir_size(v.mountpoint)
                try:
                    self.remove(v.name)
                except (Conflict, InvalidArgument, NotFound):
                    continue
                deleted.append(v.name)
                reclaimed += size
        return deleted, reclaimed

    def usage(self) -> list[dict]:
        """system df's Volumes: each volume with UsageData {Size, RefCount}."""
        out = []
        with self.lock:
            for v in self.store.list():
                row = v.to_json()
                size = -1 if is_mount(v.mountpoint) and v.options.get("type") \
                    else dir_size(v.mountpoint)
                row["UsageData"] = {"Size": size, "RefCount": len(self.refs.get(v.name, ()))}
                out.append(row)
        return out
