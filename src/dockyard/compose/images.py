"""Images for a project: build (POST /build with the context as a tar), pull, push."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import tarfile
from typing import TYPE_CHECKING, Any

from dockyard.compose import convert
from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from dockyard.compose.backend import Backend


def _ignore_patterns(context: str) -> list[str]:
    try:
        with open(os.path.join(context, ".dockerignore"), encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError:
        return []
    return [ln.lstrip("/") for ln in lines if ln and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p + "/*") \
                or (p.startswith("**/") and fnmatch.fnmatch(rel, p[3:])):
            ignored = not neg
    return ignored


def context_tar(context: str, dockerfile: str) -> bytes:
    """The build context as an uncompressed tar (.dockerignore applied; the Dockerfile
    and .dockerignore always sent)."""
    if not os.path.isdir(context):
        raise ComposeError(f"build context {context} is not a directory")
    patterns = _ignore_patterns(context)
    keep = {dockerfile, ".dockerignore"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for root, dirs, files in os.walk(context):
            rel_root = os.path.relpath(root, context)
            for d in list(dirs):
                rel = os.path.normpath(os.path.join(rel_root, d))
                if _ignored(rel, patterns):
                    dirs.remove(d)
            for name in sorted(files) + sorted(dirs):
                rel = os.path.normpath(os.path.join(rel_root, name))
                if rel not in keep and _ignored(rel, patterns):
                    continue
                info = tar.gettarinfo(os.path.join(root, name), arcname=rel)
                if info.isreg():
                    with open(os.path.join(root, name), "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def build_service(backend: Backend, project: Project, name: str, svc: dict[str, Any],
                  no_cache: bool = False, pull: bool = False, quiet: bool = False) -> str:
    """POST /build for one service; returns the image id."""
    b = svc.get("build") or {}
    ref = convert.image_name(project, name, svc)
    context = b.get("context") or project.working_dir
    dockerfile = b.get("dockerfile") or "Dockerfile"
    if b.get("dockerfile_inline"):
        raise ComposeError(f"services.{name}.build.dockerfile_inline is not supported")
    rel_df = os.path.relpath(os.path.join(context, dockerfile), context) \
        if os.path.isabs(dockerfile) else dockerfile
    body = context_tar(context, rel_df)
    params: dict[str, Any] = {
        "t": [ref, *(b.get("tags") or [])], "dockerfile": rel_df, "rm": True,
        "buildargs": {k: v for k, v in (b.get("args") or {}).items() if v is not None} or None,
        "labels": b.get("labels") or None, "target": b.get("target") or None,
        "cachefrom": json.dumps(b["cache_from"]) if b.get("cache_from") else None,
        "nocache": no_cache or None, "pull": pull or None,
        "networkmode": b.get("network") or None, "shmsize": None,
    }
    backend.status(f" {name} Building")
    image_id = ""
    try:
        stream = backend.client.stream_json("POST", "/build", params=params, body=body,
                                            headers={"Content-Type": "application/x-tar"})
        for msg in stream:
            if not isinstance(msg, dict):
                continue
            if msg.get("stream") and not quiet:
                backend.status(msg["stream"].rstrip("\n"))
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except NotFound as e:
        from dockyard.compose.backend import missing_route

        if missing_route(e):
            raise ComposeError(f"service {name}: the daemon has no build endpoint "
                               "(POST /build, issue 7): build the image yourself or use "
                               "--no-build") from None
        raise ComposeError(f"service {name}: build failed: {e}") from None
    except DockyardError as e:
        raise ComposeError(f"service {name}: build failed: {e}") from None
    backend.status(f" {name} Built")
    return image_id or backend.image_id(ref) or ""


def push(backend: Backend, ref: str) -> None:
    from dockyard.client.auth import registry_auth_header
    from dockyard.client.reference import split

    repo, tag, _ = split(ref)
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    auth = registry_auth_header(config_dir, ref)
    for msg in backend.client.stream_json("POST", f"/images/{repo}/push",
                                          params={"tag": tag or "latest"},
                                          headers={"X-Registry-Auth": auth or "e30="}):
        del msg
