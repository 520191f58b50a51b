"""Compose's `develop.watch`: react to file changes under a service's trigger paths.

Actions: `sync` copies changed files into the service's containers (PUT archive,
a tar built here; deleted files are removed with `rm -rf` through exec),
`rebuild` builds the image and recreates the containers (like `up --build
--no-deps svc`), `restart`, `sync+restart` and `sync+exec` (exec.command in
each container after the sync). A path is left out when the build context's
.dockerignore, the trigger's `ignore` or the editors' temporary files match it,
or when the trigger's `include` does not. inotify events come from watchfiles'
notifier; they are batched until nothing changed for QUIET_PERIOD, like compose.
"""

from __future__ import annotations

import io
import os
import posixpath
import queue
import re
import shlex
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard.build import dockerignore
from dockyard.compose import planner
from dockyard.compose.backend import Backend
from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.errors import DockyardError

QUIET_PERIOD = 0.5  # seconds without a change before a batch is handled

NO_WATCH = ("none of the selected services is configured for watch, consider setting a "
            "'develop' section")
NO_WATCH_UP = ("none of the selected services is configured for watch, see "
               "https://docs.docker.com/compose/how-tos/file-watch/")

# editors' temporary and lock files (GoLand, emacs, vim, kate, go), and .git
EPHEMERAL = ["**/*___jb_old___", "**/*___jb_tmp___", "**/.idea/**", "**/.#*", "**/#*#",
             "**/4913", "**/*~", "**/.*.swp", "**/.*.swx", "**/.*.swo", "**/.*.swn",
             "**/.*.kate-swp", "**/*-go-tmp-umask", "**/.git"]

SYNC_ACTIONS = ("sync", "sync+restart", "sync+exec")
ACTIONS = (*SYNC_ACTIONS, "rebuild", "restart")


# -- matching ---------------------------------------------------------------------------------

