"""The content store: immutable blobs addressed by digest (containerd-like).

Layout under `root`:

    blobs/<algo>/<hex>     committed blobs, mode 0444, never partial
    ingest/<name>/data     an ingest in progress (resumable by its ref)
    ingest/<name>/ref      the ref the ingest was opened with
    ingest/<name>/lock     flock'd by the writer that owns the ingest

A Writer appends to ingest/<name>/data, verifies size and digest at commit,
fsyncs and renames the file into blobs/ (a rename is atomic, so a kill -9 at
any moment leaves either no blob or a whole one). Anything under blobs/ whose
name is not a valid hex digest (a stray temp file) is ignored.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Self

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.fsutil import fsync_dir
from dockyard.image import digest as dg

_SAFE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20

# ingest directories held by writers of this process: path -> owning thread id
_held: dict[str, int] = {}
_held_lock = threading.Lock()


class ContentStore:
    """Blobs by digest under `root`; see the module docstring for the layout."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.blobs_dir = os.path.join(self.root, "blobs")
        self.ingest_dir = os.path.join(self.root, "ingest")
        for algo in dg.ALGORITHMS:
            os.makedirs(os.path.join(self.blobs_dir, algo), mode=0o755, exist_ok=True)
        os.makedirs(self.ingest_dir, mode=0o700, exist_ok=True)

    # -- reading -------------------------------------------------------------

    def path(self, digest: str) -> str:
        algo, hexpart = dg.split(digest)
        return os.path.join(self.blobs_dir, algo, hexpart)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"no such blob: {digest}") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"no such blob: {digest}") from None

    def read(self, digest: str, limit: int = 32 << 20) -> bytes:
        """The whole blob, for small documents (manifests, configs); refuses larger ones."""
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise InvalidArgument(
                    f"blob {digest} is too large to read: {size} bytes, limit {limit}"
                )
            return f.read(limit + 1)[:limit]

    def list(self) -> Iterator[str]:
        """Digests of every committed blob (stray files are skipped)."""
        for algo, length in dg.ALGORITHMS.items():
            d = os.path.join(self.blobs_dir, algo)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for name in sorted(names):
                if len(name) == length and re.fullmatch(r"[a-f0-9]+", name):
                    yield f"{algo}:{name}"

    # -- writing -------------------------------------------------------------

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data`; with `expected`, refuse it unless its digest matches."""
        algo = dg.split(expected)[0] if expected else "sha256"
        computed = dg.of_bytes(data, algo)
        if expected and computed != expected:
            raise InvalidArgument(f"digest mismatch: expected {expected}, got {computed}")
        if self.exists(computed):
            return computed
        with self.writer(f"put-{uuid.uuid4().hex}", expected=computed,
                         expected_size=len(data)) as w:
            w.write(data)
            return w.commit()

    def writer(self, ref: str, expected: str | None = None,
               expected_size: int | None = None, wait: bool = True) -> Writer:
        """Open (or resume) the ingest named `ref`.

        Another writer on the same ref (another process or thread) makes this
        one wait for it (or Conflict with wait=False); a second writer on the
        same ref in the same thread is a Conflict (it would deadlock).
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("invalid ingest ref: empty")
        if expected is not None:
            dg.validate(expected, "expected digest")
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"invalid expected size for {ref}: {expected_size}")
        return Writer(self, ref, expected, expected_size, wait)

    def ingest_path(self, ref: str) -> str:
        """The ingest directory of `ref` (a hashed name when `ref` is not a safe file name)."""
        name = ref if _SAFE_REF.match(ref) else "h-" + hashlib.sha256(ref.encode()).hexdigest()[:40]
        return os.path.join(self.ingest_dir, name)

    # -- removing ------------------------------------------------------------

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"no such blob: {digest}") from None

    def gc(self, keep: set[str], ingest_max_age: float = 0.0) -> list[str]:
        """Remove every blob not in `keep`, and every ingest no writer holds that
        was last written more than `ingest_max_age` seconds ago. Returns the
        removed blobs' digests. The caller keeps pulls from racing with gc."""
        removed = []
        for d in list(self.list()):
            if d in keep:
                continue
            try:
                os.unlink(self.path(d))
                removed.append(d)
            except FileNotFoundError:
                pass
        now = time.time()
        for name in os.listdir(self.ingest_dir):
            self._remove_stale_ingest(os.path.join(self.ingest_dir, name), now, ingest_max_age)
        return removed

    def _remove_stale_ingest(self, path: str, now: float, max_age: float) -> None:
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        except NotADirectoryError:
            os.unlink(path)
            return
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # a live writer owns it
            try:
                mtime = max(os.stat(os.path.join(path, n)).st_mtime for n in os.listdir(path))
            except (ValueError, FileNotFoundError):
                mtime = 0.0
            if now - mtime >= max_age:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            if fd >= 0:
                os.close(fd)


class Writer:
    """An ingest in progress. Use as a context manager: an exception aborts it.

    `offset` is the number of bytes already in the ingest when it was opened
    (a resumed ingest: continue from there, e.g. with an HTTP Range request).
    Leaving the `with` block without commit() or abort() closes the writer and
    keeps the ingest for a later resume.
    """

    def __init__(self, store: ContentStore, ref: str, expected: str | None,
                 expected_size: int | None, wait: bool) -> None:
        self._lock_fd = -1
        self._file: BinaryIO | None = None
        self.store = store
        self.ref = ref
        self.expected = expected
        self.expected_size = expected_size
        self.dir = store.ingest_path(ref)
        self._algo = dg.split(expected)[0] if expected else "sha256"
        self._acquire(wait)
        try:
            self._open_data()
        except BaseException:
            self._release()
            raise

    # -- set-up --------------------------------------------------------------

    def _acquire(self, wait: bool) -> None:
        me = threading.get_ident()
        with _held_lock:
            if _held.get(self.dir) == me:
                raise Conflict(f"ingest {self.ref} is already open in this thread")
        lock_path = os.path.join(self.dir, "lock")
        while True:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the directory was removed under us: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise Conflict(f"ingest {self.ref} is locked by another writer") from None
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # we locked a lock file that its owner removed: retry
        self._lock_fd = fd
        with _held_lock:
            _held[self.dir] = me
        ref_path = os.path.join(self.dir, "ref")
        with open(ref_path + ".tmp", "w") as f:
            f.write(self.ref)
        os.replace(ref_path + ".tmp", ref_path)

    def _open_data(self) -> None:
        fd = os.open(os.path.join(self.dir, "data"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._file = os.fdopen(fd, "r+b")
        self._hash = dg.hasher(self._algo)
        size = os.fstat(fd).st_size
        if self.expected_size is not None and size > self.expected_size:
            self._file.truncate(0)  # longer than the blob can be: start over
            size = 0
        remaining = size
        while remaining > 0:
            chunk = self._file.read(min(_CHUNK, remaining))
            if not chunk:
                break
            self._hash.update(chunk)
            remaining -= len(chunk)
        self.offset = size - remaining
        if remaining:
            self._file.truncate(self.offset)
        self._file.seek(self.offset)
        self._size = self.offset

    # -- writing -------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the ingest so far."""
        return self._size

    @property
    def digest(self) -> str:
        """The digest of what has been written so far."""
        return f"{self._algo}:{self._hash.hexdigest()}"

    def write(self, data: bytes) -> None:
        f = self._require_open()
        if self.expected_size is not None and self._size + len(data) > self.expected_size:
            raise InvalidArgument(
                f"size mismatch for {self.expected or self.ref}: more than the expected "
                f"{self.expected_size} bytes"
            )
        f.write(data)
        self._hash.update(data)
        self._size += len(data)

    def reset(self) -> None:
        """Drop what the ingest holds and start again at offset 0."""
        f = self._require_open()
        f.seek(0)
        f.truncate(0)
        self._hash = dg.hasher(self._algo)
        self._size = 0
        self.offset = 0

    def commit(self) -> str:
        """Verify, fsync and move the data into blobs/; returns the digest."""
        f = self._require_open()
        f.flush()
        os.fsync(f.fileno())
        computed = self.digest
        if self.expected_size is not None and self._size != self.expected_size:
            self.abort()
            raise InvalidArgument(
                f"size mismatch for {self.expected or computed}: expected "
                f"{self.expected_size} bytes, got {self._size}"
            )
        if self.expected and computed != self.expected:
            self.abort()
            raise InvalidArgument(f"digest mismatch: expected {self.expected}, got {computed}")
        os.fchmod(f.fileno(), 0o444)
        f.close()
        self._file = None
        data = os.path.join(self.dir, "data")
        target = self.store.path(computed)
        if os.path.exists(target):
            os.unlink(data)
        else:
            os.rename(data, target)
            fsync_dir(os.path.dirname(target))
        self._remove_ingest()
        return computed

    def abort(self) -> None:
        """Remove the ingest (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_fd >= 0:
            self._remove_ingest()

    def close(self) -> None:
        """Release the ingest, keeping its data for a later writer(ref) to resume."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None
        self._release()

    def _require_open(self) -> BinaryIO:
        if self._file is None:
            raise InvalidArgument(f"ingest {self.ref} is closed")
        return self._file

    def _remove_ingest(self) -> None:
        for name in ("data", "ref", "lock"):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                raise
        self._release()

    def _release(self) -> None:
        if self._lock_fd >= 0:
            with _held_lock:
                _held.pop(self.dir, None)
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        if self._lock_fd >= 0 or self._file is not None:
            self.close()
