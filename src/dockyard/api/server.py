"""The aiohttp application of the Engine API, and the plumbing handlers share.

Every route is reachable unversioned and under /v<major>.<minor>/: a version
between MIN_API_VERSION and API_VERSION is accepted, anything else gets
docker's 400 message. Errors become docker's JSON `{"message": ...}` with the
status of the DockyardError (404, 409, 400, ...); unknown paths answer 404
"page not found" like dockerd.

The services below the API are synchronous (SQLite, tar streams, asyncio.run
for the registry client), so handlers run them in worker threads and connect
them to the HTTP exchange with three bridges:

- `json_stream`: progress messages (dicts) emitted by the worker are written
  as a JSON stream; an error before anything useful was written becomes a
  normal error response, a later one an in-stream {"error", "errorDetail"}.
- `BodyReader`: the request body as a blocking file object for the worker.
- `byte_stream`: a blocking file object the worker writes into (save's tar),
  with back-pressure, sent as the response body.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aiohttp import web

from dockyard import __version__
from dockyard.errors import DockyardError, InvalidArgument

log = logging.getLogger("dockyard.api")

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
AREAS = ("dockyard.api.system", "dockyard.api.images", "dockyard.api.containers",
         "dockyard.api.exec", "dockyard.api.events", "dockyard.api.volumes",
         "dockyard.api.archive", "dockyard.api.networks", "dockyard.api.build",
         "dockyard.api.containerfs")  # keep last: its prune stubs yield to real areas
SERVER_HEADER = f"Dockyard/{__version__} (linux)"
_VERSION_SEGMENT = r"/{_api_version:v[0-9][0-9.]*}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiBackend:
    """What handlers reach the engine through (one per daemon)."""

    images: Any  # dockyard.image.service.ImageService
    data_root: str
    containers: Any = None  # dockyard.engine.engine.Engine
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    debug: bool = False
    live_restore: bool = False
    hosts: tuple[str, ...] = ()
    started: float = field(default_factory=time.time)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


BACKEND = web.AppKey("backend", ApiBackend)


def backend(request: web.Request) -> ApiBackend:
    return request.app[BACKEND]


# -- routes ----------------------------------------------------------------------------

class Routes:
    """Adds each route twice: unversioned and under the /v1.xx prefix."""

    def __init__(self, app: web.Application):
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, _VERSION_SEGMENT + path, handler)

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def head(self, path: str, handler: Handler) -> None:
        self.add("HEAD", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self.add("DELETE", path, handler)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", text):
        return None
    return tuple(int(p) for p in text.split("."))


def check_version(requested: str) -> None:
    """docker's answers for a /vX.Y prefix out of range."""
    wanted = _version_tuple(requested)
    if wanted is None:
        raise InvalidArgument(f"invalid API version: {requested}")
    if wanted > _version_tuple(API_VERSION):  # type: ignore[operator]
        raise InvalidArgument(f"client version {requested} is too new. Maximum supported "
                              f"API version is {API_VERSION}")
    if wanted < _version_tuple(MIN_API_VERSION):  # type: ignore[operator]
        raise InvalidArgument(f"client version {requested} is too old. Minimum supported "
                              f"API version is {MIN_API_VERSION}, please upgrade your client "
                              "to a newer version")


def api_version(request: web.Request) -> str:
    """The version the client asked for (the prefix), else ours."""
    prefix = request.match_info.get("_api_version")
    return prefix[1:] if prefix else API_VERSION


# -- errors ----------------------------------------------------------------------------

