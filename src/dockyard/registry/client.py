"""The Distribution (registry API v2) client: pull, push and login.

Where requests go (like dockerd):
- docker.io is served by https://registry-1.docker.io; configured mirrors are
  tried first for pulls of docker.io images, the next one (and finally Docker
  Hub) when a mirror fails or lacks the image. Pushes never go to mirrors.
- A loopback registry (localhost, 127.0.0.0/8, ::1) is spoken to over plain
  HTTP only: there is no TLS to try on a local port and dockerd treats it as
  insecure anyway. A registry listed in `insecure` (host[:port] or a CIDR) is
  tried over HTTPS without certificate checks first, then over HTTP when the
  connection or the TLS handshake fails. Everything else is HTTPS, verified.

Everything a registry sends is checked: manifests (at most 4 MiB) against the
digest asked for or announced, a document with both `manifests` and `layers`
is refused, and every blob is written to an ingest of the content store that
verifies size and digest before the blob becomes visible. A download that
breaks is resumed with a Range request from the ingest's offset (also by a
later pull, since the ingest stays); a blob that does not verify is dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import urllib.parse
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

import aiohttp

from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.image import digest as dg
from dockyard.image import formats
from dockyard.image.content import ContentStore
from dockyard.image.reference import Reference, parse
from dockyard.registry.auth_client import (
    DOCKER_HUB_NAMES,
    Authenticator,
    CredentialStore,
    Endpoint,
    RegistryError,
    RepoSession,
    VerificationError,
    add_query,
    basic_header,
    error_from_body,
    hostname,
    is_loopback,
    parse_challenges,
    read_body,
    repository_scope,
    strip_port,
)
from dockyard.registry.progress import Progress

ACCEPT = ", ".join(formats.MANIFEST_ACCEPT)
MAX_MANIFEST = 4 << 20
MAX_TAG_PAGES = 100
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
MAX_CONFIG = 8 << 20
CHUNK = 256 << 10
HUB_ENDPOINT = "registry-1.docker.io"
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass
class PulledImage:
    manifest_digest: str
    manifest_bytes: bytes
    media_type: str
    config_digest: str
    config_bytes: bytes
    layers: list[dict]
    index_digest: str | None = None      # the repo digest when the tag named an index
    index_bytes: bytes | None = None
    endpoint: str = ""
    config: dict = field(default_factory=dict)  # the config's descriptor

    @property
    def repo_digest(self) -> str:
        """The digest `docker pull` prints: the index's when there was one."""
        return self.index_digest or self.manifest_digest


