"""Order and convergence: which services come first (depends_on, network_mode and
volumes_from), cycles reported with their path; the configuration hash docker
compose puts in com.docker.compose.config-hash; what `up` must do with the
containers that exist.

The hash is docker compose's own (gojson.py), so that `docker compose up` keeps
the containers we created and we keep its.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.compose.errors import ComposeError, where
from dockyard.compose.model import Project

NAMESPACES = ("network_mode", "ipc", "pid", "uts", "cgroup")


def references(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """The services this one names, whose containers must exist before its own, as
    (service, how): "namespace" (network_mode, ipc, ... `service:x`), "volumes_from"
    (any entry but `container:x`) and "link"."""
    out = []
    for key in NAMESPACES:
        ref = str(svc.get(key) or "")
        if ref.startswith("service:"):
            out.append((ref[8:], "namespace"))
    for ref in svc.get("volumes_from") or []:
        parts = str(ref).split(":")
        if parts[0] != "container":
            out.append((parts[1] if parts[0] == "service" else parts[0], "volumes_from"))
    out += [(str(link).split(":")[0], "link") for link in svc.get("links") or []]
    return out


def dependencies(svc: dict[str, Any]) -> list[str]:
    deps = list(svc.get("depends_on") or {}) + [name for name, _ in references(svc)]
    return list(dict.fromkeys(deps))


def check_cycles(project: Project) -> None:
    services = {**project.services, **project.disabled}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2 or name not in services:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + [name]
            file = project.sources.get(cycle[0], "")
            raise ComposeError(f"{where(file, f'services.{cycle[0]}.depends_on')}: "
                               f"dependency cycle detected: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in dependencies(services[name]):
            visit(dep, chain + [name])
        state[name] = 2

    for name in services:
        visit(name, [])


def levels(project: Project, names: list[str] | None = None) -> list[list[str]]:
    """Services in dependency order, as groups that may run concurrently (each group
    depends only on earlier ones). `names` limits to those and their dependencies."""
    check_cycles(project)
    services = project.services
    wanted = set(services) if names is None else with_dependencies(project, names)
    remaining = {n: {d for d in dependencies(services[n]) if d in wanted}
                 for n in services if n in wanted}
    out: list[list[str]] = []
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if not deps)
        out.append(ready)
        for n in ready:
            del remaining[n]
        for deps in remaining.values():
            deps.difference_update(ready)
    return out


def with_dependencies(project: Project, names: list[str]) -> set[str]:
    out: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in out:
            continue
        project.service(n)
        out.add(n)
        todo.extend(d for d in dependencies(project.services[n]) if d in project.services)
    return out


def dependents(project: Project, name: str) -> list[str]:
    return [n for n, s in project.services.items() if name in dependencies(s)]


def config_hash(svc: dict[str, Any]) -> str:
    from dockyard.compose.gojson import config_hash as compose_hash

    return compose_hash(svc)


def sha256_hex(data: bytes) -> str:
    """SHA-256 without hashlib's OpenSSL import (tens of milliseconds at every start)."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256
    return sha256(data).hexdigest()


def _off_network(container: dict[str, Any], networks: list[str]) -> bool:
    """Not attached to one of `networks` (ids): a network made again, or a stop left
    halfway. docker compose looks at running containers only; a stopped one would
    start without the network, so any state counts (unless the daemon gives no ids)."""
    on = {n.get("NetworkID") for n in ((container.get("NetworkSettings") or {})
                                       .get("Networks") or {}).values()}
    if "" in on or None in on:
        return False
    return any(n not in on for n in networks)


def replicas(svc: dict[str, Any]) -> int:
    if svc.get("scale") is not None:
        return int(svc["scale"])
    deploy = svc.get("deploy") or {}
    if deploy.get("replicas") is not None:
        return int(deploy["replicas"])
    return 1


# -- convergence ----------------------------------------------------------------------------

@dataclass
class Plan:
    """For one service: containers to keep (maybe start), recreate, create, remove."""
    keep: list[dict] = field(default_factory=list)
    recreate: list[dict] = field(default_factory=list)
    create: list[int] = field(default_factory=list)     # container numbers
    remove: list[dict] = field(default_factory=list)


def number(container: dict[str, Any]) -> int:
    try:
        return int((container.get("Labels") or {}).get("com.docker.compose.container-number")
                   or 0)
    except ValueError:
        return 0


def plan_service(svc: dict[str, Any], existing: list[dict[str, Any]], want: int,
                 image_id: str | None, force: bool = False,
                 no_recreate: bool = False, networks: list[str] | None = None,
                 digest: str | None = None) -> Plan:
    """Decide from the containers' labels (GET /containers/json summaries) against
    `digest` (the service's config-hash by default); a container not on every network
    id in `networks` is recreated too."""
    plan = Plan()
    digest = digest or config_hash(svc)
    current = sorted(existing, key=number)
    # scale down: the highest numbers go first (docker compose removes the newest)
    for c in current[want:]:
        plan.remove.append(c)
    for c in current[:want]:
        labels = c.get("Labels") or {}
        changed = labels.get("com.docker.compose.config-hash") != digest
        image_changed = bool(image_id) and labels.get("com.docker.compose.image") not in (
            None, "", image_id)
        if not no_recreate and (force or changed or image_changed
                                or _off_network(c, networks or [])):
            plan.recreate.append(c)
        else:
            plan.keep.append(c)
    taken = {number(c) for c in current[:want]}
    n = 1
    while len(taken) + len(plan.create) < want:
        if n not in taken:
            plan.create.append(n)
        n += 1
    return plan
