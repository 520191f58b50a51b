"""COPY and ADD: which sources go where, written as a layer tar (layers.LayerWriter).

Docker's rules: a destination ending in `/` (or an existing directory) takes
sources by their base name; a source directory's *contents* are copied; several
sources (or a wildcard) need a directory destination; a relative destination
is under WORKDIR. Ownership is 0:0 unless --chown; modes are kept unless
--chmod; mtimes are kept. Sources come from the build context (context.py),
another stage or image (a RootView of its layers), a heredoc, a download
(ADD URL, never extracted) or a local archive (ADD, unpacked with the hardened
layer extraction into a scratch directory first).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.build.context import BuildContext, Entry
from dockyard.build.layers import LayerWriter
from dockyard.build.match import has_meta, match
from dockyard.build.rootview import RootView, clean_abs
from dockyard.errors import InvalidArgument, NotFound


@dataclass
class CopyOptions:
    owner: tuple[int, int] | None = None  # --chown
    chmod: int | None = None  # --chmod
    extract: bool = False  # ADD: local archives are unpacked
    parents: bool = False  # --parents: sources keep their context path under dest
    exclude: list[str] | None = None  # --exclude patterns (.dockerignore syntax)

    def excluded(self, path: str) -> bool:
        if not self.exclude:
            return False
        from dockyard.build.dockerignore import Matcher, read

        if not hasattr(self, "_matcher"):
            self._matcher = Matcher(read("\n".join(self.exclude)))
        return self._matcher.ignored(path)


def parse_chmod(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid chmod parameter: {text!r} (octal only)") from None
    if value > 0o7777:
        raise InvalidArgument(f"invalid chmod parameter: {text!r}")
    return value


def destination(dest: str, workdir: str, view: RootView, many: bool) -> tuple[str, bool]:
    """(resolved absolute destination, whether it is a directory to copy into)."""
    as_dir = dest.endswith(("/", "/.")) or dest in (".", "..")
    path = clean_abs(dest, workdir)
    resolved = view.resolve(path)
    if not as_dir and view.is_dir(resolved):
        as_dir = True
    if many and not as_dir:
        raise InvalidArgument("When using COPY with more than one source file, the "
                              "destination must be a directory and end with a /")
    if not as_dir:  # the file's own name stays what was asked; its parent is resolved
        resolved = posixpath.join(view.resolve(posixpath.dirname(path)),
                                  posixpath.basename(path)) if path != "/" else "/"
    return resolved, as_dir


def _mode(mode: int, opts: CopyOptions) -> int:
    return opts.chmod if opts.chmod is not None else mode


def _owner(uid: int, gid: int, opts: CopyOptions) -> tuple[int, int]:
    return opts.owner if opts.owner is not None else (0, 0)


# -- from the build context ---------------------------------------------------------------

def context_sources(ctx: BuildContext, sources: list[str]) -> list[Entry]:
    out: list[Entry] = []
    for src in sources:
        out += ctx.lookup(src)
    return out


def copy_context(ctx: BuildContext, sources: list[str], dest: str, workdir: str,
                 w: LayerWriter, opts: CopyOptions, scratch: str) -> None:
    found: list[tuple[Entry, str]] = []  # (entry, the part of its path --parents keeps)
    for src in sources:
        pivot = ""
        rooted = "/" + src.lstrip("/")
        while rooted.startswith("/./"):
            rooted = rooted[2:]
        if opts.parents and "/./" in rooted:
            # --parents with a /./ pivot: only what follows it is kept
            pivot = posixpath.normpath(rooted.split("/./", 1)[0]).strip("/")
        for e in ctx.lookup(src):
            if opts.excluded(e.path):
                continue
            kept = e.path
            if pivot:
                kept = e.path[len(pivot):].lstrip("/") if e.path.startswith(pivot + "/") \
                    else posixpath.basename(e.path)
            found.append((e, kept))
    entries = [e for e, _ in found]
    many = len(entries) > 1 or any(has_meta(s) for s in sources) or opts.parents
    target, as_dir = destination(dest, workdir, w.view, many)
    for e, kept in found:
        base = target
        if opts.parents:  # the source's directories in the context come along
            base = posixpath.join(target, posixpath.dirname(kept)) if e.kind != "dir" \
                else posixpath.join(target, kept)
        if e.kind == "dir":
            _context_dir(ctx, e, base, w, opts)
            continue
        path = posixpath.join(base, posixpath.basename(e.path)) if as_dir else target
        if as_dir:
            w.directory(base, 0o755, *(opts.owner or (0, 0)), w.now)
        if opts.extract and e.kind == "file" and _extract(ctx, e, path if not as_dir else base,
                                                          w, scratch):
            continue
        _context_entry(ctx, e, path, w, opts)


def _context_dir(ctx: BuildContext, d: Entry, target: str, w: LayerWriter,
                 opts: CopyOptions) -> None:
    uid, gid = _owner(d.uid, d.gid, opts)
    if target != "/":
        w.directory(target, _mode(d.mode, opts) if d.path else 0o755, uid, gid, d.mtime)
    prefix = d.path + "/" if d.path else ""
    for e in ctx.children(d.path):
        if opts.excluded(e.path):
            continue
        _context_entry(ctx, e, posixpath.join(target, e.path[len(prefix):]), w, opts)


def _context_entry(ctx: BuildContext, e: Entry, path: str, w: LayerWriter,
                   opts: CopyOptions) -> None:
    uid, gid = _owner(e.uid, e.gid, opts)
    if e.kind == "dir":
        w.directory(path, _mode(e.mode, opts), uid, gid, e.mtime, keep_existing=False)
    elif e.kind == "symlink":
        w.symlink(path, e.link, uid, gid, e.mtime)
    else:
        ctx.spool.seek(e.offset)
        w.file(path, _mode(e.mode, opts), uid, gid, e.mtime, e.size,
               _Limited(ctx.spool, e.size))


class _Limited:
    """A read-only window of `size` bytes of a file at its current position."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