class RegistryClient:
    def __init__(self, *, credentials: CredentialStore | None = None,
                 insecure: Iterable[str] = (), mirrors: Iterable[str] = (),
                 max_downloads: int = 3, max_uploads: int = 5,
                 user_agent: str = "dockyard/0.1", chunk_size: int = 16 << 20,
                 retries: int = 5):
        self.credentials = credentials
        self.insecure = [i.strip().lower() for i in insecure]
        self.mirrors = [m.rstrip("/") for m in mirrors]
        self.max_downloads = max_downloads
        self.max_uploads = max_uploads
        self.user_agent = user_agent
        self.chunk_size = chunk_size  # blobs larger than this are uploaded in PATCH chunks
        self.retries = retries
        self.auth = Authenticator(self._creds_for, user_agent)
        # (registry host, digest) -> a repository known to hold the blob (for mounts)
        self.known_blobs: dict[tuple[str, str], str] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    # ------------------------------------------------------------------ endpoints

    def _creds_for(self, host: str) -> tuple[str, str] | None:
        return self.credentials.get(host) if self.credentials is not None else None

    def _is_insecure(self, host: str) -> bool:
        name = strip_port(host)
        for entry in self.insecure:
            if entry in (host, name):
                return True
            if "/" in entry:
                try:
                    if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def endpoints(self, domain: str, *, pull: bool = True) -> list[Endpoint]:
        """Where to send requests for `domain`, in the order to try them."""
        domain = hostname(domain)
        out: list[Endpoint] = []
        if domain in DOCKER_HUB_NAMES:
            if pull:
                for m in self.mirrors:
                    out.extend(self._host_endpoints(m, mirror=True))
            out.append(Endpoint(f"https://{HUB_ENDPOINT}", HUB_ENDPOINT))
            return out
        return self._host_endpoints(domain)

    def _host_endpoints(self, address: str, mirror: bool = False) -> list[Endpoint]:
        host = hostname(address)
        if address.startswith(("http://", "https://")):
            scheme = address.split(":", 1)[0]
            return [Endpoint(f"{scheme}://{host}", host, not self._is_insecure(host), mirror)]
        if is_loopback(host):
            return [Endpoint(f"http://{host}", host, mirror=mirror)]
        if self._is_insecure(host):
            return [Endpoint(f"https://{host}", host, False, mirror),
                    Endpoint(f"http://{host}", host, mirror=mirror)]
        return [Endpoint(f"https://{host}", host, mirror=mirror)]

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        connector = aiohttp.TCPConnector(limit=max(self.max_downloads, self.max_uploads) + 4)
        return aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     auto_decompress=False, headers={"User-Agent": self.user_agent})

    # ------------------------------------------------------------------ login

    async def login(self, registry: str, username: str, password: str) -> None:
        """Check `username`/`password` against the registry's /v2/ (basic or bearer)."""
        creds = (username, password)
        auth = Authenticator(lambda host: creds, self.user_agent)
        last: Exception | None = None
        async with self._session() as session:
            for ep in self.endpoints(registry, pull=False):
                url = f"{ep.url}/v2/"
                try:
                    async with session.get(url, ssl=ep.ssl) as resp:
                        if resp.status == 200:
                            return
                        body = await read_body(resp)
                        challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                    if resp.status != 401 or not challenges:
                        raise error_from_body(resp.status, body)
                    bearer = next((c for c in challenges if c.scheme == "bearer"), None)
                    if bearer is not None:
                        await auth.fetch_token(session, bearer, [], creds, ssl=ep.verify_tls)
                        return
                    headers = {"Authorization": basic_header(*creds)}
                    async with session.get(url, headers=headers, ssl=ep.ssl) as resp:
                        if resp.status == 200:
                            return
                        raise RegistryError(f"login attempt to {url} failed with status: "
                                            f"{resp.status} {resp.reason}", code="UNAUTHORIZED",
                                            status=401)
                except TRANSPORT_ERRORS as e:
                    last = e
        raise RegistryError(f"cannot reach {registry}: {last}")

    # ------------------------------------------------------------------ pull

    async def pull(self, ref: str | Reference, content: ContentStore, *, os: str = "linux",
                   architecture: str = "amd64", progress: Progress | None = None,
                   report_digest: bool = True) -> PulledImage:
        """The image's blobs into `content`; `report_digest=False` leaves the "Digest:"
        line to a caller that has more to report first (the layers unpacked)."""
        ref = parse(ref) if isinstance(ref, str) else ref
        progress = progress or Progress()
        wanted = ref.digest or ref.tag or "latest"
        progress.status(f"{wanted}: Pulling from {ref.path}")
        last: Exception | None = None
        async with self._session() as session:
            endpoints = self.endpoints(ref.domain, pull=True)
            for ep in endpoints:
                repo = RepoSession(session, self.auth, ep, ref.path, "pull")
                try:
                    image = await self._resolve(repo, ref, wanted, os, architecture)
                except TRANSPORT_ERRORS as e:
                    last = RegistryError(f"{ep.url}: {e}")
                    continue
                except DockyardError as e:
                    if not ep.mirror:
                        raise
                    last = e
                    continue
                image.endpoint = ep.url
                await self._pull_blobs(repo, image, content, progress)
                if report_digest:
                    progress.status(f"Digest: {image.repo_digest}")
                return image
        assert last is not None
        raise last

    async def tags(self, ref: str | Reference) -> list[str]:
        """The repository's tags (GET /v2/<name>/tags/list, following `Link` pages)."""
        ref = parse(ref) if isinstance(ref, str) else ref
        async with self._session() as session:
            ep = self.endpoints(ref.domain, pull=True)[-1]  # the registry itself, no mirror
            repo = RepoSession(session, self.auth, ep, ref.path, "pull")
            url = repo.url("tags/list")
            found: list[str] = []
            for _ in range(MAX_TAG_PAGES):
                try:
                    async with repo.request("GET", url) as resp:
                        body = await read_body(resp, MAX_MANIFEST)
                        if resp.status != 200:
                            raise error_from_body(resp.status, body)
                        link = resp.headers.get("Link", "")
                except TRANSPORT_ERRORS as e:
                    raise RegistryError(f"Get \"{url}\": {e}") from None
                found += _tag_page(body, ref.path)
                if not link.startswith("<") or ">" not in link:
                    return found
                url = urllib.parse.urljoin(url, link[1:link.index(">")])
            raise RegistryError(f"{ref.path}: more than {MAX_TAG_PAGES} pages of tags")

    async def _resolve(self, repo: RepoSession, ref: Reference, wanted: str, os: str,
                       architecture: str) -> PulledImage:
        data, doc, digest = await _fetch_manifest(repo, wanted, ref.digest)
        index_digest = index_bytes = None
        if formats.is_index(doc):
            index_digest, index_bytes = digest, data
            desc = formats.select_platform(doc, os, architecture)
            data, doc, digest = await _fetch_manifest(repo, desc["digest"], desc["digest"])
            if len(data) != desc["size"]:
                raise VerificationError(f"manifest {digest}: size mismatch")
            if formats.is_index(doc):
                raise RegistryError(f"manifest {digest}: an index may not point to an index")
        return PulledImage(digest, data, doc["mediaType"], doc["config"]["digest"], b"",
                           doc["layers"], index_digest, index_bytes, config=doc["config"])

    async def _pull_blobs(self, repo: RepoSession, image: PulledImage, content: ContentStore,
                          progress: Progress) -> None:
        config = image.config
        if config["size"] > MAX_CONFIG:
            raise RegistryError(f"image config {config['digest']} is too large")
        sem = asyncio.Semaphore(self.max_downloads)
        unique: dict[str, dict] = {}
        for layer in image.layers:
            unique.setdefault(layer["digest"], layer)
        for d in unique:
            if not content.exists(d):
                progress.layer_started(dg.short_id(d), "Pulling fs layer")

        async def one(desc: dict, pid: str | None) -> None:
            if content.exists(desc["digest"]):
                if pid:
                    progress.layer_done(pid, "Already exists")
                return
            if pid and sem.locked():
                progress.status("Waiting", pid)
            async with sem:
                await self._blob_once(repo, desc, content, progress, pid)

        await _all([one(config, None)] + [one(x, dg.short_id(d)) for d, x in unique.items()])
        image.config_bytes = content.read(image.config_digest, MAX_CONFIG)
        # the manifests last: a store holding a manifest holds what it needs
        if image.index_bytes is not None and image.index_digest:
            content.put(image.index_bytes, image.index_digest)
        content.put(image.manifest_bytes, image.manifest_digest)

    async def _blob_once(self, repo: RepoSession, desc: dict, content: ContentStore,
                         progress: Progress, pid: str | None) -> None:
        """Download a blob; concurrent pulls of one blob into one store share the work."""
        key = (content.root, desc["digest"])
        running = self._inflight.get(key)
        if running is not None:
            await asyncio.shield(running)
            return
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            await self._download(repo, desc, content, progress, pid)
            fut.set_result(None)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(e)
                fut.exception()  # marked retrieved: waiters get it through shield
            raise
        finally:
            del self._inflight[key]
        self.known_blobs[(repo.ep.host, desc["digest"])] = repo.name

    async def _download(self, repo: RepoSession, desc: dict, content: ContentStore,
                        progress: Progress, pid: str | None) -> None:
        digest, size = desc["digest"], desc["size"]
        ingest = f"pull-{digest.replace(':', '-')}"
        try:
            writer = content.writer(ingest, expected=digest, expected_size=size, wait=False)
        except Conflict:  # another process is fetching it: wait for its ingest
            writer = await asyncio.to_thread(content.writer, ingest, digest, size)
            if content.exists(digest):
                writer.close()
                return
        try:
            failures = 0
            while writer.size < size or size == 0:
                try:
                    await self._fetch_range(repo, digest, size, writer, progress, pid)
                    break
                except TRANSPORT_ERRORS as e:
                    failures += 1
                    if failures > self.retries:
                        raise RegistryError(f"downloading {digest}: {e or type(e).__name__}") \
                            from None
                    await asyncio.sleep(min(0.05 * 2 ** failures, 2.0))
            if pid:
                progress.status("Verifying Checksum", pid)
            try:
                writer.commit()
            except InvalidArgument as e:
                raise VerificationError(f"blob {digest} failed verification: {e}") from None
            if pid:
                progress.status("Download complete", pid)
        except VerificationError:
            writer.abort()
            raise
        finally:
            writer.close()  # no-op after commit/abort; else keeps the ingest to resume

    async def _fetch_range(self, repo: RepoSession, digest: str, size: int, writer,
                           progress: Progress, pid: str | None) -> None:
        offset = writer.size
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with repo.request("GET", repo.url(f"blobs/{digest}"), headers=headers) as resp:
            if resp.status == 416 and offset == size:
                return
            if resp.status == 200 and offset:
                writer.reset()  # the server ignored the range: start over
            elif resp.status == 206:
                start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                if start != str(offset):
                    raise VerificationError(f"blob {digest}: server sent range {start}, "
                                            f"asked for {offset}")
            elif resp.status != 200:
                raise error_from_body(resp.status, await read_body(resp))
            async for chunk in resp.content.iter_chunked(CHUNK):
                if writer.size + len(chunk) > size:
                    raise VerificationError(f"blob {digest} is larger than its {size} bytes")
                writer.write(chunk)
                if pid:
                    progress.bytes(pid, "Downloading", writer.size, size)
        if writer.size < size:
            raise aiohttp.ClientPayloadError(f"connection closed after {writer.size} bytes")

    # ------------------------------------------------------------------ push

    async def push(self, ref: str | Reference, *, manifest: bytes, media_type: str,
                   blobs: list[dict], content: ContentStore, progress: Progress | None = None,
                   mount_from: dict[str, str] | None = None,
                   progress_ids: dict[str, str] | None = None) -> str:
        """Upload `blobs` (layers and config) and `manifest`; returns the manifest's digest.
        Progress names each layer by `progress_ids[digest]` (docker shows the diff id's
        short form) or its blob's short digest; the config gets no progress line."""
        ref = parse(ref) if isinstance(ref, str) else ref
        progress = progress or Progress()
        if len(manifest) > MAX_MANIFEST:
            raise InvalidArgument(f"manifest is too large: {len(manifest)} bytes")
        doc = formats.parse_manifest(manifest, media_type)
        algo = dg.split(ref.digest)[0] if ref.digest else "sha256"
        digest = dg.of_bytes(manifest, algo)
        if ref.digest and ref.digest != digest:
            raise InvalidArgument(f"manifest digest {digest} does not match {ref.digest}")
        descs = [formats.validate_descriptor(b, "blob descriptor") for b in blobs]
        progress.status(f"The push refers to repository [{ref.name}]")
        async with self._session() as session:
            repo = await self._push_repo(session, ref)
            sem = asyncio.Semaphore(self.max_uploads)
            config_digest = (doc.get("config") or {}).get("digest")
            layer_ids = {d["digest"]: (progress_ids or {}).get(d["digest"])
                         or dg.short_id(d["digest"]) for d in descs
                         if d["digest"] != config_digest
                         and "config" not in d.get("mediaType", "")}
            for pid in layer_ids.values():
                progress.layer_started(pid, "Preparing")

            async def one(desc: dict) -> None:
                pid = layer_ids.get(desc["digest"])
                if pid and sem.locked():
                    progress.status("Waiting", pid)
                async with sem:
                    status = await self._push_blob(repo, desc, content, progress, pid,
                                                   (mount_from or {}).get(desc["digest"]))
                if pid:
                    progress.layer_done(pid, status)

            unique = {d["digest"]: d for d in descs}
            await _all([one(d) for d in unique.values()])
            target = ref.digest if ref.digest and not ref.tag else (ref.tag or "latest")
            headers = {"Content-Type": doc.get("mediaType") or media_type}
            async with repo.request("PUT", repo.url(f"manifests/{target}"), headers=headers,
                                    data=manifest) as resp:
                if resp.status not in (200, 201, 202):
                    raise error_from_body(resp.status, await read_body(resp))
                answered = resp.headers.get("Docker-Content-Digest")
            if answered and answered.split(":")[0] == algo and answered != digest:
                raise VerificationError(f"registry stored the manifest as {answered}, "
                                        f"expected {digest}")
        progress.status(f"{target}: digest: {digest} size: {len(manifest)}")
        return digest

    async def _push_repo(self, session: aiohttp.ClientSession, ref: Reference) -> RepoSession:
        """Ping /v2/ on each endpoint in turn (learning its challenge); the first that answers."""
        last: Exception | None = None
        for ep in self.endpoints(ref.domain, pull=False):
            repo = RepoSession(session, self.auth, ep, ref.path, "pull,push")
            try:
                await repo.ping()
                return repo
            except TRANSPORT_ERRORS as e:
                last = e
        raise RegistryError(f"cannot reach {ref.domain}: {last}")

    async def _push_blob(self, repo: RepoSession, desc: dict, content: ContentStore,
                         progress: Progress, pid: str | None, source: str | None) -> str:
        digest, size = desc["digest"], desc["size"]
        if content.size(digest) != size:
            raise InvalidArgument(f"blob {digest}: size {size} does not match the store's")
        async with repo.request("HEAD", repo.url(f"blobs/{digest}")) as resp:
            if resp.status == 200:
                self.known_blobs[(repo.ep.host, digest)] = repo.name
                return "Layer already exists"
            if resp.status != 404:
                raise error_from_body(resp.status, b"")
        source = source or self.known_blobs.get((repo.ep.host, digest))
        url = repo.url("blobs/uploads/")
        scopes = None
        if source and source != repo.name:
            url += "?" + urllib.parse.urlencode({"mount": digest, "from": source})
            scopes = [repo.scope, repository_scope(source, "pull")]
        async with repo.request("POST", url, scopes=scopes) as resp:
            if resp.status == 201 and source:
                self.known_blobs[(repo.ep.host, digest)] = repo.name
                return f"Mounted from {source}"
            if resp.status != 202:
                raise error_from_body(resp.status, await read_body(resp))
            location = repo.location(resp)
        if pid:
            progress.bytes(pid, "Pushing", 0, size)
        body, offset = b"", 0  # one PUT when it fits in a chunk, else PATCHes then a PUT
        with content.open(digest) as f:
            while offset < size:
                chunk = await asyncio.to_thread(f.read, min(self.chunk_size, size - offset))
                if not chunk:
                    raise DockyardError(f"blob {digest} is shorter than {size} bytes")
                if len(chunk) == size:
                    body = chunk
                    break
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                async with repo.request("PATCH", location, headers=headers, data=chunk) as resp:
                    if resp.status != 202:
                        raise error_from_body(resp.status, await read_body(resp))
                    location = repo.location(resp)
                offset += len(chunk)
                if pid:
                    progress.bytes(pid, "Pushing", offset, size)
        headers = {"Content-Type": "application/octet-stream"}
        async with repo.request("PUT", add_query(location, digest=digest), headers=headers,
                                data=body) as resp:
            if resp.status not in (201, 204):
                raise error_from_body(resp.status, await read_body(resp))
        if pid:
            progress.bytes(pid, "Pushing", size, size)
        self.known_blobs[(repo.ep.host, digest)] = repo.name
        return "Pushed"


