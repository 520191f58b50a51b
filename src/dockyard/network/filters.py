"""Docker's filters for networks: `network ls` (driver, id, label, name, scope,
type, dangling) and `network prune` (until, label, label!).

Docker matches `name` and `id` as unanchored regular expressions
(filters.Args.Match), labels as `key` or `key=value`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.network.store import NetworkRecord
FILTER_KEYS = ("driver", "id", "label", "name", "scope", "type", "dangling")


def _regex_match(pattern: str, text: str) -> bool:
    """Docker's filters.Match: exact, else an (unanchored) regular expression."""
    if pattern == text:
        return True
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def label_match(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return labels.get(key) == value if eq else key in labels


def parse_until(value: str) -> str:
    """A prune `until`: a Unix timestamp, an RFC 3339 time or a Go duration ago ('24h')
    -> the comparable `created` string."""
    now = datetime.datetime.now(datetime.UTC)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", value)
    try:
        if m:
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m[2]]
            when = now - datetime.timedelta(seconds=float(m[1]) * scale)
        elif re.fullmatch(r"\d+(\.\d+)?", value):
            when = datetime.datetime.fromtimestamp(float(value), datetime.UTC)
        else:
            when = datetime.datetime.fromisoformat(value)  # 3.11 reads a trailing Z
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"invalid filter 'until={value}'") from None
    when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}000Z"


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def validate_filters(filters: dict[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        for v in values:
            if key == "type" and v not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{v}'")
            if key == "dangling":
                _bool(key, v)


def match(net: NetworkRecord, filters: dict[str, list[str]], in_use: bool) -> bool:
    """Does `net` pass `network ls` filters (validated first with validate_filters)?"""
    checks: dict[str, Callable[[str], bool]] = {
        "driver": lambda v: v == net.driver,
        "id": lambda v: _regex_match(v, net.id),
        "name": lambda v: _regex_match(v, net.name),
        "scope": lambda v: v == "local",
        "type": lambda v: (v == "builtin") == net.builtin,
        "label": lambda v: label_match(net.labels, v),
        "dangling": lambda v: (not net.builtin and not in_use) == _bool("dangling", v),
    }
    for key, values in filters.items():
        if not values:
            continue
        if key == "label":  # every label filter must hold
            if not all(checks[key](v) for v in values):
                return False
        elif not any(checks[key](v) for v in values):
            return False
    return True
