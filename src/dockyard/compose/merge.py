"""The Compose Specification's merge rules, on canonical (normalized) documents:
an override file over a base, and a service over the one it `extends`.

- mappings merge key by key, recursively (environment, labels, networks, deploy, ...);
- command, entrypoint and healthcheck.test are replaced, like any scalar;
- ports, expose, dns, cap_add, ... are appended without duplicates;
- volumes merge by target, secrets and configs by target;
- YAML tags `!reset` (drop the inherited value) and `!override` (replace instead of
  merging) apply at the path they were written, recorded by the loader in `tags`.
"""

from __future__ import annotations

import copy
from typing import Any

from dockyard.compose.normalize import mount_target

REPLACED = {"command", "entrypoint"}
BY_TARGET = {"volumes", "secrets", "configs", "devices"}

Tags = dict[tuple, str]


def _key(item: Any) -> Any:
    import json

    return json.dumps(item, sort_keys=True) if isinstance(item, dict | list) else item


def merge_lists(name: str, base: list, over: list) -> list:
    if name in BY_TARGET:
        out: dict[Any, Any] = {}
        for item in base + over:
            target = item.get("target") if isinstance(item, dict) else item
            if name in ("secrets", "configs") and isinstance(item, dict):
                target = mount_target(name, item)  # a config may leave it implicit
            out.pop(target, None)  # the override's entry, at its own position
            out[target] = item
        return list(out.values())
    seen: dict[Any, Any] = {}
    for item in base + over:
        seen.setdefault(_key(item), item)
    return list(seen.values())


def merge(base: Any, over: Any, path: tuple = (), tags: Tags | None = None) -> Any:
    """`over` merged onto `base` (neither is modified)."""
    tags = tags or {}
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            here = path + (key,)
            tag = tags.get(here)
            if tag == "reset":
                out.pop(key, None)
                continue
            if tag == "override" or key not in out or key in REPLACED and len(path) == 2 \
                    and path[0] == "services":
                out[key] = copy.deepcopy(value)
                continue
            if here[-2:] == ("healthcheck", "test"):
                out[key] = copy.deepcopy(value)
                continue
            out[key] = merge(out[key], value, here, tags)
        for here, tag in tags.items():  # !reset on a key the override does not set
            if tag == "reset" and here[:-1] == path and here[-1] not in over:
                out.pop(here[-1], None)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return merge_lists(str(path[-1]) if path else "", base, over)
    return copy.deepcopy(over)


def merge_service(base: dict[str, Any], over: dict[str, Any], tags: Tags | None = None,
                  prefix: tuple = ()) -> dict[str, Any]:
    """A service over another (override files and extends): `prefix` is the service's
    path in its file, for the tags."""
    return merge(base, over, prefix, tags)
