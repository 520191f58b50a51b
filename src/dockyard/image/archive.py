"""`docker save` / `docker load` archives.

save writes what docker 25+ writes, which every docker since 1.10 loads and
OCI tools read: an OCI image layout (oci-layout, index.json, blobs/) plus
docker's manifest.json, layers as uncompressed tars named by diffID.
load reads docker-archives (manifest.json, old and new) and OCI layouts
(index.json). An archive is hostile input: members are only looked up by
normalised name, never extracted; sizes of documents are bounded.
"""

import io
import json
import posixpath
import shutil
import tarfile
import tempfile
from typing import BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.reference import parse
from dockyard.image.store import LayerRecord

MAX_DOCUMENT = 8 << 20


# -- save -------------------------------------------------------------------------

def save(svc, names: list[str], out: BinaryIO) -> None:
    images: dict[str, list[str]] = {}  # image id -> tags to record (familiar)
    for name in names:
        image_id = svc.images.resolve(name)
        tags = images.setdefault(image_id, [])
        if not _is_id(name, image_id):
            ref = parse(name)
            if ref.tag:
                tags.append(ref.familiar())
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        written: set[str] = set()
        tar_sizes: dict[str, int] = {}  # diff id -> length of its layer tar in the archive
        manifest_json, index_entries = [], []
        for image_id, tags in images.items():
            image = svc.images.get(image_id)
            config_path = _blob_path(image.id)
            if image.id not in written:
                _add_bytes(tar, config_path, image.config_bytes)
                written.add(image.id)
            layer_paths, layer_descs = [], []
            for index, layer in enumerate(image.layers):
                path = _blob_path(layer.diff_id)
                if layer.diff_id not in written:
                    tar_sizes[layer.diff_id] = _add_layer(tar, svc, image, index, path)
                    written.add(layer.diff_id)
                size = tar_sizes[layer.diff_id]
                layer_paths.append(path)
                layer_descs.append(formats.descriptor(formats.OCI_LAYER, layer.diff_id, size))
            manifest = formats.make_manifest(
                formats.descriptor(formats.OCI_CONFIG, image.id, len(image.config_bytes)),
                layer_descs, oci=True)
            manifest_digest = dg.of_bytes(manifest)
            if manifest_digest not in written:
                _add_bytes(tar, _blob_path(manifest_digest), manifest)
                written.add(manifest_digest)
            manifest_json.append({"Config": config_path, "RepoTags": tags or None,
                                  "Layers": layer_paths})
            for tag in tags or [None]:
                annotations = {}
                if tag:
                    ref = parse(tag)
                    annotations = {"io.containerd.image.name": str(ref),
                                   "org.opencontainers.image.ref.name": ref.tag}
                index_entries.append(formats.descriptor(
                    formats.OCI_MANIFEST, manifest_digest, len(manifest),
                    annotations=annotations))
        _add_bytes(tar, "index.json", formats.make_index(index_entries, oci=True))
        _add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode())


def _is_id(name: str, image_id: str) -> bool:
    bare = name.removeprefix("sha256:")
    return len(bare) >= 1 and image_id.removeprefix("sha256:").startswith(bare) and \
        all(c in "0123456789abcdef" for c in bare) and (name.startswith("sha256:") or
                                                         len(bare) >= 12)


def _blob_path(digest: str) -> str:
    algo, hexpart = dg.split(digest)
    return f"blobs/{algo}/{hexpart}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_layer(tar: tarfile.TarFile, svc, image, index: int, name: str) -> int:
    from dockyard.image.compression import open_decompressed

    layer = svc.ensure_blob(image, index)
    with tempfile.TemporaryFile(dir=svc.tmp) as raw:
        with svc.content.open(layer.digest) as blob:
            shutil.copyfileobj(open_decompressed(blob), raw, 1 << 20)
        size = raw.tell()
        raw.seek(0)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        tar.addfile(info, raw)
    return size


# -- load -------------------------------------------------------------------------

