"""Docker and OCI image formats: media types, manifests, indexes, configs, IDs.

Docker v2 schema 2 manifests and manifest lists, OCI manifests and indexes.
IDs are computed exactly as Docker does: the image ID is the sha256 of the
config bytes; chainID(1) = diffID(1), chainID(n) = sha256(chainID(n-1) + " " +
diffID(n)). Manifests are serialised the way Docker pushes them (Go's
json.MarshalIndent with a three-space indent); configs the way Go's
json.Marshal writes them (compact, Go's field order, HTML characters escaped).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import platform as _platform
import re
import time
from typing import Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import digest as dg

# -- media types ----------------------------------------------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
# media type -> compression ("gzip", "zstd" or None)
LAYER_TYPES: dict[str, str | None] = {
    DOCKER_LAYER: None, DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_LAYER_FOREIGN: "gzip", OCI_LAYER: None, OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: None, OCI_LAYER_NONDIST_GZIP: "gzip", OCI_LAYER_NONDIST_ZSTD: "zstd",
}
FOREIGN_LAYER_TYPES = frozenset({DOCKER_LAYER_FOREIGN, OCI_LAYER_NONDIST,
                                 OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD})
# what a registry client sends in Accept when it fetches a manifest
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&.+^_-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&.+^_-]{0,126}$")


def layer_compression(media_type: str) -> str | None:
    """"gzip", "zstd" or None for a layer media type; InvalidArgument for others."""
    if media_type not in LAYER_TYPES:
        raise InvalidArgument(f"unsupported layer media type: {media_type}")
    return LAYER_TYPES[media_type]


def is_foreign(media_type: str) -> bool:
    """Foreign / non-distributable layers are not pushed."""
    return media_type in FOREIGN_LAYER_TYPES


# -- JSON as Go writes it -------------------------------------------------------

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(value: Any, indent: str | None = None) -> bytes:
    """`value` as Go's encoding/json writes it (Marshal, or MarshalIndent("", indent))."""
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent, separators=(",", ": "))
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text).encode()


# -- validation -----------------------------------------------------------------

def validate_descriptor(desc: Any, where: str = "descriptor") -> dict:
    """Check a content descriptor: mediaType, digest, size >= 0 (and platform, urls)."""
    if not isinstance(desc, dict):
        raise InvalidArgument(f"invalid {where}: not an object")
    mt = desc.get("mediaType")
    if not isinstance(mt, str) or not _MEDIA_TYPE_RE.match(mt):
        raise InvalidArgument(f"invalid {where}: bad mediaType {mt!r}")
    dg.validate(desc.get("digest"), f"{where} digest")
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"invalid {where}: bad size {size!r}")
    plat = desc.get("platform")
    if plat is not None and (not isinstance(plat, dict)
                             or not isinstance(plat.get("architecture"), str)
                             or not isinstance(plat.get("os"), str)):
        raise InvalidArgument(f"invalid {where}: bad platform {plat!r}")
    urls = desc.get("urls")
    if urls is not None and (not isinstance(urls, list) or
                             not all(isinstance(u, str) for u in urls)):
        raise InvalidArgument(f"invalid {where}: bad urls")
    ann = desc.get("annotations")
    if ann is not None and not isinstance(ann, dict):
        raise InvalidArgument(f"invalid {where}: bad annotations")
    return desc


