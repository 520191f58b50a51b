"""The build context: the tar the client sent, read safely and indexed, never unpacked.

The body is spooled to a temporary file while our bounded tar reader
(image/tarreader.py) walks it; each member is indexed by its cleaned relative
path with its metadata, where its data lies in the spool and the sha256 of its
content. COPY and ADD read file data from the spool by offset, so nothing of the
context is ever written under a path the client chose. Limits: total size,
entry count, path length (LayerLimits). Paths with `..` are refused; symlinks
stay symlinks (COPY copies them as links; only their parents are resolved, and
only inside the context); hard links share their target's data.

Build secrets (`dockyard build --secret`): the legacy API has no secret channel,
so the client sends each secret as the file SECRETS_DIR/<hex of the id> at the
top of the context tar. from_stream takes them out of the index before anything
else sees the context (COPY/ADD, RUN --mount=type=bind and .dockerignore never
see them; the tar is never unpacked) and keeps their contents in `secrets`
(id -> bytes), which only RUN --mount=type=secret reads. A context whose
SECRETS_DIR holds anything but regular files with hex names, or a secret larger
than MAX_SECRET, is refused.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.build import dockerignore
from dockyard.build.match import has_meta, match
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.tarreader import (
    DIRECTORY,
    HARDLINK,
    REGULAR,
    SYMLINK,
    CountingReader,
    LayerLimits,
    TarReader,
)
from dockyard.image.tarwalk import split_path

MAX_CONTEXT = 8 << 30
SECRETS_DIR = ".dockyard.secrets"  # reserved: the secret channel, never context material
MAX_SECRET = 500 * 1024  # BuildKit's limit
CONTEXT_LIMITS = LayerLimits(max_entries=2_000_000, max_total_bytes=MAX_CONTEXT)


@dataclass
class Entry:
    path: str  # relative, cleaned, "/"-separated ("" is the root)
    kind: str  # "file" | "dir" | "symlink"
    mode: int = 0o644  # permission bits (and suid/sgid/sticky)
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0  # seconds
    offset: int = 0  # where the data is in the spool
    digest: str = ""  # sha256 of the content (files), the target (symlinks)
    link: str = ""  # symlink target

    def checksum(self) -> str:
        """What the cache key sees of this entry: never the mtime or the owner."""
        return f"{self.kind}:{self.mode:o}:{self.digest}"


class _Tee:
    """A reader that copies what it reads into the spool file, counting."""

    def __init__(self, src: BinaryIO, spool: BinaryIO):
        self.src, self.spool, self.pos = src, spool, 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.spool.write(data)
            self.pos += len(data)
        return data


class BuildContext:
    def __init__(self, spool: BinaryIO):
        self.spool = spool
        self.entries: dict[str, Entry] = {"": Entry("", "dir", 0o755)}
        self.hidden: set[str] = set()  # Dockerfile / .dockerignore when ignored
        self.secrets: dict[str, bytes] = {}  # id -> content (see the module docstring)

    @classmethod
    def from_stream(cls, stream: BinaryIO, tmpdir: str | None = None) -> BuildContext:
        from dockyard.image.compression import open_decompressed

        spool = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 - closed by close()
        ctx = cls(spool)
        try:
            tee = _Tee(open_decompressed(stream), spool)
            reader = CountingReader(tee, CONTEXT_LIMITS.max_total_bytes)  # type: ignore
            tar = TarReader(reader, CONTEXT_LIMITS)
            for member in tar:
                parts = split_path(member.name, CONTEXT_LIMITS, "context path")
                path = "/".join(os.fsdecode(p) for p in parts)
                if not path:
                    continue
                perm = member.mode & 0o7777
                e = Entry(path, "file", perm, member.uid, member.gid, 0,
                          member.mtime_ns // 1_000_000_000)
                if member.type == DIRECTORY:
                    e.kind = "dir"
                elif member.type == SYMLINK:
                    e.kind, e.link = "symlink", os.fsdecode(member.linkname)
                    e.digest = hashlib.sha256(member.linkname).hexdigest()
                elif member.type == HARDLINK:
                    tparts = split_path(member.linkname, CONTEXT_LIMITS, "hard link")
                    target = ctx.entries.get("/".join(os.fsdecode(p) for p in tparts))
                    if target is None or target.kind != "file":
                        raise InvalidArgument(f"context: hard link {path!r} to a missing file")
                    e.size, e.offset, e.digest = target.size, target.offset, target.digest
                elif member.type == REGULAR:
                    e.offset, e.size = tee.pos, member.size
                    h = hashlib.sha256()
                    while chunk := tar.read_data(1 << 20):
                        h.update(chunk)
                    e.digest = h.hexdigest()
                else:
                    continue  # devices and fifos are not build context material
                ctx._add(e)
            reader.drain()
            spool.flush()
            ctx._take_secrets()
        except BaseException:
            spool.close()
            raise
        return ctx

    def _add(self, e: Entry) -> None:
        old = self.entries.get(e.path)
        if old is not None and old.kind == "dir" and e.kind != "dir":
            for key in [k for k in self.entries if k.startswith(e.path + "/")]:
                del self.entries[key]
        parent = posixpath.dirname(e.path)
        up = parent
        while up:
            known = self.entries.get(up)
            if known is not None and known.kind != "dir":
                raise InvalidArgument(f"context: {e.path!r} is below a non-directory")
            up = posixpath.dirname(up)
        while parent and parent not in self.entries:
            self.entries[parent] = Entry(parent, "dir", 0o755, mtime=e.mtime)
            parent = posixpath.dirname(parent)
        self.entries[e.path] = e

    def _take_secrets(self) -> None:
        """Move SECRETS_DIR out of the index into `secrets`."""
        if SECRETS_DIR not in self.entries:
            return
        prefix = SECRETS_DIR + "/"
        for path in sorted(p for p in self.entries if p == SECRETS_DIR or p.startswith(prefix)):
            e = self.entries.pop(path)
            if path == SECRETS_DIR:
                if e.kind != "dir":
                    raise InvalidArgument(f"context: {SECRETS_DIR} is reserved for secrets")
                continue
            name = path[len(prefix):]
            try:
                ident = bytes.fromhex(name).decode()
            except ValueError:
                ident = ""
            if e.kind != "file" or "/" in name or not ident:
                raise InvalidArgument(f"context: {SECRETS_DIR} holds something that is not "
                                      "a secret")
            if e.size > MAX_SECRET:
                raise InvalidArgument(f"secret {ident!r} is larger than {MAX_SECRET} bytes")
            self.secrets[ident] = self.read_file(e)

    def close(self) -> None:
        self.spool.close()

    # -- reading -------------------------------------------------------------------

    def read_file(self, e: Entry) -> bytes:
        self.spool.seek(e.offset)
        return self.spool.read(e.size)

    def copy_data(self, e: Entry, out: BinaryIO) -> None:
        self.spool.seek(e.offset)
        left = e.size
        while left > 0:
            chunk = self.spool.read(min(left, 1 << 20))
            if not chunk:
                raise InvalidArgument(f"context: {e.path} is truncated")
            out.write(chunk)
            left -= len(chunk)

    def hide_ignored(self, dockerfile: str) -> None:
        """Hide the Dockerfile and .dockerignore from COPY/ADD if .dockerignore says so."""
        ign = self.entries.get(".dockerignore")
        if ign is None or ign.kind != "file":
            return
        matcher = dockerignore.Matcher(dockerignore.read(self.read_file(ign)))
        for name in (".dockerignore", dockerfile):
            if matcher.ignored(name):
                self.hidden.add(posixpath.normpath(name))

    def children(self, path: str) -> list[Entry]:
        """Everything below directory `path`, sorted (recursive)."""
        prefix = path + "/" if path else ""
        return sorted((e for p, e in self.entries.items()
                       if p.startswith(prefix) and p != path and p not in self.hidden),
                      key=lambda e: e.path)

    def _resolve_parent(self, path: str, src: str) -> str:
        """Follow symlinks in the parent components of `path`, inside the context."""
        parts = [p for p in path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        i = 0
        while i < len(parts):
            name = parts[i]
            i += 1
            if name == ".":
                continue
            if name == "..":  # a link's `..` stops at the root (the caller refused a
                if resolved:  # written `..` that leaves the context)
                    resolved.pop()
                continue
            cur = "/".join([*resolved, name])
            e = self.entries.get(cur)
            if e is not None and e.kind == "symlink" and i < len(parts):
                hops += 1
                if hops > 255:
                    raise InvalidArgument(f"too many links resolving {src}")
                target = [p for p in e.link.split("/") if p]
                if e.link.startswith("/"):
                    resolved = []
                parts = target + parts[i:]
                i = 0
                continue
            resolved.append(name)
        return "/".join(resolved)

    def lookup(self, src: str) -> list[Entry]:
        """The entries a COPY/ADD source names: one path, or a Go-style wildcard."""
        raw = src
        if posixpath.normpath("/" + src) != "/" + src.strip("/") and ".." in src.split("/"):
            # `..` that does not stay inside is refused, as docker does
            depth = 0
            for p in src.split("/"):
                depth = depth - 1 if p == ".." else depth + (p not in ("", "."))
                if depth < 0:
                    raise InvalidArgument(f"forbidden path outside the build context: {raw}")
        clean = posixpath.normpath("/" + src).lstrip("/")
        if not has_meta(clean):
            path = self._resolve_parent(clean, raw)
            e = self.entries.get(path)
            if e is None or path in self.hidden:
                raise NotFound(f"COPY failed: file not found in build context or excluded by "
                               f".dockerignore: stat {clean}: file does not exist")
            return [e]
        found = [e for p, e in sorted(self.entries.items())
                 if p and p not in self.hidden and p.count("/") == clean.count("/")
                 and match(clean, p)]
        if not found:
            raise NotFound(f"COPY failed: no source files were specified (no match for {raw})")
        return found


def is_executable(mode: int) -> bool:
    return bool(mode & stat.S_IXUSR)
