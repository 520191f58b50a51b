"""Volume endpoints: list, create, inspect, remove, prune (the local driver).

The work is in dockyard.volume.service (the engine's `volumes`); handlers run
it in worker threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dockyard.api.server import (
    Routes,
    api_version,
    backend,
    json_response,
    query_bool,
    query_filters,
    read_json,
)
from dockyard.errors import DockyardError, InvalidArgument


def register(routes: Routes) -> None:
    routes.get("/volumes", list_volumes)
    routes.post("/volumes/create", create)
    routes.post("/volumes/prune", prune)
    routes.get("/volumes/{name}", inspect)
    routes.delete("/volumes/{name}", remove)


def _emit(request: web.Request, action: str, name: str) -> None:
    """docker's volume events (create, destroy) on the engine's event bus."""
    engine = backend(request).containers
    events = getattr(engine, "events", None)
    if events is not None:
        events.emit("volume", action, name, {"driver": "local"})


def _volumes(request: web.Request) -> Any:
    engine = backend(request).containers
    if engine is None or getattr(engine, "volumes", None) is None:
        raise DockyardError("the volume service is not available")
    return engine.volumes


async def list_volumes(request: web.Request) -> web.Response:
    svc = _volumes(request)
    filters = query_filters(request)
    vols = await asyncio.to_thread(svc.list, filters)
    return json_response({"Volumes": [v.to_json() for v in vols], "Warnings": []})


def _strings(body: dict, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"invalid JSON: {key} must be an object of strings")
    return value


async def create(request: web.Request) -> web.Response:
    svc = _volumes(request)
    body = await read_json(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    name = body.get("Name") or ""
    driver = body.get("Driver") or "local"
    if not isinstance(name, str) or not isinstance(driver, str):
        raise InvalidArgument("invalid JSON: Name and Driver must be strings")
    opts, labels = _strings(body, "DriverOpts"), _strings(body, "Labels")
    existed = bool(name) and await asyncio.to_thread(svc.store.exists, name)
    v = await asyncio.to_thread(svc.create, name or None, driver, opts, labels)
    if not existed:
        _emit(request, "create", v.name)
    return json_response(v.to_json(), 201)


async def inspect(request: web.Request) -> web.Response:
    svc = _volumes(request)
    return json_response(await asyncio.to_thread(svc.inspect, request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    svc = _volumes(request)
    name = request.match_info["name"]
    existed = await asyncio.to_thread(svc.store.exists, name)
    await asyncio.to_thread(svc.remove, name, query_bool(request, "force"))
    if existed:
        _emit(request, "destroy", name)
    return web.Response(status=204)


def _older_than_1_42(request: web.Request) -> bool:
    parts = tuple(int(p) for p in api_version(request).split(".") if p.isdigit())
    return parts < (1, 42)


async def prune(request: web.Request) -> web.Response:
    svc = _volumes(request)
    filters = query_filters(request)
    # API < 1.42 (what we claim): every unused volume, as dockerd does for old clients;
    # newer ones prune anonymous volumes unless the "all" filter says otherwise
    deleted, reclaimed = await asyncio.to_thread(svc.prune, filters,
                                                 _older_than_1_42(request))
    for name in deleted:
        _emit(request, "destroy", name)
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})
