"""Image metadata: images, their layers and their names, in SQLite.

One database, <root>/images.db (WAL). Every change is one transaction, so a
kill -9 leaves either the old or the new state. Config blobs go to the
content store as well (for push and save); the database keeps a copy so an
image never exists without its config.

Names are kept canonical (`docker.io/library/busybox:latest`,
`docker.io/library/busybox@sha256:...`); ImageRecord shows them in docker's
familiar form (`busybox:latest`), as `docker inspect` does.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.image.reference import Reference, is_id_prefix, parse

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    config BLOB NOT NULL,
    created TEXT NOT NULL,
    created_unix REAL NOT NULL,
    size INTEGER NOT NULL,
    parent TEXT,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    digest TEXT,
    media_type TEXT,
    size INTEGER,
    uncompressed_size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS refs (
    ref TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tag TEXT,
    digest TEXT,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS pinned_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
"""


@dataclass
class LayerRecord:
    """One layer of an image. `digest`/`media_type`/`size` describe the compressed
    blob and are None for a layer that has no blob yet (imported, committed,
    loaded from a docker-archive). `uncompressed_size` is docker's layer size: the
    bytes of the layer's files once unpacked (each inode once), not the tar's length."""

    diff_id: str
    digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    uncompressed_size: int = 0


@dataclass
class ImageRecord:
    id: str
    config: dict
    config_bytes: bytes
    layers: list[LayerRecord]
    created: str  # the config's `created` (RFC 3339), "" when absent
    size: int  # sum of the layers' uncompressed sizes (docker's Size)
    repo_tags: list[str] = field(default_factory=list)  # familiar: "busybox:latest"
    repo_digests: list[str] = field(default_factory=list)  # familiar: "busybox@sha256:..."
    created_unix: float = 0.0
    parent: str | None = None
    added: float = 0.0  # when this store first saw the image

    @property
    def chain_ids(self) -> list[str]:
        return formats.chain_ids([layer.diff_id for layer in self.layers])

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})


def _no_such_image(text: str) -> NotFound:
    """docker's ErrImageDoesNotExist wording (tag-name-only, familiar)."""
    if not (text.startswith("sha256:") or len(text) == 64):
        try:
            text = parse(text).familiar()
        except InvalidArgument:
            pass
    return NotFound(f"No such image: {text}")


