"""The daemon's event bus: what `docker events` shows.

Every state change of a container, image, network or volume is published here
as docker's event message. The bus keeps the most recent events in a ring (for
`since`) and hands new ones to subscribers (one queue per `GET /events` stream).
Publishing never blocks: a subscriber too slow to keep up loses its oldest
events, not the engine its progress.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

RING_SIZE = 1024  # docker keeps the last 256; more costs nothing here


def message(type_: str, action: str, actor_id: str, attributes: dict | None = None,
            scope: str = "local") -> dict:
    """docker's events.Message, including the legacy status/id/from fields."""
    now_ns = time.time_ns()
    msg = {"Type": type_, "Action": action,
           "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
           "scope": scope, "time": now_ns // 1_000_000_000, "timeNano": now_ns}
    if type_ == "container" or (type_ == "image" and action in
                                ("pull", "push", "tag", "untag", "delete", "import",
                                 "load", "save")):
        msg["status"] = action
        msg["id"] = actor_id
        image = msg["Actor"]["Attributes"].get("image")
        if type_ == "container" and image:
            msg["from"] = image
    return msg


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ring: collections.deque[dict] = collections.deque(maxlen=RING_SIZE)
        self._subscribers: list[Callable[[dict], None]] = []

    def emit(self, type_: str, action: str, actor_id: str,
             attributes: dict | None = None, scope: str = "local") -> dict:
        msg = message(type_, action, actor_id, attributes, scope)
        with self._lock:
            self._ring.append(msg)
            subscribers = list(self._subscribers)
        for deliver in subscribers:
            deliver(msg)
        return msg

    def subscribe(self, deliver: Callable[[dict], None]) -> list[dict]:
        """Register `deliver` (called in the publisher's thread; it must not block) and
        return the events recorded so far, atomically with the registration."""
        with self._lock:
            self._subscribers.append(deliver)
            return list(self._ring)

    def unsubscribe(self, deliver: Callable[[dict], None]) -> None:
        with self._lock:
            if deliver in self._subscribers:
                self._subscribers.remove(deliver)


# -- filters (docker's daemon/events filter) ----------------------------------------------

FILTER_KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
               "plugin", "scope", "secret", "service", "type", "volume")
EVENT_TYPES = ("builder", "config", "container", "daemon", "image", "network", "node",
               "plugin", "secret", "service", "volume")
# an `event` filter holding one of these matches the action by prefix
# ("health_status" matches "health_status: healthy"), as docker does (moby #25798)
PREFIX_ACTIONS = ("health_status", "exec_create", "exec_start")


def check_filters(filters: dict[str, list[str]]) -> None:
    """docker's 400s for an events filter it does not know."""
    from dockyard.errors import InvalidArgument

    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        for value in values:
            if key == "type" and value not in EVENT_TYPES:
                raise InvalidArgument(f"invalid filter 'type={value}'")
            if key == "scope" and value not in ("local", "swarm"):
                raise InvalidArgument(f"invalid filter 'scope={value}'")


def _exact(filters: dict[str, list[str]], key: str, *sources: str) -> bool:
    values = filters.get(key)
    return not values or any(s in values for s in sources if s)


def _fuzzy(filters: dict[str, list[str]], key: str, *sources: str) -> bool:
    """Equal, or a prefix of one of the sources (an id prefix, a name prefix)."""
    values = filters.get(key)
    return not values or any(s.startswith(v) for v in values for s in sources if s)


def _strip_tag(ref: str) -> str:
    """busybox:latest -> busybox, registry:5000/x:1 -> registry:5000/x (not digests)."""
    name, _, _digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _labels_match(filters: dict[str, list[str]], attributes: dict) -> bool:
    for wanted in filters.get("label") or []:
        key, sep, value = wanted.partition("=")
        if key not in attributes or (sep and attributes[key] != value):
            return False
    return True


def _name_match(filters: dict[str, list[str]], msg: dict, type_: str) -> bool:
    """The container/network/volume/daemon filters: id or name, by prefix (whatever the
    event's type, as docker: a container filter hides image events)."""
    attrs = msg["Actor"]["Attributes"]
    return _fuzzy(filters, type_, msg["Actor"]["ID"], attrs.get("name", ""))


def _image_match(filters: dict[str, list[str]], msg: dict) -> bool:
    """An image filter keeps the image's own events and those of containers made from it."""
    actor = msg["Actor"]
    name = actor["Attributes"].get("name" if msg.get("Type") == "image" else "image", "")
    return _exact(filters, "image", actor["ID"], name, _strip_tag(actor["ID"]),
                  _strip_tag(name))


def _event_match(filters: dict[str, list[str]], action: str) -> bool:
    values = filters.get("event") or []
    if any(v in PREFIX_ACTIONS for v in values):
        return _fuzzy(filters, "event", action)
    return _exact(filters, "event", action)


def matches(msg: dict, filters: dict[str, list[str]]) -> bool:
    """Whether `msg` passes docker's events `filters` (all keys must match; within a key,
    any value)."""
    attrs = msg["Actor"]["Attributes"]
    return (_event_match(filters, msg.get("Action", ""))
            and _exact(filters, "type", msg.get("Type", ""))
            and _exact(filters, "scope", msg.get("scope", ""))
            and all(_name_match(filters, msg, t) for t in
                    ("daemon", "container", "network", "volume", "plugin", "node",
                     "service", "secret", "config"))
            and _image_match(filters, msg)
            and _labels_match(filters, attrs))


def parse_timestamp(text: str, name: str = "since") -> int | None:
    """The API's since/until: unix seconds with an optional fraction ("1700000000.5",
    as the docker CLI sends) -> nanoseconds; None for absent or zero."""
    from dockyard.errors import InvalidArgument

    text = (text or "").strip()
    if not text:
        return None
    secs, _, frac = text.partition(".")
    if not secs.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        raise InvalidArgument(f"invalid value for {name}: {text!r} (want seconds[.nanoseconds])")
    ns = int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    return ns or None


def in_window(msg: dict, since_ns: int | None, until_ns: int | None) -> bool:
    t = msg.get("timeNano", 0)
    return (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns)


def container_attributes(name: str, image: str, labels: dict | None,
                         extra: dict | None = None) -> dict:
    """docker's Actor.Attributes of a container event: its labels, then image (the name
    the user gave) and name (no leading "/"), then the action's own; sorted like Go's
    JSON maps."""
    attrs = {str(k): str(v) for k, v in (labels or {}).items()}
    attrs["image"] = image
    attrs["name"] = name.lstrip("/")
    attrs.update({k: str(v) for k, v in (extra or {}).items()})
    return dict(sorted(attrs.items()))


def exec_action(verb: str, argv: list[str]) -> str:
    """docker's "exec_create: <entrypoint> <args>" (with its space even without args)."""
    return f"{verb}: {argv[0] if argv else ''} {' '.join(argv[1:])}"
