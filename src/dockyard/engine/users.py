"""Resolving docker's `--user` against the image's /etc/passwd and /etc/group.

The files are read from the container's root file system with symlinks
resolved inside it (a hostile image cannot point /etc/passwd at the host's);
no NSS is involved. The rules follow moby's user.GetExecUser: a numeric uid
or gid needs no entry; a name must exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument
from dockyard.runtime.paths import secure_join

MAX_FILE = 4 << 20


@dataclass
class ExecUser:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    real = secure_join(rootfs, path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        with os.fdopen(fd, "rb") as f:
            if not os.path.isfile(real):
                return []
            data = f.read(MAX_FILE)
    except OSError:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve(rootfs: str, spec: str, group_add: list[str] | None = None) -> ExecUser:
    """docker's `user`, `user:group`, `uid`, `uid:gid` -> uid, gid, groups, home."""
    user_part, _, group_part = (spec or "").partition(":")
    out = ExecUser()
    passwd = _read_db(rootfs, "/etc/passwd")
    name = None
    if user_part:
        uid = _int(user_part)
        entry = next((r for r in passwd if len(r) >= 4 and
                      (r[0] == user_part or (uid is not None and r[2] == user_part))), None)
        if entry is not None:
            name = entry[0]
            out.uid = _int(entry[2]) or 0
            out.gid = _int(entry[3]) or 0
            out.home = entry[5] if len(entry) > 5 and entry[5] else "/"
        elif uid is not None:
            out.uid = uid
        else:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in "
                                  "passwd file")
    else:
        entry = next((r for r in passwd if len(r) >= 4 and r[2] == "0"), None)
        if entry is not None:
            name = entry[0]
            out.home = entry[5] if len(entry) > 5 and entry[5] else "/"
    groups = _read_db(rootfs, "/etc/group") if (group_part or name or group_add) else []
    if group_part:
        gid = _int(group_part)
        entry = next((r for r in groups if len(r) >= 3 and
                      (r[0] == group_part or (gid is not None and r[2] == group_part))), None)
        if entry is not None:
            out.gid = _int(entry[2]) or 0
        elif gid is not None:
            out.gid = gid
        else:
            raise InvalidArgument(f"unable to find group {group_part}: no matching entries "
                                  "in group file")
    elif name is not None:
        for r in groups:
            if len(r) >= 4 and name in r[3].split(",") and _int(r[2]) is not None:
                gid = int(r[2])
                if gid != out.gid and gid not in out.additional_gids:
                    out.additional_gids.append(gid)
    for g in group_add or []:
        gid = _int(g)
        if gid is None:
            entry = next((r for r in groups if len(r) >= 3 and r[0] == g), None)
            if entry is None or _int(entry[2]) is None:
                raise InvalidArgument(f"unable to find group {g}: no matching entries in "
                                      "group file")
            gid = int(entry[2])
        if gid not in out.additional_gids:
            out.additional_gids.append(gid)
    # dockerd lists the primary group among the supplementary ones too (CVE-2022-36109)
    out.additional_gids.insert(0, out.gid)
    return out