class ImageStore:
    """Images, layers and references over a ContentStore."""

    def __init__(self, root: str, content: ContentStore) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.content = content
        self._lock = threading.RLock()
        self._db = sqlite3.connect(os.path.join(self.root, "images.db"),
                                   isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx() as db:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- images ----------------------------------------------------------------

    def add(self, config_bytes: bytes, layers: list[LayerRecord]) -> str:
        """Add an image (idempotent); returns its ID. Layers must match the
        config's rootfs.diff_ids; for an existing image, blob details that
        were unknown (digest, media type, sizes) are filled in."""
        config = formats.parse_config(config_bytes)
        diff_ids = formats.diff_ids(config)
        if [layer.diff_id for layer in layers] != diff_ids:
            raise InvalidArgument(
                f"layers do not match the image config: {len(layers)} layers given, "
                f"config has {len(diff_ids)} diff ids"
            )
        for layer in layers:
            if layer.digest is not None:
                dg.validate(layer.digest, "layer digest")
        image_id = formats.image_id(config_bytes)
        self.content.put(config_bytes, image_id)
        created = config.get("created") if isinstance(config.get("created"), str) else ""
        size = sum(layer.uncompressed_size or 0 for layer in layers)
        parent = config.get("parent") if isinstance(config.get("parent"), str) else None
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone()
            if not exists:
                db.execute("INSERT INTO images VALUES (?,?,?,?,?,?,?)",
                           (image_id, config_bytes, created, formats.parse_time(created),
                            size, parent, time.time()))
            for idx, layer in enumerate(layers):
                db.execute(
                    "INSERT INTO layers VALUES (?,?,?,?,?,?,?) ON CONFLICT(image_id, idx) DO "
                    "UPDATE SET digest=coalesce(layers.digest, excluded.digest), "
                    "media_type=coalesce(layers.media_type, excluded.media_type), "
                    "size=coalesce(layers.size, excluded.size), "
                    "uncompressed_size=max(layers.uncompressed_size, excluded.uncompressed_size)",
                    (image_id, idx, layer.diff_id, layer.digest, layer.media_type, layer.size,
                     layer.uncompressed_size or 0))
            if exists:
                db.execute("UPDATE images SET size=(SELECT coalesce(sum(uncompressed_size), 0) "
                           "FROM layers WHERE image_id=?) WHERE id=?", (image_id, image_id))
        return image_id

    def set_layer_blob(self, image_id: str, index: int, digest: str, media_type: str,
                       size: int) -> None:
        """Record the compressed blob of layer `index` (after a push compressed it)."""
        dg.validate(digest, "layer digest")
        with self._tx() as db:
            cur = db.execute("UPDATE layers SET digest=?, media_type=?, size=? "
                             "WHERE image_id=? AND idx=?", (digest, media_type, size,
                                                            image_id, index))
            if cur.rowcount != 1:
                raise NotFound(f"no such layer: {image_id} #{index}")

    def exists(self, image_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM images WHERE id=?",
                                    (image_id,)).fetchone() is not None

    def get(self, image_id: str) -> ImageRecord:
        with self._lock:
            rows = self._records("WHERE id=?", (image_id,))
        if not rows:
            raise _no_such_image(image_id)
        return rows[0]

    def list(self) -> list[ImageRecord]:
        """Every image, newest (config created) first."""
        with self._lock:
            return self._records("", ())

    def _records(self, where: str, args: tuple) -> list[ImageRecord]:
        db = self._db
        images = db.execute(
            "SELECT id, config, created, created_unix, size, parent, added FROM images "
            f"{where} ORDER BY created_unix DESC, added DESC", args).fetchall()
        if not images:
            return []
        ids = [row[0] for row in images]
        marks = ",".join("?" * len(ids))
        layers: dict[str, list[LayerRecord]] = {i: [] for i in ids}
        for row in db.execute(
                "SELECT image_id, diff_id, digest, media_type, size, uncompressed_size FROM "
                f"layers WHERE image_id IN ({marks}) ORDER BY image_id, idx", ids):
            layers[row[0]].append(LayerRecord(*row[1:]))
        tags: dict[str, list[str]] = {i: [] for i in ids}
        digests: dict[str, list[str]] = {i: [] for i in ids}
        for image_id, name, tag, digest in db.execute(
                f"SELECT image_id, name, tag, digest FROM refs WHERE image_id IN ({marks}) "
                "ORDER BY added, ref", ids):
            domain, path = name.split("/", 1)
            ref = Reference(domain, path, tag, digest)
            (digests if digest else tags)[image_id].append(ref.familiar())
        out = []
        for image_id, config_bytes, created, created_unix, size, parent, added in images:
            config_bytes = bytes(config_bytes)
            out.append(ImageRecord(
                id=image_id, config=formats.parse_config(config_bytes),
                config_bytes=config_bytes, layers=layers[image_id], created=created,
                size=size, repo_tags=tags[image_id], repo_digests=digests[image_id],
                created_unix=created_unix, parent=parent, added=added))
        return out

    def delete(self, image_id: str) -> None:
        """Remove the image and every name pointing at it (one transaction)."""
        with self._tx() as db:
            if db.execute("DELETE FROM images WHERE id=?", (image_id,)).rowcount != 1:
                raise _no_such_image(image_id)
            db.execute("UPDATE images SET parent=NULL WHERE parent=?", (image_id,))

    def set_parent(self, image_id: str, parent_id: str | None) -> None:
        with self._tx() as db:
            if db.execute("UPDATE images SET parent=? WHERE id=?",
                          (parent_id, image_id)).rowcount != 1:
                raise _no_such_image(image_id)

    def children(self, image_id: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT id FROM images WHERE parent=? ORDER BY added", (image_id,))]

    # -- names -----------------------------------------------------------------

    def resolve(self, name_or_id: str) -> str:
        """The full ID for an ID, a unique ID prefix, name[:tag] or name@digest."""
        text = name_or_id.strip() if isinstance(name_or_id, str) else ""
        if not text:
            raise InvalidArgument("invalid reference format: empty image name")
        hexpart = text.removeprefix("sha256:")
        if len(hexpart) == 64 and is_id_prefix(text):
            image_id = "sha256:" + hexpart
            if self.exists(image_id):
                return image_id
            raise NotFound(f"No such image: {image_id}")
        ref: Reference | None = None
        try:
            ref = parse(text)
        except InvalidArgument:
            if not is_id_prefix(text):
                raise
        with self._lock:
            if ref is not None:
                found = self._lookup_ref(ref)
                if found:
                    return found
            if is_id_prefix(text):
                rows = self._db.execute(
                    "SELECT id FROM images WHERE id LIKE ? ORDER BY id LIMIT 2",
                    (f"sha256:{hexpart}%",)).fetchall()
                if len(rows) == 1:
                    return rows[0][0]
        raise NotFound(f"No such image: {ref.familiar() if ref else text}")

    def _lookup_ref(self, ref: Reference) -> str | None:
        if ref.digest:
            row = self._db.execute("SELECT image_id FROM refs WHERE name=? AND digest=?",
                                   (ref.name, ref.digest)).fetchone()
        else:
            row = self._db.execute("SELECT image_id FROM refs WHERE name=? AND tag=?",
                                   (ref.name, ref.tag)).fetchone()
        return row[0] if row else None

    def lookup(self, ref: Reference) -> str | None:
        """The image a name points at (tag or digest), or None."""
        with self._lock:
            return self._lookup_ref(ref)

    def tag(self, image_id: str, ref: Reference) -> str | None:
        """Point `ref` (name:tag; no tag means latest) at the image; returns the
        image the tag pointed at before, if another one."""
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if ref.familiar_name == "sha256":
            raise InvalidArgument("refusing to create an ambiguous tag using digest algorithm as name")
        tag = ref.tag or "latest"
        key = f"{ref.name}:{tag}"
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                raise _no_such_image(image_id)
            row = db.execute("SELECT image_id FROM refs WHERE ref=?", (key,)).fetchone()
            db.execute("INSERT OR REPLACE INTO refs VALUES (?,?,?,?,?,?)",
                       (key, ref.name, tag, None, image_id, time.time()))
        previous = row[0] if row else None
        return previous if previous != image_id else None

    def add_repo_digest(self, image_id: str, ref: Reference | str) -> None:
        """Record `name@digest` (the manifest digest in that repository) for the image."""
        if isinstance(ref, str):
            ref = parse(ref, default_tag=False)
        if not ref.digest:
            raise InvalidArgument(f"repository digest without a digest: {ref}")
        key = f"{ref.name}@{ref.digest}"
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                raise _no_such_image(image_id)
            db.execute("INSERT OR REPLACE INTO refs VALUES (?,?,?,?,?,?)",
                       (key, ref.name, None, ref.digest, image_id, time.time()))

    def untag(self, ref: Reference | str) -> str:
        """Remove a name (tag, or name@digest); returns the image it pointed at."""
        if isinstance(ref, str):
            ref = parse(ref)
        key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag or 'latest'}"
        with self._tx() as db:
            row = db.execute("SELECT image_id FROM refs WHERE ref=?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {ref.familiar()}")
            db.execute("DELETE FROM refs WHERE ref=?", (key,))
        return row[0]

    def references(self, image_id: str | None = None) -> list[tuple[Reference, str]]:
        """(name, image id) pairs, tags and digests, optionally of one image."""
        sql = "SELECT name, tag, digest, image_id FROM refs"
        args: tuple = ()
        if image_id is not None:
            sql += " WHERE image_id=?"
            args = (image_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY added, ref", args).fetchall()
        out = []
        for name, tag, digest, iid in rows:
            domain, path = name.split("/", 1)
            out.append((Reference(domain, path, tag, digest), iid))
        return out

    # -- blobs -----------------------------------------------------------------

    def pin_blob(self, image_id: str, digest: str) -> None:
        """Keep a blob (a manifest, an index) alive for as long as the image exists."""
        dg.validate(digest)
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                raise _no_such_image(image_id)
            db.execute("INSERT OR IGNORE INTO pinned_blobs VALUES (?,?)", (image_id, digest))

    def referenced_blobs(self) -> set[str]:
        """Every blob an image needs: configs, layer blobs, manifests (repo digests), pins."""
        with self._lock:
            db = self._db
            out = {r[0] for r in db.execute("SELECT id FROM images")}
            out |= {r[0] for r in db.execute("SELECT digest FROM layers WHERE digest IS NOT NULL")}
            out |= {r[0] for r in db.execute("SELECT digest FROM refs WHERE digest IS NOT NULL")}
            out |= {r[0] for r in db.execute("SELECT digest FROM pinned_blobs")}
        return out
