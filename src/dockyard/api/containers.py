"""Container endpoints: create, list, inspect, the lifecycle verbs, wait, logs, top,
stats, remove, rename, resize, prune; attach is in api/attach.py.

The Engine (dockyard.engine.engine) is synchronous: every call runs in a
worker thread. "Already started/stopped" (the engine's NotModified) answers
304 with no body, as dockerd does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from dockyard.api.attach import (
    MULTIPLEXED,
    RAW,
    ThreadFeed,
    attach,
    close_transport,
    on_stopping,
)
from dockyard.api.server import (
    SERVER_HEADER,
    Routes,
    api_version,
    backend,
    json_response,
    query_bool,
    query_filters,
    query_int,
    read_json,
)
from dockyard.engine.engine import NotModified
from dockyard.engine.model import parse_time
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound

STATS_INTERVAL = 1.0
PRUNE_FILTERS = ("until", "label", "label!")


def register(routes: Routes) -> None:
    routes.post("/containers/create", create)
    routes.get("/containers/json", list_containers)
    routes.post("/containers/prune", prune)
    routes.get("/containers/{id}/json", inspect)
    routes.post("/containers/{id}/start", start)
    routes.post("/containers/{id}/stop", stop)
    routes.post("/containers/{id}/restart", restart)
    routes.post("/containers/{id}/kill", kill)
    routes.post("/containers/{id}/pause", _verb("pause"))
    routes.post("/containers/{id}/unpause", _verb("unpause"))
    routes.post("/containers/{id}/wait", wait)
    routes.post("/containers/{id}/rename", rename)
    routes.post("/containers/{id}/update", update)
    routes.post("/containers/{id}/resize", resize)
    routes.post("/containers/{id}/attach", attach)
    routes.get("/containers/{id}/logs", logs)
    routes.get("/containers/{id}/top", top)
    routes.get("/containers/{id}/stats", stats)
    routes.delete("/containers/{id}", remove)


def _engine(request: web.Request) -> Any:
    engine = backend(request).containers
    if engine is None:
        raise DockyardError("the container engine is not available")
    return engine


def _no_content(status: int = 204) -> web.Response:
    return web.Response(status=status, headers={"Server": SERVER_HEADER})


async def _call(fn: Callable[..., Any], *args: Any, **kw: Any) -> web.Response:
    """Run a lifecycle call: 204, or 304 when there was nothing to do."""
    try:
        await asyncio.to_thread(fn, *args, **kw)
    except NotModified:
        return _no_content(304)
    return _no_content()


def in_thread(fn: Callable[[], Any]) -> asyncio.Future:
    """Run a long blocking call (wait, follow) in its own thread, not the shared pool:
    many of them must not starve the other requests."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting handler
            loop.call_soon_threadsafe(settle, False, e)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=run, daemon=True, name="api-wait").start()
    return fut


async def start(request: web.Request) -> web.Response:
    """dockerd removes an AutoRemove container whose start failed (the CLI waits for it)."""
    engine = _engine(request)
    ref = request.match_info["id"]
    try:
        return await _call(engine.start, ref)
    except DockyardError:
        c = await asyncio.to_thread(engine.get, ref)
        if c.host_config.get("AutoRemove") and not c.state.Running:
            try:
                await asyncio.to_thread(engine.remove, c.id, force=True)
            except DockyardError:
                pass
        raise


def _verb(name: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return await _call(getattr(_engine(request), name), request.match_info["id"])
    handler.__name__ = name
    return handler


# -- create ----------------------------------------------------------------------------

_STR_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_STRINGS = ("Image", "Hostname", "Domainname", "User", "WorkingDir", "StopSignal")
_BOOLS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
          "NetworkDisabled")