def parse_manifest(data: bytes, media_type: str | None = None) -> dict:
    """Parse and validate a manifest or index; returns the document.

    `media_type` is what the registry said (Content-Type); types that are not
    manifest types (application/json, ...) are ignored. The returned dict
    always has "mediaType" set (added when the document leaves it out);
    digests must be computed on the original bytes, never on a re-encoding.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid manifest: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid manifest: not a JSON object")
    version = doc.get("schemaVersion")
    if isinstance(version, bool):
        raise InvalidArgument(f"invalid manifest: unsupported schemaVersion {version!r}")
    if version == 1 or media_type in (DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED):
        raise InvalidArgument("unsupported manifest: docker image manifest schema 1 is not supported")
    if version != 2 or not isinstance(version, int):
        raise InvalidArgument(f"invalid manifest: unsupported schemaVersion {version!r}")
    if "manifests" in doc and "layers" in doc:
        raise InvalidArgument("invalid manifest: it has both manifests and layers")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidArgument("invalid manifest: mediaType is not a string")
    header = media_type if media_type in MANIFEST_TYPES | INDEX_TYPES else None
    if declared and header and declared != header:
        raise InvalidArgument(
            f"invalid manifest: mediaType {declared} does not match content type {header}"
        )
    kind = declared or header
    if kind is None:
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if kind in INDEX_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument("invalid manifest list: manifests is not a list")
        for i, m in enumerate(manifests):
            validate_descriptor(m, f"manifests[{i}]")
    elif kind in MANIFEST_TYPES:
        if "manifests" in doc:
            raise InvalidArgument(f"invalid manifest: a {kind} has no manifests")
        validate_descriptor(doc.get("config"), "config descriptor")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument("invalid manifest: layers is not a list")
        for i, layer in enumerate(layers):
            validate_descriptor(layer, f"layers[{i}]")
    else:
        raise InvalidArgument(f"unsupported manifest media type: {kind}")
    doc["mediaType"] = kind
    return doc


def is_index(doc: dict) -> bool:
    """True for a manifest list / OCI index (as returned by parse_manifest)."""
    return doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)


# -- platforms ------------------------------------------------------------------

def normalize_platform(os: str, architecture: str, variant: str | None = None
                       ) -> tuple[str, str, str]:
    """(os, architecture, variant) as containerd's platforms.Normalize makes them."""
    os = (os or "").lower()
    if os == "macos":
        os = "darwin"
    arch, var = (architecture or "").lower(), (variant or "").lower()
    if arch == "i386":
        arch, var = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if var == "v1":
            var = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        if var in ("8", "v8", "v8.0"):
            var = ""
        elif var in ("9", "9.0", "v9.0"):
            var = "v9"
    elif arch == "armhf":
        arch, var = "arm", "v7"
    elif arch == "armel":
        arch, var = "arm", "v6"
    elif arch == "arm":
        if var in ("", "7"):
            var = "v7"
        elif var in ("5", "6", "8"):
            var = "v" + var
    return os, arch, var


