"""POST /build (the legacy builder's API, what `DOCKER_BUILDKIT=0 docker build` uses)
and POST /build/prune.

The body is the context tar (optionally compressed); the options are query
parameters. Progress is docker's JSON stream: {"stream": "Step 1/5 : ..."},
{"aux": {"ID": ...}}, and errors after the first message as {"errorDetail",
"error"}; an error before it (a Dockerfile that does not parse, a bad tag, a
platform other than the host's) is a plain 400. A failed RUN's errorDetail
carries its exit code ({"code": 3, "message": "The command '...' returned a
non-zero code: 3"}), which the docker CLI exits with.

Secrets: the legacy API has no secret channel, so ours travels in the context
tar: each secret is the file .dockyard.secrets/<hex of its id> at the top of the
tar; the daemon takes that directory out of the context before anything else
sees it (build/context.py) and only RUN --mount=type=secret reads it.

A client that goes away (the connection closes) cancels the build: the running
step's container is killed and removed, nothing more is committed or tagged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from dockyard.api.server import (
    Routes,
    backend,
    body_reader,
    json_response,
    json_stream,
    query_bool,
    query_filters,
    query_int,
)
from dockyard.errors import DockyardError, InvalidArgument

_BUILDER = web.AppKey("builder", dict)


def register(routes: Routes) -> None:
    routes.app[_BUILDER] = {}
    routes.post("/build", build)
    routes.post("/build/prune", prune)


def _builder(request: web.Request) -> Any:
    holder = request.app[_BUILDER]
    with _LOCK:
        if "builder" not in holder:
            from dockyard.build.executor import Builder

            api = backend(request)
            if api.containers is None:
                raise DockyardError("the container engine is not available")
            holder["builder"] = Builder(api.containers, api.images, api.data_root)
        return holder["builder"]


_LOCK = threading.Lock()


def _json_param(request: web.Request, name: str, kind: type) -> Any:
    text = request.query.get(name, "")
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"invalid {name} parameter: not JSON") from None
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {name} parameter")
    return value


def options(request: web.Request) -> Any:
    from dockyard.build.executor import BuildOptions
    from dockyard.image.reference import parse

    q = request.query
    if q.get("version") == "2":
        raise InvalidArgument("BuildKit is not supported by this daemon: use the legacy "
                              "builder (DOCKER_BUILDKIT=0)")
    tags = [t for t in q.getall("t", []) if t]
    for tag in tags:
        ref = parse(tag)  # 400 "invalid reference format"
        if ref.digest:
            raise InvalidArgument(f"invalid tag {tag!r}: a digest is not a tag")
    build_args = _json_param(request, "buildargs", dict)
    for k, v in build_args.items():
        if not isinstance(k, str) or (v is not None and not isinstance(v, str)):
            raise InvalidArgument("invalid buildargs parameter: values must be strings")
    labels = _json_param(request, "labels", dict)
    cache_from = _json_param(request, "cachefrom", list)
    extra = [h for value in q.getall("extrahosts", []) for h in value.split(",") if h]
    platform = q.get("platform", "")
    if platform:
        from dockyard.build.parser import DockerfileError
        from dockyard.build.stages import check_platform

        try:
            check_platform(platform)
        except DockerfileError as e:
            raise InvalidArgument(e.message) from None
    remote = q.get("remote", "")
    if remote:
        from dockyard.build.git import check_git_url, is_git_url

        if is_git_url(remote) or remote.startswith(("git", "-")):
            check_git_url(remote)
        elif not remote.startswith(("http://", "https://")):
            raise InvalidArgument(f"unsupported remote build context: {remote!r}")
    from dockyard.api.images import REQUEST_CREDENTIALS

    return BuildOptions(
        registry_auth=_registry_config(request), with_credentials=REQUEST_CREDENTIALS.using,
        dockerfile=q.get("dockerfile", "") or "Dockerfile", tags=tags, build_args=build_args,
        labels={str(k): str(v) for k, v in labels.items()}, target=q.get("target", ""),
        nocache=query_bool(request, "nocache"), pull=query_bool(request, "pull"),
        rm=query_bool(request, "rm", True), forcerm=query_bool(request, "forcerm"),
        quiet=query_bool(request, "q"), network_mode=q.get("networkmode", ""),
        extra_hosts=extra, cache_from=[str(c) for c in cache_from],
        shm_size=query_int(request, "shmsize", 0) or 0,
        memory=query_int(request, "memory", 0) or 0,
        memswap=query_int(request, "memswap", 0) or 0,
        cpu_shares=query_int(request, "cpushares", 0) or 0,
        cpu_period=query_int(request, "cpuperiod", 0) or 0,
        cpu_quota=query_int(request, "cpuquota", 0) or 0,
        cpuset_cpus=q.get("cpusetcpus", ""), cpuset_mems=q.get("cpusetmems", ""),
        platform=platform, remote=remote)


def _registry_config(request: web.Request) -> dict[str, tuple[str, str]]:
    """X-Registry-Config: base64url JSON {registry: {"username", "password"}} for the
    pulls of FROM and COPY --from images; one that does not decode is ignored."""
    import base64
    import binascii

    header = request.headers.get("X-Registry-Config", "").strip()
    if not header:
        return {}
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return {}
    out: dict[str, tuple[str, str]] = {}
    if isinstance(doc, dict):
        for host, auth in doc.items():
            if isinstance(auth, dict) and isinstance(auth.get("username"), str) \
                    and isinstance(auth.get("password"), str) and auth["username"]:
                key = host.removeprefix("https://").removeprefix("http://").rstrip("/") \
                    if "index.docker.io" not in host else host
                out[key] = (auth["username"], auth["password"])
    return out


async def build(request: web.Request) -> web.StreamResponse:
    from dockyard.build.run import Cancelled, RunFailed

    opts = options(request)
    builder = await asyncio.to_thread(_builder, request)
    body = body_reader(request)
    cancel = threading.Event()
    opts.cancel = cancel

    def work(emit: Callable[[dict], None]) -> None:
        try:
            if opts.remote:
                builder.build_remote(opts.remote, opts, emit)
            else:
                builder.build(body, opts, emit)
        except Cancelled:
            if not cancel.is_set():
                raise
            # nobody is listening any more
        except RunFailed as e:
            # docker's legacy builder: the step's exit code in errorDetail, which the
            # docker CLI exits with
            emit({"errorDetail": {"code": e.code, "message": str(e)}, "error": str(e)})
        finally:
            if not cancel.is_set():
                try:
                    while body.read(1 << 20):  # the rest of the context: the client
                        pass  # sees the answer
                except (OSError, DockyardError):
                    pass

    async def watch() -> None:
        """A client that goes away cancels the build (as dockerd does)."""
        while True:
            await asyncio.sleep(0.2)
            transport = request.transport
            if transport is None or transport.is_closing():
                cancel.set()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await json_stream(request, work)
    finally:
        watcher.cancel()
        transport = request.transport
        if transport is None or transport.is_closing():
            cancel.set()


async def prune(request: web.Request) -> web.Response:
    """POST /build/prune: all, filters (until / unused-for, id, type, description),
    keep-storage (reserved-space, its newer name)."""
    filters = query_filters(request)
    for key in filters:
        if key not in ("until", "unused-for", "id", "type", "description"):
            raise InvalidArgument(f"invalid filter {key!r}")
    from dockyard.build.executor import parse_duration

    for key in ("until", "unused-for"):
        for value in filters.get(key, []):
            parse_duration(value)  # 400 for a bad one
    keep_storage = query_int(request, "keep-storage", 0) or \
        query_int(request, "reserved-space", 0) or 0
    builder = await asyncio.to_thread(_builder, request)
    api = backend(request)

    def work() -> tuple[list[str], int]:
        with api.write_lock:
            return builder.prune(query_bool(request, "all"), keep_storage, filters)

    deleted, space = await asyncio.to_thread(work)
    return json_response({"CachesDeleted": deleted or None, "SpaceReclaimed": space})


def cache_usage(request: web.Request) -> list[dict]:
    """The BuildCache records of GET /system/df (called in a worker thread)."""
    try:
        builder = _builder(request)
    except DockyardError:
        return []
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in builder.usage()]
