"""down: stop and remove the project's containers (dependents first), then its
networks, with -v its volumes, with --rmi its images."""

from __future__ import annotations

import threading
from typing import Any

from dockyard.cli.runflags import VALUE, Flag, FlagError, parse_flags
from dockyard.compose import convert, planner
from dockyard.compose.backend import short_name
from dockyard.compose.commands.lifecycle import _by_service, _parallel, _timeout
from dockyard.compose.errors import ComposeError
from dockyard.compose.up import concurrently
from dockyard.errors import DockyardError


def _stop_remove(cctx, project, cons: list[dict[str, Any]], timeout: int | None,
                 volumes: bool, all_stopped: Any = None) -> None:
    """Stop then remove each container; a service's containers once every service that
    depends on it is stopped (services concurrently, like docker compose's graph walk).
    `all_stopped()` is called once every container is stopped (not if a stop failed)."""
    b = cctx.backend
    groups = _by_service(cons)
    waits = {s: [d for d in groups if d != s and s in planner.dependencies(
        project.services.get(d) or {})] for s in groups}
    done = {s: threading.Event() for s in groups}
    errors: list[str] = []
    left = [len(cons)]
    lock = threading.Lock()

    def stopped() -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last and all_stopped is not None:
            all_stopped()

    if not cons and all_stopped is not None:
        all_stopped()

    def one(c: dict[str, Any]) -> None:
        if c.get("State") in ("running", "paused", "restarting"):
            b.status(f" Container {short_name(c)}  Stopping")
            b.stop(c["Id"], timeout)
            b.status(f" Container {short_name(c)}  Stopped")
        stopped()
        b.status(f" Container {short_name(c)}  Removing")
        b.remove(c["Id"], force=True, volumes=volumes)
        b.status(f" Container {short_name(c)}  Removed")

    def service(s: str) -> None:
        try:
            for d in waits[s]:
                done[d].wait()
            errors.extend(_parallel(groups[s], one))
        finally:
            done[s].set()

    _parallel(list(groups), service)
    if errors:
        raise ComposeError(errors[0])


def down(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("volumes", short="v"), Flag("rmi", VALUE, default=""),
                           Flag("remove-orphans"), Flag("timeout", VALUE, "t", "")])
    if p["rmi"] not in ("", "all", "local"):
        raise FlagError(f"invalid --rmi option {p['rmi']!r}: all or local")
    project = cctx.project(required=False)
    b = cctx.backend
    timeout = _timeout(p["timeout"])
    cons = b.containers(project.name, oneoff=None)
    known = set(project.services) | set(project.disabled)
    orphan_ids = {c["Id"] for c in cons if (c.get("Labels") or {}).get(convert.SERVICE)
                  not in known} if project.config_files else set()
    if orphan_ids and not p["remove-orphans"]:
        names = [short_name(c) for c in cons if c["Id"] in orphan_ids]
        b.status(f"WARN[0000] Found orphan containers ({', '.join(names)}) for this project. "
                 "If you removed or renamed this service in your compose file, you can run "
                 "this command with the --remove-orphans flag to clean it up.")
        cons = [c for c in cons if c["Id"] not in orphan_ids]
    # The project's networks and volumes are looked up while its containers go; the
    # networks are removed as soon as every container is stopped (a stopped container
    # has no endpoint left: dockerd removes such a network too), while the containers
    # are being removed; the volumes once the containers are gone.
    lookups = {"networks": (b.project_networks, project.name)}
    if p["volumes"]:
        lookups["volumes"] = (b.project_volumes, project.name)
    found: dict[str, Any] = {}
    errors: list[str] = []

    def look_up() -> None:
        try:
            found.update(concurrently(lookups))
        except DockyardError as e:
            errors.append(str(e))
    looker = threading.Thread(target=look_up, daemon=True)
    looker.start()

    def networks() -> None:
        looker.join()
        if "networks" in found:
            try:
                _remove_networks(cctx, project, found["networks"])
            except DockyardError as e:
                errors.append(str(e))
    remover = threading.Thread(target=networks, daemon=True)
    try:
        _stop_remove(cctx, project, cons, timeout, p["volumes"], all_stopped=remover.start)
        looker.join()
        if "volumes" in found:
            try:
                _remove_volumes(cctx, project, found["volumes"])
            except DockyardError as e:
                errors.append(str(e))
    finally:
        looker.join()
        if remover.ident is not None:
            remover.join()
    if errors:
        raise ComposeError(errors[0])
    if p["rmi"]:
        _remove_images(cctx, project, p["rmi"], cons)
    return 0


def _remove_networks(cctx, project, labelled: list[dict[str, Any]]) -> None:
    """The project's networks: those of its file, and those labelled with its name
    (`labelled`, listed before; those exist, the others are looked up)."""
    from dockyard.errors import NotFound

    b = cctx.backend
    names = {project.network_name(k) for k, n in project.networks.items()
             if not n.get("external")}
    known = {n["Name"] for n in labelled}
    for name in sorted(names | known):
        if name not in known:
            try:
                b.client.get(f"/networks/{name}")
            except NotFound:
                continue
        b.status(f" Network {name}  Removing")
        try:
            b.client.delete(f"/networks/{name}")
        except NotFound:
            pass
        b.status(f" Network {name}  Removed")


def _remove_volumes(cctx, project, labelled: list[dict[str, Any]]) -> None:
    from dockyard.errors import NotFound

    b = cctx.backend
    names = {project.volume_name(k) for k, v in project.volumes.items()
             if not v.get("external")}
    names |= {v["Name"] for v in labelled}
    for name in sorted(names):
        try:
            b.client.delete(f"/volumes/{name}")
            b.status(f" Volume {name}  Removed")
        except NotFound:
            pass


def _remove_images(cctx, project, mode: str, cons: list[dict[str, Any]]) -> None:
    from dockyard.errors import Conflict, NotFound

    b = cctx.backend
    refs: set[str] = set()
    for name, svc in project.services.items():
        if mode == "all" or not svc.get("image"):
            refs.add(convert.image_name(project, name, svc))
    if mode == "all":
        refs |= {c.get("Image", "") for c in cons if c.get("Image")}
    for ref in sorted(refs):
        try:
            b.client.delete(f"/images/{ref}")
            b.status(f" Image {ref}  Removed")
        except (NotFound, Conflict):
            pass