def check_config(body: Any) -> dict:
    """The create body's Config fields the engine reads, type-checked (400 otherwise)."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the body must be an object")
    for key in _STR_LISTS:
        value = body.get(key)
        if isinstance(value, str) and key in ("Cmd", "Entrypoint"):
            body[key] = [value]  # docker's StrSlice takes a string too
        elif value is not None and not (isinstance(value, list)
                                        and all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"invalid JSON: {key} must be a list of strings")
    for key in _STRINGS:
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidArgument(f"invalid JSON: {key} must be a string")
    for key in _BOOLS:
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise InvalidArgument(f"invalid JSON: {key} must be a boolean")
    labels = body.get("Labels")
    if labels is not None and not (isinstance(labels, dict) and all(
            isinstance(v, str) for v in labels.values())):
        raise InvalidArgument("invalid JSON: Labels must be an object of strings")
    for key in ("HostConfig", "NetworkingConfig", "ExposedPorts", "Volumes", "Healthcheck"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise InvalidArgument(f"invalid JSON: {key} must be an object")
    if body.get("StopTimeout") is not None and (not isinstance(body["StopTimeout"], int)
                                                or isinstance(body["StopTimeout"], bool)):
        raise InvalidArgument("invalid JSON: StopTimeout must be an integer")
    return body


async def create(request: web.Request) -> web.Response:
    engine = _engine(request)
    body = check_config(await read_json(request))
    host_config = body.pop("HostConfig", None) or {}
    networking = body.pop("NetworkingConfig", None)
    log = host_config.get("LogConfig") if isinstance(host_config, dict) else None
    if isinstance(host_config, dict) and not (log or {}).get("Type"):
        # docker: no log driver named means the daemon's log-driver (and its log-opts)
        host_config["LogConfig"] = {"Type": getattr(engine, "log_driver", "json-file"),
                                    "Config": (log or {}).get("Config") or {}}
    name = request.query.get("name") or None
    cid = await asyncio.to_thread(engine.create, body, host_config, name, networking)
    return json_response({"Id": cid, "Warnings": []}, 201)


# -- read side -----------------------------------------------------------------------------

async def list_containers(request: web.Request) -> web.Response:
    engine = _engine(request)
    out = await asyncio.to_thread(engine.list, query_bool(request, "all"),
                                  query_filters(request), query_int(request, "limit", -1),
                                  query_bool(request, "size"))
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    engine = _engine(request)
    return json_response(await asyncio.to_thread(engine.inspect, request.match_info["id"],
                                                 query_bool(request, "size")))


async def top(request: web.Request) -> web.Response:
    engine = _engine(request)
    ps_args = request.query.get("ps_args") or "-ef"
    return json_response(await asyncio.to_thread(engine.top, request.match_info["id"],
                                                 ps_args))


# -- lifecycle --------------------------------------------------------------------------------

def _timeout(request: web.Request) -> int | None:
    value = query_int(request, "t")
    return query_int(request, "timeout") if value is None else value


async def stop(request: web.Request) -> web.Response:
    return await _call(_engine(request).stop, request.match_info["id"], _timeout(request))


async def restart(request: web.Request) -> web.Response:
    return await _call(_engine(request).restart, request.match_info["id"], _timeout(request))


async def kill(request: web.Request) -> web.Response:
    sig = request.query.get("signal") or "SIGKILL"
    return await _call(_engine(request).kill, request.match_info["id"], sig)


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise InvalidArgument("Neither old nor new names may be empty")
    return await _call(_engine(request).rename, request.match_info["id"], name)


async def remove(request: web.Request) -> web.Response:
    return await _call(_engine(request).remove, request.match_info["id"],
                       force=query_bool(request, "force"), volumes=query_bool(request, "v"))


async def update(request: web.Request) -> web.Response:
    engine = _engine(request)
    body = await read_json(request)
    warnings = await asyncio.to_thread(engine.update, request.match_info["id"], body)
    return json_response({"Warnings": warnings})


async def resize(request: web.Request) -> web.Response:
    engine = _engine(request)
    h, w = query_int(request, "h", 0), query_int(request, "w", 0)
    c = await asyncio.to_thread(engine.get, request.match_info["id"])
    if not c.state.Running:
        raise Conflict(f"Container {c.id} is not running")
    if c.config.get("Tty"):
        await asyncio.to_thread(engine.monitor.request,
                                {"op": "resize", "id": c.id, "h": h, "w": w}, 10)
    engine.emit(c, "resize", height=h, width=w)
    return _no_content(200)


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers go out once the waiter is registered (the CLI starts the container only
    then); the body once the condition holds."""
    engine = _engine(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    c = await asyncio.to_thread(engine.get, request.match_info["id"])
    if condition == "removed":  # the exit code first (removal forgets it), then the removal
        first = "next-exit" if c.state.Running or c.state.Status == "created" \
            else "not-running"
        exited = await asyncio.to_thread(engine.waiter, c.id, first)

        def work() -> int:
            code = c.state.ExitCode
            try:
                code = exited(None)
                engine.wait(c.id, "removed")
            except NotFound:
                pass
            return code
    else:
        work = await asyncio.to_thread(engine.waiter, c.id, condition)
    task = in_thread(work)  # registered: the headers may go out now
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Server": SERVER_HEADER})
    await resp.prepare(request)
    watcher = on_stopping(request, lambda: None)
    await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():  # the daemon shuts down: cut the connection, as dockerd
        close_transport(request)()
        return resp
    watcher.cancel()
    try:
        code = task.result()
        body: dict = {"StatusCode": code}
    except DockyardError as e:
        body = {"StatusCode": -1, "Error": {"Message": str(e)}}
    try:
        await resp.write(json.dumps(body).encode() + b"\n")
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return resp


# -- logs, stats ----------------------------------------------------------------------------------

def _unix_time(request: web.Request, name: str) -> float | None:
    value = request.query.get(name, "")
    if value in ("", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return parse_time(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r}") from None


async def logs(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    want = {"stdout": query_bool(request, "stdout"), "stderr": query_bool(request, "stderr")}
    if not any(want.values()):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("", "all") else query_int(request, "tail")
    c = await asyncio.to_thread(engine.get, request.match_info["id"])
    tty = bool(c.config.get("Tty"))
    stop = threading.Event()
    entries = await asyncio.to_thread(
        engine.logs, c.id, follow=query_bool(request, "follow"),
        since=_unix_time(request, "since"), until=_unix_time(request, "until"), tail=tail,
        timestamps=query_bool(request, "timestamps"), stop=stop)
    # batched and bounded: one cross-thread hand-off per line made 100k lines take 13 s,
    # and the end marker could be lost on a full queue (the reply hung)
    feed = ThreadFeed(asyncio.get_running_loop())

    def pump() -> None:
        try:
            for stream, line, _ts in entries:
                if stop.is_set():
                    return
                if want.get(stream):
                    data = line.encode()
                    if not tty:
                        data = bytes([2 if stream == "stderr" else 1, 0, 0, 0]) + \
                            len(data).to_bytes(4, "big") + data
                    if not feed.put(data):
                        return
        finally:
            feed.finish()

    version = tuple(int(p) for p in api_version(request).split(".") if p.isdigit())
    resp = web.StreamResponse(headers={
        "Content-Type": MULTIPLEXED if not tty and version >= (1, 42) else RAW,
        "Server": SERVER_HEADER})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    worker = in_thread(pump)
    watcher = on_stopping(request, lambda: (stop.set(), close_transport(request)()))
    try:
        while (item := await feed.get()) is not None:
            await resp.write(item)
        await resp.write_eof()
    except ConnectionResetError:
        pass
    finally:
        watcher.cancel()
        stop.set()
        feed.close()  # unblocks the worker; it sees `stop` and ends
        del worker
    return resp


async def stats(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    ref = request.match_info["id"]
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot")
    previous = await asyncio.to_thread(engine.stats, ref)
    if not stream:
        if not one_shot:
            await asyncio.sleep(0.5)  # a second sample: precpu_stats for the CPU %
            previous = await asyncio.to_thread(engine.stats, ref, previous)
        return json_response(previous)
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Server": SERVER_HEADER})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    watcher = on_stopping(request, close_transport(request))
    try:
        while True:
            await resp.write(json.dumps(previous).encode() + b"\n")
            await asyncio.sleep(STATS_INTERVAL)
            c = await asyncio.to_thread(engine.get, ref)
            previous = await asyncio.to_thread(engine.stats, c.id, previous)
            if not c.state.Running:
                await resp.write(json.dumps(previous).encode() + b"\n")
                break
        await resp.write_eof()
    except (ConnectionResetError, NotFound):
        pass
    finally:
        watcher.cancel()
    return resp


# -- prune --------------------------------------------------------------------------------------

def _prune(engine: Any, filters: dict[str, list[str]]) -> dict:
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    until = None
    if filters.get("until"):
        value = filters["until"][0]
        try:
            until = float(value)
        except ValueError:
            until = parse_time(value)
    deleted, reclaimed = [], 0
    for summary in engine.list(all=True):
        if summary["State"] not in ("created", "exited", "dead"):
            continue
        labels = summary.get("Labels") or {}
        if not all(_label_ok(labels, v) for v in filters.get("label", [])):
            continue
        if any(_label_ok(labels, v) for v in filters.get("label!", [])):
            continue
        if until is not None and summary["Created"] >= until:
            continue
        try:
            size = engine.images.snapshots.usage(f"container-{summary['Id']}")
        except (DockyardError, OSError):
            size = 0
        try:
            engine.remove(summary["Id"])
        except (NotFound, Conflict):
            continue
        deleted.append(summary["Id"])
        reclaimed += size
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _label_ok(labels: dict, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


async def prune(request: web.Request) -> web.Response:
    engine = _engine(request)
    out = await asyncio.to_thread(_prune, engine, query_filters(request))
    engine.events.emit("container", "prune", "",
                       {"reclaimed": str(out.get("SpaceReclaimed") or 0)})
    return json_response(out)