def _platform_vector(os: str, arch: str, var: str) -> list[tuple[str, str, str]]:
    """The platforms `os/arch/var` can run, best first (containerd's platforms.Only)."""
    vector = [(os, arch, var)]
    if arch == "amd64":
        level = int(var[1:]) if re.fullmatch(r"v\d+", var) else 0
        vector += [(os, "amd64", "" if n == 1 else f"v{n}") for n in range(level - 1, 0, -1)]
        vector.append((os, "386", ""))
    elif arch == "arm":
        level = int(var[1:]) if re.fullmatch(r"v\d+", var) else 0
        vector += [(os, "arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        m = re.fullmatch(r"v(\d+)(?:\.(\d+))?", var or "v8")
        major, minor = (int(m.group(1)), int(m.group(2) or 0)) if m else (8, 0)
        if major == 9:
            vector += [(os, "arm64", f"v9.{n}" if n else "v9") for n in range(minor - 1, -1, -1)]
            major, minor = 8, min(minor + 5, 9)
            vector.append((os, "arm64", f"v8.{minor}"))
        if major == 8:
            vector += [(os, "arm64", f"v8.{n}" if n else "") for n in range(minor - 1, -1, -1)]
        vector += _platform_vector(os, "arm", "v8")
    return vector


def select_platform(index: dict, os: str = "linux", architecture: str = "amd64",
                    variant: str | None = None) -> dict:
    """The descriptor of `index` docker would pull for os/architecture[/variant].

    Entries are ranked by containerd's platforms.Only order (amd64 also takes
    386; arm64 takes arm/v8..v5), ties by index order; attestation entries
    (unknown/unknown) are skipped. NotFound when nothing matches.
    """
    want = normalize_platform(os, architecture, variant)
    vector = _platform_vector(*want)
    best: tuple[int, int] | None = None
    chosen: dict | None = None
    for pos, desc in enumerate(index.get("manifests") or []):
        plat = desc.get("platform")
        if not isinstance(plat, dict):
            continue
        have = normalize_platform(plat.get("os", ""), plat.get("architecture", ""),
                                  plat.get("variant"))
        if have in vector:
            rank = (vector.index(have), pos)
            if best is None or rank < best:
                best, chosen = rank, desc
    if chosen is None:
        name = "/".join(p for p in (want[0], want[1], want[2]) if p)
        raise NotFound(f"no matching manifest for {name} in the manifest list entries")
    return chosen


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine, normalised."""
    return normalize_platform("linux", _platform.machine())


# -- IDs ------------------------------------------------------------------------

def chain_ids(diff_ids: list[str]) -> list[str]:
    """Docker's chain IDs for a list of diff IDs."""
    out: list[str] = []
    for diff_id in diff_ids:
        dg.validate(diff_id, "diff id")
        if not out:
            out.append(diff_id)
        else:
            h = hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
            out.append(f"sha256:{h}")
    return out


def image_id(config_bytes: bytes) -> str:
    """The image ID: the digest of the config exactly as stored."""
    return dg.of_bytes(config_bytes)


# -- building documents ---------------------------------------------------------

def descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict:
    """A descriptor with distribution's field order (mediaType, size, digest, ...)."""
    desc: dict[str, Any] = {"mediaType": media_type, "size": size, "digest": digest}
    desc.update({k: v for k, v in extra.items() if v})
    return validate_descriptor(desc)


def make_manifest(config_desc: dict, layer_descs: list[dict], oci: bool = False,
                  annotations: dict[str, str] | None = None) -> bytes:
    """The manifest bytes docker pushes (schema 2), or an OCI image manifest."""
    def order(d: dict) -> dict:
        validate_descriptor(d)
        first = {"mediaType": d["mediaType"], "size": d["size"], "digest": d["digest"]}
        for key in ("urls", "annotations", "platform"):
            if d.get(key):
                first[key] = d[key]
        return first

    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": order(config_desc),
        "layers": [order(d) for d in layer_descs],
    }
    if annotations:
        doc["annotations"] = annotations
    return go_json(doc, indent="   ")


def make_index(manifest_descs: list[dict], oci: bool = True,
               annotations: dict[str, str] | None = None) -> bytes:
    """An OCI index (or a docker manifest list) over the given descriptors."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if oci else DOCKER_MANIFEST_LIST,
        "manifests": [validate_descriptor(d) for d in manifest_descs],
    }
    if annotations:
        doc["annotations"] = annotations
    return go_json(doc, indent="   ")


# -- configs --------------------------------------------------------------------

def format_time(ts: float | None = None) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed, as Go's time.Time marshals (UTC)."""
    if ts is None:
        ts = time.time()
    secs = int(ts // 1)
    frac = round((ts - secs) * 1_000_000_000)
    if frac >= 1_000_000_000:
        secs, frac = secs + 1, 0
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{base}{fraction}Z"


_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})"
)


