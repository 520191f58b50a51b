"""`up` / `create`: converge the project's containers on its configuration.

Everything that can fail without side effects is done first (cycles, create
bodies, images), so bad input creates nothing. Then networks and volumes, then
one thread per service: it waits for the services it depends on (their
condition: service_started, service_healthy, service_completed_successfully),
then removes surplus containers (scale down), recreates those whose config-hash
or image changed, creates the missing ones and starts them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.compose import convert, planner
from dockyard.compose.backend import Backend, short_name
from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.errors import DockyardError


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    build: bool = False
    no_build: bool = False
    pull: str = "missing"   # always | missing | never
    start: bool = True
    wait: bool = False
    wait_timeout: float = 0
    timeout: int | None = None
    quiet_pull: bool = True
    yes: bool = False   # recreate a volume whose definition changed (its data is lost)


def targets(project: Project, services: list[str], no_deps: bool) -> list[str]:
    if not services:
        return list(project.services)
    for s in services:
        project.service(s)
    if no_deps:
        return list(services)
    return sorted(planner.with_dependencies(project, services))


def resolve_images(backend: Backend, project: Project, names: list[str], opts: UpOptions
                   ) -> dict[str, str]:
    """Image id per service: built (--build, or missing with a build section), pulled when
    missing (or pull_policy always), else what the daemon has."""
    from dockyard.compose.images import build_service

    ids: dict[str, str] = {}
    refs = [convert.image_name(project, n, project.services[n]) for n in names]
    known: dict[str, str | None] = concurrently(
        {ref: (backend.image_id, ref) for ref in dict.fromkeys(refs)})  # one round trip
    for name in names:
        svc = project.services[name]
        ref = convert.image_name(project, name, svc)
        policy = svc.get("pull_policy") or opts.pull
        if ref not in known:
            known[ref] = backend.image_id(ref)
        image_id = None if policy == "always" and not svc.get("build") else known[ref]
        if svc.get("build") and not opts.no_build and (opts.build or image_id is None
                                                       or policy == "build"):
            image_id = known[ref] = build_service(backend, project, name, svc)
        if image_id is None:
            if policy == "never":
                raise ComposeError(f"service {name}: image {ref} not found and pull_policy "
                                   "is never")
            if svc.get("build") and opts.no_build:
                raise ComposeError(f"service {name}: image {ref} not found and --no-build")
            backend.status(f" {name} Pulling")
            try:
                backend.pull(ref, quiet=opts.quiet_pull)
            except DockyardError as e:
                raise ComposeError(f"service {name}: pulling {ref}: {e}") from None
            backend.status(f" {name} Pulled")
            image_id = known[ref] = backend.image_id(ref)
            if image_id is None:
                raise ComposeError(f"service {name}: image {ref} not found after pulling")
        ids[name] = image_id
    return ids


def concurrently(calls: dict[Any, tuple[Any, ...]]) -> dict[Any, Any]:
    """{key: (fn, *args)} -> {key: fn(*args)}, the calls on threads of their own (each
    thread has its own connection to the daemon); the first error is raised."""
    if len(calls) <= 1:
        return {key: fn(*args) for key, (fn, *args) in calls.items()}
    results: dict[Any, Any] = {}
    errors: list[BaseException] = []

    def one(key: Any, fn: Any, *args: Any) -> None:
        try:
            results[key] = fn(*args)
        except Exception as e:  # noqa: BLE001 - raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(key, *call), daemon=True)
               for key, call in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def orphans(backend: Backend, project: Project,
            containers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    known = set(project.services) | set(project.disabled)
    if containers is None:
        containers = backend.containers(project.name)
    return [c for c in containers if (c.get("Labels") or {}).get(convert.SERVICE) not in known]


def _needs_existing(svc: dict[str, Any]) -> list[str]:
    """Services whose containers must exist before this one is created."""
    return list(dict.fromkeys(name for name, _ in planner.references(svc)))


class Converger:
    def __init__(self, backend: Backend, project: Project, opts: UpOptions) -> None:
        self.backend = backend
        self.project = project
        self.opts = opts
        self.done: dict[str, threading.Event] = {}
        self.created_ev: dict[str, threading.Event] = {}
        self.failed: dict[str, str] = {}
        self.created: list[str] = []   # ids created in this run
        self.replaced: set[str] = set()  # services whose containers were (re)created
        self.network_ids: dict[str, str] = {}  # the project's networks, by key
        self.lock = threading.Lock()
        backend.project_name = project.name  # type: ignore[attr-defined]

    # -- preparation ------------------------------------------------------------------------
    def prepare(self) -> tuple[list[str], dict[str, str]]:
        names = targets(self.project, self.opts.services, self.opts.no_deps)
        planner.check_cycles(self.project)
        for name in names:  # fails early on bad values (sizes, durations, ...)
            svc = self.project.services[name]
            if svc.get("container_name") and self._want(name) > 1:
                raise ComposeError(f"services.{name}: container_name \"{svc['container_name']}"
                                   "\" is unique: the service cannot be scaled")
            convert.create_body(self.project, name, svc, 1, "", resolve_service=lambda s: s)
            convert.injected_files(self.project, svc, f"services.{name}")
        images = resolve_images(self.backend, self.project, names, self.opts)
        return names, images

    def _want(self, name: str) -> int:
        if name in self.opts.scale:
            return self.opts.scale[name]
        return planner.replicas(self.project.services[name])

    def resources(self, names: list[str]) -> None:
        nets: list[str] = []
        vols: list[str] = []
        for name in names:
            svc = self.project.services[name]
            if not svc.get("network_mode"):
                nets += [n for n in (svc.get("networks") or {}) if n not in nets]
            vols += [v["source"] for v in svc.get("volumes") or []
                     if v.get("type") == "volume" and v.get("source")
                     and v["source"] not in vols]
        jobs = [(self._network, n) for n in nets] + [(self._volume, v) for v in vols]
        errors: list[Exception] = []

        def one(fn: Any, key: str) -> None:
            try:
                fn(key)
            except (DockyardError, OSError) as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=job, daemon=True) for job in jobs[1:]]
        for t in threads:
            t.start()
        if jobs:
            one(*jobs[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _network(self, key: str) -> None:
        self.network_ids[key] = self.backend.ensure_network(self.project, key)

    def _volume(self, key: str) -> None:
        self.backend.ensure_volume(self.project, key, recreate=self.opts.yes)

    # -- running ----------------------------------------------------------------------------
    def run(self) -> None:
        names, images = self.prepare()
        # the project's containers are listed while its networks and volumes are made
        current = concurrently({"resources": (self.resources, names),
                                "containers": (self.backend.containers, self.project.name)}
                               )["containers"]
        if self.backend.diverged:  # containers went with a network or volume made again
            current = self.backend.containers(self.project.name)
        found = orphans(self.backend, self.project, current)
        if found:
            if self.opts.remove_orphans:
                for c in found:
                    self.backend.status(f" Container {short_name(c)}  Removing")
                    self.backend.remove(c["Id"], force=True)
                    self.backend.status(f" Container {short_name(c)}  Removed")
            else:
                self.backend.status(
                    f"WARN[0000] Found orphan containers ({', '.join(map(short_name, found))})"
                    f" for this project. If you removed or renamed this service in your "
                    "compose file, you can run this command with the --remove-orphans flag "
                    "to clean it up.")
        existing: dict[str, list[dict]] = {n: [] for n in names}
        gone = {c["Id"] for c in found} if self.opts.remove_orphans else set()
        for c in current:
            if c["Id"] in gone:
                continue
            svc = (c.get("Labels") or {}).get(convert.SERVICE)
            if svc in existing:
                existing[svc].append(c)
        self.done = {n: threading.Event() for n in names}
        self.created_ev = {n: threading.Event() for n in names}
        threads = [threading.Thread(target=self._service, args=(n, existing[n], images[n]),
                                    daemon=True) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.failed:
            first = next(iter(self.failed.values()))
            raise ComposeError(first)
        if self.opts.wait:
            self.wait_ready(names)

    def _service(self, name: str, existing: list[dict], image_id: str) -> None:
        """Create phase (containers made as soon as the ones they name exist), then start
        phase (after each dependency reached its condition), like docker compose."""
        try:
            svc = self.project.services[name]
            for dep in _needs_existing(svc):
                if dep in self.created_ev:
                    self.created_ev[dep].wait()
            try:
                to_start, running = self.create_phase(name, svc, existing, image_id)
            finally:
                self.created_ev[name].set()
            deps = dict(svc.get("depends_on") or {})
            for dep in _needs_existing(svc):  # implicit: started before us
                deps.setdefault(dep, {"condition": "service_started", "required": True})
            for dep, spec in deps.items():
                if dep not in self.done:
                    continue  # --no-deps, or not a target
                self.done[dep].wait()
                if dep in self.failed:
                    if spec.get("required", True):
                        raise ComposeError(f"dependency {dep} of {name} failed")
                    continue
                if self.opts.start:
                    self.wait_condition(dep, spec.get("condition", "service_started"))
            if self.opts.start:
                self.start_phase(svc, to_start, running)
        except (DockyardError, OSError) as e:
            message = str(e) if isinstance(e, ComposeError | OSError) or \
                type(e).__name__ == "CannotConnect" else f"Error response from daemon: {e}"
            with self.lock:
                self.failed[name] = message
        finally:
            self.created_ev[name].set()
            self.done[name].set()

    def wait_condition(self, dep: str, condition: str, timeout: float = 600) -> None:
        if condition == "service_started":
            return
        cons = self.backend.containers(self.project.name, services=[dep])
        deadline = time.monotonic() + timeout
        for c in cons:
            cname = short_name(c)
            self.backend.status(f" Container {cname}  Waiting")
            while True:
                state = self.backend.inspect(c["Id"])["State"]
                if condition == "service_healthy":
                    health = (state.get("Health") or {}).get("Status")
                    if health is None:
                        raise ComposeError(f"container {cname} has no healthcheck configured")
                    if health == "healthy":
                        self.backend.status(f" Container {cname}  Healthy")
                        break
                    if health == "unhealthy":
                        raise ComposeError(f"dependency failed to start: container {cname} "
                                           "is unhealthy")
                    if not state.get("Running"):
                        raise ComposeError(f"dependency failed to start: container {cname} "
                                           f"exited ({state.get('ExitCode')})")
                elif condition == "service_completed_successfully" and not state.get(
                        "Running") and state.get("Status") in ("exited", "dead"):
                    code = state.get("ExitCode")
                    if code != 0:
                        raise ComposeError(f"service \"{dep}\" didn't complete "
                                           f"successfully: exit {code}")
                    self.backend.status(f" Container {cname}  Exited")
                    break
                if time.monotonic() > deadline:
                    raise ComposeError(f"timed out waiting for {cname} ({condition})")
                time.sleep(0.1)

    def create_phase(self, name: str, svc: dict[str, Any], existing: list[dict],
                     image_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Remove surplus containers, recreate changed ones, create missing ones: the
        containers to start, and those kept running."""
        b = self.backend
        # a service whose network or volume was made again is recreated on it; a running
        # container missing from one of its networks too (docker compose's checks)
        networks = [self.network_ids[n] for n in (svc.get("networks") or {})
                    if n in self.network_ids] if not svc.get("network_mode") else []
        digest = planner.config_hash(convert.resolved_references(self.project, svc,
                                                                 b.service_container))
        plan = planner.plan_service(svc, existing, self._want(name), image_id,
                                    self.opts.force_recreate or name in b.diverged,
                                    self.opts.no_recreate, networks, digest)
        for c in plan.remove:
            b.status(f" Container {short_name(c)}  Stopping")
            b.stop(c["Id"], self.opts.timeout)
            b.remove(c["Id"])
            b.status(f" Container {short_name(c)}  Removed")
        to_start: list[tuple[str, str]] = []
        running: list[tuple[str, str]] = []
        for c in plan.recreate:
            cname = short_name(c)
            b.status(f" Container {cname}  Recreate")
            if c.get("State") == "running":
                b.stop(c["Id"], self.opts.timeout)
            b.remove(c["Id"])
            n = planner.number(c) or 1
            cid = b.create(self.project, name, svc, n, image_id, cname=cname)
            self.created.append(cid)
            b.status(f" Container {cname}  Recreated")
            to_start.append((cid, cname))
        for c in plan.keep:
            (running if c.get("State") == "running" else to_start).append(
                (c["Id"], short_name(c)))
        for n in plan.create:
            cname = convert.container_name(self.project, name, svc, n)
            b.status(f" Container {cname}  Creating")
            cid = b.create(self.project, name, svc, n, image_id)
            self.created.append(cid)
            b.status(f" Container {cname}  Created")
            to_start.append((cid, cname))
        if plan.recreate or plan.create:
            with self.lock:
                self.replaced.add(name)
        return to_start, running

    def start_phase(self, svc: dict[str, Any], to_start: list[tuple[str, str]],
                    running: list[tuple[str, str]]) -> None:
        b = self.backend
        # depends_on with `restart: true`: a dependency replaced in this run restarts us
        restart = [d for d, spec in (svc.get("depends_on") or {}).items()
                   if spec.get("restart") and d in self.replaced]
        for cid, cname in running:
            if restart:
                b.status(f" Container {cname}  Restarting")
                b.client.post(f"/containers/{cid}/restart", params={"t": self.opts.timeout})
                b.status(f" Container {cname}  Restarted")
            else:
                b.status(f" Container {cname}  Running")
        for cid, cname in to_start:
            b.status(f" Container {cname}  Starting")
            b.start(cid)
            b.status(f" Container {cname}  Started")

    def wait_ready(self, names: list[str]) -> None:
        """--wait: every container running (healthy when it has a health check), or
        exited 0 for the one-shot ones that others wait on."""
        deadline = time.monotonic() + (self.opts.wait_timeout or 600)
        for c in self.backend.containers(self.project.name, services=names):
            cname = short_name(c)
            self.backend.status(f" Container {cname}  Waiting")
            while True:
                state = self.backend.inspect(c["Id"])["State"]
                health = (state.get("Health") or {}).get("Status")
                if state.get("Running") and health in (None, "healthy"):
                    self.backend.status(f" Container {cname}  {'Healthy' if health else 'Running'}")
                    break
                if health == "unhealthy" or (not state.get("Running")
                                             and state.get("ExitCode")):
                    raise ComposeError(f"container {cname} is "
                                       f"{health or 'exited (' + str(state.get('ExitCode')) + ')'}")
                if not state.get("Running") and state.get("Status") == "exited":
                    self.backend.status(f" Container {cname}  Exited")
                    break
                if time.monotonic() > deadline:
                    raise ComposeError(f"timed out waiting for {cname}")
                time.sleep(0.1)
