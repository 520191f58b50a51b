"""The engine's mount resolution: Binds, Mounts, Config.Volumes, VolumesFrom ->
mount points (what inspect's "Mounts" shows) -> OCI mounts for the spec.

Three steps, as dockerd's registerMountPoints / setupMounts:
  parse()    validation only (docker's 400 messages), no side effects;
  realize()  at create: volumes created (anonymous ones for image VOLUMEs and
             `-v /path`), references taken, missing `-v` bind sources made;
  activate() at start: volumes acquired (driver-option volumes mounted) and
             copied up from the image when empty; oci_mounts() then builds the
             spec's mounts from the container's stored mount points.

A mount point is a dict with docker's MountPoint keys (Type, Name, Source,
Destination, Driver, Mode, RW, Propagation) plus ours (CopyData, Anonymous,
Tmpfs, VolumeLabels, DriverOpts, Recursive).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
LABEL_MODES = ("z", "Z")
CONSISTENCY = ("consistent", "cached", "delegated")
INSPECT_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW",
                "Propagation")
TMPFS_DEFAULTS = ["nosuid", "nodev", "noexec"]
# what dockerd 20.10 (the peer here) shows and uses for a bind without a propagation mode
DEFAULT_PROPAGATION = "rslave"


def _invalid(kind: str, what: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {what}')


def _target(kind: str, target: str) -> str:
    if not target:
        raise _invalid(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise _invalid(kind, f"invalid mount path: '{target}' mount path must be absolute")
    clean = posixpath.normpath(target)
    if clean == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return clean.replace("//", "/")


def check_mode(mode: str) -> dict[str, str]:
    """A -v mode string (ro,rshared,nocopy,z...) -> {rw, propagation, label, copy}."""
    out: dict[str, str] = {}
    if not mode:
        return out
    for part in mode.split(","):
        if part in ("rw", "ro"):
            key = "rw"
        elif part in PROPAGATIONS:
            key = "propagation"
        elif part in LABEL_MODES:
            key = "label"
        elif part == "nocopy":
            key = "copy"
        elif part in CONSISTENCY:
            key = "consistency"
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
        if key in out:
            raise InvalidArgument(f"invalid mode: {mode}")
        out[key] = part
    return out


def _volume_point(dest: str, name: str, rw: bool, mode: str, copy: bool) -> dict[str, Any]:
    return {"Type": "volume", "Name": name, "Source": "", "Destination": dest,
            "Driver": "local", "Mode": mode, "RW": rw, "Propagation": "",
            "CopyData": copy, "Anonymous": not name}


def _bind_point(dest: str, source: str, rw: bool, mode: str, propagation: str,
                create: bool) -> dict[str, Any]:
    return {"Type": "bind", "Source": source, "Destination": dest, "Mode": mode, "RW": rw,
            "Propagation": propagation or DEFAULT_PROPAGATION, "CreateSource": create}


def parse_bind(raw: str) -> dict[str, Any]:
    """One HostConfig.Binds entry: name:/dst[:mode], /src:/dst[:mode], or /dst."""
    parts = raw.split(":")
    if len(parts) == 1:
        src, dst, mode = "", parts[0], ""
    elif len(parts) == 2:
        src, dst, mode = parts[0], parts[1], ""
        if _is_mode(parts[1]):
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    if not dst:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    opts = check_mode(mode)
    kind = "bind" if src.startswith("/") else "volume"
    try:
        dst = _target(kind, dst)
    except InvalidArgument as e:  # docker wraps the mount error in the spec's
        message = str(e)
        if not message.startswith("invalid mount config"):
            message = f'invalid mount config for type "{kind}": {message}'
        raise InvalidArgument(f"invalid volume specification: '{raw}': {message}") from None
    rw = opts.get("rw", "rw") == "rw"
    if kind == "bind":
        if "copy" in opts:
            raise InvalidArgument(f"invalid mode: {mode}")
        return _bind_point(dst, posixpath.normpath(src), rw, mode, opts.get("propagation", ""),
                           True)
    if "propagation" in opts:
        raise InvalidArgument(f"invalid volume specification: '{raw}': invalid mount config "
                              'for type "volume": field BindOptions must not be specified')
    if src:
        from dockyard.volume.store import check_name
        check_name(src)
    return _volume_point(dst, src, rw, mode or "z", "copy" not in opts)  # docker's "z"


def _is_mode(text: str) -> bool:
    try:
        check_mode(text)
    except InvalidArgument:
        return False
    return True


def parse_mount(m: dict) -> dict[str, Any]:
    """One HostConfig.Mounts entry (docker's mount.Mount)."""
    if not isinstance(m, dict):
        raise InvalidArgument("invalid JSON: Mounts entries must be objects")
    kind = m.get("Type") or ""
    target = _target(kind or "volume", m.get("Target") or "")
    source = m.get("Source") or ""
    rw = not m.get("ReadOnly")
    bind_opts, vol_opts, tmpfs_opts = (m.get("BindOptions"), m.get("VolumeOptions"),
                                       m.get("TmpfsOptions"))
    if kind == "bind":
        for field_, value in (("VolumeOptions", vol_opts), ("TmpfsOptions", tmpfs_opts)):
            if value:
                raise _invalid(kind, f"field {field_} must not be specified")
        if not source:
            raise _invalid(kind, "field Source must not be empty")
        if not source.startswith("/"):
            raise _invalid(kind, f"invalid mount path: '{source}' mount path must be absolute")
        bo = bind_opts or {}
        prop = bo.get("Propagation") or ""
        if prop and prop not in PROPAGATIONS:
            raise _invalid(kind, f"invalid propagation mode: {prop}")
        create = bool(bo.get("CreateMountpoint"))
        source = posixpath.normpath(source)
        if not create and not os.path.exists(source):
            raise _invalid(kind, f"bind source path does not exist: {source}")
        point = _bind_point(target, source, rw, "", prop, create)
        point["Recursive"] = not bo.get("NonRecursive")
        return point
    if kind == "volume":
        for field_, value in (("BindOptions", bind_opts), ("TmpfsOptions", tmpfs_opts)):
            if value:
                raise _invalid(kind, f"field {field_} must not be specified")
        vo = vol_opts or {}
        if vo.get("Subpath"):
            # mounting a path inside a volume safely needs the runtime to open the source
            # without following links the container may plant: not implemented, refused
            raise _invalid(kind, "VolumeOptions.Subpath is not supported by this daemon")
        if source:
            from dockyard.volume.store import check_name
            check_name(source)
        point = _volume_point(target, source, rw, "z", not vo.get("NoCopy"))
        point["VolumeLabels"] = dict(vo.get("Labels") or {})
        driver = vo.get("DriverConfig") or {}
        if driver.get("Name") and driver["Name"] != "local":
            raise NotFound(f"error looking up volume plugin {driver['Name']}: plugin "
                           f"\"{driver['Name']}\" not found")
        point["DriverOpts"] = dict(driver.get("Options") or {})
        return point
    if kind == "tmpfs":
        if source:
            raise _invalid(kind, "field Source must not be specified")
        for field_, value in (("BindOptions", bind_opts), ("VolumeOptions", vol_opts)):
            if value:
                raise _invalid(kind, f"field {field_} must not be specified")
        to = tmpfs_opts or {}
        opts = list(TMPFS_DEFAULTS)
        size = to.get("SizeBytes") or 0
        if not isinstance(size, int) or size < 0:
            raise _invalid(kind, "invalid tmpfs size")
        if size:
            opts.append(f"size={size // 1024}k" if size % 1024 == 0 else f"size={size}")
        if to.get("Mode"):
            opts.append(f"mode={int(to['Mode']) & 0o7777:o}")
        if not rw:
            opts.append("ro")
        return {"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": rw,
                "Propagation": "", "Tmpfs": opts}
    raise _invalid(kind, "mount type unknown")


def parse(config: dict, hc: dict,
          lookup: Callable[[str], tuple[str, list[dict]]]) -> list[dict[str, Any]]:
    """All of a container's mount points, validated (docker's order and overrides:
    image/anonymous volumes < --volumes-from < Binds and Mounts)."""
    points: dict[str, dict] = {}
    for path in (config.get("Volumes") or {}):
        if ".." in path.split("/"):
            raise InvalidArgument(f"invalid volume path in image config: {path!r} "
                                  "(contains '..')")
        dest = _target("volume", path)
        points[dest] = _volume_point(dest, "", True, "", True)
    for spec in hc.get("VolumesFrom") or []:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
        _cid, theirs = lookup(ref)
        for p in theirs:
            if p.get("Type") == "tmpfs":
                continue
            copy = {k: v for k, v in p.items()}
            copy["CopyData"] = False
            if mode:
                copy["RW"] = mode == "rw"
                copy["Mode"] = mode if copy["Type"] == "bind" else copy.get("Mode", "")
            points[copy["Destination"]] = copy
    explicit: set[str] = set()
    entries = [parse_bind(b) for b in hc.get("Binds") or []]
    entries += [parse_mount(m) for m in hc.get("Mounts") or []]
    for point in entries:
        dest = point["Destination"]
        if dest in explicit:
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        explicit.add(dest)
        points[dest] = point
    for dest in (hc.get("Tmpfs") or {}):
        if posixpath.normpath(dest) in explicit:
            raise InvalidArgument(f"Duplicate mount point: {posixpath.normpath(dest)}")
    return sorted(points.values(), key=lambda p: (p["Destination"].count("/"),
                                                  p["Destination"]))


# -- create, start, stop, remove -------------------------------------------------------

def realize(volumes: Any, cid: str, points: list[dict]) -> list[str]:
    """Create the volumes (and `-v` bind sources) the points need; take references.
    Returns the names of the volumes created here (for a rollback)."""
    created: list[str] = []
    try:
        for p in points:
            if p["Type"] == "volume":
                name = p.get("Name") or ""
                existed = bool(name) and volumes.store.exists(name)
                v = volumes.create(name or None, "local", p.get("DriverOpts"),
                                   p.get("VolumeLabels"))
                if not existed:
                    created.append(v.name)
                p["Name"], p["Source"] = v.name, v.mountpoint
                p["Anonymous"] = v.anonymous
                volumes.ref(v.name, cid)
            elif p["Type"] == "bind" and p.get("CreateSource") \
                    and not os.path.exists(p["Source"]):
                os.makedirs(p["Source"], 0o755, exist_ok=True)
    except BaseException:
        release_all(volumes, cid, points, created)
        raise
    return created


def inspect_view(points: list[dict]) -> list[dict]:
    out = []
    for p in points:
        row = {k: p[k] for k in INSPECT_KEYS if k in p}
        if p["Type"] != "volume":
            row.pop("Name", None)
            row.pop("Driver", None)
        out.append(row)
    return out


def activate(volumes: Any, cid: str, points: list[dict], rootfs: str) -> None:
    """At start: mount what needs mounting and copy image content into empty volumes."""
    from dockyard.volume.copyup import copy_up, is_empty
    for p in points:
        if p["Type"] == "volume":
            path = volumes.acquire(p["Name"], cid)
            if p.get("CopyData"):
                with volumes.lock:  # two containers starting on one empty volume
                    if is_empty(path):
                        copy_up(rootfs, p["Destination"], path)
        elif p["Type"] == "bind" and not os.path.exists(p["Source"]):
            if p.get("CreateSource"):
                os.makedirs(p["Source"], 0o755, exist_ok=True)
            else:
                raise InvalidArgument(f'invalid mount config for type "bind": bind source '
                                      f'path does not exist: {p["Source"]}')


def deactivate(volumes: Any, cid: str, points: list[dict]) -> None:
    for p in points:
        if p["Type"] == "volume" and p.get("Name"):
            volumes.release(p["Name"], cid)


def release_all(volumes: Any, cid: str, points: list[dict],
                remove: list[str] | None = None) -> None:
    """Drop `cid`'s references; remove the volumes named in `remove` if now unused."""
    deactivate(volumes, cid, points)
    for p in points:
        if p["Type"] == "volume" and p.get("Name"):
            volumes.unref(p["Name"], cid)
    for name in remove or []:
        try:
            volumes.remove(name)
        except DockyardError:  # in use by another container: it stays, as docker's
            continue


def anonymous(points: list[dict]) -> list[str]:
    return [p["Name"] for p in points if p["Type"] == "volume" and p.get("Anonymous")
            and p.get("Name")]


# -- the spec ----------------------------------------------------------------------------

def oci_mounts(points: list[dict]) -> tuple[list[dict], str]:
    """(OCI mounts, rootfs propagation or "") for the container's mount points."""
    out = []
    rootfs_prop = ""
    for p in points:
        if p["Type"] == "tmpfs":
            out.append({"destination": p["Destination"], "type": "tmpfs", "source": "tmpfs",
                        "options": list(p.get("Tmpfs") or TMPFS_DEFAULTS)})
            continue
        prop = p.get("Propagation") or DEFAULT_PROPAGATION
        opts = ["rbind" if p.get("Recursive", True) else "bind", prop]
        if not p.get("RW", True):
            opts.append("ro")
        if prop in ("shared", "rshared"):
            rootfs_prop = "rshared"
        elif prop in ("slave", "rslave") and rootfs_prop != "rshared":
            rootfs_prop = "rslave"
        out.append({"destination": p["Destination"], "type": "bind", "source": p["Source"],
                    "options": opts})
    return out, rootfs_prop



# -- the engine's hooks (one line each in engine.py) -----------------------------------------

def lookup_in(store: Any) -> Callable[[str], tuple[str, list[dict]]]:
    """--volumes-from's container lookup over the engine's store."""
    def lookup(ref: str) -> tuple[str, list[dict]]:
        try:
            c = store.get(ref)
        except NotFound as e:  # a 404 would make the docker CLI try to pull the image
            raise InvalidArgument(str(e)) from None
        return c.id, [dict(p) for p in c.extra.get("mountpoints") or []]
    return lookup


def restore(volumes: Any, containers: list) -> None:
    """At engine start: references of every container, mounts of the running ones."""
    running = []
    for c in containers:
        for p in c.extra.get("mountpoints") or []:
            if p["Type"] == "volume" and p.get("Name"):
                try:
                    volumes.ref(p["Name"], c.id)
                except NotFound:
                    continue
                if c.state.Running:
                    running.append((p["Name"], c.id))
    volumes.reset_active(running)


def set_points(c: Any, points: list[dict]) -> None:
    c.extra["mountpoints"] = points
    c.extra["mounts"] = inspect_view(points)
