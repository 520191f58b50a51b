"""docker exec: POST /containers/{id}/exec, POST /exec/{id}/start, GET /exec/{id}/json,
POST /exec/{id}/resize.

Exec instances live in this daemon's memory (like dockerd's) in an `ExecStore`
kept on the engine; the process is run by the monitor (engine/exec.py), which
owns its stdio. A start that is not detached hijacks the connection like
attach (api/attach.py) and streams the process's output (multiplexed frames
without a TTY, raw with one) and the client's stdin; the exit code is read
back from the monitor by the inspect the client makes after the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
from collections import OrderedDict
from typing import Any

from aiohttp import web

from dockyard.api.attach import MULTIPLEXED, RAW, _header, _pump, hijack
from dockyard.api.server import (
    SERVER_HEADER,
    Routes,
    api_version,
    backend,
    json_response,
    query_int,
    read_json,
)
from dockyard.engine.events import exec_action
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
    SystemError_,
)

MAX_EXECS = 4096


# -- the exec instances -------------------------------------------------------------------

def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    keys = {e.split("=", 1)[0] for e in extra}
    return [e for e in base if e.split("=", 1)[0] not in keys] + list(extra)


def build_process(c: Any, config: dict) -> dict:
    """The OCI process of an exec: the container's process settings (capabilities,
    rlimits, no-new-privileges, user...) with the exec's command, env, cwd and user."""
    from dockyard.engine import spec as specmod
    from dockyard.engine import users

    with open(os.path.join(c.path, "config.json")) as f:
        spec = json.load(f)
    process = dict(spec.get("process") or {})
    process.pop("consoleSize", None)
    tty = bool(config.get("Tty"))
    process["args"] = list(config.get("Cmd") or [])
    process["terminal"] = tty
    env = list(process.get("env") or [])
    if tty and not any(e.startswith("TERM=") for e in config.get("Env") or []):
        env = _merge_env(env, ["TERM=xterm"])
    process["env"] = _merge_env(env, [e for e in config.get("Env") or [] if isinstance(e, str)])
    if config.get("WorkingDir"):
        process["cwd"] = config["WorkingDir"]
    if config.get("User"):
        rootfs = os.path.join(c.path, "rootfs")
        u = users.resolve(rootfs, config["User"], c.host_config.get("GroupAdd") or [])
        process["user"] = {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids}
        if not any(e.startswith("HOME=") for e in config.get("Env") or []):
            process["env"] = _merge_env(process["env"], [f"HOME={u.home}"])
    if config.get("Privileged"):
        caps = specmod.all_caps()
        process["capabilities"] = {k: list(caps) for k in
                                   ("bounding", "effective", "permitted")}
    return process


class ExecInstance:
    def __init__(self, container_id: str, config: dict, process: dict):
        self.id = secrets.token_hex(32)
        self.container_id = container_id
        self.config = config
        self.process = process
        self.started = False
        self.running = False
        self.pid = 0
        self.exit_code: int | None = None

    def monitor_request(self, attach: bool) -> dict:
        return {"op": "exec", "id": self.id, "container": self.container_id,
                "process": self.process, "tty": bool(self.config.get("Tty")),
                "stdin": attach and bool(self.config.get("AttachStdin")), "attach": attach}


