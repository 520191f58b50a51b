"""Image endpoints: list, pull/import, inspect, history, tag, remove, push, save,
load, prune, and /auth (the login check).

The ImageService is synchronous: every call runs in a worker thread; pulls,
pushes, imports and loads stream docker's JSON messages back (server.json_stream).
Credentials for pulls and pushes come from the request's X-Registry-Auth header
only (dockerd does not read a client's config.json): `RequestCredentials` hands
them to the registry client of the worker thread that serves the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator

from aiohttp import web

from dockyard.api.events import emit_event, image_event
from dockyard.api.server import (
    Routes,
    backend,
    body_reader,
    byte_stream,
    json_response,
    json_stream,
    query_bool,
    query_filters,
    read_json,
)
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import listing
from dockyard.image.reference import Reference, parse

PRUNE_FILTERS = ("dangling", "until", "label", "label!")
_PUSHED_RE = re.compile(r"^(\S+): digest: (\S+) size: (\d+)$")


def register(routes: Routes) -> None:
    routes.get("/images/json", list_images)
    routes.post("/images/create", create)
    routes.get("/images/get", save_many)
    routes.post("/images/load", load)
    routes.post("/images/prune", prune)
    routes.post("/auth", auth)
    routes.get("/images/{name:.+}/json", inspect_image)
    routes.get("/images/{name:.+}/history", history)
    routes.get("/images/{name:.+}/get", save_one)
    routes.post("/images/{name:.+}/tag", tag)
    routes.post("/images/{name:.+}/push", push)
    routes.delete("/images/{name:.+}", remove)


# -- credentials ----------------------------------------------------------------------

class RequestCredentials:
    """CredentialStore's get() over the X-Registry-Auth of the request the current
    thread serves (set with `using`)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, registry: str) -> tuple[str, str] | None:
        return getattr(self._local, "creds", None)

    @contextlib.contextmanager
    def using(self, creds: tuple[str, str] | None) -> Iterator[None]:
        self._local.creds = creds
        try:
            yield
        finally:
            self._local.creds = None


REQUEST_CREDENTIALS = RequestCredentials()


def registry_auth(request: web.Request) -> tuple[str, str] | None:
    """(username, password) from X-Registry-Auth (base64url JSON), if any; like
    dockerd, a header that does not decode is ignored."""
    header = request.headers.get("X-Registry-Auth", "").strip()
    if not header:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(doc, dict):
        return None
    user, password = doc.get("username"), doc.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return user, password
    return None


def _progress(emit: Callable[[dict], None]):
    from dockyard.registry.progress import JSONRenderer, Progress

    return Progress(JSONRenderer(emit))


# -- list / inspect / history ----------------------------------------------------------

def _summaries(svc, filters: dict[str, list[str]], show_all: bool) -> list[dict]:
    parsed = listing.parse_filters([f"{k}={v}" for k, vs in filters.items() for v in vs])
    patterns = parsed.get("reference", [])
    out = []
    # newest first, as dockerd lists them (ties keep the store's order)
    for image in sorted(svc.list(), key=lambda i: i.created_unix, reverse=True):
        if not listing.matches(image, parsed, svc):
            continue
        tags, digests = list(image.repo_tags), list(image.repo_digests)
        if patterns:
            tags = [t for t in tags if listing.reference_ok(t, patterns)]
            digests = [d for d in digests
                       if listing.reference_ok(d.split("@", 1)[0], patterns)]
            if not tags and not digests:
                continue
        if not tags and not digests:
            if not show_all and svc.images.children(image.id):
                continue  # an intermediate image
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        out.append({
            "Id": image.id,
            "ParentId": image.parent or "",
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": int(image.created_unix),
            "Size": image.size,
            "SharedSize": -1,
            "VirtualSize": image.size,
            "Labels": image.labels or None,
            "Containers": -1,
        })
    return out


async def list_images(request: web.Request) -> web.Response:
    filters = query_filters(request)
    show_all = query_bool(request, "all")
    svc = backend(request).images
    return json_response(await asyncio.to_thread(_summaries, svc, filters, show_all))


async def inspect_image(request: web.Request) -> web.Response:
    from dockyard.image.inspect import inspect

    svc = backend(request).images
    name = request.match_info["name"]

    def work() -> dict:
        record = svc.get(name)
        return inspect(record, svc.graph_driver(record.id))

    return json_response(await asyncio.to_thread(work))


async def history(request: web.Request) -> web.Response:
    from dockyard.image.inspect import history as rows_of

    svc = backend(request).images
    name = request.match_info["name"]
    return json_response(await asyncio.to_thread(lambda: rows_of(svc.get(name))))


# -- pull / import -----------------------------------------------------------------------

