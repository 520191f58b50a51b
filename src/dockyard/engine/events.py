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
