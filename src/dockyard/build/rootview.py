"""An image's merged file system read straight from its layer directories (no mount).

Overlay's rules: the top layer that has a name wins; a 0:0 character device is a
deletion; a directory marked opaque hides the ones below. Only directories that
were checked to be directories are walked through, so a symlink inside a layer
is never followed by the host. `resolve()` follows symlinks *inside the image's
root* (docker's FollowSymlinkInScope) for COPY destinations and WORKDIR.
"""

from __future__ import annotations

import os
import posixpath
import stat


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


class RootView:
    def __init__(self, layer_dirs: list[str]):
        self.layers = layer_dirs  # top first

    def lstat(self, path: str) -> tuple[str, os.stat_result] | None:
        """(host path, stat) of `path` (absolute, cleaned, no symlink resolution)."""
        parts = [p for p in path.split("/") if p]
        dirs = list(self.layers)  # layers where the current directory exists as one
        if not parts:
            return (dirs[0], os.lstat(dirs[0])) if dirs else None
        for n, name in enumerate(parts):
            last = n == len(parts) - 1
            nxt: list[str] = []
            for d in dirs:
                p = os.path.join(d, name)
                try:
                    st = os.lstat(p)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    break  # deleted here
                if last and not nxt:
                    return p, st
                if not stat.S_ISDIR(st.st_mode):
                    break
                nxt.append(p)
                if _opaque(p):
                    break
            if not nxt:
                return None
            dirs = nxt
        return None

    def resolve(self, path: str) -> str:
        """`path` with every symlink followed inside the root (the last one too)."""
        parts = [p for p in path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            cur = "/" + "/".join([*resolved, name])
            found = self.lstat(cur)
            if found is not None and stat.S_ISLNK(found[1].st_mode):
                hops += 1
                if hops > 255:
                    raise OSError(40, f"too many levels of symbolic links: {path}")
                target = os.readlink(found[0])
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            resolved.append(name)
        return "/" + "/".join(resolved)

    def listdir(self, path: str) -> list[str]:
        """Names in directory `path` (merged over the layers, deletions applied)."""
        parts = [p for p in path.split("/") if p]
        dirs = [d for d in self.layers]
        for name in parts:
            nxt = []
            for d in dirs:
                p = os.path.join(d, name)
                try:
                    st = os.lstat(p)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break
                nxt.append(p)
                if _opaque(p):
                    break
            dirs = nxt
        names: dict[str, bool] = {}
        for d in dirs:
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.name in names:
                            continue
                        st = e.stat(follow_symlinks=False)
                        names[e.name] = not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
            except OSError:
                continue
        return sorted(n for n, present in names.items() if present)

    def is_dir(self, path: str) -> bool:
        found = self.lstat(path)
        return found is not None and stat.S_ISDIR(found[1].st_mode)

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        found = self.lstat(self.resolve(path))
        if found is None or not stat.S_ISREG(found[1].st_mode):
            return None
        fd = os.open(found[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return os.read(fd, limit).decode(errors="replace")
        finally:
            os.close(fd)


def lookup_user(view: RootView, spec: str) -> tuple[int, int]:
    """--chown user[:group] -> (uid, gid): numbers, else names from the image's
    /etc/passwd and /etc/group (docker's rules: a user alone takes its primary group)."""
    user, _, group = spec.partition(":")
    uid = gid = 0
    passwd = None
    if user.isdigit():
        uid = int(user)
        gid = uid if not group else 0
    elif user:
        passwd = view.read_text("/etc/passwd") or ""
        for line in passwd.splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] == user:
                uid, gid = int(f[2]), int(f[3])
                break
        else:
            raise LookupError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for line in (view.read_text("/etc/group") or "").splitlines():
                f = line.split(":")
                if len(f) >= 3 and f[0] == group:
                    gid = int(f[2])
                    break
            else:
                raise LookupError(f"unable to find group {group}: no matching entries in "
                                  "group file")
    return uid, gid


def clean_abs(path: str, workdir: str = "/") -> str:
    """An absolute, cleaned path; relative ones are taken from `workdir`."""
    if not path.startswith("/"):
        path = posixpath.join(workdir or "/", path)
    return posixpath.normpath(path).replace("//", "/")
