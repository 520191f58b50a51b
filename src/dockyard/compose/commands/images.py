"""build, pull, push, images."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

from dockyard.cli.runflags import VALUE, Flag, parse_flags
from dockyard.compose import convert
from dockyard.compose.backend import short_name
from dockyard.compose.errors import ComposeError
from dockyard.compose.images import build_service
from dockyard.compose.images import push as push_image
from dockyard.errors import DockyardError
from dockyard.units import human_duration


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
    """docker compose's `images`: the image of each of the project's containers, one-off
    ones included; a table sorted by container name, `--format json` a compact array."""
    from dockyard.cli.container import tabwriter

    p = parse_flags(argv, [Flag("quiet", short="q"), Flag("format", VALUE, default="table")])
    fmt = p["format"]
    if fmt != "json" and fmt.lower() not in ("table", "pretty", ""):
        raise ComposeError(f"format value {json.dumps(fmt)} could not be parsed: parsing failed")
    project = cctx.project(required=False)
    client = cctx.backend.client
    found = client.get("/containers/json", params={
        "all": True, "filters": {"label": [f"{convert.PROJECT}={project.name}"]}})
    if p.args:
        found = [c for c in found if (c.get("Labels") or {}).get(convert.SERVICE) in p.args]
    cache: dict[str, dict] = {}
    rows = []
    for c in found:
        ref = c.get("Image", "")
        if ref not in cache:
            cache[ref] = _inspect_image(client, ref, c.get("ImageID", ""))
        info = cache[ref]
        repo, tag = _repository_tag(ref)
        rows.append({"ContainerName": short_name(c), "ID": info.get("Id", ""),
                     "Repository": repo, "Tag": tag, "Platform": _platform(info),
                     "Size": int(info.get("Size") or 0),
                     "Created": _go_time(info.get("Created")),
                     "LastTagTime": _go_time((info.get("Metadata") or {}).get("LastTagTime"))})
    rows.sort(key=lambda r: r["ContainerName"])
    if p["quiet"]:
        for i in dict.fromkeys(r["ID"].split(":", 1)[-1] for r in rows):
            print(i)
        return 0
    if fmt == "json":
        out = [{"ID": r["ID"], "ContainerName": r["ContainerName"],
                "Repository": r["Repository"], "Tag": r["Tag"], "Platform": r["Platform"],
                "Size": r["Size"], "LastTagTime": (r["LastTagTime"] or r["Created"]
                                                   or _GO_ZERO_TIME)[0]} for r in rows]
        text = json.dumps(out or None, separators=(",", ":"), ensure_ascii=False)
        # Go's encoder writes a newline, and docker compose prints another
        sys.stdout.write(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
                         + "\n\n")
        return 0
    now = time.time()
    table = [["CONTAINER", "REPOSITORY", "TAG", "PLATFORM", "IMAGE ID", "SIZE", "CREATED"]]
    for r in rows:
        tagged = r["LastTagTime"]
        age = min(now - tagged[1], _MAX_DURATION) if tagged else _MAX_DURATION
        table.append([r["ContainerName"], r["Repository"] or "<none>", r["Tag"] or "<none>",
                      r["Platform"], _truncate_id(r["ID"]), _human_size(r["Size"]),
                      human_duration(age) + " ago"])
    sys.stdout.write(tabwriter(table, 20, 3))
    return 0


# Go's time.Duration tops out at about 292 years: what `now - time.Time{}` comes to
_MAX_DURATION = (2**63 - 1) / 1e9
_GO_ZERO_TIME = ("0001-01-01T00:00:00Z", float("-inf"))
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _go_time(text: Any) -> tuple[str, float] | None:
    """An RFC 3339 time from the daemon as Go's time.Time writes it back (fraction without
    its trailing zeros, "Z" for a zero offset), with its Unix time; None if it is Go's
    zero time or absent."""
    from datetime import datetime

    m = _TIME.match(str(text or ""))
    if not m:
        return None
    base, frac, zone = m.group(1), (m.group(2) or "").rstrip("0"), m.group(3)
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    if base == "0001-01-01T00:00:00" and not frac and zone == "Z":
        return None
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return f"{base}{'.' + frac if frac else ''}{zone}", stamp + float(f"0.{frac or 0}")


def _inspect_image(client, ref: str, image_id: str) -> dict:
    """The image by the container's reference (as docker compose asks), else by its ID."""
    try:
        return client.get(f"/images/{ref}/json")
    except DockyardError as e:
        if not image_id or image_id == ref:
            raise ComposeError(f"inspecting image {ref}: {e}") from None
    try:
        return client.get(f"/images/{image_id}/json")
    except DockyardError as e:
        raise ComposeError(f"inspecting image {ref}: {e}") from None


def _repository_tag(ref: str) -> tuple[str, str]:
    """distribution's ParseDockerRef, familiar: ("busybox", "latest") for "busybox";
    a tag next to a digest is dropped; nothing for an image ID."""
    from dockyard.image import reference

    try:
        parsed = reference.parse(ref)
    except DockyardError:
        return "", ""
    return parsed.familiar_name, "" if parsed.digest else (parsed.tag or "")


def _platform(info: dict) -> str:
    """containerd's platforms.Format: os/arch[/variant], "unknown" without an OS."""
    if not info.get("Os"):
        return "unknown"
    return "/".join(x for x in (info.get("Os"), info.get("Architecture"),
                                info.get("Variant")) if x)


def _truncate_id(image_id: str) -> str:
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def _human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, Go's %.3g."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


