"""`docker ps`: filters and docker's ContainerSummary shape."""

from __future__ import annotations

import re

from dockyard.engine.model import Container, parse_time, status_text
from dockyard.errors import InvalidArgument
from dockyard.network.ports import summary_ports

FILTERS = ("status", "name", "label", "ancestor", "exited", "id", "before", "since", "health")
HEALTH = ("starting", "healthy", "unhealthy", "none")


def summary(c: Container) -> dict:
    path, args = c.command()
    # dockerd quotes the arguments holding a space (not the path), nothing else
    command = " ".join([path, *(f"'{a}'" if " " in a else a for a in args)]) if args \
        else path
    return {
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image_name,
        "ImageID": c.image,
        "Command": command,
        "Created": int(parse_time(c.created)),
        "Ports": summary_ports((c.extra.get("network_settings") or {}).get("Ports")),
        "Labels": dict(c.config.get("Labels") or {}),
        "State": c.state.Status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "none"},
        "NetworkSettings": {"Networks": (c.extra.get("network_settings") or {}).get(
            "Networks") or {}},
        "Mounts": list(c.extra.get("mounts") or []),
    }


def _label_match(labels: dict, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def matches(c: Container, filters: dict[str, list[str]], image_ids: dict[str, str],
            by_ref: dict[str, Container]) -> bool:
    """`image_ids` maps each ancestor filter value to an image id (or "")."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "status":
            if c.state.Status not in values:
                return False
        elif key == "name":
            if not any(re.search(v, c.name[1:]) for v in values):
                return False
        elif key == "label":
            labels = c.config.get("Labels") or {}
            if not all(_label_match(labels, v) for v in values):
                return False
        elif key == "ancestor":
            if not any(c.image == image_ids.get(v) or c.image_name == v for v in values):
                return False
        elif key == "exited":
            if c.state.Running or c.state.Status not in ("exited", "dead"):
                return False
            if str(c.state.ExitCode) not in values:
                return False
        elif key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        elif key == "health":
            if (c.state.Health or {}).get("Status", "none") not in values:
                return False
        elif key in ("before", "since"):
            for v in values:
                other = by_ref.get(v)
                if other is None:
                    raise InvalidArgument(f"No such container: {v}")
                if key == "before" and not c.created < other.created:
                    return False
                if key == "since" and not c.created > other.created:
                    return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def check_filters(filters: dict[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "status":
            for v in values:
                if v not in ("created", "restarting", "running", "removing", "paused",
                             "exited", "dead"):
                    raise InvalidArgument(f"invalid filter 'status={v}'")
        if key == "exited":
            for v in values:
                if not v.lstrip("-").isdigit():
                    raise InvalidArgument(f"invalid filter 'exited={v}'")
        if key == "health":
            for v in values:
                if v not in HEALTH:
                    raise InvalidArgument(f"Unrecognised filter value for health: {v}")