async def create(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromImage"):
        return await _pull(request)
    if request.query.get("fromSrc"):
        return await _import(request)
    raise InvalidArgument("bad parameter: fromImage or fromSrc is required")


def _with_tag(ref: Reference, tag: str) -> Reference:
    """docker's tag parameter: a tag, or a digest (`sha256:...`) for name@digest."""
    if not tag:
        return ref
    if ":" in tag:
        return ref.repository.with_digest(tag)
    return ref.repository.with_tag(tag)


async def _pull(request: web.Request) -> web.StreamResponse:
    tag = request.query.get("tag", "")
    bare = parse(request.query["fromImage"], default_tag=False)
    all_tags = not tag and bare.tag is None and bare.digest is None  # docker pull -a
    ref = _with_tag(parse(request.query["fromImage"]), tag)
    creds = registry_auth(request)
    svc = backend(request).images

    def work(emit: Callable[[dict], None]) -> None:
        with REQUEST_CREDENTIALS.using(creds):
            if all_tags:
                svc.pull_all_tags(str(bare), _progress(emit))
            else:
                svc.pull(str(ref), _progress(emit))
        image_event(request, "pull", bare.familiar_name if all_tags else ref.familiar(),
                    ref.familiar_name)

    # "<tag>: Pulling from <repo>" comes before the registry is asked: an error
    # right after it (no such repository, unauthorized) is still a plain error
    return await json_stream(request, work, hold=1)


async def _import(request: web.Request) -> web.StreamResponse:
    from dockyard.image.changes import apply_changes

    source = request.query["fromSrc"]
    if source != "-" and not source.startswith(("http://", "https://")):
        raise InvalidArgument(f"bad parameter: fromSrc must be - or an http(s) URL: {source}")
    reference = None
    if request.query.get("repo"):
        ref = parse(request.query["repo"])
        reference = str(_with_tag(ref, request.query.get("tag", "")))
    config = apply_changes({}, request.query.getall("changes", []))
    message = request.query.get("message", "")
    api = backend(request)
    stream = body_reader(request) if source == "-" else None

    def work(emit: Callable[[dict], None]) -> None:
        # the request body is the aiohttp stream's to close; a download is ours
        with contextlib.nullcontext(stream) if stream is not None else _open_url(source) as src:
            image_id = api.images.import_(src, reference=reference, changes=config,
                                          message=message or _import_comment(source))
        image_event(request, "import", image_id)
        emit({"status": image_id})

    return await json_stream(request, work)


def _open_url(url: str):
    """The body of a `docker import URL` download (dockerd fetches it, not the CLI)."""
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=60)  # the caller checked: http(s) only
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise InvalidArgument(f"could not download {url}: {e}") from None


def _import_comment(source: str) -> str:
    return "" if source == "-" else f"Imported from {source}"


# -- tag / remove ----------------------------------------------------------------------