class ExecStore:
    """The exec instances of one engine (forgotten with the daemon, like dockerd's)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.lock = threading.Lock()
        self.execs: OrderedDict[str, ExecInstance] = OrderedDict()

    def container(self, ref: str) -> Any:
        """The container, which must be running (docker's 409 otherwise)."""
        c = self.engine.get(ref)
        if c.state.Paused:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.Restarting:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is "
                           "running")
        if not c.state.Running:
            raise Conflict(f"Container {c.id} is not running")
        return c

    def create(self, ref: str, config: dict) -> str:
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("No exec command specified")
        config = {**config, "Cmd": cmd}
        c = self.container(ref)
        ex = ExecInstance(c.id, config, build_process(c, config))
        with self.lock:
            self.execs[ex.id] = ex
            while len(self.execs) > MAX_EXECS:
                self.execs.popitem(last=False)
        self.engine.emit(c, exec_action("exec_create", cmd), execID=ex.id)
        return ex.id

    def get(self, exec_id: str) -> ExecInstance:
        with self.lock:
            ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def claim(self, exec_id: str) -> ExecInstance:
        """Mark an exec started (once); its container must still run."""
        ex = self.get(exec_id)
        with self.lock:
            if ex.started:
                if ex.exit_code is None:
                    raise Conflict(f"Error: Exec command {ex.id} is already running")
                raise Conflict(f"Error: Exec command {ex.id} has already run")
            c = self.container(ex.container_id)
            ex.started = True
            ex.running = True
        self.engine.emit(c, exec_action("exec_start", ex.config["Cmd"]), execID=ex.id)
        return ex

    def refresh(self, ex: ExecInstance) -> None:
        """Ask the monitor how a started exec is doing."""
        if not ex.running:
            return
        try:
            answer = self.engine.monitor.request({"op": "exec_state", "id": ex.id}, timeout=10)
        except OSError:
            return
        if not answer.get("ok"):
            ex.running = False  # the monitor forgot it (restarted)
            return
        ex.pid = int(answer.get("pid") or ex.pid)
        if answer.get("exit_code") is not None:
            ex.exit_code = int(answer["exit_code"])
            ex.running = False

    def inspect(self, exec_id: str) -> dict:
        ex = self.get(exec_id)
        self.refresh(ex)
        cfg = ex.config
        cmd = cfg.get("Cmd") or []
        return {
            "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code,
            "ProcessConfig": {"tty": bool(cfg.get("Tty")), "entrypoint": cmd[0] if cmd else "",
                              "arguments": list(cmd[1:]),
                              "privileged": bool(cfg.get("Privileged")),
                              "user": cfg.get("User") or ""},
            "OpenStdin": bool(cfg.get("AttachStdin")),
            "OpenStderr": bool(cfg.get("AttachStderr")),
            "OpenStdout": bool(cfg.get("AttachStdout")),
            "CanRemove": False, "ContainerID": ex.container_id,
            "DetachKeys": cfg.get("DetachKeys") or "", "Pid": ex.pid}

    def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self.get(exec_id)
        self.engine.monitor.request({"op": "exec_resize", "id": ex.id, "h": height,
                                     "w": width}, timeout=10)

    def answered(self, ex: ExecInstance, answer: dict) -> None:
        """The monitor's answer to the start."""
        if answer.get("ok"):
            ex.pid = int(answer.get("pid") or 0)
        else:
            ex.running = False
            ex.exit_code = int(answer.get("exit_code") or 126)


_STORE_LOCK = threading.Lock()


def exec_store(engine: Any) -> ExecStore:
    with _STORE_LOCK:
        store = getattr(engine, "exec_store", None)
        if store is None:
            store = engine.exec_store = ExecStore(engine)
        return store


# -- the endpoints ------------------------------------------------------------------------

def register(routes: Routes) -> None:
    routes.post("/containers/{id}/exec", create)
    routes.post("/exec/{id}/start", start)
    routes.get("/exec/{id}/json", inspect)
    routes.post("/exec/{id}/resize", resize)


def _store(request: web.Request) -> ExecStore:
    engine = backend(request).containers
    if engine is None:
        raise DockyardError("the container engine is not available")
    return exec_store(engine)


async def create(request: web.Request) -> web.Response:
    store = _store(request)
    config = await read_json(request)
    if not isinstance(config, dict):
        raise InvalidArgument("invalid exec config: not a JSON object")
    exec_id = await asyncio.to_thread(store.create, request.match_info["id"], config)
    return json_response({"Id": exec_id}, 201)


async def inspect(request: web.Request) -> web.Response:
    store = _store(request)
    return json_response(await asyncio.to_thread(store.inspect, request.match_info["id"]))


