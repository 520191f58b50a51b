"""Filesystem storage for the registry server.

Layout under the root (every state change is temp + fsync + rename):

    blobs/<algo>/<xx>/<hex>                     blob bytes, read-only once there
    repositories/<name>/_layers/<algo>/<hex>    empty file: the repo may serve the blob
    repositories/<name>/_manifests/revisions/<algo>/<hex>   {"mediaType": ...}
    repositories/<name>/_manifests/tags/<tag>   the digest the tag points at
    uploads/<uuid>/data, uploads/<uuid>/state.json   upload sessions
    tmp/                                        monolithic ingests; emptied at start

Upload state records the offset only after a chunk is fully written and
fsynced, so a kill -9 mid-chunk leaves `data` longer than the committed
offset; `recover()` (and an aborted chunk) truncates it back. Blobs become
visible by one rename, after the digest is verified; a repository link is
written after its blob, so a crash between the two leaves at worst an
unreferenced blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import DockyardError
from dockyard.fsutil import fsync_dir

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
UUID_RE = re.compile(r"[0-9a-f]{32}")
HEX_LEN = {"sha256": 64, "sha512": 128}
MAX_NAME = 255

MEDIA_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
}
INDEX_TYPES = {"application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.index.v1+json"}

STATUS = {
    "BLOB_UNKNOWN": 404, "BLOB_UPLOAD_INVALID": 400, "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400, "MANIFEST_BLOB_UNKNOWN": 400, "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404, "NAME_INVALID": 400, "NAME_UNKNOWN": 404, "SIZE_INVALID": 400,
    "TAG_INVALID": 400, "UNAUTHORIZED": 401, "DENIED": 403, "UNSUPPORTED": 405,
    "RANGE_INVALID": 416, "PAGINATION_NUMBER_INVALID": 400, "TOOMANYREQUESTS": 429,
}


class DistributionError(DockyardError):
    """An error of the distribution spec: `code` (e.g. BLOB_UNKNOWN) picks the status."""

    def __init__(self, code: str, message: str, detail: object = None, *,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or STATUS.get(code, 400)
        self.headers = headers or {}

    def body(self) -> dict:
        return {"errors": [{"code": self.code, "message": self.message,
                            "detail": self.detail if self.detail is not None else {}}]}


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise DistributionError("NAME_INVALID", "invalid repository name", {"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise DistributionError("TAG_INVALID", "manifest tag did not match URI", {"tag": tag[:300]})
    return tag


def parse_digest(digest: str) -> tuple[str, str]:
    m = DIGEST_RE.fullmatch(digest)
    if not m:
        raise DistributionError("DIGEST_INVALID", "invalid digest format", {"digest": digest[:300]})
    algo, hexpart = m.groups()
    if algo not in HEX_LEN:
        raise DistributionError("UNSUPPORTED", f"unsupported digest algorithm: {algo}",
                                {"digest": digest[:300]}, status=400)
    if len(hexpart) != HEX_LEN[algo] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise DistributionError("DIGEST_INVALID", "invalid digest format", {"digest": digest[:300]})
    return algo, hexpart


def is_digest(ref: str) -> bool:
    return ":" in ref


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` by temp file + fsync + rename (+ fsync of the directory)."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(d)


@dataclass
class Upload:
    repo: str
    id: str
    offset: int
    started: float
    dir: str

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")


class Ingest:
    """A blob being received: bytes go to a file, hashed on the way."""

    def __init__(self, path: str, offset: int = 0, hasher: object | None = None,
                 max_size: int | None = None) -> None:
        self.path = path
        self.start = offset
        self.offset = offset
        self.max_size = max_size
        self.hasher = hasher  # sha256 over data[0:offset], or None if unknown
        self.file = open(path, "r+b" if offset or os.path.exists(path) else "wb")  # noqa: SIM115
        self.file.seek(offset)
        self.file.truncate()

    def write(self, chunk: bytes) -> None:
        if self.max_size is not None and self.offset + len(chunk) > self.max_size:
            raise DistributionError("SIZE_INVALID", "blob exceeds the maximum size",
                                    {"max": self.max_size}, status=413)
        self.file.write(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)  # type: ignore[attr-defined]
        self.offset += len(chunk)

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def rollback(self) -> None:
        """Drop what this ingest wrote (an aborted chunk)."""
        self.file.truncate(self.start)
        self.offset = self.start
        self.hasher = None
        self.close()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def hash_file(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Storage:
    def __init__(self, root: str, max_blob_size: int | None = None) -> None:
        self.root = os.path.abspath(root)
        self.max_blob_size = max_blob_size
        # upload id -> (offset, sha256 state): spares re-reading the data at PUT
        self._hashers: dict[str, tuple[int, object]] = {}
        for d in ("blobs", "repositories", "uploads", "tmp"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)

    # ------------------------------------------------------------ recovery
    def recover(self, max_upload_age: float = 7 * 86400) -> None:
        """Make the store consistent after a crash: drop temp files and partial chunks.

        Upload sessions untouched for `max_upload_age` seconds are removed.
        """
        tmp = os.path.join(self.root, "tmp")
        for entry in os.listdir(tmp):
            _remove(os.path.join(tmp, entry))
        up = os.path.join(self.root, "uploads")
        for entry in os.listdir(up):
            d = os.path.join(up, entry)
            try:
                state = self._read_state(d)
            except (OSError, ValueError, KeyError):
                _remove(d)  # died before its state was written: never announced
                continue
            if os.path.getmtime(os.path.join(d, "state.json")) < time.time() - max_upload_age:
                _remove(d)
                continue
            data = os.path.join(d, "data")
            if not os.path.exists(data):
                _remove(d)
                continue
            if os.path.getsize(data) > state.offset:
                os.truncate(data, state.offset)
            for f in os.listdir(d):
                if f.startswith(".tmp-"):
                    _remove(os.path.join(d, f))

    # ------------------------------------------------------------ paths
    def blob_path(self, digest: str) -> str:
        algo, hexpart = parse_digest(digest)
        return os.path.join(self.root, "blobs", algo, hexpart[:2], hexpart)

    def _repo(self, repo: str) -> str:
        return os.path.join(self.root, "repositories", check_name(repo))

    def _layer_link(self, repo: str, digest: str) -> str:
        algo, hexpart = parse_digest(digest)
        return os.path.join(self._repo(repo), "_layers", algo, hexpart)

    def _revision(self, repo: str, digest: str) -> str:
        algo, hexpart = parse_digest(digest)
        return os.path.join(self._repo(repo), "_manifests", "revisions", algo, hexpart)

    def _tags_dir(self, repo: str) -> str:
        return os.path.join(self._repo(repo), "_manifests", "tags")

    # ------------------------------------------------------------ blobs
    def blob_size(self, digest: str) -> int | None:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.blob_path(digest), "rb")

    def repo_exists(self, repo: str) -> bool:
        d = self._repo(repo)
        return any(os.path.isdir(os.path.join(d, s)) for s in ("_layers", "_manifests"))

    def repo_blob_size(self, repo: str, digest: str) -> int | None:
        """The size of a blob the repository may serve, or None."""
        if not os.path.exists(self._layer_link(repo, digest)):
            return None
        return self.blob_size(digest)

    def link_blob(self, repo: str, digest: str) -> None:
        link = self._layer_link(repo, digest)
        if not os.path.exists(link):
            write_atomic(link, b"")

    def unlink_blob(self, repo: str, digest: str) -> bool:
        try:
            os.unlink(self._layer_link(repo, digest))
            return True
        except FileNotFoundError:
            return False

    def _commit(self, src: str, digest: str, size: int) -> None:
        """Move a verified file into blobs/ (an existing copy wins)."""
        dest = self.blob_path(digest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.exists(dest):
            os.unlink(src)
            return
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(src, 0o444)
        os.replace(src, dest)
        fsync_dir(os.path.dirname(dest))

    def new_ingest(self) -> Ingest:
        path = os.path.join(self.root, "tmp", uuid.uuid4().hex)
        return Ingest(path, hasher=hashlib.sha256(), max_size=self.max_blob_size)

    def finish_ingest(self, ing: Ingest, repo: str, digest: str) -> int:
        """Verify an ingest against `digest`, commit and link it; returns the size."""
        ing.close()
        try:
            self._verify(ing.path, ing.hasher, digest)
            self._commit(ing.path, digest, ing.offset)
        finally:
            _remove(ing.path)
        self.link_blob(repo, digest)
        return ing.offset

    def discard_ingest(self, ing: Ingest) -> None:
        ing.close()
        _remove(ing.path)

    def _verify(self, path: str, hasher: object | None, digest: str) -> None:
        algo, hexpart = parse_digest(digest)
        if algo == "sha256" and hasher is not None:
            got = hasher.hexdigest()  # type: ignore[attr-defined]
        else:
            got = hash_file(path, algo)
        if got != hexpart:
            raise DistributionError("DIGEST_INVALID", "provided digest did not match uploaded content",
                                    {"expected": digest, "actual": f"{algo}:{got}"})

    # ------------------------------------------------------------ uploads
    def _upload_dir(self, upload_id: str) -> str:
        if not UUID_RE.fullmatch(upload_id):
            raise DistributionError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                    {"uuid": upload_id[:100]})
        return os.path.join(self.root, "uploads", upload_id)

    def _read_state(self, d: str) -> Upload:
        with open(os.path.join(d, "state.json")) as f:
            s = json.load(f)
        return Upload(s["repo"], os.path.basename(d), int(s["offset"]), float(s["started"]), d)

    def _write_state(self, up: Upload) -> None:
        state = {"repo": up.repo, "offset": up.offset, "started": up.started}
        write_atomic(os.path.join(up.dir, "state.json"), json.dumps(state).encode())

    def create_upload(self, repo: str) -> Upload:
        check_name(repo)
        upload_id = uuid.uuid4().hex
        d = self._upload_dir(upload_id)
        os.makedirs(d)
        open(os.path.join(d, "data"), "wb").close()
        up = Upload(repo, upload_id, 0, time.time(), d)
        self._write_state(up)
        self._hashers[upload_id] = (0, hashlib.sha256())
        return up

    def get_upload(self, repo: str, upload_id: str) -> Upload:
        d = self._upload_dir(upload_id)
        try:
            up = self._read_state(d)
        except (OSError, ValueError, KeyError):
            up = None
        if up is None or up.repo != repo or not os.path.exists(up.data):
            raise DistributionError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                    {"uuid": upload_id})
        return up

    def append(self, up: Upload) -> Ingest:
        """An Ingest appending to the upload's data at its committed offset."""
        cached = self._hashers.pop(up.id, None)
        hasher = cached[1] if cached and cached[0] == up.offset else None
        return Ingest(up.data, up.offset, hasher, self.max_blob_size)

    def commit_chunk(self, up: Upload, ing: Ingest) -> None:
        ing.sync()
        ing.close()
        up.offset = ing.offset
        self._write_state(up)
        if ing.hasher is not None:
            self._hashers[up.id] = (up.offset, ing.hasher)

    def finish_upload(self, up: Upload, digest: str) -> int:
        """Verify and commit the upload's data as `digest`; the session is removed either way."""
        cached = self._hashers.pop(up.id, None)
        hasher = cached[1] if cached and cached[0] == up.offset else None
        try:
            self._verify(up.data, hasher, digest)
            # the session ends before its data moves: a crash in between loses the
            # upload (the client retries) but never leaves a session without data
            _remove(os.path.join(up.dir, "state.json"))
            fsync_dir(up.dir)
            self._commit(up.data, digest, up.offset)
            self.link_blob(up.repo, digest)
        finally:
            self.cancel_upload(up)
        return up.offset

    def cancel_upload(self, up: Upload) -> None:
        self._hashers.pop(up.id, None)
        # the state goes first: a half-removed session is never taken for a live one
        _remove(os.path.join(up.dir, "state.json"))
        _remove(up.dir)

    # ------------------------------------------------------------ manifests
    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if is_digest(ref):
            algo, hexpart = parse_digest(ref)
            if hashlib.new(algo, data).hexdigest() != hexpart:
                raise DistributionError("DIGEST_INVALID", "manifest digest did not match content",
                                        {"expected": ref, "actual": digest})
            digest = ref
        else:
            check_tag(ref)
        path = self.blob_path(digest)
        if not os.path.exists(path):
            tmp = os.path.join(self.root, "tmp", uuid.uuid4().hex)
            with open(tmp, "wb") as f:
                f.write(data)
            self._commit(tmp, digest, len(data))
        write_atomic(self._revision(repo, digest), json.dumps({"mediaType": media_type}).encode())
        if not is_digest(ref):
            write_atomic(os.path.join(self._tags_dir(repo), ref), digest.encode())
        return digest

    def resolve(self, repo: str, ref: str) -> str:
        if is_digest(ref):
            parse_digest(ref)
            return ref
        check_tag(ref)
        try:
            with open(os.path.join(self._tags_dir(repo), ref)) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise self._manifest_unknown(repo, ref) from None

    def _manifest_unknown(self, repo: str, ref: str) -> DistributionError:
        if not self.repo_exists(repo):
            return DistributionError("NAME_UNKNOWN", "repository name not known to registry",
                                     {"name": repo})
        return DistributionError("MANIFEST_UNKNOWN", "manifest unknown", {"reference": ref})

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest by tag or digest."""
        digest = self.resolve(repo, ref)
        try:
            with open(self._revision(repo, digest)) as f:
                media_type = json.load(f)["mediaType"]
            with open(self.blob_path(digest), "rb") as f:
                return f.read(), media_type, digest
        except (FileNotFoundError, ValueError, KeyError):
            raise self._manifest_unknown(repo, ref) from None

    def has_manifest(self, repo: str, digest: str) -> bool:
        return os.path.exists(self._revision(repo, digest))

    def delete_manifest(self, repo: str, ref: str) -> None:
        if not is_digest(ref):
            check_tag(ref)
            try:
                os.unlink(os.path.join(self._tags_dir(repo), ref))
            except FileNotFoundError:
                raise self._manifest_unknown(repo, ref) from None
            return
        rev = self._revision(repo, ref)
        if not os.path.exists(rev):
            raise self._manifest_unknown(repo, ref)
        for tag in self.tags(repo):  # tags first: none is left pointing at nothing
            p = os.path.join(self._tags_dir(repo), tag)
            try:
                with open(p) as f:
                    if f.read().strip() == ref:
                        os.unlink(p)
            except FileNotFoundError:
                pass
        os.unlink(rev)

    # ------------------------------------------------------------ listings
    def tags(self, repo: str) -> list[str]:
        try:
            entries = os.listdir(self._tags_dir(repo))
        except FileNotFoundError:
            if not self.repo_exists(repo):
                raise DistributionError("NAME_UNKNOWN", "repository name not known to registry",
                                        {"name": repo}) from None
            return []
        return sorted(e for e in entries if not e.startswith("."))

    def catalog(self) -> list[str]:
        base = os.path.join(self.root, "repositories")
        found = []
        for dirpath, dirnames, _files in os.walk(base):
            if "_layers" in dirnames or "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
