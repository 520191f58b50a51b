"""The registry server: the OCI distribution specification over aiohttp.

One catch-all route under /v2/ is parsed here (repository names contain
slashes), checked against the Authenticator, and handed to a handler that
calls Storage. Errors are DistributionError and become the spec's bodies:
{"errors": [{"code", "message", "detail"}]}. Blob bodies are streamed to
disk, manifests are capped at MAX_MANIFEST bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlencode

from aiohttp import web

from dockyard.registry.auth import Authenticator, Scope
from dockyard.registry.storage import (
    INDEX_TYPES,
    MEDIA_TYPES,
    DistributionError,
    Ingest,
    Storage,
    Upload,
    check_name,
    is_digest,
    parse_digest,
)

MAX_MANIFEST = 4 << 20
CHUNK = 1 << 20
MAX_PAGE = 1000
API_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

Handler = Callable[..., Awaitable[web.StreamResponse]]

ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?P<name>.+)/tags/list"), "tags"),
    (re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)"), "manifest"),
    (re.compile(r"(?P<name>.+)/blobs/uploads/?"), "uploads"),
    (re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)"), "upload"),
    (re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
]


def _err(code: str, message: str, detail: object = None, **kw: object) -> DistributionError:
    return DistributionError(code, message, detail, **kw)  # type: ignore[arg-type]


def _page_params(request: web.Request) -> tuple[int | None, str]:
    n_text = request.query.get("n")
    n = None
    if n_text is not None:
        if not n_text.isdigit():
            raise _err("PAGINATION_NUMBER_INVALID", "invalid number of results requested",
                       {"n": n_text[:50]})
        n = int(n_text)
    return n, request.query.get("last", "")


def _paginate(items: list[str], n: int | None, last: str, path: str,
              headers: dict[str, str]) -> list[str]:
    items = [i for i in items if i > last] if last else items
    if n is None or len(items) <= n:
        return items
    page = items[:n]
    if page:
        headers["Link"] = f'<{path}?{urlencode({"n": n, "last": page[-1]})}>; rel="next"'
    return page


async def _offload(func: Callable[..., object], *args: object) -> object:
    """Run blocking storage work (hashing, fsync) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _range_header(offset: int) -> str:
    return f"0-{max(offset - 1, 0)}"