def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with the Content-Type docker's client insists on: exactly
    "application/json" (no charset), else it shows error bodies raw."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", "Server": SERVER_HEADER})


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        prefix = request.match_info.get("_api_version")
        if prefix:
            check_version(prefix[1:])
        response = await handler(request)
    except DockyardError as e:
        status = e.status if 400 <= e.status < 600 else 500
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.path, e)
        return error_response(status, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = "page not found" if e.status == 404 else (e.text or e.reason)
        if e.status == 405:
            message = "method not allowed"
        return error_response(e.status, message.removeprefix(f"{e.status}: "))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:  # a bug: say so, keep serving
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {type(e).__name__}: {e}")
    if not response.prepared:
        response.headers.setdefault("Server", SERVER_HEADER)
    return response


# -- request helpers ---------------------------------------------------------------------

FALSE_WORDS = ("", "0", "no", "false", "none")


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """docker's BoolValue: absent -> default; "", 0, no, false, none -> false."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in FALSE_WORDS


def query_int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r} (not an integer)") from None


def query_filters(request: web.Request) -> dict[str, list[str]]:
    """The `filters` parameter: {"key": ["v", ...]} or the older {"key": {"v": true}}."""
    text = request.query.get("filters", "")
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid filter: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid filter: not a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            raise InvalidArgument(f"invalid filter: values of {key!r} must be strings")
    return out


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    data = await request.read()
    if not data.strip():
        if required:
            raise InvalidArgument("bad parameter: request body is empty")
        return None
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None


# -- worker-thread bridges ---------------------------------------------------------------

def _stream_response(content_type: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Server": SERVER_HEADER})
    resp.enable_chunked_encoding()
    return resp


def error_message(exc: BaseException) -> str:
    if isinstance(exc, DockyardError):
        return str(exc)
    log.error("worker failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


_DONE = object()


async def json_stream(request: web.Request, work: Callable[[Callable[[dict], None]], Any], *,
                      hold: int = 0) -> web.StreamResponse:
    """Run `work(emit)` in a thread; every `emit(dict)` becomes a JSON line.

    The first `hold` messages are kept back: if the work fails before more
    arrive, the client gets a plain error response (docker's status codes)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(msg: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    task = asyncio.ensure_future(asyncio.to_thread(work, emit))
    task.add_done_callback(lambda _t: queue.put_nowait(_DONE))
    resp: web.StreamResponse | None = None
    held: list[dict] = []
    try:
        while (item := await queue.get()) is not _DONE:
            if resp is None and len(held) < hold:
                held.append(item)
                continue
            if resp is None:
                resp = _stream_response("application/json")
                await resp.prepare(request)
                for msg in held:
                    await resp.write(_line(msg))
            await resp.write(_line(item))
    except (ConnectionResetError, asyncio.CancelledError):
        return resp or web.Response(status=499)
    exc = task.exception()
    if exc is not None and resp is None:
        raise exc
    if resp is None:
        resp = _stream_response("application/json")
        await resp.prepare(request)
        for msg in held:
            await resp.write(_line(msg))
    if exc is not None:
        text = error_message(exc)
        await resp.write(_line({"errorDetail": {"message": text}, "error": text}))
    await resp.write_eof()
    return resp


def _line(msg: dict) -> bytes:
    return (json.dumps(msg) + "\r\n").encode()


class BodyReader(io.RawIOBase):
    """The request body as a blocking, readable file (for a worker thread)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop):
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        fut = asyncio.run_coroutine_threadsafe(self._content.read(len(buffer)), self._loop)
        data = fut.result()
        buffer[:len(data)] = data
        return len(data)


def body_reader(request: web.Request) -> BinaryIO:
    raw = BodyReader(request, asyncio.get_running_loop())
    return io.BufferedReader(raw, 1 << 20)  # type: ignore[return-value]


class _Pipe(io.RawIOBase):
    """A writable file whose chunks go to an asyncio.Queue, `slots` at most in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, slots: int = 8):
        self._loop = loop
        self._queue = queue
        self._slots = threading.Semaphore(slots)
        self.aborted = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        while not self._slots.acquire(timeout=0.5):
            if self.aborted:
                raise BrokenPipeError("the client went away")
        if self.aborted:
            raise BrokenPipeError("the client went away")
        chunk = bytes(data)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
        return len(chunk)

    def release(self) -> None:
        self._slots.release()


async def byte_stream(request: web.Request, work: Callable[[BinaryIO], Any],
                      content_type: str = "application/x-tar",
                      headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Run `work(out)` in a thread, sending what it writes to `out` as the body.

    Nothing is sent before the first byte: an error before it is a normal
    error response; after it the connection is cut (the client sees a short body)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    pipe = _Pipe(loop, queue)

    def run() -> None:
        out = io.BufferedWriter(pipe, 1 << 20)
        work(out)  # type: ignore[arg-type]
        out.flush()

    task = asyncio.ensure_future(asyncio.to_thread(run))
    task.add_done_callback(lambda _t: queue.put_nowait(_DONE))
    resp: web.StreamResponse | None = None
    try:
        while (item := await queue.get()) is not _DONE:
            if resp is None:
                resp = _stream_response(content_type)
                resp.headers.update(headers or {})
                await resp.prepare(request)
            await resp.write(item)
            pipe.release()
    except (ConnectionResetError, asyncio.CancelledError):
        pipe.aborted = True
        return resp or web.Response(status=499)
    exc = task.exception()
    if exc is not None:
        if resp is None:
            raise exc
        log.error("%s %s: stream broken: %s", request.method, request.path,
                  error_message(exc))
        request.transport and request.transport.close()
        return resp
    if resp is None:
        resp = _stream_response(content_type)
        resp.headers.update(headers or {})
        await resp.prepare(request)
    await resp.write_eof()
    return resp


# -- the application ---------------------------------------------------------------------

def make_app(api: ApiBackend) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[BACKEND] = api
    routes = Routes(app)
    for name in AREAS:
        importlib.import_module(name).register(routes)
    return app
