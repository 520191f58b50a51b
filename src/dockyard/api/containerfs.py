"""Container file system endpoints: changes (docker diff), export, commit.

The work is in dockyard.engine.containerfs; handlers run it in worker threads.
"""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO

from aiohttp import web

from dockyard.api.containers import check_config
from dockyard.api.server import (
    Routes,
    backend,
    byte_stream,
    json_response,
    query_bool,
    read_json,
)
from dockyard.engine import containerfs
from dockyard.errors import DockyardError, InvalidArgument


def register(routes: Routes) -> None:
    routes.get("/containers/{id}/changes", changes)
    routes.get("/containers/{id}/export", export)
    routes.post("/commit", commit)


def _engine(request: web.Request) -> Any:
    engine = backend(request).containers
    if engine is None:
        raise DockyardError("the container engine is not available")
    return engine


async def changes(request: web.Request) -> web.Response:
    out = await asyncio.to_thread(containerfs.changes, _engine(request),
                                  request.match_info["id"])
    return json_response(out)


async def export(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    c = await asyncio.to_thread(engine.get, request.match_info["id"])  # 404 before the body

    def work(out: BinaryIO) -> None:
        containerfs.export(engine, c.id, out)

    return await byte_stream(request, work)


def _reference(repo: str, tag: str) -> str | None:
    from dockyard.image.reference import parse

    if not repo:
        return None
    ref = parse(repo)
    if ref.digest:
        raise InvalidArgument("cannot commit to digest reference")
    if tag:
        ref = ref.repository.with_tag(tag)
    return str(ref)


async def commit(request: web.Request) -> web.Response:
    engine = _engine(request)
    q = request.query
    name = q.get("container", "")
    if not name:
        raise InvalidArgument("No container specified")  # never a 404: nothing was named
    reference = _reference(q.get("repo", ""), q.get("tag", ""))
    body = await read_json(request, required=False)
    config = check_config(body) if body is not None else {}
    config.pop("HostConfig", None)
    api = backend(request)

    def work() -> str:
        with api.write_lock:  # not while an image prune or rmi runs
            return containerfs.commit(
                engine, name, reference=reference, comment=q.get("comment", ""),
                author=q.get("author", ""), pause=query_bool(request, "pause", True),
                changes_=q.getall("changes", []), config=config)

    image_id = await asyncio.to_thread(work)
    return json_response({"Id": image_id}, 201)