def is_child(parent: str, path: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


class PathMatcher:
    """.dockerignore patterns rooted at a directory, tested on absolute paths."""

    def __init__(self, root: str, patterns: Iterable[str]) -> None:
        cleaned = []
        for p in patterns:
            neg = p.startswith("!")
            text = p[1:].strip() if neg else p.strip()
            if text:
                text = posixpath.normpath(text).lstrip("/") or "."
                cleaned.append(("!" if neg else "") + text)
        if "*" in cleaned:
            # compose: "ignore everything but ..." would block every change: keep the exceptions
            cleaned = [p for p in cleaned if p.startswith("!")]
        self.root = os.path.abspath(root)
        self.matcher = dockerignore.Matcher(cleaned)

    def matches(self, path: str) -> bool:
        if not self.matcher or not is_child(self.root, path):
            return False
        rel = os.path.relpath(path, self.root)
        return rel != "." and self.matcher.ignored(rel)


def dockerignore_matcher(build: dict[str, Any] | None) -> PathMatcher | None:
    """The build context's `<Dockerfile>.dockerignore`, else its `.dockerignore`."""
    if not build or "://" in str(build.get("context", "")):
        return None
    context = build.get("context") or "."
    dockerfile = build.get("dockerfile") or "Dockerfile"
    for name in (os.path.join(context, dockerfile + ".dockerignore"),
                 os.path.join(context, ".dockerignore")):
        try:
            with open(name, "rb") as f:
                return PathMatcher(context, dockerignore.read(f.read()))
        except FileNotFoundError:
            continue
    return None


@dataclass
class Rule:
    service: str
    action: str
    path: str     # absolute, symlinks resolved
    target: str = ""
    exec: dict[str, Any] = field(default_factory=dict)
    initial_sync: bool = False
    include: PathMatcher | None = None
    ignore: list[PathMatcher] = field(default_factory=list)

    def ignored(self, path: str) -> bool:
        return any(m.matches(path) for m in self.ignore)

    def container_path(self, path: str) -> str | None:
        """Where `path` goes in the container ("" without a target); None when the rule
        does not apply to it."""
        if not is_child(self.path, path):
            return None
        if path == self.path and os.path.isdir(path):
            return None  # the watched directory itself: its children's events matter
        if self.include is not None and not self.include.matches(path):
            return None
        if self.ignored(path):
            return None
        if not self.target:
            return ""
        rel = os.path.relpath(path, self.path)
        return posixpath.normpath(posixpath.join(self.target, rel.replace(os.sep, "/")))


def selected(project: Project, services: list[str]) -> list[str]:
    """The services named (with their dependencies, like docker compose), or all."""
    if not services:
        return list(project.services)
    return sorted(planner.with_dependencies(project, services))


def _resolve(project: Project, path: str) -> str:
    path = os.path.join(project.working_dir, os.path.expanduser(str(path)))
    return os.path.realpath(path) if os.path.exists(path) else os.path.normpath(path)


def load_rules(project: Project, services: list[str]) -> list[Rule]:
    rules = []
    for name in selected(project, services):
        svc = project.services[name]
        ignores = [m for m in (dockerignore_matcher(svc.get("build")),
                               PathMatcher("/", EPHEMERAL)) if m]
        for i, t in enumerate((svc.get("develop") or {}).get("watch") or []):
            where = f"services.{name}.develop.watch[{i}]"
            action = t.get("action")
            if action not in ACTIONS:
                raise ComposeError(f"{where}.action: invalid watch action {action!r}")
            if not t.get("path"):
                raise ComposeError("watch rules MUST define a path")
            if not t.get("target") and action in SYNC_ACTIONS:
                raise ComposeError(f"services.{name}.develop.watch: target is required for "
                                   "non-rebuild actions: invalid compose project")
            if action == "rebuild" and not svc.get("build"):
                raise ComposeError(f"can't watch service \"{name}\" with action rebuild "
                                   "without a build context")
            hook = t.get("exec") or {}
            if action == "sync+exec" and not hook.get("command"):
                raise ComposeError(f"can't watch with action \"{action}\" on service {name} "
                                   "without a command")
            path = _resolve(project, t["path"])
            include = t.get("include")
            ignore = t.get("ignore")
            rules.append(Rule(
                service=name, action=action, path=path, target=t.get("target") or "",
                exec=hook, initial_sync=bool(t.get("initial_sync") or t.get("x-initialSync")),
                include=PathMatcher(path, [include] if isinstance(include, str) else include)
                if include else None,
                ignore=[*ignores, PathMatcher(path, [ignore] if isinstance(ignore, str)
                                              else ignore or [])]))
    return rules


def bind_mounted(svc: dict[str, Any], path: str) -> bool:
    return any(v.get("type") == "bind" and v.get("source") and is_child(v["source"], path)
               for v in svc.get("volumes") or [])


# -- batching ---------------------------------------------------------------------------------

class Debouncer:
    """Collects changed paths until none arrived for `quiet` seconds (a sliding window,
    like compose's BatchDebounceEvents); each path once per batch, in arrival order."""

    def __init__(self, quiet: float = QUIET_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.clock = clock
        self.paths: dict[str, None] = {}
        self.last = 0.0

    def add(self, paths: Iterable[str]) -> None:
        self.paths.update(dict.fromkeys(paths))
        self.last = self.clock()

    def timeout(self) -> float | None:
        """Seconds until the pending batch is due (None: nothing pending)."""
        if not self.paths:
            return None
        return max(0.0, self.last + self.quiet - self.clock())

    def flush(self) -> list[str]:
        """The batch if it is due, else []."""
        if not self.paths or self.clock() < self.last + self.quiet:
            return []
        batch, self.paths = list(self.paths), {}
        return batch


def watch_roots(rules: list[Rule], project: Project) -> tuple[list[str], list[str]]:
    """(directories watched recursively, directories of file triggers watched alone)."""
    deep: list[str] = []
    shallow: list[str] = []
    for r in rules:
        svc = project.services[r.service]
        if r.action in SYNC_ACTIONS and bind_mounted(svc, r.path):
            print(f"WARN[0000] path '{r.path}' also declared by a bind mount volume, this "
                  "path won't be monitored!", file=sys.stderr)
            continue
        path = r.path
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)  # watch what exists: the path may appear later
        if os.path.isdir(path):
            deep.append(path)
        else:
            shallow.append(os.path.dirname(path))
    deep = [p for p in dict.fromkeys(deep)
            if not any(q != p and is_child(q, p) for q in deep)]
    shallow = [p for p in dict.fromkeys(shallow) if not any(is_child(q, p) for q in deep)]
    return deep, shallow


# -- the watcher ------------------------------------------------------------------------------

def go_quote(names: list[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for n in names) + "]"


class Watcher:
    """One per `watch` / `up --watch`: `run` blocks until `stop` is set (or Ctrl-C)."""

    def __init__(self, backend: Backend, project: Project, services: list[str],
                 log: Callable[[str], None], prune: bool = True, quiet: bool = False,
                 attach: Callable[[dict[str, Any]], None] | None = None,
                 no_watch: str = NO_WATCH) -> None:
        self.backend = backend
        self.project = project
        self.rules = load_rules(project, services)
        if not self.rules:
            raise ComposeError(no_watch)
        self.log = log
        self.prune = prune
        self.quiet = quiet
        self.attach = attach  # follows the logs of the containers a rebuild made
        self.events: queue.Queue[list[str]] = queue.Queue()

    # -- events
    def _notify(self, notify: Any, stop: threading.Event) -> None:
        try:
            with notify:
                while not stop.is_set():
                    # (debounce, step, timeout) ms; a set of (change, path) or a word
                    changes = notify.watch(500, 50, 1000, stop)
                    if isinstance(changes, set):
                        self.events.put([p for _, p in changes])
        except Exception as e:  # noqa: BLE001 - reported, the watch goes on without it
            self.backend.status(f"Watch disabled with errors: {e}")

    def run(self, stop: threading.Event) -> None:
        # watchfiles' own watch() sets its watches in its thread: this one is ready when
        # made, so that "Watch enabled" means what it says
        from watchfiles._rust_notify import RustNotify

        self.initial_sync()
        deep, shallow = watch_roots(self.rules, self.project)
        quit_ = threading.Event()
        threads = [threading.Thread(target=self._notify, daemon=True, args=(
            RustNotify(paths, False, False, 300, recursive, True), quit_))
            for paths, recursive in ((deep, True), (shallow, False)) if paths]
        for t in threads:
            t.start()
        self.log("Watch enabled")
        pending = Debouncer()
        try:
            while not stop.is_set():
                wait = pending.timeout()
                try:
                    pending.add(self.events.get(timeout=0.2 if wait is None else min(wait, 0.2)))
                except queue.Empty:
                    pass
                batch = pending.flush()
                if batch:
                    try:
                        self.handle(batch)
                    except (DockyardError, OSError) as e:
                        self.backend.status(f"WARN[0000] Error handling changed files: {e}")
        finally:
            quit_.set()
            for t in threads:
                t.join(timeout=5)

    # -- a batch
    def handle(self, batch: list[str]) -> None:
        rebuild: dict[str, None] = {}
        restart: dict[str, None] = {}
        syncs: dict[str, list[tuple[str, str, Rule]]] = {}
        execs: dict[str, list[Rule]] = {}
        for path in batch:
            for rule in self.rules:
                target = rule.container_path(path)
                if target is None:
                    continue
                if rule.action == "rebuild":
                    rebuild[rule.service] = None
                    continue
                if rule.action in SYNC_ACTIONS:
                    syncs.setdefault(rule.service, []).append((path, target, rule))
                if rule.action in ("restart", "sync+restart"):
                    restart[rule.service] = None
                if rule.action == "sync+exec" and rule not in execs.get(rule.service, []):
                    execs.setdefault(rule.service, []).append(rule)
        if rebuild:
            self.rebuild(list(rebuild))
        for service, mappings in syncs.items():
            self.log(f"Syncing service \"{service}\" after {len(mappings)} changes were "
                     "detected")
            self.sync(service, mappings)
        if restart:
            for service in restart:
                for c in self._containers(service, running=False):
                    self.backend.client.post(f"/containers/{c['Id']}/restart")
            self.log(f"service(s) {go_quote(list(restart))} restarted")
        for service, rules in execs.items():
            for rule in rules:
                for c in self._containers(service):
                    self.exec(c["Id"], rule.exec)

    def _containers(self, service: str, running: bool = True) -> list[dict[str, Any]]:
        return self.backend.containers(self.project.name, all=not running, oneoff=False,
                                       services=[service])

    # -- sync
    def sync(self, service: str, mappings: list[tuple[str, str, Rule]]) -> None:
        gone = [target for path, target, _ in mappings if not os.path.exists(path)]
        present = [m for m in mappings if os.path.exists(m[0])]
        errors = []
        with tempfile.SpooledTemporaryFile(max_size=16 << 20) as archive:
            if present:
                write_tar(archive, present)
            for c in self._containers(service, running=False):
                try:
                    if gone and c.get("State") == "running":
                        self.exec(c["Id"], {"command": ["rm", "-rf", *gone]}, quiet=True)
                    if present:
                        archive.seek(0)
                        self.backend.client.put(
                            f"/containers/{c['Id']}/archive",
                            params={"path": "/", "copyUIDGID": True}, body=archive,
                            headers={"Content-Type": "application/x-tar"})
                except (DockyardError, OSError) as e:
                    errors.append(f"{c['Id'][:12]}: {e}")
        if errors:
            raise ComposeError("; ".join(errors))

    def initial_sync(self) -> None:
        """initial_sync: files changed since the service's image was made go in first."""
        for rule in self.rules:
            if not rule.initial_sync or rule.action not in SYNC_ACTIONS:
                continue
            svc = self.project.services[rule.service]
            if bind_mounted(svc, rule.path) or not os.path.exists(rule.path):
                continue
            since = self._image_created(rule.service)
            files = [rule.path] if not os.path.isdir(rule.path) else [
                os.path.join(root, f) for root, dirs, names in os.walk(rule.path)
                for f in names]
            mappings = []
            for path in files:
                target = rule.container_path(path)
                if target is None or bind_mounted(svc, path) or \
                        os.lstat(path).st_mtime < since:
                    continue
                mappings.append((path, target, rule))
            if mappings:
                self.sync(rule.service, mappings)

    def _image_created(self, service: str) -> float:
        from datetime import datetime

        cons = self._containers(service, running=False)
        if not cons:
            raise ComposeError("could not get created time for service's image")
        created = self.backend.client.get(f"/images/{cons[0]['ImageID']}/json")["Created"]
        # RFC 3339 with nanoseconds: more digits than fromisoformat takes
        m = re.match(r"([^.]+?)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", created)
        if not m:
            raise ComposeError(f"image created time {created!r}")
        zone = m[3] if m[3] and m[3] != "Z" else "+00:00"
        return datetime.fromisoformat(m[1] + zone).timestamp() + float(m[2] or 0)

    # -- exec
    def exec(self, cid: str, hook: dict[str, Any], quiet: bool = False) -> None:
        from dockyard.client.stdcopy import STDERR, STDOUT, demux

        command = hook.get("command")
        env = hook.get("environment") or []
        if isinstance(env, dict):
            env = [f"{k}={v}" if v is not None else k for k, v in env.items()]
        client = self.backend.client
        eid = client.post(f"/containers/{cid}/exec", body={
            "Cmd": shlex.split(command) if isinstance(command, str) else list(command),
            "User": hook.get("user") or "", "Privileged": bool(hook.get("privileged")),
            "WorkingDir": hook.get("working_dir") or "", "Env": env or None,
            "AttachStdout": not quiet, "AttachStderr": True, "Tty": False})["Id"]
        with client.hijack("POST", f"/exec/{eid}/start",
                           body={"Detach": False, "Tty": False}) as stream:
            for kind, data in demux(stream):
                out = sys.stdout if kind == STDOUT else sys.stderr if kind == STDERR else None
                if out is not None:
                    out.write(data.decode(errors="replace"))
                    out.flush()
        code = client.get(f"/exec/{eid}/json").get("ExitCode")
        if code:
            raise ComposeError(f"exit code {code}")

    # -- rebuild
    def rebuild(self, services: list[str]) -> None:
        from dockyard.compose.images import build_service
        from dockyard.compose.up import Converger, UpOptions

        self.log(f"Rebuilding service(s) {go_quote(services)} after changes were detected...")
        old = {c.get("ImageID") for s in services for c in self._containers(s, running=False)}
        try:
            for s in services:
                build_service(self.backend, self.project, s, self.project.services[s],
                              quiet=self.quiet)
        except (DockyardError, OSError) as e:
            self.log(f"Build failed. Error: {e}")
            raise
        self.log(f"service(s) {go_quote(services)} successfully built")
        # the images are built: recreate from them, without building again
        conv = Converger(self.backend, self.project, UpOptions(
            services=services, no_deps=True, force_recreate=True, no_build=True))
        try:
            conv.run()
        except (DockyardError, OSError) as e:
            self.log(f"Failed to recreate services after update. Error: {e}")
            raise
        if self.attach:
            for c in self.backend.containers(self.project.name, services=services):
                if c["Id"] in conv.created:
                    self.attach(c)
        if self.prune:
            self._prune(old - {None})

    def _prune(self, images: set[str]) -> None:
        """The images the containers used before, when a rebuild left them untagged."""
        for image in images:
            try:
                tags = self.backend.client.get(f"/images/{image}/json").get("RepoTags") or []
                if not [t for t in tags if t != "<none>:<none>"]:
                    self.backend.client.delete(f"/images/{image}")
            except DockyardError:
                pass  # still in use, or already gone


def write_tar(fileobj: Any, mappings: list[tuple[str, str, Rule]]) -> None:
    """The files (directories walked, ignored paths left out) at their container paths;
    the last mapping of a name wins."""
    entries: dict[str, str] = {}
    for path, target, rule in mappings:
        entries[target] = path
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path):
                for name in list(dirs) + files:
                    full = os.path.join(root, name)
                    if rule.ignored(full):
                        if name in dirs:
                            dirs.remove(name)
                        continue
                    rel = os.path.relpath(full, path).replace(os.sep, "/")
                    entries[posixpath.join(target, rel)] = full
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for target, path in entries.items():
            try:
                info = tar.gettarinfo(path, arcname=target.lstrip("/"))
                if info is None:
                    continue  # sockets, devices: not sent, like docker
                if not info.isreg():
                    tar.addfile(info)
                    continue
                with open(path, "rb") as f:
                    if info.size < 5 << 20:
                        # read first: the header's size must be what is written
                        data = f.read()
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    else:
                        tar.addfile(info, f)
            except FileNotFoundError:
                continue  # deleted since the event


def printer_log(printer: Any) -> Callable[[str], None]:
    """up --watch's lines: docker compose's `⦿` prefix, in bright green."""
    def log(text: str) -> None:
        prefix = " " * (printer.width + 1) + " ⦿ "
        if printer.color:
            prefix = f"\x1b[92m{prefix}\x1b[0m"
        printer.event(prefix + text)
    return log


def watch_in_background(backend: Backend, project: Project, services: list[str], printer: Any,
                        attach: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """up --watch: the watcher on a thread; returns the function that stops it."""
    log = printer_log(printer)
    w = Watcher(backend, project, services, log, attach=attach, no_watch=NO_WATCH_UP)
    stop = threading.Event()

    def run() -> None:
        try:
            w.run(stop)
        except (DockyardError, OSError) as e:
            backend.status(f"Watch disabled with errors: {e}")

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def halt() -> None:
        stop.set()
        t.join(timeout=5)
        log("Watch disabled")
    return halt


def mark_build_policy(project: Project, services: list[str]) -> None:
    """watch's `up` builds the watched services that have a build section, like compose."""
    for name in selected(project, services):
        svc = project.services[name]
        if svc.get("build") and svc.get("develop"):
            svc["pull_policy"] = "build"
