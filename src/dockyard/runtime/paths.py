"""Resolving a path inside a container's root without ever leaving it.

Symlinks are followed *inside* the root (an absolute target restarts at the
root, `..` stops at the root), the way the kernel would see them after
pivot_root — so a hostile rootfs cannot point a mount at a host path.
"""

import os
import stat

MAX_SYMLINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Return root + the resolved form of `unsafe`; missing components are kept as is."""
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(40, f"too many levels of symbolic links: {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def make_parents_inside(root: str, path: str) -> None:
    """mkdir -p for `path` (already resolved by secure_join), refusing symlinked parents."""
    rel = os.path.relpath(path, root)
    current = root
    for part in rel.split("/")[:-1] if rel != "." else []:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if os.path.islink(current) or not os.path.isdir(current):
                raise NotADirectoryError(20, f"not a directory: {current}") from None


def make_mountpoint(root: str, path: str, is_dir: bool) -> None:
    """Create the mount point (a directory, or an empty file for a file bind mount)."""
    make_parents_inside(root, path)
    if is_dir:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        return
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
