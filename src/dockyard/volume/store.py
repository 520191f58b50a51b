"""The local driver's store: one directory per volume under <data-root>/volumes.

    <root>/<name>/volume.json   the record (driver, labels, options, created)
    <root>/<name>/_data         the volume's files (its mount point)

volume.json is written last (temp + fsync + rename + fsync of the directory),
so a volume exists exactly when its record does: a crash mid-create leaves a
directory without a record, swept at the next start. Removal renames the
volume's directory to a dot-name (never a valid volume name) first, so a crash
mid-delete leaves no half volume either.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.fsutil import fsync_dir

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RECORD = "volume.json"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def check_name(name: str, op: str = "create") -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(
            f'{op} {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")
    return name


def _unescape(field_: str) -> str:
    """mountinfo's octal escapes (\\040 for a space...)."""
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def mounts_at_or_below(path: str) -> list[str]:
    """Mount points at `path` or below it (from /proc/self/mountinfo). os.path.ismount
    misses a bind mount from the same file system, so it is never used for this."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == path or point.startswith(path.rstrip("/") + "/"):
                found.append(point)
    return found


def is_mount(path: str) -> bool:
    path = os.path.realpath(path)
    return path in mounts_at_or_below(path)


def anonymous_name() -> str:
    return secrets.token_hex(32)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Volume:
    name: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    anonymous: bool = False
    mountpoint: str = ""  # set by the store

    def to_json(self) -> dict:
        """docker's Volume object (GET /volumes/{name})."""
        return {"CreatedAt": self.created_at, "Driver": self.driver,
                "Labels": dict(self.labels) or None, "Mountpoint": self.mountpoint,
                "Name": self.name, "Options": dict(self.options) or None, "Scope": "local"}


class VolumeStore:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, mode=0o701, exist_ok=True)
        self._sweep()

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def data_path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _sweep(self) -> None:
        """Half-created volumes (no record) and half-removed ones (dot names) go."""
        for entry in os.listdir(self.root):
            path = self._dir(entry)
            partial = entry.startswith(".") or (os.path.isdir(path) and not os.path.exists(
                os.path.join(path, RECORD)))
            if partial and not mounts_at_or_below(path):
                shutil.rmtree(path, ignore_errors=True)

    def get(self, name: str) -> Volume:
        if not NAME_RE.match(name or ""):
            raise NotFound(f"get {name}: no such volume")
        try:
            with open(os.path.join(self._dir(name), RECORD)) as f:
                data = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"get {name}: no such volume") from None
        known = {k: v for k, v in data.items() if k in Volume.__dataclass_fields__}
        v = Volume(**known)
        v.mountpoint = self.data_path(name)
        return v

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self._dir(name), RECORD))

    def list(self) -> list[Volume]:
        out = []
        for name in sorted(os.listdir(self.root)):
            if name.startswith("."):
                continue
            try:
                out.append(self.get(name))
            except (NotFound, ValueError):
                continue
        return out

    def add(self, v: Volume) -> Volume:
        """Create the directories and the record; FileExistsError if the name is taken."""
        path = self._dir(v.name)
        os.mkdir(path, 0o701)  # FileExistsError: someone else has it (or is creating it)
        try:
            os.mkdir(os.path.join(path, "_data"), 0o755)
            record = asdict(v)
            record.pop("mountpoint", None)
            tmp = os.path.join(path, RECORD + ".tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(path, RECORD))
            fsync_dir(path)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        v.mountpoint = self.data_path(v.name)
        return v

    def delete(self, name: str) -> None:
        """Remove the volume's record and files (its _data must not be a mount)."""
        path = self._dir(name)
        if mounts_at_or_below(path):  # never delete through a mount (a bind's device!)
            raise Conflict(f"remove {name}: the volume is still mounted")
        trash = os.path.join(self.root, f".removing-{name}-{secrets.token_hex(4)}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            raise NotFound(f"get {name}: no such volume") from None
        fsync_dir(self.root)
        if not mounts_at_or_below(trash):
            shutil.rmtree(trash, ignore_errors=True)


def dir_size(path: str) -> int:
    """Bytes in a tree (st_blocks, as `du`), symlinks not followed, mounts not crossed."""
    total = 0
    try:
        top = os.lstat(path).st_dev
    except OSError:
        return 0
    stack = [path]
    seen: set[tuple[int, int]] = set()
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev != top:
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif (st.st_dev, st.st_ino) not in seen:
                        if st.st_nlink > 1:
                            seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
        except OSError:
            continue
    return total