# -- ADD: local archives ---------------------------------------------------------------------

_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _is_archive(head: bytes) -> bool:
    if any(head.startswith(m) for m in _MAGICS):
        return True
    return len(head) >= 263 and head[257:262] == b"ustar"


def _extract(ctx: BuildContext, e: Entry, target: str, w: LayerWriter, scratch: str) -> bool:
    """Unpack a local archive into `target` (hardened extraction); False if `e` is not
    an archive (then it is copied as a file)."""
    ctx.spool.seek(e.offset)
    head = ctx.spool.read(min(e.size, 512))
    if not _is_archive(head):
        return False
    import bz2
    import lzma

    from dockyard.image.layers import apply_layer

    ctx.spool.seek(e.offset)
    raw: BinaryIO = _Limited(ctx.spool, e.size)  # type: ignore[assignment]
    if head.startswith(b"BZh"):
        raw = bz2.BZ2File(raw)  # type: ignore[arg-type]
    elif head.startswith(b"\xfd7zXZ\x00"):
        raw = lzma.LZMAFile(raw)  # type: ignore[arg-type]  # noqa: SIM115
    else:
        from dockyard.image.compression import open_decompressed
        raw = open_decompressed(raw)  # type: ignore[arg-type]
    root = tempfile.mkdtemp(dir=scratch)
    try:
        try:
            apply_layer(root, raw, allow_devices=False)
        except InvalidArgument as exc:
            raise InvalidArgument(f"ADD {e.path}: {exc}") from None
        w.directory(target, 0o755, 0, 0, w.now)
        copy_host_tree(root, target, w, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return True


def copy_host_tree(root: str, target: str, w: LayerWriter, opts: CopyOptions | None,
                   rel: str = "") -> None:
    """Everything below host directory `root` into `target` (never following links)."""
    here = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(here)):
        src = os.path.join(here, name)
        st = os.lstat(src)
        path = posixpath.join(target, rel, name)
        uid, gid = (st.st_uid, st.st_gid) if opts is None else _owner(st.st_uid, st.st_gid, opts)
        mode = st.st_mode if opts is None else _mode(st.st_mode, opts)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            continue  # an overlay whiteout from the scratch extraction
        if stat.S_ISDIR(st.st_mode):
            w.directory(path, mode, uid, gid, int(st.st_mtime), keep_existing=False)
            copy_host_tree(root, target, w, opts, posixpath.join(rel, name))
        elif stat.S_ISLNK(st.st_mode):
            w.symlink(path, os.readlink(src), uid, gid, int(st.st_mtime))
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                w.file(path, mode, uid, gid, int(st.st_mtime), st.st_size, f)