async def resize(request: web.Request) -> web.Response:
    store = _store(request)
    height, width = query_int(request, "h", 0) or 0, query_int(request, "w", 0) or 0
    await asyncio.to_thread(store.resize, request.match_info["id"], height, width)
    return web.Response(status=200, headers={"Server": SERVER_HEADER})


async def start(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    body = await read_json(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec start config: not a JSON object")
    try:
        ex = await asyncio.to_thread(store.claim, request.match_info["id"])
    except Conflict as e:
        if body.get("Detach"):
            raise
        # dockerd takes the connection over first: an attached start's error (already
        # running, has already run, container not running) is in the stream, status 200
        # (compose's watch starts its attached `rm -rf` exec a second time, as a check)
        return await _stream_error(request, str(e), bool(body.get("Tty")))
    tty = bool(ex.config.get("Tty"))
    size = body.get("ConsoleSize") or ex.config.get("ConsoleSize")
    if body.get("Detach"):
        answer = await asyncio.to_thread(store.engine.monitor.request,
                                         ex.monitor_request(False), 120)
        store.answered(ex, answer)
        if not answer.get("ok"):
            raise SystemError_(answer.get("error") or "exec failed")
        await _console_size(store, ex, tty, size)
        return web.Response(status=200, headers={"Server": SERVER_HEADER})
    try:
        reader, writer = await asyncio.open_unix_connection(store.engine.monitor.socket_path)
    except OSError as e:
        store.answered(ex, {"ok": False, "exit_code": 126})
        raise SystemError_(f"cannot reach the container monitor: {e}") from None
    try:
        keys = _detach_keys(store, ex)  # a bad DetachKeys is a 400, before the hijack
        version = tuple(int(p) for p in api_version(request).split(".") if p.isdigit())
        multiplexed = not tty and version >= (1, 42)
        resp, raw = await hijack(request, MULTIPLEXED if multiplexed else RAW)
        writer.write((json.dumps(ex.monitor_request(True)) + "\n").encode())
        answer = json.loads(await reader.readline() or b"{}")
        store.answered(ex, answer)
        if not answer.get("ok"):
            if "exit_code" not in answer:
                store.answered(ex, {"ok": False, "exit_code": 126})
            message = (answer.get("error") or "exec failed").encode() + b"\r\n"
            with contextlib.suppress(ConnectionResetError, OSError):
                await raw.write(message if tty else _header(1, len(message)) + message)
            raw.close()
            return resp
        await _console_size(store, ex, tty, size)
        want = {1: bool(ex.config.get("AttachStdout")), 2: bool(ex.config.get("AttachStderr"))}
        await _pump(request, raw, reader, writer, tty, want,
                    bool(ex.config.get("AttachStdin")), keys)
        return resp
    finally:
        writer.close()


async def _stream_error(request: web.Request, text: str, tty: bool) -> web.StreamResponse:
    message = text.encode() + b"\r\n"
    data = message if tty else _header(1, len(message)) + message
    if "Upgrade" not in request.headers:  # a plain POST: dockerd's 200 OK and the stream
        return web.Response(status=200, body=data,
                            headers={"Content-Type": RAW, "Server": SERVER_HEADER})
    resp, raw = await hijack(request, RAW)
    with contextlib.suppress(ConnectionResetError, OSError):
        await raw.write(data)
    raw.close()
    return resp


def _detach_keys(store: ExecStore, ex: ExecInstance) -> bytes:
    """The exec's DetachKeys, else the daemon's detach-keys, else ctrl-p ctrl-q."""
    from dockyard.detachkeys import DEFAULT_DETACH_KEYS, parse_detach_keys

    text = ex.config.get("DetachKeys") or getattr(store.engine, "detach_keys", "")
    return parse_detach_keys(text) if text else DEFAULT_DETACH_KEYS


async def _console_size(store: ExecStore, ex: ExecInstance, tty: bool, size: Any) -> None:
    if tty and isinstance(size, list) and len(size) == 2 and all(isinstance(v, int)
                                                                 for v in size):
        with contextlib.suppress(DockyardError, OSError):
            await asyncio.to_thread(store.resize, ex.id, size[0], size[1])
