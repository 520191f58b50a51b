"""Making the builder's images: a new layer tar written directly (COPY, ADD, WORKDIR)
or no layer at all (metadata steps), on top of the previous step's image.

Layer tars are written by a small writer of our own (ustar headers, PAX records
only for long or non-ASCII names and big numbers, whole-second mtimes, no user
names): tarfile's per-entry cost dominated a 10,000-file COPY. Every directory on
the way to a written path is in the tar too, with the metadata it has in the image
below (as overlay's copy-up shows it in a diff) or, when new, 0755 and the new
files' owner.
"""

from __future__ import annotations

import posixpath
import stat
import tempfile
import time
from typing import Any, BinaryIO

from dockyard.build.rootview import RootView
from dockyard.errors import InvalidArgument
from dockyard.image import formats
from dockyard.image.store import ImageRecord, LayerRecord

REGTYPE, SYMTYPE, DIRTYPE = b"0", b"2", b"5"
BUILD_GZIP_LEVEL = 1  # layers are compressed while they are unpacked: fast beats small


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _header(name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
            link: bytes = b"") -> bytes:
    """One ustar header block (the caller makes sure every field fits)."""
    head = bytearray(512)
    head[0:len(name)] = name
    head[100:108] = _octal(mode & 0o7777, 8)
    head[108:116] = _octal(uid, 8)
    head[116:124] = _octal(gid, 8)
    head[124:136] = _octal(size, 12)
    head[136:148] = _octal(mtime, 12)
    head[148:156] = b" " * 8
    head[156:157] = kind
    head[157:157 + len(link)] = link
    head[257:265] = b"ustar\x0000"
    head[329:337] = _octal(0, 8)
    head[337:345] = _octal(0, 8)
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def _pax(records: dict[str, bytes]) -> bytes:
    body = b""
    for key, value in records.items():
        rec = b" " + key.encode() + b"=" + value + b"\n"
        n = len(rec) + 1
        while len(str(n).encode()) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    pad = (-len(body)) % 512
    return _header(b"PaxHeader", b"x", 0o644, 0, 0, len(body), 0) + body + b"\0" * pad


class LayerWriter:
    def __init__(self, out: BinaryIO, view: RootView, owner: tuple[int, int] | None = None):
        self.out = out
        self.view = view
        self.owner = owner  # (uid, gid) for new parent directories; None: root
        self.written: dict[str, str] = {}  # path -> kind
        self.count = 0
        self.now = int(time.time())

    def close(self) -> None:
        self.out.write(b"\0" * 1024)

    def _entry(self, path: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int,
               size: int = 0, link: str = "") -> None:
        name = path.lstrip("/").encode("utf-8", "surrogateescape")
        if kind == DIRTYPE:
            name += b"/"
        blink = link.encode("utf-8", "surrogateescape")
        pax: dict[str, bytes] = {}
        if len(name) > 100 or not name.isascii():
            pax["path"] = name
            name = name[:100]
        if len(blink) > 100 or not blink.isascii():
            pax["linkpath"] = blink
            blink = blink[:100]
        for key, value, limit in (("uid", uid, 8 ** 7), ("gid", gid, 8 ** 7),
                                  ("size", size, 8 ** 11)):
            if value >= limit:
                pax[key] = str(value).encode()
        if pax:
            self.out.write(_pax(pax))
        self.out.write(_header(name, kind, mode, min(uid, 8 ** 7 - 1), min(gid, 8 ** 7 - 1),
                               size if size < 8 ** 11 else 0, max(0, min(mtime, 8 ** 11 - 1)),
                               blink))

    def parents(self, path: str) -> None:
        """Directory entries for every parent of `path` not written yet."""
        parent = posixpath.dirname(path.rstrip("/"))
        todo = []
        while parent not in ("/", "") and parent not in self.written:
            todo.append(parent)
            parent = posixpath.dirname(parent)
        for d in reversed(todo):
            found = self.view.lstat(d)
            if found is not None and stat.S_ISDIR(found[1].st_mode):
                st = found[1]
                self._dir(d, st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime))
            else:
                uid, gid = self.owner or (0, 0)
                self._dir(d, 0o755, uid, gid, self.now)

    def _dir(self, path: str, mode: int, uid: int, gid: int, mtime: int) -> None:
        self._entry(path, DIRTYPE, mode, uid, gid, mtime)
        self.written[path] = "dir"
        self.count += 1

    def directory(self, path: str, mode: int, uid: int, gid: int, mtime: int, *,
                  keep_existing: bool = True) -> None:
        """A directory entry; one the image already has keeps its metadata (a COPY
        destination), unless `keep_existing` is False (a directory that is copied)."""
        self.parents(path)
        if self.written.get(path) == "dir":
            return
        found = self.view.lstat(path) if keep_existing else None
        if found is not None and stat.S_ISDIR(found[1].st_mode):
            st = found[1]
            mode, uid, gid, mtime = st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime)
        self._dir(path, mode, uid, gid, mtime)

    def file(self, path: str, mode: int, uid: int, gid: int, mtime: int, size: int,
             data: BinaryIO) -> None:
        self.parents(path)
        self._entry(path, REGTYPE, mode, uid, gid, mtime, size)
        left = size
        while left > 0:
            chunk = data.read(min(left, 1 << 20))
            if not chunk:
                raise InvalidArgument(f"{path}: source shorter than {size} bytes")
            self.out.write(chunk)
            left -= len(chunk)
        if size % 512:
            self.out.write(b"\0" * (512 - size % 512))
        self.written[path] = "file"
        self.count += 1

    def symlink(self, path: str, target: str, uid: int, gid: int, mtime: int) -> None:
        self.parents(path)
        self._entry(path, SYMTYPE, 0o777, uid, gid, mtime, link=target)
        self.written[path] = "symlink"
        self.count += 1


