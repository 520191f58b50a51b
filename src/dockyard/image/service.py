"""The image service: pull, push, tag, remove, list, import, prune.

One facade over the content store, the image store, the snapshotter and the
registry client; the `dockyard image` commands use it directly now, the
daemon's API will use it in-process later. Archives (save/load) live in
image/archive.py, docker's JSON shapes (inspect/history) in image/inspect.py.
"""

import asyncio
import contextlib
import fcntl
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.image.reference import Reference, parse
from dockyard.image.store import ImageRecord, ImageStore, LayerRecord

LAYER_COMPRESSION = "gzip"  # what push sends: every registry and engine reads gzip


class ImageService:
    def __init__(self, data_root: str, *, config_dir: str | None = None,
                 insecure: tuple[str, ...] = (), mirrors: tuple[str, ...] = (),
                 credentials=None):
        """Registry credentials: `credentials` (anything with .get(host) -> (user,
        password) | None, e.g. the daemon's per-request X-Registry-Auth), else the
        docker config.json in `config_dir`, else none."""
        from dockyard.image.snapshot import Snapshotter

        self.data_root = data_root
        self.root = os.path.join(data_root, "image")
        self.content = ContentStore(os.path.join(self.root, "content"))
        self.images = ImageStore(self.root, self.content)
        self.snapshots = Snapshotter(os.path.join(data_root, "snapshots"))
        self.config_dir = config_dir
        self.credentials = credentials
        self.insecure = insecure
        self.mirrors = mirrors
        self.tmp = os.path.join(self.root, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self._lock_path = os.path.join(self.root, "ingest.lock")

    def close(self) -> None:
        self.images.close()

    @contextlib.contextmanager
    def ingesting(self):
        """Held (shared) while blobs and snapshots are being added that no image
        references yet: gc, which needs the lock exclusively, cannot remove them."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- registry ----------------------------------------------------------------

    def _client(self):
        from dockyard.registry.client import CredentialStore, RegistryClient

        creds = self.credentials
        if creds is None and self.config_dir:
            creds = CredentialStore(self.config_dir)
        return RegistryClient(credentials=creds, insecure=self.insecure, mirrors=self.mirrors)

    def pull(self, name: str, progress=None) -> str:
        """Pull `name` (docker's normalisation); returns the image id."""
        ref = parse(name)
        had = self.images.lookup(ref)
        with self.ingesting():
            return self._pull(ref, had, progress)

    def pull_all_tags(self, name: str, progress=None) -> list[str]:
        """docker pull --all-tags: every tag of repository `name`; returns the image ids."""
        ref = parse(name)
        tags = asyncio.run(self._client().tags(ref))
        if not tags:
            raise NotFound(f"no tags found for {ref.familiar_name}")
        return [self.pull(str(ref.repository.with_tag(tag)), progress) for tag in tags]

    def _pull(self, ref: Reference, had: str | None, progress) -> str:
        # docker's order: the layers' "Pull complete" (unpacked), then the digest
        pulled = asyncio.run(self._client().pull(ref, self.content, progress=progress,
                                                 report_digest=False))
        config = formats.parse_config(pulled.config_bytes)
        diff_ids = formats.diff_ids(config)
        if len(diff_ids) != len(pulled.layers):
            raise InvalidArgument(f"image config of {ref.familiar()} lists {len(diff_ids)} "
                                  f"layers, its manifest {len(pulled.layers)}")
        layers = [LayerRecord(diff_id=d, digest=desc["digest"], media_type=desc["mediaType"],
                              size=desc["size"]) for d, desc in zip(diff_ids, pulled.layers)]
        self.unpack(layers, progress)
        image_id = self.images.add(pulled.config_bytes, layers)
        if ref.tag:
            self.images.tag(image_id, ref)
        self.images.add_repo_digest(image_id, ref.with_digest(pulled.repo_digest))
        if progress is not None:
            progress.status(f"Digest: {pulled.repo_digest}")
            news = "Image is up to date" if had == image_id else "Downloaded newer image"
            progress.status(f"Status: {news} for {ref.familiar()}")
        return image_id

    def push(self, name: str, progress=None) -> str:
        """Push the image tagged `name`; returns the manifest digest."""
        ref = parse(name)
        image = self.images.get(self.images.resolve(str(ref)))
        layers = [self.ensure_blob(image, i) for i in range(len(image.layers))]
        config_desc = formats.descriptor(formats.DOCKER_CONFIG, dg.of_bytes(image.config_bytes),
                                         len(image.config_bytes))
        self.content.put(image.config_bytes, config_desc["digest"])
        layer_descs = [formats.descriptor(layer.media_type, layer.digest, layer.size)
                       for layer in layers]
        manifest = formats.make_manifest(config_desc, layer_descs)
        digest = asyncio.run(self._client().push(
            ref, manifest=manifest, media_type=formats.DOCKER_MANIFEST,
            blobs=layer_descs + [config_desc], content=self.content, progress=progress,
            progress_ids={layer.digest: dg.short_id(layer.diff_id) for layer in layers}))
        self.images.add_repo_digest(image.id, ref.with_digest(digest))
        return digest

    # -- layers ------------------------------------------------------------------

    def unpack(self, layers: list[LayerRecord], progress=None) -> None:
        """Make sure every layer's snapshot exists, bottom up; checks diffIDs."""
        from dockyard.image.compression import ReadAhead, open_decompressed
        from dockyard.image.layers import apply_layer

        parent = None
        for chain, layer in zip(formats.chain_ids([x.diff_id for x in layers]), layers):
            if not self.snapshots.exists(chain):
                def fill(directory: str, layer: LayerRecord = layer) -> None:
                    with self.content.open(layer.digest) as blob, \
                            ReadAhead(open_decompressed(blob)) as tar:
                        diff_id, _ = apply_layer(directory, tar)
                    if diff_id != layer.diff_id:
                        raise InvalidArgument(f"layer {layer.digest}: content has diff id "
                                              f"{diff_id}, the image config says "
                                              f"{layer.diff_id}")
                self.snapshots.create_layer(chain, parent, fill)
                if progress is not None and layer.digest:
                    progress.layer_done(dg.short_id(layer.digest), "Pull complete")
            # docker's layer size: the unpacked files' bytes, not the tar's length
            layer.uncompressed_size = self.snapshots.usage(chain)
            parent = chain

    def add_layer_tar(self, stream: BinaryIO, parent: str | None, *,
                      level: int | None = None) -> LayerRecord:
        """An uncompressed-or-compressed layer tar -> a compressed blob and a snapshot
        (`level`: gzip's, None for the default; the builder uses a fast one)."""
        from dockyard.image.compression import compress, open_decompressed
        from dockyard.image.layers import apply_layer

        with tempfile.TemporaryFile(dir=self.tmp) as raw:
            diff_id = _copy_hashing(open_decompressed(stream), raw)
            raw.flush()  # the compressor reads the file through a second open file
            chain = formats.chain_ids([parent, diff_id])[1] if parent else diff_id
            # compress (a thread of its own, through a second open file) while unpacking
            with open(f"/proc/self/fd/{raw.fileno()}", "rb") as copy, \
                    self.content.writer(f"layer-{os.getpid()}-{id(raw)}") as writer, \
                    ThreadPoolExecutor(1) as pool:
                compressed = pool.submit(compress, copy, writer, LAYER_COMPRESSION,
                                         level=level)
                if not self.snapshots.exists(chain):
                    raw.seek(0)
                    self.snapshots.create_layer(chain, parent, lambda d: apply_layer(d, raw))
                digest, csize = compressed.result()
                writer.commit()
            size = self.snapshots.usage(chain)  # docker's layer size (unpacked bytes)
        return LayerRecord(diff_id=diff_id, digest=digest, media_type=formats.DOCKER_LAYER_GZIP,
                           size=csize, uncompressed_size=size)

    def ensure_blob(self, image: ImageRecord, index: int) -> LayerRecord:
        """The layer's compressed blob, made from its snapshot if it has none yet."""
        layer = image.layers[index]
        if layer.digest and self.content.exists(layer.digest):
            return layer
        from dockyard.image.compression import compress
        from dockyard.image.layerdiff import write_diff

        chain = image.chain_ids[index]
        with tempfile.TemporaryFile(dir=self.tmp) as raw:
            diff_id, _ = write_diff([], self.snapshots.layer_path(chain), raw)
            if diff_id != layer.diff_id:
                raise InvalidArgument(f"layer {layer.diff_id} of {dg.short_id(image.id)} "
                                      f"cannot be rebuilt from its snapshot (got {diff_id})")
            raw.seek(0)
            with self.content.writer(f"rebuild-{diff_id}") as writer:
                digest, size = compress(raw, writer, LAYER_COMPRESSION)
                writer.commit()
        self.images.set_layer_blob(image.id, index, digest, formats.DOCKER_LAYER_GZIP, size)
        return LayerRecord(layer.diff_id, digest, formats.DOCKER_LAYER_GZIP, size,
                           layer.uncompressed_size)

    # -- local operations ---------------------------------------------------------

    def import_(self, stream: BinaryIO, *, reference: str | None = None,
                changes: dict | None = None, message: str = "") -> str:
        """`docker import`: a rootfs tarball -> a one-layer image."""
        comment = message or "Imported from -"  # docker's default, config and history
        with self.ingesting():
            layer = self.add_layer_tar(stream, None)
            config = formats.new_config([layer.diff_id], config=changes or {},
                                        comment=comment, created_by="",
                                        history=[formats.history_entry(comment=comment)])
            image_id = self.images.add(formats.encode_config(config), [layer])
        if reference:
            self.images.tag(image_id, parse(reference))
        return image_id

    def tag(self, source: str, target: str) -> None:
        self.images.tag(self.images.resolve(source), parse(target))

    def remove(self, name: str, force: bool = False, in_use: set[str] = frozenset()
               ) -> list[tuple[str, str]]:
        """`docker rmi`: untag a name, delete the image when nothing names it any more.
        Returns docker's lines as (kind, text): ("Untagged", ...), ("Deleted", ...)."""
        image_id = self.images.resolve(name)
        image = self.images.get(image_id)
        by_id = name == image_id or image_id.split(":", 1)[1].startswith(
            name.removeprefix("sha256:"))
        if image_id in in_use and not force:
            raise Conflict(f"conflict: unable to remove repository reference \"{name}\" "
                           f"(must force) - container is using its referenced image "
                           f"{dg.short_id(image_id)}")
        out: list[tuple[str, str]] = []
        if not by_id:
            ref = parse(name)
            self.images.untag(ref)
            out.append(("Untagged", ref.familiar()))
            image = self.images.get(image_id)
            if image.repo_tags:
                if not ref.digest:  # as docker: the repository's last tag takes its digests
                    out += self._untag_digests(image, ref)
                return out
        elif len(image.repo_tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {dg.short_id(image_id)} (must be "
                           "forced) - image is referenced in multiple repositories")
        else:
            for tag in image.repo_tags:
                self.images.untag(parse(tag))
                out.append(("Untagged", tag))
        for digest_ref in image.repo_digests:
            out.append(("Untagged", digest_ref))
        if self.images.children(image_id) and not force:
            raise Conflict(f"conflict: unable to delete {dg.short_id(image_id)} (cannot be "
                           "forced) - image has dependent child images")
        self.images.delete(image_id)
        out.append(("Deleted", image_id))
        self.gc()
        return out

    def _untag_digests(self, image: ImageRecord, removed: Reference) -> list[tuple[str, str]]:
        """Drop the image's name@digest references in `removed`'s repository once no tag
        of that repository is left on it."""
        repo = removed.familiar_name
        if any(parse(t).familiar_name == repo for t in image.repo_tags):
            return []
        out = []
        for digest_ref in image.repo_digests:
            if parse(digest_ref, default_tag=False).familiar_name == repo:
                self.images.untag(parse(digest_ref, default_tag=False))
                out.append(("Untagged", digest_ref))
        return out

    def prune(self, all_images: bool = False, in_use: set[str] = frozenset()
              ) -> tuple[list[str], int]:
        """`docker image prune`: dangling images (all unused with -a); (deleted, space)."""
        deleted, before = [], self._disk_usage()
        for image in self.images.list():
            if image.id in in_use or (image.repo_tags and not all_images):
                continue
            if self.images.children(image.id):
                continue
            self.images.delete(image.id)
            deleted.append(image.id)
        self.gc()
        return deleted, max(0, before - self._disk_usage())

    def gc(self) -> None:
        """Remove blobs and snapshots no image needs; skipped (until next time) while
        another process is adding images."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            self._gc_locked()
        finally:
            os.close(fd)

    def _gc_locked(self) -> None:
        keep_blobs = self.images.referenced_blobs()
        self.content.gc(keep_blobs)
        keep_chains = self.snapshots.layers_in_use()  # containers' and views' layers
        for image in self.images.list():
            keep_chains.update(image.chain_ids)
        # only layers: active snapshots and views belong to containers and builds
        pending = [name for name, kind in self.snapshots.entries()
                   if kind == "committed" and name not in keep_chains]
        while pending:  # children before parents, whatever the listing order
            left = []
            for chain in pending:
                try:
                    self.snapshots.remove(chain)
                except Conflict:
                    left.append(chain)
            if len(left) == len(pending):
                break
            pending = left

    def _disk_usage(self) -> int:
        total = 0
        for base, _dirs, files in os.walk(self.data_root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(base, f)).st_size
                except OSError:
                    pass
        return total

    def graph_driver(self, name: str) -> dict:
        """docker inspect's GraphDriver: the layer directories, top first."""
        image = self.get(name)
        dirs = [self.snapshots.layer_path(c) for c in reversed(image.chain_ids)]
        data = None
        if dirs:
            data = {"LowerDir": ":".join(dirs[1:])} if len(dirs) > 1 else {}
            data["UpperDir"] = dirs[0]
        return {"Data": data, "Name": "overlay2"}

    def get(self, name: str) -> ImageRecord:
        return self.images.get(self.images.resolve(name))

    def list(self) -> list[ImageRecord]:
        return self.images.list()

    def reference(self, name: str) -> Reference:
        return parse(name)

    def commit(self, parent: str, lowers: "list[str]", upper: str, *, config: dict,
               reference: str | None = None, author: str = "", comment: str = "",
               created_by: str = "", exclude: frozenset[str] = frozenset()) -> str:
        """`docker commit`: image `parent` plus one layer made from an overlay upper dir
        (paths in `exclude`, the runtime's mount points, left out). As dockerd, no
        changes make an empty-layer history entry instead of a layer."""
        from dockyard.image.layerdiff import write_diff

        image = self.get(parent)
        layers = list(image.layers)
        created = formats.format_time()
        with self.ingesting():
            with tempfile.TemporaryFile(dir=self.tmp) as raw, \
                    tempfile.TemporaryFile(dir=self.tmp) as kept:
                write_diff(lowers, upper, raw)
                raw.seek(0)
                empty = not _filter_tar(raw, kept, exclude)
                if not empty:
                    kept.seek(0)
                    layers.append(self.add_layer_tar(
                        kept, image.chain_ids[-1] if image.chain_ids else None))
            history = list(image.config.get("history") or [])
            history.append(formats.history_entry(created, created_by, author, comment,
                                                 empty_layer=empty))
            doc = formats.new_config(
                [x.diff_id for x in layers], config=config, created=created, author=author,
                comment=comment, history=history,
                architecture=image.config.get("architecture") or None,
                os=image.config.get("os") or "linux", variant=image.config.get("variant"))
            image_id = self.images.add(formats.encode_config(doc), layers)
            self.images.set_parent(image_id, image.id)
        if reference:
            self.images.tag(image_id, parse(reference))
        return image_id


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
    return "sha256:" + h.hexdigest()


def _filter_tar(src: BinaryIO, dst: BinaryIO, exclude: frozenset[str]) -> int:
    """Copy a layer tar without the entries at `exclude` ("/etc/hosts"...); returns how
    many entries were kept."""
    import tarfile

    kept = 0
    with tarfile.open(fileobj=src, mode="r|") as tin, \
            tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            if "/" + member.name.rstrip("/") in exclude:
                continue
            tout.addfile(member, tin.extractfile(member) if member.isreg() else None)
            kept += 1
    return kept