class _Archive:
    """Members of an archive by normalised name; symlinks followed inside it only."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            name = _normalise(member.name)
            if name:
                self.members[name] = member

    def has(self, name: str) -> bool:
        return _normalise(name) in self.members

    def open(self, name: str, depth: int = 0) -> BinaryIO:
        member = self.members.get(_normalise(name))
        if member is None:
            raise InvalidArgument(f"invalid archive: {name} is missing")
        if member.issym() and depth < 8:
            target = posixpath.join(posixpath.dirname(_normalise(name)), member.linkname)
            return self.open(target, depth + 1)
        if not member.isfile():
            raise InvalidArgument(f"invalid archive: {name} is not a file")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read(MAX_DOCUMENT + 1)
        if len(data) > MAX_DOCUMENT:
            raise InvalidArgument(f"invalid archive: {name} is too large")
        return data


def _normalise(name: str) -> str:
    name = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return "" if name in (".", "") else name


def load(svc, stream: BinaryIO) -> list[str]:
    """Load every image of a docker-archive or OCI layout; returns docker's lines."""
    with svc.ingesting(), tempfile.TemporaryFile(dir=svc.tmp) as spool:
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        try:
            tar = tarfile.open(fileobj=spool, mode="r:*")  # noqa: SIM115 - closed below
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid archive: {e}") from None
        with tar:
            archive = _Archive(tar)
            if archive.has("manifest.json"):
                return _load_docker(svc, archive)
            if archive.has("index.json"):
                return _load_oci(svc, archive)
            raise InvalidArgument("invalid archive: neither manifest.json nor index.json "
                                  "(not a docker save or OCI layout tar)")


def _loads(data: bytes, what: str):
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid archive: {what} is not JSON: {e}") from None


def _add_image(svc, config_bytes: bytes, layer_streams) -> str:
    config = formats.parse_config(config_bytes)
    expected = formats.diff_ids(config)
    layers: list[LayerRecord] = []
    parent = None
    for i, open_layer in enumerate(layer_streams):
        with open_layer() as stream:
            layer = svc.add_layer_tar(stream, parent)
        if i >= len(expected) or layer.diff_id != expected[i]:
            raise InvalidArgument(f"invalid archive: layer {i + 1} has diff id "
                                  f"{layer.diff_id}, the config expects "
                                  f"{expected[i] if i < len(expected) else 'no more layers'}")
        layers.append(layer)
        parent = formats.chain_ids([x.diff_id for x in layers])[-1]
    if len(layers) != len(expected):
        raise InvalidArgument(f"invalid archive: {len(layers)} layers for a config with "
                              f"{len(expected)}")
    return svc.images.add(config_bytes, layers)


def _load_docker(svc, archive: _Archive) -> list[str]:
    entries = _loads(archive.read("manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("invalid archive: manifest.json is not a list")
    lines = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or \
                not isinstance(entry.get("Layers"), list):
            raise InvalidArgument("invalid archive: bad manifest.json entry")
        config_bytes = archive.read(entry["Config"])
        image_id = _add_image(svc, config_bytes, [
            (lambda p=p: archive.open(p)) for p in entry["Layers"]])
        tags = entry.get("RepoTags") or []
        for tag in tags:
            svc.images.tag(image_id, parse(tag))
            lines.append(f"Loaded image: {tag}")
        if not tags:
            lines.append(f"Loaded image ID: {image_id}")
    return lines


def _load_oci(svc, archive: _Archive) -> list[str]:
    index = formats.parse_manifest(archive.read("index.json"), formats.OCI_INDEX)
    lines = []
    for desc in index.get("manifests") or []:
        manifest, desc = _resolve_manifest(archive, desc)
        config_bytes = archive.read(_blob_path(manifest["config"]["digest"]))
        if dg.of_bytes(config_bytes) != manifest["config"]["digest"]:
            raise InvalidArgument("invalid archive: config does not match its digest")
        image_id = _add_image(svc, config_bytes, [
            (lambda d=layer["digest"]: archive.open(_blob_path(d)))
            for layer in manifest.get("layers") or []])
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or \
            annotations.get("org.opencontainers.image.ref.name")
        if name and ("/" in name or ":" in name):
            ref = parse(name)
            svc.images.tag(image_id, ref)
            lines.append(f"Loaded image: {ref.familiar()}")
        else:
            lines.append(f"Loaded image ID: {image_id}")
    return lines


def _resolve_manifest(archive: _Archive, desc: dict, depth: int = 0) -> tuple[dict, dict]:
    data = archive.read(_blob_path(dg.validate(desc["digest"])))
    if dg.of_bytes(data, dg.split(desc["digest"])[0]) != desc["digest"]:
        raise InvalidArgument(f"invalid archive: {desc['digest']} does not match its content")
    doc = formats.parse_manifest(data, desc.get("mediaType"))
    if formats.is_index(doc):
        if depth > 4:
            raise InvalidArgument("invalid archive: indexes nested too deeply")
        return _resolve_manifest(archive, formats.select_platform(doc), depth + 1)
    return doc, desc


