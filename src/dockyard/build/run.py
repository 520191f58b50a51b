"""RUN: the command in a container made by the engine (same isolation, seccomp and
default network as `docker run`), its output streamed from the container's log,
its file system changes committed as one layer through the snapshotter's diff.

RUN --mount: type=cache (a directory under <data-root>/builder/cache-mounts kept
between builds), type=bind (from the context: the subtree copied to a scratch
directory; from a stage or image: that image's layer view), type=tmpfs,
type=secret (the secret the client sent through the context's secret channel,
context.py, written to a daemon-private file of mode 0400 (or `mode`, owned by
`uid`/`gid`) bind-mounted read-only at /run/secrets/<id> or `target`; a missing
secret is an error with `required`, else nothing is mounted). Mount targets the
runtime had to create are left out of the layer. A secret's content is never in a
cache key (BuildKit's rule: only its id, target and options are), so changing only
the content is a cache hit.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

EXIT_POLL = 0.1

_ACTIVE_LOCK = threading.Lock()
ACTIVE_CACHE_MOUNTS: dict[str, int] = {}  # path -> running steps using it (prune skips)


def _hold_cache_mount(path: str) -> None:
    with _ACTIVE_LOCK:
        ACTIVE_CACHE_MOUNTS[path] = ACTIVE_CACHE_MOUNTS.get(path, 0) + 1


def _release_cache_mount(path: str) -> None:
    with _ACTIVE_LOCK:
        left = ACTIVE_CACHE_MOUNTS.get(path, 1) - 1
        if left > 0:
            ACTIVE_CACHE_MOUNTS[path] = left
        else:
            ACTIVE_CACHE_MOUNTS.pop(path, None)


def cache_mount_in_use(path: str) -> bool:
    with _ACTIVE_LOCK:
        return path in ACTIVE_CACHE_MOUNTS


@dataclass
class Mount:
    kind: str  # cache | bind | tmpfs | secret
    target: str
    source: str = ""
    from_: str = ""
    id: str = ""
    readonly: bool = False
    opts: dict = field(default_factory=dict)

    def key(self) -> dict:
        doc = {"type": self.kind, "target": self.target, "source": self.source,
               "from": self.from_, "id": self.id, "ro": self.readonly}
        if self.kind == "secret":  # the options, never the content
            doc["opts"] = sorted(self.opts.items())
        return doc


def parse_mount(spec: str, workdir: str) -> Mount:
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if eq:
            fields[key] = value.strip()
        else:
            flags.add(key)
    kind = fields.pop("type", "bind")
    if kind not in ("cache", "bind", "tmpfs", "secret"):
        raise InvalidArgument(f"unsupported mount type {kind!r}")
    target = fields.pop("target", "") or fields.pop("dst", "") or fields.pop("destination", "")
    if not target and kind != "secret":
        raise InvalidArgument("mount target must be specified")
    if target and not target.startswith("/"):
        target = posixpath.join(workdir or "/", target)
    ro = "ro" in flags or "readonly" in flags or fields.get("readonly", "") in ("true", "1")
    if kind == "bind" and "rw" not in flags and fields.get("rw") not in ("true", "1"):
        ro = True
    m = Mount(kind, posixpath.normpath(target) if target else "",
              source=fields.pop("source", "") or fields.pop("src", ""),
              from_=fields.pop("from", ""), id=fields.pop("id", ""), readonly=ro, opts=fields)
    if kind == "secret":
        _secret_options(m, fields, flags)
    if m.source and ".." in m.source.split("/") and not m.from_:
        raise InvalidArgument(f"forbidden path outside the build context: {m.source}")
    return m


def _secret_options(m: Mount, fields: dict[str, str], flags: set[str]) -> None:
    if not m.id:
        m.id = posixpath.basename(m.target) if m.target else ""
    if not m.id:
        raise InvalidArgument("RUN --mount=type=secret needs an id or a target")
    if not m.target:
        m.target = "/run/secrets/" + m.id
    required = "required" in flags or fields.get("required", "").lower() in ("true", "1")
    try:
        mode = int(fields.get("mode", "0400"), 8)
        uid, gid = int(fields.get("uid", "0")), int(fields.get("gid", "0"))
    except ValueError:
        raise InvalidArgument("RUN --mount=type=secret: mode must be octal, uid and gid "
                              "numbers") from None
    if not 0 <= mode <= 0o7777 or uid < 0 or gid < 0:
        raise InvalidArgument("RUN --mount=type=secret: invalid mode, uid or gid")
    m.readonly = True
    m.opts = {"required": required, "mode": mode, "uid": uid, "gid": gid}


def host_config(opts: Any, network: str) -> dict:
    hc: dict[str, Any] = {"LogConfig": {"Type": "json-file", "Config": {}}}
    if network and network != "default":
        hc["NetworkMode"] = network
    for key, value in (("Memory", opts.memory), ("MemorySwap", opts.memswap),
                       ("CpuShares", opts.cpu_shares), ("CpuPeriod", opts.cpu_period),
                       ("CpuQuota", opts.cpu_quota), ("CpusetCpus", opts.cpuset_cpus),
                       ("CpusetMems", opts.cpuset_mems), ("ShmSize", opts.shm_size)):
        if value:
            hc[key] = value
    if opts.extra_hosts:
        hc["ExtraHosts"] = list(opts.extra_hosts)
    return hc


class RunStep:
    """One RUN: create, start, stream, wait, commit, remove."""

    def __init__(self, engine: Any, scratch: str, data_root: str,
                 emit: Callable[[str], None], cancel: Any = None):
        self.engine = engine
        self.cancel = cancel  # a threading.Event: set, the running container is killed
        self.scratch = scratch
        self.data_root = data_root
        self.emit = emit
        self._cleanups: list[Callable[[], None]] = []

    # -- mounts ---------------------------------------------------------------------

    def binds(self, mounts: list[Mount], hc: dict, context_dir: Callable[[str], str],
              image_dir: Callable[[str, str], str],
              secrets: dict[str, bytes] | None = None) -> set[str]:
        """Fill HostConfig Binds/Tmpfs for `mounts`; returns their targets."""
        binds: list[str] = list(hc.get("Binds") or [])
        tmpfs: dict[str, str] = dict(hc.get("Tmpfs") or {})
        for m in mounts:
            if m.kind == "secret":
                data = (secrets or {}).get(m.id)
                if data is None:
                    if m.opts.get("required"):
                        raise InvalidArgument(f"secret {m.id} not found: it is required "
                                              f"(send it with --secret id={m.id},src=FILE)")
                    continue
                binds.append(f"{self._secret_file(m, data)}:{m.target}:ro")
                continue
            if m.kind == "tmpfs":
                size = m.opts.get("size")
                tmpfs[m.target] = f"size={size}" if size else ""
                continue
            if m.kind == "cache":
                ident = m.id or m.target
                path = os.path.join(self.data_root, "builder", "cache-mounts",
                                    hashlib.sha256(ident.encode()).hexdigest()[:32])
                os.makedirs(path, mode=0o755, exist_ok=True)
                os.utime(path)  # its "last used" for df and builder prune
                _hold_cache_mount(path)
                self.on_cleanup(lambda p=path: _release_cache_mount(p))
                src = path
            elif m.from_:
                src = image_dir(m.from_, m.source or "/")
            else:
                src = context_dir(m.source or "/")
            binds.append(f"{src}:{m.target}:{'ro' if m.readonly else 'rw'}")
        if binds:
            hc["Binds"] = binds
        if tmpfs:
            hc["Tmpfs"] = tmpfs
        return {m.target for m in mounts}

    def _secret_file(self, m: Mount, data: bytes) -> str:
        """The secret in a file of its own under the build's private scratch directory."""
        d = tempfile.mkdtemp(dir=self.scratch)
        self.on_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
        path = os.path.join(d, "secret")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, data)
            os.fchown(fd, m.opts["uid"], m.opts["gid"])
            os.fchmod(fd, m.opts["mode"])
        finally:
            os.close(fd)
        return path

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    # -- the container -----------------------------------------------------------------

    def run(self, parent_id: str, argv: list[str], env: list[str], user: str, workdir: str,
            hc: dict, *, keep_failed: bool, remove: bool) -> tuple[str, Callable]:
        """Run `argv` on image `parent_id`; returns (container id, commit function)."""
        from dockyard.engine.logs import Cursor

        config = {"Image": parent_id, "Entrypoint": argv, "Cmd": None, "Env": env,
                  "User": user, "WorkingDir": workdir, "AttachStdout": True,
                  "AttachStderr": True, "Labels": {},
                  "Healthcheck": {"Test": ["NONE"]}}  # no probes while a step runs
        cid = self.engine.create(config, hc)
        self.emit(f" ---> Running in {cid[:12]}\n")
        ok = False
        try:
            block = self.engine.waiter(cid, "next-exit")
            self.engine.start(cid)
            c = self.engine.get(cid)
            log_path = os.path.join(c.path, f"{cid}-json.log")
            cursor = None
            code = None
            while True:
                try:
                    code = block(EXIT_POLL)
                except TimeoutError:
                    code = None
                if cursor is None:
                    try:
                        cursor = Cursor(log_path, False)
                    except FileNotFoundError:
                        cursor = None
                if cursor is not None:
                    for rec in cursor.poll():
                        self.emit(rec[1])
                if code is not None:
                    break
                if self.cancel is not None and self.cancel.is_set():
                    if cursor is not None:
                        cursor.close()
                    self._remove(cid)  # killed and removed, never committed
                    ok = True  # (already removed)
                    raise Cancelled("build cancelled: the client went away")
            if cursor is not None:
                cursor.close()
            if code != 0:
                cmd = " ".join(argv)
                raise RunFailed(f"The command '{cmd}' returned a non-zero code: {code}", code)
            ok = True
        finally:
            if not ok and not keep_failed:
                self._remove(cid)
        return cid, lambda: self._remove(cid) if remove else None

    def _remove(self, cid: str) -> None:
        try:
            self.engine.remove(cid, force=True, volumes=True)
            self.emit(f"Removing intermediate container {cid[:12]}\n")
        except NotFound:
            pass

    def cleanup(self) -> None:
        for fn in reversed(self._cleanups):
            try:
                fn()
            except (DockyardError, OSError):
                pass
        self._cleanups.clear()


class Cancelled(DockyardError):
    status = 400


class RunFailed(DockyardError):
    status = 400

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def scratch_dir(parent: str) -> str:
    return tempfile.mkdtemp(dir=parent)


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