async def tag(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = parse(repo, default_tag=False)
    if target.digest:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    target = _with_tag(target, request.query.get("tag", "") or target.tag or "latest")
    api = backend(request)

    def work() -> None:
        with api.write_lock:
            api.images.tag(name, str(target))
            image_event(request, "tag", api.images.get(name).id, target.familiar())

    await asyncio.to_thread(work)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    force = query_bool(request, "force")
    api = backend(request)

    def work() -> list[tuple[str, str]]:
        with api.write_lock:
            image = api.images.get(name)
            image_id, in_use = image.id, _in_use(api)
            by_id = name == image_id or image_id.split(":", 1)[1].startswith(
                name.removeprefix("sha256:"))
            if not by_id and len(image.repo_tags) > 1:
                # dockerd: another tag still names the image, so untagging this one leaves
                # the containers made from it alone (no conflict)
                in_use.discard(image_id)
            lines = api.images.remove(name, force=force, in_use=in_use)
        for kind, text in lines:  # docker names the image by id in both
            if kind == "Untagged" or text == image_id:
                image_event(request, "untag" if kind == "Untagged" else "delete", image_id)
        return lines

    lines = await asyncio.to_thread(work)
    return json_response([{kind: text} for kind, text in lines])


# -- push ------------------------------------------------------------------------------

def _push_targets(svc, name: str, tag: str) -> list[str]:
    ref = parse(name, default_tag=False)
    if tag:
        ref = _with_tag(ref, tag)
    if ref.tag or ref.digest:
        svc.get(str(ref))  # 404 before the stream starts
        return [str(ref)]
    repo = ref.familiar_name
    tags = sorted({t for image in svc.list() for t in image.repo_tags
                   if parse(t).familiar_name == repo})
    if not tags:
        raise NotFound(f"An image does not exist locally with the tag: {repo}")
    return tags


async def push(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    svc = backend(request).images
    targets = await asyncio.to_thread(_push_targets, svc, name, request.query.get("tag", ""))
    creds = registry_auth(request)

    def work(emit: Callable[[dict], None]) -> None:
        pushed: dict = {}

        def sink(msg: dict) -> None:
            m = _PUSHED_RE.match(msg.get("status", "")) if "id" not in msg else None
            if m:
                pushed.update(Tag=m.group(1), Digest=m.group(2), Size=int(m.group(3)))
            else:
                emit(msg)

        with REQUEST_CREDENTIALS.using(creds):
            for target in targets:
                pushed.clear()
                digest = svc.push(target, _progress(sink))
                image_event(request, "push", parse(target).familiar(), parse(target).familiar_name)
                info = {"Tag": parse(target).tag or "latest", "Digest": digest, "Size": 0,
                        **pushed}
                emit({"status": f"{info['Tag']}: digest: {digest} size: {info['Size']}"})
                emit({"progressDetail": {}, "aux": info})

    return await json_stream(request, work)


# -- save / load -----------------------------------------------------------------------

async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    from dockyard.image.archive import save

    if not names:
        raise InvalidArgument("bad parameter: no image names given")
    svc = backend(request).images
    ids = await asyncio.to_thread(lambda: [svc.images.resolve(n) for n in names])
    for image_id in dict.fromkeys(ids):
        image_event(request, "save", image_id)
    return await byte_stream(request, lambda out: save(svc, names, out))


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def load(request: web.Request) -> web.StreamResponse:
    from dockyard.image.archive import load as load_archive

    svc = backend(request).images
    stream = body_reader(request)

    def work(emit: Callable[[dict], None]) -> None:
        for line in load_archive(svc, stream):
            image_event(request, "load", line.split(": ", 1)[-1])
            emit({"stream": line + "\n"})

    return await json_stream(request, work)


# -- prune -----------------------------------------------------------------------------

def _until(value: str, now: float) -> float:
    """A prune `until`: a unix time, an RFC 3339 time or a duration ("24h", "90m")."""
    from dockyard.image.formats import parse_time

    try:
        return float(value)
    except ValueError:
        pass
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms))+)", value.strip())
    if m:
        units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)",
                                                                value))
        return now - total
    ts = parse_time(value)
    if not ts:
        raise InvalidArgument(f"invalid filter 'until={value}'")
    return ts


def _label_match(labels: dict[str, str], spec: str) -> bool:
    key, eq, want = spec.partition("=")
    return key in labels and (not eq or labels[key] == want)


def _in_use(api) -> set[str]:
    """Ids of the images some container (running or not) is made from."""
    if api.containers is None:
        return set()
    return {c.image for c in api.containers.store.list()}


def _prune(svc, filters: dict[str, list[str]], in_use: set[str] = frozenset()
           ) -> tuple[list[dict], int]:
    """docker's ImagesDeleted entries ({"Untagged"}s then {"Deleted"} per image) and
    the space reclaimed."""
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    dangling = [v.lower() for v in filters.get("dangling", [])]
    for value in dangling:
        if value not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    all_images = any(v in ("false", "0") for v in dangling)
    now = time.time()
    untils = [_until(v, now) for v in filters.get("until", [])]
    keep, names = set(in_use), {}
    for image in svc.list():
        names[image.id] = image.repo_tags + image.repo_digests
        labels = image.labels
        if any(image.created_unix >= u for u in untils) \
                or not all(_label_match(labels, s) for s in filters.get("label", [])) \
                or any(_label_match(labels, s) for s in filters.get("label!", [])):
            keep.add(image.id)
    deleted, space = svc.prune(all_images=all_images, in_use=keep)
    entries = [{"Untagged": name} for image_id in deleted for name in names.get(image_id, [])]
    return entries + [{"Deleted": image_id} for image_id in deleted], space


async def prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    api = backend(request)

    def work() -> tuple[list[dict], int]:
        with api.write_lock:
            return _prune(api.images, filters, _in_use(api))

    entries, space = await asyncio.to_thread(work)
    emit_event(request, "image", "prune", "", {"reclaimed": str(space)})
    return json_response({"ImagesDeleted": entries or None, "SpaceReclaimed": space})


# -- auth ------------------------------------------------------------------------------

async def auth(request: web.Request) -> web.Response:
    from dockyard.registry.client import RegistryClient

    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidArgument("invalid auth configuration: not a JSON object")
    user, password = body.get("username") or "", body.get("password") or ""
    server = body.get("serveraddress") or "docker.io"
    if not all(isinstance(v, str) for v in (user, password, server)):
        raise InvalidArgument("invalid auth configuration: fields must be strings")
    api = backend(request)
    client = RegistryClient(insecure=api.insecure_registries, mirrors=api.registry_mirrors)
    await client.login(server, user, password)
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})
