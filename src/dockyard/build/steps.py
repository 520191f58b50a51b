"""One step of a stage: its cache key, then (on a miss) its work and its image.

Metadata instructions make a config-only image; RUN runs a container
(run.py); COPY/ADD write a layer from the context, another stage or image, a
heredoc or a download (copy.py); WORKDIR writes a layer when the directory is
missing. Every key includes the resulting config, so two different configs
never share a cached image. After a miss, --cache-from images are tried the
legacy builder's way (_from_cache_sources); COPY/ADD --link use a key without
the parent (_linked, cache.link_key).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import urllib.parse
from typing import TYPE_CHECKING

from dockyard.build import cache as cachemod
from dockyard.build import config as cfgmod
from dockyard.build import copy as copymod
from dockyard.build import git, stages
from dockyard.build import instructions as ins
from dockyard.build.layers import LayerWriter, RecordingView, new_image, view_of
from dockyard.build.rootview import RootView, lookup_user
from dockyard.build.run import RunStep, host_config, parse_mount
from dockyard.errors import InvalidArgument
from dockyard.image import digest as dg
from dockyard.image.store import ImageRecord

if TYPE_CHECKING:
    from dockyard.build.executor import Build

MAX_DOWNLOAD = 4 << 30


class StepRunner:
    def __init__(self, build: Build, stage: stages.Stage | None):
        self.build = build
        self.svc = build.svc
        self.stage = stage
        self.opts = build.opts
        self.sources: list[ImageRecord] = list(build.cache_sources)  # --cache-from

    # -- helpers ----------------------------------------------------------------------

    def _parent_key(self, image: ImageRecord | None) -> str:
        return image.id if image is not None else "scratch"

    def _cached(self, key: str, parent: ImageRecord | None = None, created_by: str = "",
                st: cfgmod.StageState | None = None) -> ImageRecord | None:
        if self.opts.nocache:
            return None
        image_id = self.build.b.cache.get(key, self.svc.images.exists)
        if image_id is None and created_by and st is not None and self.sources:
            image_id = self._from_cache_sources(parent, created_by, st)
            if image_id is not None:
                self.build.b.cache.put(key, image_id, description=created_by)
        if image_id is None:
            return None
        self.build.say(" ---> Using cache\n")
        return self._done(self.svc.images.get(image_id))

    def _from_cache_sources(self, parent: ImageRecord | None, created_by: str,
                            st: cfgmod.StageState) -> str | None:
        """--cache-from, as the legacy builder: an image of the set whose history and
        layers start with the parent's and whose next history entry was made by the
        same instruction (`created_by`) stands for this step; an intermediate one is
        restored from its layers and history with the config this build computed.
        After a hit only that image is looked at (moby: no jumping between sources)."""
        from dockyard.build.layers import restore_image

        p_hist = list((parent.config.get("history") if parent else None) or [])
        p_diffs = [x.diff_id for x in parent.layers] if parent else []
        for target in self.sources:
            t_hist = list(target.config.get("history") or [])
            t_diffs = [x.diff_id for x in target.layers]
            if not t_hist or len(p_hist) >= len(t_hist) or len(p_diffs) > len(t_diffs):
                continue
            if t_hist[:len(p_hist)] != p_hist or t_diffs[:len(p_diffs)] != p_diffs:
                continue
            entry = t_hist[len(p_hist)]
            if entry.get("created_by") != created_by:
                continue
            count = len(p_diffs) + (0 if entry.get("empty_layer") else 1)
            if count > len(t_diffs):
                continue
            image_id = restore_image(self.svc, parent, target, t_hist[:len(p_hist) + 1],
                                     count, st.config, st.author)
            self.sources = [target]
            return image_id
        return None

    def _done(self, image: ImageRecord) -> ImageRecord:
        self.build.say(f" ---> {dg.short_id(image.id)}\n")
        return image

    def _store(self, key: str, image_id: str, text: str) -> ImageRecord:
        self.build.b.cache.put(key, image_id, description=text)
        return self._done(self.svc.images.get(image_id))

    def _key(self, image: ImageRecord | None, st: cfgmod.StageState, doc: dict,
             sources: list[str] | None = None) -> str:
        doc = {**doc, "config": st.config, "shell": st.shell, "cmd_set": st.cmd_set,
               "author": st.author}
        return cachemod.step_key(self._parent_key(image), doc, st.args, sources)

    def empty_image(self, st: cfgmod.StageState) -> ImageRecord:
        return self.svc.images.get(new_image(self.svc, None, st.config, created_by=""))

    def _metadata(self, image: ImageRecord | None, st: cfgmod.StageState, text: str
                  ) -> ImageRecord:
        key = self._key(image, st, {"text": text})
        created_by = f"/bin/sh -c #(nop)  {text}"
        hit = self._cached(key, image, created_by, st)
        if hit is not None:
            return hit
        image_id = new_image(self.svc, image, st.config, created_by=created_by,
                             author=st.author)
        return self._store(key, image_id, text)

    # -- dispatch -------------------------------------------------------------------------

    def step(self, instr: ins.Instruction, st: cfgmod.StageState,
             image: ImageRecord | None) -> ImageRecord | None:
        cmd = instr.node.cmd
        if isinstance(instr, ins.Arg):
            text = cfgmod.apply_arg(instr, st, self.opts.build_args, self.build.plan.meta_args,
                                    self.build.consumed)
            return self._metadata(image, st, text)
        if cmd == "run":
            return self.run(instr, st, image)  # type: ignore[arg-type]
        if isinstance(instr, ins.CopyLike):
            return self.copy(instr, st, image)
        text = cfgmod.apply(instr, st)
        if cmd == "workdir":
            return self.workdir(st, image, text)
        return self._metadata(image, st, text)

    def labels(self, image: ImageRecord | None, labels: dict[str, str]) -> ImageRecord:
        st = cfgmod.StageState.from_image_config(
            (image.config.get("config") if image else None) or {})
        st.config["Labels"] = {**(st.config.get("Labels") or {}), **labels}
        text = "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return self._metadata(image, st, text)

    # -- WORKDIR ----------------------------------------------------------------------------

    def workdir(self, st: cfgmod.StageState, image: ImageRecord | None, text: str
                ) -> ImageRecord:
        path = st.config["WorkingDir"]
        view = view_of(self.svc, image)
        if view.is_dir(view.resolve(path)):
            return self._metadata(image, st, text)
        key = self._key(image, st, {"text": text, "mkdir": path})
        hit = self._cached(key, image, f"/bin/sh -c #(nop) {text}", st)
        if hit is not None:
            return hit
        with tempfile.TemporaryFile(dir=self.build.scratch) as f:
            w = LayerWriter(f, view)
            w.directory(view.resolve(path), 0o755, 0, 0, w.now)
            w.close()
            f.seek(0)
            image_id = new_image(self.svc, image, st.config, layer_tar=f,
                                 created_by=f"/bin/sh -c #(nop) {text}", author=st.author)
        return self._store(key, image_id, text)

    # -- RUN -----------------------------------------------------------------------------------

    def run(self, instr: ins.Command, st: cfgmod.StageState, image: ImageRecord | None
            ) -> ImageRecord:
        argv = cfgmod.command(instr, st)
        network = instr.flags.get("network") or self.opts.network_mode or ""
        if instr.flags.get("network") and network not in ("default", "none", "host"):
            raise InvalidArgument(f"unsupported network mode {network!r} for RUN --network")
        if instr.flags.get("security", "sandbox") != "sandbox":
            raise InvalidArgument("RUN --security=insecure is not allowed by this builder")
        workdir = st.config.get("WorkingDir") or "/"
        mounts = [parse_mount(m, workdir) for m in instr.flags.get("mount", [])]
        mount_sources = []
        for m in mounts:
            if m.kind == "bind" and not m.from_:
                mount_sources.append(self._context_checksum(m.source or "/"))
            elif m.from_:
                mount_sources.append("image:" + self._from_image(m.from_).id)
        env = st.run_env()
        doc = {"run": argv, "env": env, "user": st.config.get("User") or "",
               "workdir": workdir, "network": network, "mounts": [m.key() for m in mounts]}
        key = self._key(image, st, doc, mount_sources)
        args = sorted(st.args.items())
        created_by = " ".join(argv)
        if args:
            created_by = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " + \
                created_by
        hit = self._cached(key, image, created_by, st)
        if hit is not None:
            return hit
        if image is None:
            image = self.empty_image(st)
        # the predefined proxy args reach RUN without an ARG, and stay out of the cache key
        # and the history (docker's rule)
        keys = {e.partition("=")[0] for e in env}
        env = env + [f"{k}={v}" for k, v in sorted(self.opts.build_args.items())
                     if k in stages.PROXY_ARGS and k not in keys and v is not None]
        self.build.consumed |= {k for k in self.opts.build_args if k in stages.PROXY_ARGS}
        runner = RunStep(self.build.b.engine, self.build.scratch, self.build.b.data_root,
                         self.build.say, self.opts.cancel)
        try:
            hc = host_config(self.opts, network)
            targets = runner.binds(mounts, hc, lambda src: self._context_dir(src, runner),
                                   lambda ref, src: self._image_dir(ref, src, runner),
                                   self.build.ctx.secrets)
            targets |= self._missing_parents(image, [m.target for m in mounts
                                                     if m.kind == "secret"])
            cid, finish = runner.run(image.id, argv, env, st.config.get("User") or "",
                                     workdir, hc, keep_failed=not self.opts.forcerm,
                                     remove=self.opts.rm or self.opts.forcerm)
            try:
                from dockyard.engine.containerfs import INIT_PATHS

                lowers, upper = self.svc.snapshots.diff_dirs(f"container-{cid}")
                image_id = self.svc.commit(image.id, lowers, upper, config=st.config,
                                           created_by=created_by, author=st.author,
                                           exclude=INIT_PATHS | frozenset(targets))
            finally:
                finish()
        finally:
            runner.cleanup()
        return self._store(key, image_id, "RUN " + " ".join(argv))

    def _missing_parents(self, image: ImageRecord, targets: list[str]) -> set[str]:
        """The directories above `targets` the image lacks (the runtime makes them for
        the mounts; they stay out of the layer, as BuildKit leaves no secret stubs)."""
        if not targets:
            return set()
        view = view_of(self.svc, image)
        out: set[str] = set()
        for target in targets:
            up = posixpath.dirname(target)
            while up not in ("/", ""):
                try:
                    exists = view.is_dir(view.resolve(up))
                except (OSError, LookupError, InvalidArgument):
                    exists = False
                if exists:
                    break
                out.add(up)
                up = posixpath.dirname(up)
        return out

    def _context_dir(self, source: str, runner: RunStep) -> str:
        """A scratch copy of the context's `source` (RUN --mount=type=bind)."""
        ctx = self.build.ctx
        root = tempfile.mkdtemp(dir=self.build.scratch)
        entries = ctx.lookup(source) if source.strip("/") else [ctx.entries[""]]
        base = entries[0]
        items = [base] + (ctx.children(base.path) if base.kind == "dir" else [])
        links = []
        for e in items:
            rel = e.path[len(base.path):].lstrip("/") if base.kind == "dir" else \
                posixpath.basename(e.path)
            dst = os.path.join(root, rel) if rel else root
            if e.kind == "dir":
                os.makedirs(dst, mode=0o755, exist_ok=True)
            elif e.kind == "symlink":
                links.append((e.link, dst))
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, e.mode & 0o777)
                with os.fdopen(fd, "wb") as f:
                    ctx.copy_data(e, f)
        for target, dst in links:  # last: nothing is ever written through them
            os.symlink(target, dst)
        return root if base.kind == "dir" else os.path.join(root, posixpath.basename(base.path))

    def _image_dir(self, ref: str, source: str, runner: RunStep) -> str:
        from dockyard.image.snapshot import mount_all, unmount_all

        image = self._from_image(ref)
        mnt = tempfile.mkdtemp(dir=self.build.scratch)
        key = f"build-view-{os.path.basename(mnt)}-{os.getpid()}"
        mounts = self.svc.snapshots.view(key, image.chain_ids[-1] if image.chain_ids else None)
        runner.on_cleanup(lambda: self.svc.snapshots.remove(key))
        mount_all(mounts, mnt)
        runner.on_cleanup(lambda: unmount_all(mnt))
        resolved = view_of(self.svc, image).resolve(source)
        return os.path.join(mnt, resolved.lstrip("/"))

    def _from_image(self, ref: str) -> ImageRecord:
        assert self.stage is not None
        i = stages.stage_ref(self.build.plan.stages, self.stage.index, ref)
        if i is not None:
            image = self.build.stage_image(i)
            if image is None:
                return self.empty_image(cfgmod.StageState({}))
            return image
        if ref.lower() == "scratch":
            return self.empty_image(cfgmod.StageState({}))
        return self.build.base_image(ref)

    # -- COPY / ADD --------------------------------------------------------------------------

    def _context_checksum(self, src: str) -> str:
        ctx = self.build.ctx
        h = hashlib.sha256()
        for e in ctx.lookup(src) if src.strip("/") else [ctx.entries[""]]:
            h.update(f"{e.path}\0{e.checksum()}\0".encode())
            if e.kind == "dir":
                for c in ctx.children(e.path):
                    h.update(f"{c.path}\0{c.checksum()}\0".encode())
        return f"{src}:{h.hexdigest()}"

    def copy(self, instr: ins.CopyLike, st: cfgmod.StageState, image: ImageRecord | None
             ) -> ImageRecord:
        add = instr.node.cmd == "add"
        env = st.env()

        def x(word: str) -> str:
            from dockyard.build import expand
            return expand.word_keep_quotes(word, env, st.escape) if instr.is_json \
                else st.word(word)

        srcs = [x(s) for s in instr.sources]
        dest = x(instr.dest)
        workdir = st.config.get("WorkingDir") or "/"
        from_ = st.word(instr.flags["from"]) if instr.flags.get("from") else ""
        chmod = copymod.parse_chmod(st.word(instr.flags["chmod"])) \
            if instr.flags.get("chmod") else None
        chown = st.word(instr.flags["chown"]) if instr.flags.get("chown") else ""
        view = view_of(self.svc, image)
        try:
            owner = lookup_user(view, chown) if chown else None
        except LookupError as e:
            raise InvalidArgument(str(e)) from None
        heredocs = {f"<<{h.name}": h for h in instr.heredocs}
        for h in instr.heredocs:
            for marker in (f"<<-{h.name}", f"<<'{h.name}'", f'<<"{h.name}"',
                           f"<<-'{h.name}'", f'<<-"{h.name}"'):
                heredocs[marker] = h
        sources: list[str] = []
        src_image: ImageRecord | None = None
        downloads: dict[str, tuple[str, str, int]] = {}  # src -> (file, digest, mtime)
        checkouts: list[str] = []
        if from_:
            src_image = self._from_image(from_)
            sources.append("image:" + src_image.id)
        else:
            for s in srcs:
                if s in heredocs:
                    sources.append("heredoc:" + hashlib.sha256(
                        heredocs[s].content.encode()).hexdigest())
                elif urllib.parse.urlparse(s).scheme in ("http", "https") and \
                        not git.is_git_url(s):
                    if not add:
                        raise InvalidArgument("source can't be a URL for COPY")
                    downloads[s] = self._download(s, instr.flags.get("checksum", ""))
                    sources.append(f"url:{s}:{downloads[s][1]}")
                elif git.is_git_url(s):
                    if not add:
                        raise InvalidArgument("source can't be a git repository for COPY")
                    checkout, top, commit = git.checkout(s, self.build.scratch,
                                                         bool(instr.flags.get("keep-git-dir")))
                    checkouts.append(checkout)
                    downloads[s] = (top, "git:" + commit, -1)
                    sources.append(f"git:{s}:{commit}")
                else:
                    sources.append(self._context_checksum(s))
        if instr.flags.get("checksum") and not any(d[2] != -1 for d in downloads.values()):
            raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
        flags = {k: v for k, v in instr.flags.items() if k not in ("from", "chown", "chmod")}
        doc = {"copy": instr.node.cmd, "srcs": srcs, "dest": dest, "workdir": workdir,
               "owner": owner, "chmod": chmod, "flags": flags}
        # the history names the copy by a digest of everything its layer is made of
        # (moby's "COPY file:<sha256> in /dest"; --cache-from matches on it)
        what = hashlib.sha256(cachemod.canonical({"doc": doc, "sources": sources})).hexdigest()
        kind = "multi" if len(sources) > 1 else (sources[0].split(":", 1)[0] if sources
                                                 and sources[0].startswith(
                                                     ("image:", "heredoc:", "url:", "git:"))
                                                 else "file")
        created_by = f"/bin/sh -c #(nop) {instr.node.cmd.upper()} {kind}:{what} in {dest} "
        link = bool(instr.flags.get("link"))
        recorder: RecordingView | None = None
        if link:
            # COPY --link: the layer depends on the image below only through what the
            # copy asks of it (the destination's resolution, the metadata of the
            # directories it writes into); its key is the sources and the instruction
            # (no parent, no config) plus those questions with this parent's answers
            key = cachemod.step_key("link", {**doc, "link": True}, {}, sources)
            hit_image = self._linked(key, image, st, created_by, view)
            if hit_image is not None:
                return hit_image
            recorder = RecordingView(view)
            view = recorder  # type: ignore[assignment]
        else:
            key = self._key(image, st, doc, sources)
            hit = self._cached(key, image, created_by, st)
            if hit is not None:
                return hit
        opts = copymod.CopyOptions(owner=owner, chmod=chmod, extract=add,
                                   parents=bool(instr.flags.get("parents")),
                                   exclude=[st.word(x) for x in instr.flags.get("exclude", [])])
        with tempfile.TemporaryFile(dir=self.build.scratch) as f:
            w = LayerWriter(f, view, owner)
            if src_image is not None:
                copymod.copy_image(view_of(self.svc, src_image), srcs, dest, workdir, w, opts)
            else:
                self._copy_sources(srcs, dest, workdir, w, opts, heredocs, downloads, st)
            w.close()
            f.seek(0)
            image_id = new_image(self.svc, image, st.config, layer_tar=f, created_by=created_by,
                                 author=st.author)
        for path, _, mtime in downloads.values():
            if mtime != -1:  # -1: a git checkout, removed below
                os.unlink(path)
        for checkout in checkouts:
            shutil.rmtree(checkout, ignore_errors=True)
        if recorder is not None:
            self.build.b.cache.put_probes(key, recorder.asked)
            key = cachemod.link_key(key, recorder.asked, recorder.answers)
        return self._store(key, image_id, instr.node.original)

    def _linked(self, base_key: str, image: ImageRecord | None, st: cfgmod.StageState,
                created_by: str, view: RootView) -> ImageRecord | None:
        """COPY/ADD --link's cache hit: the questions the cached copy asked of the image
        below get the same answers here, so its layer goes on top of `image`."""
        if self.opts.nocache:
            return None
        asked = self.build.b.cache.get_probes(base_key)
        if asked is None:
            return None
        try:
            answers = RecordingView.replay(view, asked)
        except (OSError, InvalidArgument, LookupError):
            return None
        cached_id = self.build.b.cache.get(cachemod.link_key(base_key, asked, answers),
                                           self.svc.images.exists)
        if cached_id is None:
            return None
        cached = self.svc.images.get(cached_id)
        if not cached.layers:
            return None
        self.build.say(" ---> Using cache\n")
        if cached.parent == (image.id if image else None) and \
                cached.config.get("config") == st.config:
            return self._done(cached)
        image_id = new_image(self.svc, image, st.config, created_by=created_by,
                             author=st.author, layer_of=cached)
        return self._done(self.svc.images.get(image_id))

    def _copy_sources(self, srcs: list[str], dest: str, workdir: str, w: LayerWriter,
                      opts: copymod.CopyOptions, heredocs: dict, downloads: dict,
                      st: cfgmod.StageState) -> None:
        local = [s for s in srcs if s not in heredocs and s not in downloads]
        many = len(srcs) > 1 or any(copymod.has_meta(s) for s in local)
        if local:
            copymod.copy_context(self.build.ctx, local, dest, workdir, w, opts,
                                 self.build.scratch)
        extra = [s for s in srcs if s in heredocs or s in downloads]
        if not extra:
            return
        target, as_dir = copymod.destination(dest, workdir, w.view, many)
        owner = opts.owner or (0, 0)
        for s in extra:
            if s in heredocs:
                h = heredocs[s]
                data = h.content
                if h.expand:
                    from dockyard.build import expand
                    data = expand.word_keep_quotes(data, st.env(), st.escape)
                raw = data.encode()
                path = posixpath.join(target, h.name) if as_dir else target
                w.file(path, opts.chmod if opts.chmod is not None else 0o644, *owner, w.now,
                       len(raw), io.BytesIO(raw))
            elif downloads[s][2] == -1:  # a git checkout: its files into the directory
                top = downloads[s][0]
                w.directory(target, 0o755, *owner, w.now)
                copymod.copy_host_tree(top, target, w, opts)
            else:
                tmp, _digest, mtime = downloads[s]
                name = posixpath.basename(urllib.parse.urlparse(s).path) or "index.html"
                path = posixpath.join(target, name) if as_dir else target
                with open(tmp, "rb") as f:
                    w.file(path, opts.chmod if opts.chmod is not None else 0o600, *owner,
                           mtime, os.fstat(f.fileno()).st_size, f)

    def _download(self, url: str, checksum: str) -> tuple[str, str, int]:
        """ADD <url>: (temporary file, sha256 digest, mtime); never extracted."""
        import email.utils
        import urllib.request

        self.build.say(f"Downloading {url}\n")
        h = hashlib.sha256()
        fd, path = tempfile.mkstemp(dir=self.build.scratch)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                while chunk := resp.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD:
                        raise InvalidArgument(f"ADD {url}: download larger than "
                                              f"{MAX_DOWNLOAD} bytes")
                    h.update(chunk)
                    out.write(chunk)
                modified = resp.headers.get("Last-Modified")
        except OSError as e:
            os.unlink(path)
            raise InvalidArgument(f"failed to download {url}: {e}") from None
        digest = "sha256:" + h.hexdigest()
        if checksum and checksum != digest:
            os.unlink(path)
            raise InvalidArgument(f"ADD {url}: checksum mismatch: expected {checksum}, "
                                  f"got {digest}")
        mtime = 0
        if modified:
            try:
                mtime = int(email.utils.parsedate_to_datetime(modified).timestamp())
            except (TypeError, ValueError):
                mtime = 0
        return path, digest, mtime