def parse_time(text: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time (0.0 for None or garbage)."""
    if not text or not isinstance(text, str):
        return 0.0
    m = _TIME_RE.fullmatch(text.strip())
    if m is None:
        return 0.0
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs + frac


# container.Config's fields in Go's order; None marks `omitempty`
_CONTAINER_CONFIG_FIELDS: list[tuple[str, Any]] = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", [None]), ("Cmd", [None]),
    ("Healthcheck", None), ("ArgsEscaped", None), ("Image", ""), ("Volumes", [None]),
    ("WorkingDir", ""), ("Entrypoint", [None]), ("NetworkDisabled", None),
    ("MacAddress", None), ("OnBuild", [None]), ("Labels", [None]), ("StopSignal", None),
    ("StopTimeout", None), ("Shell", None),
]


def container_config(cfg: dict | None = None) -> dict:
    """A container config (Env, Cmd, ...) with docker's keys in Go's order.

    Fields docker always writes get their zero value (null for lists and
    maps); omitempty fields appear only when set; unknown keys are kept last.
    """
    cfg = dict(cfg or {})
    out: dict[str, Any] = {}
    for key, zero in _CONTAINER_CONFIG_FIELDS:
        value = cfg.pop(key, None)
        if zero is None:
            if value:
                out[key] = value
        elif zero == [None]:
            out[key] = value if value else None
        else:
            out[key] = value if value is not None else zero
    out.update(cfg)
    return out


def new_config(diff_ids: list[str], *, config: dict | None = None,
               created: str | None = None, architecture: str | None = None,
               os: str = "linux", variant: str | None = None, author: str = "",
               comment: str = "", history: list[dict] | None = None,
               created_by: str = "", parent: str | None = None,
               container: str | None = None, container_cfg: dict | None = None,
               docker_version: str | None = None, os_version: str | None = None) -> dict:
    """An image config for import/commit/build, with image.Image's field order.

    Without `history`, one entry for the (single, new) layer is written with
    `created`, `created_by`, `author` and `comment`. Encode it with
    encode_config() and hash those bytes for the image ID.
    """
    created = created or format_time()
    if architecture is None:
        _, architecture, host_variant = host_platform()
        variant = variant if variant is not None else (host_variant or None)
    doc: dict[str, Any] = {}
    if parent:
        doc["parent"] = parent
    if comment:
        doc["comment"] = comment
    doc["created"] = created
    if container:
        doc["container"] = container
    if container_cfg is not None:
        doc["container_config"] = container_config(container_cfg)
    if docker_version:
        doc["docker_version"] = docker_version
    if author:
        doc["author"] = author
    doc["config"] = container_config(config)
    doc["architecture"] = architecture
    if variant:
        doc["variant"] = variant
    doc["os"] = os
    doc["rootfs"] = {"type": "layers", "diff_ids": [dg.validate(d, "diff id") for d in diff_ids]}
    if history is None:
        entry: dict[str, Any] = {"created": created}
        if created_by:
            entry["created_by"] = created_by
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if not diff_ids:
            entry["empty_layer"] = True
        history = [entry]
    doc["history"] = history
    if os_version:
        doc["os.version"] = os_version
    return doc


def history_entry(created: str | None = None, created_by: str = "", author: str = "",
                  comment: str = "", empty_layer: bool = False) -> dict:
    """One config history entry, Go's field order and omitempty."""
    entry: dict[str, Any] = {"created": created or format_time()}
    for key, value in (("created_by", created_by), ("author", author), ("comment", comment),
                       ("empty_layer", empty_layer)):
        if value:
            entry[key] = value
    return entry


def encode_config(doc: dict) -> bytes:
    """Config bytes as docker writes them (compact Go JSON)."""
    return go_json(doc)


def parse_config(data: bytes) -> dict:
    """Parse and check an image config: an object with rootfs.diff_ids (layers type)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid image config: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid image config: not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument("invalid image config: rootfs type is not layers")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list):
        raise InvalidArgument("invalid image config: rootfs.diff_ids is not a list")
    for d in diff_ids:
        dg.validate(d, "image config diff id")
    if "history" in doc and doc["history"] is not None and not isinstance(doc["history"], list):
        raise InvalidArgument("invalid image config: history is not a list")
    return doc


def diff_ids(config: dict) -> list[str]:
    """rootfs.diff_ids of a parsed config."""
    return list((config.get("rootfs") or {}).get("diff_ids") or [])
