"""Getting built images into a daemon (POST /images/load of a docker-archive streamed
from the cached layers) and, optionally, into a registry through that daemon (tag
HOST:PORT/library/NAME:TAG, POST /images/{name}/push), so a daemon whose
`registry-mirrors` names the registry pulls them as docker.io's.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dockyard.errors import NotFound

if TYPE_CHECKING:
    from dockyard.bootstrap.images import Built
    from dockyard.client.api import Client

CHUNK = 1 << 20


def _member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def archive(images: list[Built]) -> Iterator[bytes]:
    """A docker-archive (docker save's format) of `images`, streamed: each layer file
    is read from the cache once, whatever the number of images sharing it."""
    manifest = []
    sent: set[str] = set()
    for built in images:
        config_name = built.image_id.removeprefix("sha256:") + ".json"
        yield _member(config_name, len(built.config)) + built.config + _pad(len(built.config))
        layer_names = []
        for layer in built.layers:
            name = layer.diff_id.removeprefix("sha256:") + "/layer.tar"
            layer_names.append(name)
            if name in sent:
                continue
            sent.add(name)
            yield _member(name, layer.size)
            with open(layer.path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
            yield _pad(layer.size)
        manifest.append({"Config": config_name, "RepoTags": built.spec.tags,
                         "Layers": layer_names})
    data = json.dumps(manifest).encode()
    yield _member("manifest.json", len(data)) + data + _pad(len(data))
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _image_id(client: Client, name: str) -> str | None:
    try:
        return client.get("/images/" + urllib.parse.quote(name, safe="/:@") + "/json")["Id"]
    except NotFound:
        return None


def missing(client: Client, images: list[Built]) -> list[Built]:
    """The images whose tags do not all name the image we built already."""
    return [b for b in images
            if any(_image_id(client, tag) != b.image_id for tag in b.spec.tags)]


def load(client: Client, images: list[Built]) -> list[str]:
    """POST /images/load; returns the daemon's "Loaded image: ..." lines."""
    lines = []
    for msg in client.stream_json("POST", "/images/load", params={"quiet": True},
                                  body=archive(images),
                                  headers={"Content-Type": "application/x-tar"}):
        if isinstance(msg, dict) and msg.get("stream"):
            lines.append(str(msg["stream"]).strip())
    return lines


def registry_name(registry: str, tag: str) -> tuple[str, str]:
    """busybox:latest -> (HOST:PORT/library/busybox, latest): where docker.io's name
    lives in a mirror."""
    repo, _, version = tag.rpartition(":")
    if "/" not in repo:
        repo = "library/" + repo
    return f"{registry}/{repo}", version


def push(client: Client, built: Built, registry: str, auth: str | None = None) -> list[str]:
    """Tag each of the image's names into the registry and push it there."""
    header = auth or base64.urlsafe_b64encode(b"{}").decode()
    done = []
    for tag in built.spec.tags:
        repo, version = registry_name(registry, tag)
        client.post(f"/images/{urllib.parse.quote(built.image_id, safe=':')}/tag",
                    params={"repo": repo, "tag": version})
        out = io.StringIO()
        for msg in client.stream_json("POST", f"/images/{urllib.parse.quote(repo, safe='/:')}"
                                      "/push", params={"tag": version},
                                      headers={"X-Registry-Auth": header}):
            if isinstance(msg, dict) and msg.get("status"):
                out.write(str(msg["status"]) + "\n")
        done.append(f"{repo}:{version}")
    return done
