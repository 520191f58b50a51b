"""Network endpoints: list, inspect, create, remove, connect, disconnect, prune.

The work is the engine's network manager (dockyard.engine.networking); every
call is synchronous (SQLite, netlink, iptables) and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dockyard.api.server import (
    SERVER_HEADER,
    Routes,
    backend,
    json_response,
    query_filters,
    read_json,
)
from dockyard.errors import DockyardError, InvalidArgument


def register(routes: Routes) -> None:
    routes.get("/networks", list_networks)
    routes.get("/networks/", list_networks)
    routes.post("/networks/create", create)
    routes.post("/networks/prune", prune)
    routes.get("/networks/{id}", inspect)
    routes.delete("/networks/{id}", remove)
    routes.post("/networks/{id}/connect", connect)
    routes.post("/networks/{id}/disconnect", disconnect)


def _manager(request: web.Request) -> Any:
    engine = backend(request).containers
    manager = getattr(engine, "network", None)
    if manager is None or not hasattr(manager, "store"):
        raise DockyardError("networking is not available")
    return manager


async def list_networks(request: web.Request) -> web.Response:
    manager = _manager(request)
    return json_response(await asyncio.to_thread(manager.list_networks,
                                                 query_filters(request)))


async def inspect(request: web.Request) -> web.Response:
    manager = _manager(request)
    return json_response(await asyncio.to_thread(manager.inspect_network,
                                                 request.match_info["id"]))


async def create(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    net = await asyncio.to_thread(manager.create_network, body)
    return json_response({"Id": net.id, "Warning": ""}, 201)


async def remove(request: web.Request) -> web.Response:
    manager = _manager(request)
    await asyncio.to_thread(manager.remove_network, request.match_info["id"])
    return web.Response(status=204, headers={"Server": SERVER_HEADER})


def _container(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("no container specified")
    return ref


async def connect(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_json(request)
    ref = _container(body)
    epc = body.get("EndpointConfig") or {}
    if not isinstance(epc, dict):
        raise InvalidArgument("invalid JSON: EndpointConfig must be an object")
    await asyncio.to_thread(manager.connect, request.match_info["id"], ref, epc)
    return web.Response(status=200, headers={"Server": SERVER_HEADER})


async def disconnect(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_json(request)
    ref = _container(body)
    await asyncio.to_thread(manager.disconnect, request.match_info["id"], ref,
                            bool(body.get("Force")))
    return web.Response(status=200, headers={"Server": SERVER_HEADER})


async def prune(request: web.Request) -> web.Response:
    manager = _manager(request)
    names = await asyncio.to_thread(manager.prune_networks, query_filters(request))
    return json_response({"NetworksDeleted": names or None})