class RecordingView:
    """A RootView that records what is asked of it and the answers (COPY --link: the
    layer depends on the image below only through these, so they are its cache key's
    part of the parent). `replay` answers the same questions from another view."""

    def __init__(self, view: RootView):
        self.view = view
        self.asked: list[tuple[str, str]] = []
        self.answers: list[Any] = []

    @staticmethod
    def answer(view: RootView, method: str, path: str) -> Any:
        if method == "resolve":
            return view.resolve(path)
        if method == "is_dir":
            return view.is_dir(path)
        if method == "listdir":
            return sorted(view.listdir(path))
        if method == "read_text":
            return view.read_text(path)
        found = view.lstat(path)
        if found is None:
            return None
        st = found[1]
        return [st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime)]

    def _ask(self, method: str, path: str) -> None:
        if (method, path) not in self.asked:
            self.asked.append((method, path))
            self.answers.append(self.answer(self.view, method, path))

    @classmethod
    def replay(cls, view: RootView, asked: list) -> list[Any]:
        return [cls.answer(view, m, p) for m, p in asked]

    def resolve(self, path: str) -> str:
        self._ask("resolve", path)
        return self.view.resolve(path)

    def is_dir(self, path: str) -> bool:
        self._ask("is_dir", path)
        return self.view.is_dir(path)

    def listdir(self, path: str) -> list[str]:
        self._ask("listdir", path)
        return self.view.listdir(path)

    def lstat(self, path: str) -> Any:
        self._ask("lstat", path)
        return self.view.lstat(path)

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        self._ask("read_text", path)
        return self.view.read_text(path, limit)


def view_of(svc: Any, image: ImageRecord | None) -> RootView:
    if image is None or not image.chain_ids:
        return RootView([])
    return RootView([svc.snapshots.layer_path(c) for c in reversed(image.chain_ids)])


def new_image(svc: Any, base: ImageRecord | None, config: dict, *, created_by: str,
              layer_tar: BinaryIO | None = None, author: str = "",
              platform: tuple[str, str, str] | None = None,
              layer_of: ImageRecord | None = None) -> str:
    """The image of one step: `base`'s layers (+ one from `layer_tar`, or the last layer
    of `layer_of` put on top of `base`: COPY --link's cache hit), `config`."""
    created = formats.format_time()
    with svc.ingesting():
        layers = list(base.layers) if base else []
        layer: LayerRecord | None = None
        if layer_of is not None:
            parent = base.chain_ids[-1] if base and base.chain_ids else None
            own = layer_of.layers[-1]
            chain = formats.chain_ids([parent, own.diff_id])[1] if parent else own.diff_id
            if svc.snapshots.exists(chain):
                layer = own
            else:  # the layer's own files (its snapshot), unpacked on the new parent
                from dockyard.image.layerdiff import write_diff

                with tempfile.TemporaryFile(dir=svc.tmp) as raw:
                    write_diff([], svc.snapshots.layer_path(layer_of.chain_ids[-1]), raw)
                    raw.seek(0)
                    layer = svc.add_layer_tar(raw, parent, level=BUILD_GZIP_LEVEL)
            layers.append(layer)
        elif layer_tar is not None:
            parent = base.chain_ids[-1] if base and base.chain_ids else None
            layer = svc.add_layer_tar(layer_tar, parent, level=BUILD_GZIP_LEVEL)
            layers.append(layer)
        history = list((base.config.get("history") if base else None) or [])
        history.append(formats.history_entry(created, created_by, author,
                                             empty_layer=layer is None))
        os_, arch, variant = platform or formats.host_platform()
        if base is not None:
            arch = base.config.get("architecture") or arch
            os_ = base.config.get("os") or os_
            variant = base.config.get("variant") or ""
        doc = formats.new_config([x.diff_id for x in layers], config=config, created=created,
                                 author=author or ((base.config.get("author") or "")
                                                   if base else ""),
                                 history=history, architecture=arch, os=os_,
                                 variant=variant or None)
        image_id = svc.images.add(formats.encode_config(doc), layers)
        if base is not None and base.id != image_id:
            svc.images.set_parent(image_id, base.id)
    return image_id


def restore_image(svc: Any, base: ImageRecord | None, target: ImageRecord, history: list,
                  layer_count: int, config: dict, author: str) -> str:
    """--cache-from: the image of a step found in `target`'s chain: `target`'s first
    `layer_count` layers and `history` (which ends with the step's entry), the config
    this build computed for the step (moby's restoreCachedImage)."""
    os_ = target.config.get("os") or "linux"
    arch = target.config.get("architecture") or formats.host_platform()[1]
    variant = target.config.get("variant") or None
    created = history[-1].get("created") or formats.format_time()
    doc = formats.new_config([x.diff_id for x in target.layers[:layer_count]], config=config,
                             created=created,
                             author=author or ((base.config.get("author") or "")
                                               if base else ""),
                             history=history, architecture=arch, os=os_, variant=variant)
    with svc.ingesting():
        image_id = svc.images.add(formats.encode_config(doc), list(target.layers[:layer_count]))
        if base is not None and base.id != image_id:
            svc.images.set_parent(image_id, base.id)
    return image_id
