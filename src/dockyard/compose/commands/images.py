"""build, pull, push, images."""

from __future__ import annotations

import json
import sys

from dockyard.cli.runflags import VALUE, Flag, FlagError, bytes_size, parse_flags
from dockyard.compose import convert
from dockyard.compose.backend import short_name
from dockyard.compose.errors import ComposeError
from dockyard.compose.images import build_service
from dockyard.compose.images import push as push_image
from dockyard.errors import DockyardError


def build(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("no-cache"), Flag("pull"), Flag("quiet", short="q"),
                           Flag("build-arg", short="", kind="list"),
                           Flag("progress", VALUE, default=""), Flag("with-dependencies")])
    project = cctx.project(enabled=p.args)
    names = p.args or [n for n, s in project.services.items() if s.get("build")]
    for n in names:
        svc = project.service(n)
        if not svc.get("build"):
            continue
        for arg in p["build-arg"]:
            k, eq, v = arg.partition("=")
            svc["build"].setdefault("args", {})[k] = v if eq else None
        build_service(cctx.backend, project, n, svc, no_cache=p["no-cache"], pull=p["pull"],
                      quiet=p["quiet"])
    return 0


def pull(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("quiet", short="q"), Flag("ignore-pull-failures"),
                           Flag("ignore-buildable"), Flag("include-deps"),
                           Flag("policy", VALUE, default="")])
    project = cctx.project(enabled=p.args)
    failed = []
    for name in p.args or list(project.services):
        svc = project.service(name)
        if not svc.get("image"):
            continue
        if svc.get("build") and p["ignore-buildable"]:
            continue
        ref = svc["image"]
        if p["policy"] == "missing" and cctx.backend.image_id(ref):
            continue
        cctx.backend.status(f" {name} Pulling")
        try:
            cctx.backend.pull(ref, quiet=True)
            cctx.backend.status(f" {name} Pulled")
        except DockyardError as e:
            if not p["ignore-pull-failures"] and not svc.get("build"):
                raise ComposeError(f"service {name}: pulling {ref}: {e}") from None
            failed.append(name)
            cctx.backend.status(f" {name} Error {e}")
    return 0


def push(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("ignore-push-failures"), Flag("include-deps"),
                           Flag("quiet", short="q")])
    project = cctx.project(enabled=p.args)
    for name in p.args or list(project.services):
        svc = project.service(name)
        if not svc.get("image"):
            continue
        cctx.backend.status(f" {name} Pushing")
        try:
            push_image(cctx.backend, svc["image"])
            cctx.backend.status(f" {name} Pushed")
        except DockyardError as e:
            if not p["ignore-push-failures"]:
                raise ComposeError(f"service {name}: pushing {svc['image']}: {e}") from None
            cctx.backend.status(f" {name} Error {e}")
    return 0


def images(argv: list[str], cctx) -> int:
    from dockyard.cli.container import tabwriter

    p = parse_flags(argv, [Flag("quiet", short="q"), Flag("format", VALUE, default="table")])
    if p["format"] not in ("table", "json"):
        raise FlagError(f"unsupported format {p['format']!r}: table or json")
    project = cctx.project(required=False)
    rows = []
    cache: dict[str, dict] = {}
    for c in cctx.backend.containers(project.name, services=p.args or None):
        image_id = c.get("ImageID", "")
        if image_id not in cache:
            try:
                cache[image_id] = cctx.backend.client.get(f"/images/{image_id}/json")
            except DockyardError:
                cache[image_id] = {}
        info = cache[image_id]
        ref = c.get("Image", "")
        tags = info.get("RepoTags") or []
        chosen = ref if ref in tags or ":" in ref.rsplit("/", 1)[-1] else (
            tags[0] if tags else ref)
        repo, _, tag = chosen.rpartition(":") if ":" in chosen.rsplit("/", 1)[-1] \
            else (chosen, "", "latest")
        rows.append({"ContainerName": short_name(c), "Repository": repo, "Tag": tag,
                     "ID": image_id, "Size": info.get("Size", 0),
                     "Service": (c.get("Labels") or {}).get(convert.SERVICE, "")})
    if p["quiet"]:
        for i in dict.fromkeys(r["ID"] for r in rows):
            print(i)
    elif p["format"] == "json":
        print(json.dumps(rows, indent=2))
    else:
        table = [["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]]
        table += [[r["ContainerName"], r["Repository"], r["Tag"],
                   r["ID"].removeprefix("sha256:")[:12], bytes_size(r["Size"])] for r in rows]
        sys.stdout.write(tabwriter(table, 3, 3))
    return 0
