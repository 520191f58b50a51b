"""Docker's JSON shapes for images: `docker image inspect` and `docker history`."""

from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.store import ImageRecord

EMPTY_CONFIG = formats.container_config({})


def inspect(image: ImageRecord, graph: dict | None = None) -> dict:
    """The object `docker image inspect` prints (API ImageInspect)."""
    cfg = image.config
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": image.parent or cfg.get("parent", "") or "",
        "Comment": cfg.get("comment", ""),
        "Created": image.created or formats.format_time(image.added),
        "Container": cfg.get("container", ""),
        "ContainerConfig": formats.container_config(cfg.get("container_config")),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": formats.container_config(cfg.get("config")),
        "Architecture": cfg.get("architecture", ""),
        **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
        "Os": cfg.get("os", ""),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": graph or {"Data": None, "Name": "overlay"},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "Metadata": {"LastTagTime": formats.format_time(image.added) if image.repo_tags
                     else "0001-01-01T00:00:00Z"},
    }


def history(image: ImageRecord) -> list[dict]:
    """`docker history` rows, newest first: Id (the image id on the top row, "<missing>"
    below, as for any pulled image), Created (unix), CreatedBy, Tags, Size, Comment."""
    entries = image.config.get("history") or []
    sizes = [layer.uncompressed_size for layer in image.layers]
    rows, layer_index = [], 0
    for entry in entries:
        empty = bool(entry.get("empty_layer"))
        size = 0
        if not empty and layer_index < len(sizes):
            size = sizes[layer_index]
            layer_index += 1
        rows.append({
            "Id": "<missing>",
            "Created": int(formats.parse_time(entry.get("created"))),
            "CreatedBy": entry.get("created_by", ""),
            "Tags": None,
            "Size": size,
            "Comment": entry.get("comment", ""),
        })
    if not rows:  # no history: one row per layer
        rows = [{"Id": "<missing>", "Created": int(image.created_unix), "CreatedBy": "",
                 "Tags": None, "Size": s, "Comment": ""} for s in sizes]
    rows.reverse()
    if rows:
        rows[0]["Id"] = image.id
        rows[0]["Tags"] = list(image.repo_tags) or None
    return rows


def short(image_id: str) -> str:
    return dg.short_id(image_id)
