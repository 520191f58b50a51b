"""The builder: a context and options in, an image out, docker's legacy output on the way.

Each stage runs in a thread of its own as soon as the stages it needs are done
(independent stages build in parallel); stages the target does not need are
skipped. Every step goes through the cache (cache.py) and makes one image on
top of the previous step's: metadata steps make a config only, RUN steps run a
container through the engine, COPY/ADD/WORKDIR write a layer directly.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.build import cache as cachemod
from dockyard.build import config as cfgmod
from dockyard.build import instructions as ins
from dockyard.build import parser, stages
from dockyard.build.context import BuildContext
from dockyard.build.run import Cancelled
from dockyard.build.steps import StepRunner
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.image import digest as dg
from dockyard.image.store import ImageRecord


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    network_mode: str = ""
    extra_hosts: list[str] = field(default_factory=list)
    cache_from: list[str] = field(default_factory=list)
    shm_size: int = 0
    memory: int = 0
    memswap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    platform: str = ""
    remote: str = ""  # a git URL or an http(s) URL of a tar or a Dockerfile
    # (username, password) per registry host, from the request (X-Registry-Config)
    registry_auth: dict[str, tuple[str, str]] = field(default_factory=dict)
    # how the API hands credentials to a pull: credentials -> context manager
    with_credentials: Callable[[tuple[str, str] | None], Any] | None = None
    # set when the client went away: the build stops (the running step's container is
    # killed and removed, nothing more is committed or tagged)
    cancel: threading.Event = field(default_factory=threading.Event)


MAX_REMOTE = 1 << 30


class Build:
    """One build (one request)."""

    def __init__(self, builder: Builder, ctx: BuildContext, opts: BuildOptions,
                 emit: Callable[[dict], None]):
        self.b = builder
        self.svc = builder.images
        self.ctx = ctx
        self.opts = opts
        self._emit = emit
        self._lock = threading.Lock()
        self.failed = threading.Event()
        self.results: dict[int, Future] = {}
        self.scratch = tempfile.mkdtemp(prefix="build-", dir=builder.tmp)
        self.consumed: set[str] = set()
        self.cache_sources: list[ImageRecord] = []  # --cache-from images found

    def say(self, text: str) -> None:
        if self.opts.quiet:
            return
        with self._lock:
            self._emit({"stream": text})

    def step_header(self, num: int, total: int, original: str) -> None:
        self.say(f"Step {num}/{total} : {original}\n")

    # -- the whole build -----------------------------------------------------------------

    def run(self) -> str:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _dockerfile(self) -> parser.Dockerfile:
        name = posixpath.normpath(self.opts.dockerfile or "Dockerfile").lstrip("/")
        entry = self.ctx.entries.get(name)
        if entry is None or entry.kind != "file":
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {self.opts.dockerfile}")
        data = self.ctx.read_file(entry)
        if not data.strip():
            raise InvalidArgument(f"the Dockerfile ({self.opts.dockerfile}) cannot be empty")
        self.ctx.hide_ignored(name)
        shown = posixpath.basename(name)
        if shown.startswith(".dockerfile."):  # sent by the client from outside the context
            shown = "Dockerfile"
        return parser.parse(data, shown or "Dockerfile")

    def _run(self) -> str:
        df = self._dockerfile()
        for w in df.warnings:
            self.say(f"[WARNING]: {w}\n")
        self.plan = plan = stages.plan(df, self.opts.build_args, self.opts.target)
        for ref in self.opts.cache_from:  # as dockerd: one not found is skipped
            try:
                self.cache_sources.append(self.svc.get(ref))
            except (NotFound, InvalidArgument):
                self.say(f"[Warning] cache-from image {ref} not found: ignored\n")
        self.df = df
        self.consumed |= plan.consumed
        num = 0
        for arg in plan.meta_steps:
            num += 1
            self.step_header(num, plan.total_steps, arg.node.original)
        self.offsets: dict[int, int] = {}
        for s in plan.stages:
            self.offsets[s.index] = num
            num += 1 + len(s.steps)
        pool = ThreadPoolExecutor(max_workers=max(1, len(plan.needed)),
                                  thread_name_prefix="build-stage")
        try:
            for i in plan.needed:
                self.results[i] = pool.submit(self._stage_guarded, plan.stages[i])
            final: ImageRecord | None = self.results[plan.target].result()
            for i in plan.needed:  # an error in a stage nothing waited for
                self.results[i].result()
        finally:
            pool.shutdown(wait=True)
        self.check_cancelled()
        runner = StepRunner(self, None)
        if self.opts.labels:
            final = runner.labels(final, self.opts.labels)
        if final is None:  # FROM scratch and nothing else
            final = runner.empty_image(cfgmod.StageState({}))
        unused = sorted(k for k in self.opts.build_args if k not in self.consumed
                        and k not in stages.PROXY_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed\n")
        self.check_cancelled()
        self._emit({"aux": {"ID": final.id}})
        self.say(f"Successfully built {dg.short_id(final.id)}\n")
        for tag in self.opts.tags:
            ref = self.svc.reference(tag)
            self.svc.images.tag(final.id, ref)
            self.say(f"Successfully tagged {ref.familiar()}\n")
        return final.id

    def _stage_guarded(self, stage: stages.Stage) -> ImageRecord | None:
        try:
            return self._stage(stage)
        except BaseException:
            self.failed.set()
            raise

    def check_cancelled(self) -> None:
        if self.opts.cancel.is_set():
            raise Cancelled("build cancelled: the client went away")

    def stage_image(self, index: int) -> ImageRecord | None:
        return self.results[index].result()

    def _stage(self, stage: stages.Stage) -> ImageRecord | None:
        plan = self.plan
        num = self.offsets[stage.index] + 1
        self.step_header(num, plan.total_steps, stage.from_.node.original)
        if stage.base_stage is not None:
            image = self.stage_image(stage.base_stage)
        elif stage.base.lower() == "scratch":
            image = None
        else:
            image = self.base_image(stage.base)
        if image is not None:
            self.say(f" ---> {dg.short_id(image.id)}\n")
        st = cfgmod.StageState.from_image_config(
            (image.config.get("config") if image else None) or {}, self.df.escape)
        runner = StepRunner(self, stage)
        triggers = list(st.config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            self.say(f"# Executing {len(triggers)} build trigger"
                     f"{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                node = parser.parse(text, "ONBUILD").nodes[0]
                node.line = stage.from_.line
                instr = ins.build(node, self.df.escape)
                image = self._one(runner, instr, st, image)
        elif image is not None and image.config.get("config", {}).get("OnBuild"):
            st.config["OnBuild"] = None
        for instr in stage.steps:
            num += 1
            self.check_cancelled()
            if self.failed.is_set():
                raise Cancelled("build cancelled: another stage failed")
            self.step_header(num, plan.total_steps, instr.node.original)
            image = self._one(runner, instr, st, image)
        return image

    def _one(self, runner: StepRunner, instr: ins.Instruction, st: cfgmod.StageState,
             image: ImageRecord | None) -> ImageRecord | None:
        try:
            return runner.step(instr, st, image)
        except parser.DockerfileError:
            raise
        except (DockyardError, OSError, LookupError) as e:
            if isinstance(e, (NotFound, InvalidArgument)) and not isinstance(
                    e, parser.DockerfileError) and getattr(e, "step_error", True):
                raise type(e)(f"{self.df.filename}:{instr.line}: {e}") from None
            raise

    # -- images ---------------------------------------------------------------------------

    def base_image(self, name: str) -> ImageRecord:
        if not self.opts.pull:
            try:
                return self.svc.get(name)
            except NotFound:
                pass
        import contextlib

        from dockyard.registry.progress import JSONRenderer, Progress

        domain = self.svc.reference(name).domain
        creds = self.opts.registry_auth.get(domain) or (
            self.opts.registry_auth.get("https://index.docker.io/v1/")
            if domain == "docker.io" else None)
        using = self.opts.with_credentials(creds) if self.opts.with_credentials \
            else contextlib.nullcontext()
        with self.b.pull_lock, using:
            try:
                self.svc.pull(name, Progress(JSONRenderer(self._locked_emit)))
            except DockyardError:
                if not self.opts.pull:
                    raise
                return self.svc.get(name)  # --pull of an image only here: docker uses it
        return self.svc.get(name)

    def _locked_emit(self, msg: dict) -> None:
        if self.opts.quiet:
            return
        with self._lock:
            self._emit(msg)


class Builder:
    """The daemon's builder: one per daemon, shared by concurrent builds."""

    def __init__(self, engine: Any, images: Any, data_root: str):
        self.engine = engine
        self.images = images
        self.data_root = data_root
        self.tmp = os.path.join(data_root, "builder", "tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        self.cache = cachemod.BuildCache(data_root)
        self.pull_lock = threading.Lock()

    def close(self) -> None:
        self.cache.close()

    def build(self, body: BinaryIO, opts: BuildOptions, emit: Callable[[dict], None]) -> str:
        ctx = BuildContext.from_stream(body, self.tmp)
        try:
            return Build(self, ctx, opts, emit).run()
        finally:
            ctx.close()

    def build_remote(self, remote: str, opts: BuildOptions,
                     emit: Callable[[dict], None]) -> str:
        """A build whose context is fetched by the daemon (POST /build?remote=)."""
        import tarfile
        import urllib.request

        from dockyard.build import git

        scratch = tempfile.mkdtemp(dir=self.tmp)
        try:
            with tempfile.TemporaryFile(dir=self.tmp) as spool:
                if git.is_git_url(remote):
                    _, top, _ = git.checkout(remote, scratch)
                    with tarfile.open(fileobj=spool, mode="w") as tar:
                        tar.add(top, arcname=".")  # symlinks are kept as symlinks
                else:
                    with urllib.request.urlopen(remote, timeout=60) as resp:
                        data = resp.read(MAX_REMOTE + 1)
                    if len(data) > MAX_REMOTE:
                        raise InvalidArgument(f"remote context larger than {MAX_REMOTE} bytes")
                    if data[257:262] == b"ustar" or data[:3] in (b"\x1f\x8b\x08", b"BZh") \
                            or data[:4] == b"\x28\xb5\x2f\xfd":
                        spool.write(data)
                    else:  # a Dockerfile alone
                        import io
                        with tarfile.open(fileobj=spool, mode="w") as tar:
                            info = tarfile.TarInfo(opts.dockerfile or "Dockerfile")
                            info.size = len(data)
                            tar.addfile(info, io.BytesIO(data))
                spool.seek(0)
                return self.build(spool, opts, emit)
        except OSError as e:
            raise InvalidArgument(f"cannot fetch the remote context {remote}: {e}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- df and prune --------------------------------------------------------------------

    def _shared_and_used(self) -> tuple[set[str], set[str]]:
        """(images in the chain of a tagged image, images containers use)."""
        shared: set[str] = set()
        for image in self.images.images.list():
            if not (image.repo_tags or image.repo_digests):
                continue
            cur: str | None = image.id
            while cur and cur not in shared:
                shared.add(cur)
                try:
                    cur = self.images.images.get(cur).parent
                except NotFound:
                    break
        in_use = {c.image for c in self.engine.store.list()} if self.engine else set()
        return shared, in_use

    def usage(self) -> list[dict]:
        """The build cache for GET /system/df: one "regular" record per cached step
        (its size: the layer it added), one "exec.cachemount" per RUN cache mount."""
        from dockyard.build.run import cache_mount_in_use
        from dockyard.image.formats import format_time

        shared, in_use = self._shared_and_used()
        out = []
        for e in self.cache.entries():
            try:
                image = self.images.images.get(e["image_id"])
            except NotFound:
                continue
            out.append({"ID": e["key"].removeprefix("sha256:")[:25], "Parents": None,
                        "Parent": "", "Type": "regular", "Description": e["description"],
                        "InUse": image.id in in_use, "Shared": image.id in shared,
                        "Size": _own_layer_size(self.images, image),
                        "CreatedAt": format_time(e["created"]),
                        "LastUsedAt": format_time(e["last_used"]), "UsageCount": 1,
                        "_key": e["key"], "_image": image.id, "_last": e["last_used"]})
        for name, path, last in self._cache_mounts():
            out.append({"ID": name[:25], "Parents": None, "Parent": "",
                        "Type": "exec.cachemount",
                        "Description": "cached mount (RUN --mount=type=cache)",
                        "InUse": cache_mount_in_use(path), "Shared": False,
                        "Size": _tree_size(path), "CreatedAt": format_time(last),
                        "LastUsedAt": format_time(last), "UsageCount": 1,
                        "_key": name, "_path": path, "_last": last})
        return out

    def _cache_mounts(self) -> list[tuple[str, str, float]]:
        root = os.path.join(self.data_root, "builder", "cache-mounts")
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            path = os.path.join(root, name)
            try:
                out.append((name, path, os.lstat(path).st_mtime))
            except FileNotFoundError:
                continue
        return out

    def prune(self, all_: bool = False, keep_storage: int = 0,
              filters: dict[str, list[str]] | None = None) -> tuple[list[str], int]:
        """builder prune / POST /build/prune. Records in use (their image is a running
        or stopped container's) are never removed; without `all_` neither are those
        shared with a tagged image's chain (only "dangling" cache goes). Filters:
        until / unused-for (a Go duration: not used for that long), id, type,
        description. keep-storage: the least recently used records go first, until
        what is left is at most that many bytes. Returns (deleted IDs, bytes freed)."""
        import time as _time

        filters = filters or {}
        now = _time.time()
        min_idle = max([parse_duration(v) for k in ("until", "unused-for")
                        for v in filters.get(k, [])] or [0.0])
        records = self.usage()
        candidates = []
        for r in records:
            if r["InUse"] or (r["Shared"] and not all_):
                continue
            if min_idle and now - r["_last"] < min_idle:
                continue
            if filters.get("id") and not any(r["_key"].removeprefix("sha256:").startswith(
                    v.removeprefix("sha256:")) for v in filters["id"]):
                continue
            if filters.get("type") and r["Type"] not in filters["type"]:
                continue
            if filters.get("description") and not any(
                    v in r["Description"] for v in filters["description"]):
                continue
            candidates.append(r)
        candidates.sort(key=lambda r: r["_last"])
        total = sum(r["Size"] for r in records)
        chosen = []
        for r in candidates:
            if keep_storage and total <= keep_storage:
                break
            chosen.append(r)
            total -= r["Size"]
        keys = {r["_key"] for r in chosen if r["Type"] == "regular"}
        gone = self.cache.prune(lambda e: e["key"] not in keys)
        space = 0
        for r in chosen:
            if r["Type"] == "exec.cachemount":
                space += r["Size"]
                shutil.rmtree(r["_path"], ignore_errors=True)
        space += self._remove_images({e["image_id"] for e in gone})
        return [r["ID"] for r in chosen], space

    def _remove_images(self, ids: set[str]) -> int:
        """Remove the intermediate images only the forgotten cache records kept."""
        kept = {e["image_id"] for e in self.cache.entries()}
        in_use = {c.image for c in self.engine.store.list()} if self.engine else set()
        deleted: list[str] = []
        space = 0
        progress = True
        while progress:
            progress = False
            for image_id in sorted(ids - set(deleted) - kept - in_use):
                try:
                    image = self.images.images.get(image_id)
                except NotFound:
                    continue
                if image.repo_tags or image.repo_digests or self.images.images.children(
                        image_id):
                    continue
                size = _own_layer_size(self.images, image)
                self.images.images.delete(image_id)
                deleted.append(image_id)
                space += size or 0
                progress = True
        self.images.gc()
        return space


def parse_duration(text: str) -> float:
    """A Go duration ("24h", "1h30m", "90s", "500ms") or plain seconds -> seconds."""
    import re

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0, "d": 86400.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def _tree_size(path: str) -> int:
    total = 0
    for base, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _own_layer_size(svc: Any, image: ImageRecord) -> int:
    """The size of the layer an intermediate image added (0 for a metadata step)."""
    if not image.layers:
        return 0
    try:
        parent_layers = len(svc.images.get(image.parent).layers) if image.parent else 0
    except NotFound:
        parent_layers = 0
    return (image.layers[-1].uncompressed_size or 0) if parent_layers < len(image.layers) else 0