def _upload_headers(up: Upload) -> dict[str, str]:
    return {"Location": f"/v2/{up.repo}/blobs/uploads/{up.id}", "Range": _range_header(up.offset),
            "Docker-Upload-UUID": up.id, "Content-Length": "0"}


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range; None to serve everything."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        if n == 0:
            raise _err("RANGE_INVALID", "requested range not satisfiable",
                       headers={"Content-Range": f"bytes */{size}"})
        return max(size - n, 0), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise _err("RANGE_INVALID", "requested range not satisfiable",
                   headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


def _accepted(request: web.Request) -> set[str]:
    types = set()
    for value in request.headers.getall("Accept", []):
        for part in value.split(","):
            t = part.split(";")[0].strip()
            if t:
                types.add(t)
    return types


def _manifest_type(content_type: str, doc: dict) -> str:
    declared = doc.get("mediaType")
    if content_type in MEDIA_TYPES:
        if isinstance(declared, str) and declared and declared != content_type:
            raise _err("MANIFEST_INVALID", "manifest invalid",
                       f"mediaType {declared} does not match Content-Type {content_type}")
        return content_type
    if isinstance(declared, str) and declared in MEDIA_TYPES:
        return declared
    if "manifests" in doc and "layers" not in doc:
        return "application/vnd.oci.image.index.v1+json"
    if "config" in doc and "layers" in doc and "manifests" not in doc:
        return "application/vnd.oci.image.manifest.v1+json"
    raise _err("MANIFEST_INVALID", "manifest invalid", f"unsupported media type {content_type}")


class Registry:
    def __init__(self, storage: Storage, auth: Authenticator | None = None, *,
                 read_only: bool = False, allow_delete: bool = True) -> None:
        self.storage = storage
        self.auth = auth or Authenticator()
        self.read_only = read_only
        self.allow_delete = allow_delete
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------ plumbing
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=MAX_MANIFEST)
        app.router.add_route("*", "/v2", self.dispatch)
        app.router.add_route("*", "/v2/{tail:.*}", self.dispatch)
        app.router.add_route("GET", "/token", self.token)
        app.router.add_route("POST", "/token", self.token)
        app.on_response_prepare.append(self._api_header)
        return app

    @staticmethod
    async def _api_header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[API_HEADER[0]] = API_HEADER[1]

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except DistributionError as e:
            body = b"" if request.method == "HEAD" else json.dumps(e.body()).encode()
            headers = {k: v for k, v in e.headers.items() if k.lower() != "content-length"}
            headers["Content-Type"] = "application/json"
            return web.Response(status=e.status, body=body, headers=headers)

    def _scopes(self, kind: str, name: str, method: str) -> list[Scope]:
        if kind == "base":
            return []
        if kind == "catalog":
            return [Scope("registry", "catalog", ("*",))]
        if method in ("GET", "HEAD"):
            return [Scope("repository", name, ("pull",))]
        if method == "DELETE":
            return [Scope("repository", name, ("delete",))]
        return [Scope("repository", name, ("pull", "push"))]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        kind, params = "base", {}
        if tail == "_catalog":
            kind = "catalog"
        elif tail:
            for pattern, k in ROUTES:
                m = pattern.fullmatch(tail)
                if m:
                    kind, params = k, m.groupdict()
                    break
            else:
                raise _err("NAME_UNKNOWN", "unknown endpoint", {"path": tail[:300]}, status=404)
        if "name" in params:
            check_name(params["name"])
        self.auth.check(request.headers.get("Authorization"), request.host, request.scheme,
                        self._scopes(kind, params.get("name", ""), request.method))
        handler = getattr(self, f"{kind}_{request.method.lower()}", None)
        if handler is None:
            raise _err("UNSUPPORTED", "the operation is unsupported",
                       {"method": request.method}, status=405)
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and self.read_only:
            raise _err("DENIED", "requested access to the resource is denied",
                       "the registry is read-only")
        return await handler(request, **params)

    async def token(self, request: web.Request) -> web.StreamResponse:
        if not self.auth.token:
            raise _err("UNSUPPORTED", "token authentication is not enabled", status=404)
        scopes = request.query.getall("scope", [])
        authorization = request.headers.get("Authorization")
        if request.method == "POST":  # OAuth2 password grant (docker login with --password)
            form = parse_qs((await request.read()).decode(errors="replace"))
            scopes += form.get("scope", [])
            if form.get("grant_type") == ["password"]:
                import base64
                pair = f"{form.get('username', [''])[0]}:{form.get('password', [''])[0]}"
                authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return web.json_response(self.auth.token_request(authorization, scopes))

    # ------------------------------------------------------------ base, listings
    async def base_get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    base_head = base_get

    async def catalog_get(self, request: web.Request) -> web.StreamResponse:
        n, last = _page_params(request)
        n = MAX_PAGE if n is None else min(n, MAX_PAGE)
        headers: dict[str, str] = {}
        repos = _paginate(self.storage.catalog(), n, last, "/v2/_catalog", headers)
        return web.json_response({"repositories": repos}, headers=headers)

    async def tags_get(self, request: web.Request, name: str) -> web.StreamResponse:
        n, last = _page_params(request)
        headers: dict[str, str] = {}
        tags = _paginate(self.storage.tags(name), n, last, f"/v2/{name}/tags/list", headers)
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    # ------------------------------------------------------------ manifests
    async def manifest_get(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        data, media_type, digest = self.storage.get_manifest(name, ref)
        accepted = _accepted(request)
        if (not is_digest(ref) and accepted & MEDIA_TYPES and media_type not in accepted
                and "*/*" not in accepted):
            raise _err("MANIFEST_UNKNOWN", "manifest unknown",
                       f"{media_type} is not in the accepted media types", status=404)
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest,
                   "ETag": f'"{digest}"', "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=data, headers=headers)

    manifest_head = manifest_get

    async def manifest_put(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_MANIFEST:
            raise _err("SIZE_INVALID", "manifest too large", {"max": MAX_MANIFEST}, status=413)
        data = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > MAX_MANIFEST:
                raise _err("SIZE_INVALID", "manifest too large", {"max": MAX_MANIFEST}, status=413)
        try:
            doc = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            raise _err("MANIFEST_INVALID", "manifest invalid", "not JSON") from None
        if not isinstance(doc, dict):
            raise _err("MANIFEST_INVALID", "manifest invalid", "not a JSON object")
        if doc.get("schemaVersion") != 2:
            raise _err("MANIFEST_INVALID", "manifest invalid", "schemaVersion must be 2")
        if "manifests" in doc and "layers" in doc:
            raise _err("MANIFEST_INVALID", "manifest invalid", "both manifests and layers")
        media_type = _manifest_type(request.content_type, doc)
        self._check_references(name, media_type, doc)
        digest = self.storage.put_manifest(name, ref, bytes(data), media_type)
        return web.Response(status=201, headers={
            "Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest,
            "Content-Length": "0"})

    def _check_references(self, name: str, media_type: str, doc: dict) -> None:
        def digest_of(desc: object) -> str:
            if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
                raise _err("MANIFEST_INVALID", "manifest invalid", "bad descriptor")
            parse_digest(desc["digest"])
            return desc["digest"]

        if media_type in INDEX_TYPES:
            items = doc.get("manifests")
            if not isinstance(items, list):
                raise _err("MANIFEST_INVALID", "manifest invalid", "manifests must be a list")
            for desc in items:
                d = digest_of(desc)
                if not self.storage.has_manifest(name, d):
                    raise _err("MANIFEST_BLOB_UNKNOWN", "manifest blob unknown to registry",
                               {"digest": d})
            return
        layers = doc.get("layers")
        if not isinstance(layers, list) or "config" not in doc:
            raise _err("MANIFEST_INVALID", "manifest invalid", "config and layers are required")
        for desc in [doc["config"], *layers]:
            d = digest_of(desc)
            if desc.get("urls"):  # a foreign layer: served from elsewhere
                continue
            if self.storage.repo_blob_size(name, d) is None:
                raise _err("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", {"digest": d})

    async def manifest_delete(self, request: web.Request, name: str, ref: str
                              ) -> web.StreamResponse:
        self._deletes_allowed()
        self.storage.delete_manifest(name, ref)
        return web.Response(status=202, headers={"Content-Length": "0"})

    def _deletes_allowed(self) -> None:
        if not self.allow_delete:
            raise _err("UNSUPPORTED", "the operation is unsupported", "deletes are disabled",
                       status=405)

    # ------------------------------------------------------------ blobs
    async def blob_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        parse_digest(digest)
        size = self.storage.repo_blob_size(name, digest)
        if size is None:
            raise _err("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                   "ETag": f'"{digest}"', "Accept-Ranges": "bytes",
                   "Cache-Control": "max-age=31536000"}
        start, end, status = 0, size - 1, 200
        rng = request.headers.get("Range")
        if rng and size:
            picked = _parse_range(rng, size)
            if picked:
                start, end = picked
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        with self.storage.open_blob(digest) as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = await loop.run_in_executor(None, f.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    blob_head = blob_get

    async def blob_delete(self, request: web.Request, name: str, digest: str
                          ) -> web.StreamResponse:
        self._deletes_allowed()
        parse_digest(digest)
        if not self.storage.unlink_blob(name, digest):
            raise _err("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        return web.Response(status=202, headers={"Content-Length": "0"})

    # ------------------------------------------------------------ uploads
    def _check_length(self, request: web.Request, offset: int = 0) -> None:
        limit = self.storage.max_blob_size
        if limit is not None and (request.content_length or 0) + offset > limit:
            raise _err("SIZE_INVALID", "blob exceeds the maximum size", {"max": limit},
                       status=413)

    async def _receive(self, request: web.Request, ing: Ingest) -> None:
        async for chunk in request.content.iter_chunked(CHUNK):
            ing.write(chunk)

    async def uploads_post(self, request: web.Request, name: str) -> web.StreamResponse:
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source:
            parse_digest(mount)
            check_name(source)
            if (self.storage.repo_blob_size(source, mount) is not None and self.auth.allowed(
                    request.headers.get("Authorization"),
                    Scope("repository", source, ("pull",)))):
                self.storage.link_blob(name, mount)
                return web.Response(status=201, headers={
                    "Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount,
                    "Content-Length": "0"})
        digest = request.query.get("digest")
        if digest and not mount:
            parse_digest(digest)
            self._check_length(request)
            ing = self.storage.new_ingest()
            try:
                await self._receive(request, ing)
            except BaseException:
                ing.rollback()
                self.storage.discard_ingest(ing)
                raise
            await _offload(self.storage.finish_ingest, ing, name, digest)
            return web.Response(status=201, headers={
                "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
                "Content-Length": "0"})
        up = self.storage.create_upload(name)
        return web.Response(status=202, headers=_upload_headers(up))

    def _lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    async def _append(self, request: web.Request, up: Upload, required: bool) -> None:
        """Append the request body to the upload, honouring Content-Range."""
        crange = request.headers.get("Content-Range")
        expected = None
        if crange:
            m = re.fullmatch(r"\s*(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?\s*", crange)
            if not m or int(m.group(2)) < int(m.group(1)):
                raise _err("RANGE_INVALID", "invalid content range", {"Content-Range": crange},
                           headers=_upload_headers(up))
            start, end = int(m.group(1)), int(m.group(2))
            if start != up.offset:
                raise _err("RANGE_INVALID", "content range does not continue the upload",
                           {"offset": up.offset, "Content-Range": crange},
                           headers=_upload_headers(up))
            expected = end - start + 1
            if request.content_length is not None and request.content_length != expected:
                raise _err("BLOB_UPLOAD_INVALID", "Content-Length does not match Content-Range",
                           headers=_upload_headers(up))
        elif not required and not request.body_exists:
            return
        self._check_length(request, up.offset)
        ing = self.storage.append(up)
        try:
            await self._receive(request, ing)
            if expected is not None and ing.offset - up.offset != expected:
                raise _err("BLOB_UPLOAD_INVALID", "body does not match Content-Range",
                           headers=_upload_headers(up))
        except BaseException:
            ing.rollback()
            raise
        await _offload(self.storage.commit_chunk, up, ing)

    async def upload_patch(self, request: web.Request, name: str, uuid: str
                           ) -> web.StreamResponse:
        async with self._lock(uuid):
            up = self.storage.get_upload(name, uuid)
            await self._append(request, up, required=True)
            return web.Response(status=202, headers=_upload_headers(up))

    async def upload_put(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        async with self._lock(uuid):
            up = self.storage.get_upload(name, uuid)
            digest = request.query.get("digest")
            if not digest:
                raise _err("DIGEST_INVALID", "digest parameter is required",
                           headers=_upload_headers(up))
            parse_digest(digest)
            await self._append(request, up, required=False)
            try:
                await _offload(self.storage.finish_upload, up, digest)
            finally:
                self._locks.pop(uuid, None)
            return web.Response(status=201, headers={
                "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
                "Content-Length": "0"})

    async def upload_get(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        up = self.storage.get_upload(name, uuid)
        return web.Response(status=204, headers=_upload_headers(up))

    async def upload_delete(self, request: web.Request, name: str, uuid: str
                            ) -> web.StreamResponse:
        async with self._lock(uuid):
            up = self.storage.get_upload(name, uuid)
            self.storage.cancel_upload(up)
            self._locks.pop(uuid, None)
        return web.Response(status=204, headers={"Content-Length": "0"})


def make_app(root: str, *, htpasswd: str | None = None, token_auth: bool = False,
             realm: str | None = None, max_blob_size: int | None = None,
             read_only: bool = False, allow_delete: bool = True) -> web.Application:
    storage = Storage(root, max_blob_size=max_blob_size)
    storage.recover()
    auth = Authenticator(htpasswd=htpasswd, token=token_auth, realm=realm)
    return Registry(storage, auth, read_only=read_only, allow_delete=allow_delete).app()