async def _fetch_manifest(repo: RepoSession, reference: str,
                          expected: str | None) -> tuple[bytes, dict, str]:
    """(bytes, parsed document, digest) of a manifest or index, verified."""
    async with repo.request("GET", repo.url(f"manifests/{reference}"),
                            headers={"Accept": ACCEPT}) as resp:
        if resp.status != 200:
            raise error_from_body(resp.status, await read_body(resp))
        length = resp.content_length
        if length is not None and length > MAX_MANIFEST:
            raise RegistryError(f"manifest {reference} is too large: {length} bytes")
        data = await read_body(resp, MAX_MANIFEST)
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"manifest {reference} is too large: more than {MAX_MANIFEST} bytes")
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        announced = resp.headers.get("Docker-Content-Digest", "")
    algo = dg.split(expected)[0] if expected else "sha256"
    digest = dg.of_bytes(data, algo)
    if expected and digest != expected:
        raise VerificationError(f"manifest digest mismatch: expected {expected}, got {digest}")
    if (not expected and dg.is_valid(announced)
            and dg.of_bytes(data, dg.split(announced)[0]) != announced):
        raise VerificationError(f"manifest {reference} does not match the digest "
                                f"the registry announced ({announced})")
    return data, formats.parse_manifest(data, content_type), digest


def _tag_page(body: bytes, repo: str) -> list[str]:
    """The tags of one tags/list answer, checked (a registry's answer is hostile input)."""
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        raise RegistryError(f"{repo}: the tag list is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) and TAG_RE.fullmatch(t)
                                             for t in tags):
        raise RegistryError(f"{repo}: the tag list holds something that is not a tag")
    return tags


async def _all(coros: list[Awaitable[None]]) -> None:
    """Run all; on the first failure cancel the others and raise that failure."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
