"""The archive endpoints (docker cp): HEAD, GET and PUT /containers/{id}/archive.

The file system work is in dockyard.engine.archive; handlers run it in worker
threads. HEAD and GET answer the path's stat in X-Docker-Container-Path-Stat
(base64 JSON: name, size, mode as Go's os.FileMode, mtime, linkTarget).
"""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO

from aiohttp import web

from dockyard.api.server import (
    SERVER_HEADER,
    Routes,
    backend,
    body_reader,
    byte_stream,
    query_bool,
)
from dockyard.engine import archive
from dockyard.errors import DockyardError, InvalidArgument

STAT_HEADER = "X-Docker-Container-Path-Stat"


def register(routes: Routes) -> None:
    routes.head("/containers/{id}/archive", head)
    routes.get("/containers/{id}/archive", get)
    routes.add("PUT", "/containers/{id}/archive", put)


def _engine(request: web.Request) -> Any:
    engine = backend(request).containers
    if engine is None:
        raise DockyardError("the container engine is not available")
    return engine


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    return path


async def head(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(archive.stat_path, _engine(request),
                                   request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: archive.stat_header(info),
                                             "Server": SERVER_HEADER})


async def get(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    info, write = await asyncio.to_thread(archive.archive_path, engine,
                                          request.match_info["id"], _path(request))
    header = archive.stat_header(info)

    def work(out: BinaryIO) -> None:
        write(out)

    return await byte_stream(request, work, headers={STAT_HEADER: header})


async def put(request: web.Request) -> web.Response:
    engine = _engine(request)
    path = _path(request)
    stream = body_reader(request)
    await asyncio.to_thread(
        archive.extract_to_dir, engine, request.match_info["id"], path, stream,
        no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"),
        copy_uid_gid=query_bool(request, "copyUIDGID"))
    return web.Response(status=200, headers={"Server": SERVER_HEADER})