# -- from another stage or image ---------------------------------------------------------------

def image_sources(view: RootView, sources: list[str]) -> list[tuple[str, str, os.stat_result]]:
    """(path in the image, host path, stat) of each source; wildcards in the last part."""
    out = []
    for src in sources:
        path = posixpath.normpath("/" + src)
        if has_meta(posixpath.basename(path)):
            parent = view.resolve(posixpath.dirname(path))
            names = [n for n in view.listdir(parent) if match(posixpath.basename(path), n)]
            if not names:
                raise NotFound(f"COPY failed: no source files were specified for {src}")
            for n in names:
                found = view.lstat(posixpath.join(parent, n))
                if found:
                    out.append((posixpath.join(parent, n), found[0], found[1]))
            continue
        resolved = posixpath.join(view.resolve(posixpath.dirname(path)),
                                  posixpath.basename(path)) if path != "/" else "/"
        found = view.lstat(resolved)
        if found is None:
            raise NotFound(f"COPY failed: stat {path}: file does not exist")
        out.append((resolved, found[0], found[1]))
    return out


def copy_image(view: RootView, sources: list[str], dest: str, workdir: str, w: LayerWriter,
               opts: CopyOptions) -> None:
    found = image_sources(view, sources)
    many = len(found) > 1 or any(has_meta(s) for s in sources)
    target, as_dir = destination(dest, workdir, w.view, many)
    for path, host, st in found:
        if stat.S_ISDIR(st.st_mode):
            uid, gid = _owner(st.st_uid, st.st_gid, opts)
            if target != "/":
                w.directory(target, _mode(st.st_mode, opts), uid, gid, int(st.st_mtime))
            _image_tree(view, path, target, w, opts)
            continue
        out = posixpath.join(target, posixpath.basename(path)) if as_dir else target
        _image_entry(host, st, out, w, opts)


def _image_tree(view: RootView, src: str, target: str, w: LayerWriter,
                opts: CopyOptions) -> None:
    for name in view.listdir(src):
        found = view.lstat(posixpath.join(src, name))
        if found is None:
            continue
        host, st = found
        out = posixpath.join(target, name)
        _image_entry(host, st, out, w, opts)
        if stat.S_ISDIR(st.st_mode):
            _image_tree(view, posixpath.join(src, name), out, w, opts)


def _image_entry(host: str, st: os.stat_result, out: str, w: LayerWriter,
                 opts: CopyOptions) -> None:
    uid, gid = (st.st_uid, st.st_gid) if opts.owner is None else opts.owner
    mode = _mode(st.st_mode, opts)
    if stat.S_ISDIR(st.st_mode):
        w.directory(out, mode, uid, gid, int(st.st_mtime), keep_existing=False)
    elif stat.S_ISLNK(st.st_mode):
        w.symlink(out, os.readlink(host), uid, gid, int(st.st_mtime))
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            w.file(out, mode, uid, gid, int(st.st_mtime), st.st_size, f)


def image_checksums(view: RootView, sources: list[str]) -> list[str]:
    """Content checksums of image sources (COPY --from) for the cache key."""
    import hashlib

    out = []
    for path, host, st in image_sources(view, sources):
        h = hashlib.sha256()
        _hash_tree(view, path, host, st, h)
        out.append(f"{path}:{h.hexdigest()}")
    return out


def _hash_tree(view: RootView, path: str, host: str, st: os.stat_result, h) -> None:
    h.update(f"{path}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0".encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(host).encode())
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    elif stat.S_ISDIR(st.st_mode):
        for name in view.listdir(path):
            found = view.lstat(posixpath.join(path, name))
            if found:
                _hash_tree(view, posixpath.join(path, name), found[0], found[1], h)
