"""GET /events: docker's event stream (one JSON message per line).

The stream replays the bus's ring from `since`, then follows new events until
`until` passes, the client leaves or the daemon stops. With an `until` in the
past only the recorded events are sent. Matching is engine/events.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from dockyard.api.server import SERVER_HEADER, Routes, backend, query_filters
from dockyard.engine import events as ev
from dockyard.errors import DockyardError, InvalidArgument

QUEUE_LIMIT = 4096  # a client this far behind loses its oldest events
IDLE_CHECK = 1.0  # seconds between checks that a quiet stream's client is still there


def register(routes: Routes) -> None:
    routes.get("/events", events)


def _bus(request: web.Request) -> ev.EventBus:
    engine = backend(request).containers
    if engine is None:
        raise DockyardError("the container engine is not available")
    return engine.events


def _window(request: web.Request) -> tuple[int | None, int | None]:
    since = ev.parse_timestamp(request.query.get("since", ""), "since")
    until = ev.parse_timestamp(request.query.get("until", ""), "until")
    if since is not None and until is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query['since']}) cannot be after "
                              f"`until` time ({request.query['until']})")
    return since, until


async def events(request: web.Request) -> web.StreamResponse:
    filters = query_filters(request)
    ev.check_filters(filters)
    since, until = _window(request)
    bus = _bus(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def deliver(msg: dict) -> None:  # the publisher's thread: never blocks
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is gone
            loop.call_soon_threadsafe(_offer, queue, msg)

    past = bus.subscribe(deliver)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Server": SERVER_HEADER})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        # docker replays only when since or until is given
        replay = [m for m in past if (since is not None or until is not None)
                  and ev.in_window(m, since, until) and ev.matches(m, filters)]
        with contextlib.suppress(ConnectionResetError):
            for msg in replay:
                await resp.write(_line(msg))
            if until is None or until > time.time_ns():
                await _follow(request, resp, queue, filters, since, until)
            await resp.write_eof()
        return resp
    finally:
        bus.unsubscribe(deliver)


def _offer(queue: asyncio.Queue, msg: dict) -> None:
    if queue.qsize() >= QUEUE_LIMIT:
        queue.get_nowait()
    queue.put_nowait(msg)


async def _follow(request: web.Request, resp: web.StreamResponse, queue: asyncio.Queue,
                  filters: dict[str, list[str]], since: int | None,
                  until: int | None) -> None:
    """Send new events until `until`, the client leaves or the daemon stops."""
    stopping = backend(request).stopping
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        while not stopping.is_set():
            timeout = IDLE_CHECK if until is None else \
                min(IDLE_CHECK, (until - time.time_ns()) / 1e9)
            if timeout <= 0 or request.transport is None or request.transport.is_closing():
                return
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, stop_wait}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                continue
            msg = get.result()
            if ev.in_window(msg, since, until) and ev.matches(msg, filters):
                await resp.write(_line(msg))
    finally:
        stop_wait.cancel()


def _line(msg: dict) -> bytes:
    return (json.dumps(msg) + "\n").encode()


def emit_event(request: web.Request, type_: str, action: str, actor_id: str,
               attributes: dict[str, str]) -> None:
    """Publish an event from a handler (any thread); nothing without an engine."""
    engine = backend(request).containers
    if engine is not None:
        engine.events.emit(type_, action, actor_id, attributes)


def image_event(request: web.Request, action: str, actor_id: str, name: str = "") -> None:
    """An image event (pull, push, tag, untag, delete, import, load, save)."""
    emit_event(request, "image", action, actor_id, {"name": name or actor_id})
