"""logs, exec, run, cp: a service's containers and their streams."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, parse_flags
from dockyard.compose import convert, planner
from dockyard.compose.errors import ComposeError
from dockyard.compose.up import Converger, UpOptions, resolve_images


def logs(argv: list[str], cctx) -> int:
    from dockyard.compose.logs import stream_logs

    p = parse_flags(argv, [Flag("follow", short="f"), Flag("timestamps", short="t"),
                           Flag("tail", VALUE, "n", "all"), Flag("no-color"),
                           Flag("since", VALUE, default=""), Flag("until", VALUE, default=""),
                           Flag("no-log-prefix"), Flag("index", VALUE, default="0")])
    project = cctx.project(required=False)
    for s in p.args:
        if project.config_files:
            project.service(s)
    cons = cctx.backend.containers(project.name, all=True, services=p.args or None)
    index = int(p["index"] or 0)
    if index:
        cons = [c for c in cons if planner.number(c) == index]
    from dockyard.cli.runflags import timestamp

    stream_logs(cctx.backend, project.name, cons, p["follow"],
                cctx.color and not p["no-color"], p["tail"], p["timestamps"],
                timestamp(p["since"]) if p["since"] else None,
                timestamp(p["until"]) if p["until"] else None,
                prefix=not p["no-log-prefix"])
    return 0


def _container(cctx, service: str, index: int) -> dict[str, Any]:
    project = cctx.project(required=False)
    if project.config_files:
        project.service(service)
    cons = cctx.backend.containers(project.name, all=False, services=[service])
    cons = [c for c in cons if c.get("State") == "running"]
    if index:
        cons = [c for c in cons if planner.number(c) == index]
    if not cons:
        raise ComposeError(f"service \"{service}\" is not running")
    return cons[0]


EXEC_FLAGS = [Flag("detach", short="d"), Flag("no-TTY", short="T"),
              Flag("tty", short="t", default=True), Flag("interactive", short="i", default=True),
              Flag("env", LIST, "e"), Flag("user", VALUE, "u", ""),
              Flag("workdir", VALUE, "w", ""), Flag("index", VALUE, default="0"),
              Flag("privileged")]


def exec_(argv: list[str], cctx) -> int:
    from dockyard.cli import tty

    p = parse_flags(argv, EXEC_FLAGS, interspersed=False)
    if len(p.args) < 2:
        raise FlagError("requires at least 2 arguments: SERVICE COMMAND [ARGS...]")
    c = _container(cctx, p.args[0], int(p["index"] or 0))
    args: list[str] = []
    if p["detach"]:
        args.append("-d")
    else:
        if p["interactive"]:
            args.append("-i")
        if not p["no-TTY"] and p["tty"] and tty.is_tty(0):
            args.append("-t")
    for e in p["env"]:
        args += ["-e", e]
    if p["user"]:
        args += ["-u", p["user"]]
    if p["workdir"]:
        args += ["-w", p["workdir"]]
    if p["privileged"]:
        args.append("--privileged")
    return tty.exec_([*args, c["Id"], *p.args[1:]], cctx)


RUN_FLAGS = [
    Flag("rm"), Flag("detach", short="d"), Flag("env", LIST, "e"), Flag("no-deps"),
    Flag("service-ports"), Flag("entrypoint", VALUE, default=""), Flag("no-TTY", short="T"),
    Flag("tty", short="t", default=True), Flag("interactive", short="i", default=True),
    Flag("name", VALUE, default=""), Flag("user", VALUE, "u", ""),
    Flag("workdir", VALUE, "w", ""), Flag("label", LIST, "l"), Flag("volume", LIST, "v"),
    Flag("publish", LIST, "p"), Flag("build"), Flag("quiet-pull"), Flag("use-aliases"),
    Flag("remove-orphans"), Flag("pull", VALUE, default="policy"), Flag("quiet", short="q"),
    Flag("cap-add", LIST), Flag("cap-drop", LIST), Flag("env-from-file", LIST),
]


def run(argv: list[str], cctx) -> int:
    from dockyard.cli import tty
    from dockyard.compose.normalize import parse_port, parse_volume

    p = parse_flags(argv, RUN_FLAGS, interspersed=False)
    if not p.args:
        raise FlagError("requires at least 1 argument: SERVICE [COMMAND] [ARGS...]")
    service, cmd = p.args[0], p.args[1:]
    project = cctx.project(enabled=[service])
    svc = dict(project.service(service))
    b = cctx.backend
    b.project_name = project.name  # type: ignore[attr-defined]
    deps = sorted(d for d in planner.with_dependencies(project, [service]) if d != service)
    if deps and not p["no-deps"]:
        Converger(b, project, UpOptions(services=deps)).run()
    images = resolve_images(b, project, [service], UpOptions(build=p["build"]))
    Converger(b, project, UpOptions(services=[service])).resources([service])
    if cmd:
        svc["command"] = cmd
    if p["entrypoint"]:
        import shlex
        svc["entrypoint"] = shlex.split(p["entrypoint"])
    if not p["service-ports"]:
        svc.pop("ports", None)
    if p["publish"]:
        svc["ports"] = [e for spec in p["publish"] for e in parse_port(spec)]
    env = dict(svc.get("environment") or {})
    for e in p["env"]:
        k, eq, v = e.partition("=")
        env[k] = v if eq else os.environ.get(k)
    svc["environment"] = env
    if p["user"]:
        svc["user"] = p["user"]
    if p["workdir"]:
        svc["working_dir"] = p["workdir"]
    labels = dict(svc.get("labels") or {})
    for item in p["label"]:
        k, _, v = item.partition("=")
        labels[k] = v
    svc["labels"] = labels
    if p["volume"]:
        svc["volumes"] = [*(svc.get("volumes") or []),
                          *(parse_volume(v, os.getcwd()) for v in p["volume"])]
    svc["cap_add"] = [*(svc.get("cap_add") or []), *p["cap-add"]]
    svc["cap_drop"] = [*(svc.get("cap_drop") or []), *p["cap-drop"]]
    svc.pop("restart", None)
    svc.pop("container_name", None)
    detach = p["detach"]
    use_tty = not detach and not p["no-TTY"] and p["tty"] and tty.is_tty(0)
    svc["tty"] = use_tty
    svc["stdin_open"] = p["interactive"] and not detach
    slug = secrets.token_hex(6)
    body = convert.create_body(project, service, svc, 1, images[service], oneoff=True,
                               resolve_service=b.service_container)
    body["Labels"][convert.SLUG] = slug
    body["HostConfig"]["AutoRemove"] = p["rm"]
    body["HostConfig"]["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    if not detach:
        body.update(AttachStdin=svc["stdin_open"], AttachStdout=True, AttachStderr=True,
                    StdinOnce=svc["stdin_open"])
    name = p["name"] or f"{project.name}-{service}-run-{slug}"
    cid = b.create(project, service, svc, 1, images[service], cname=name, oneoff=True,
                   body=body)
    if detach:
        b.start(cid)
        print(name)
        return 0
    attach = {"stdin": svc["stdin_open"], "stdout": True, "stderr": True}
    try:
        return tty.attach_and_run(b.client, cid, attach, use_tty, p["rm"], True)
    except tty.StatusError as e:
        print(e.message, file=sys.stderr)
        return e.status


# -- cp -----------------------------------------------------------------------------------------

def _split_target(arg: str) -> tuple[str, str] | None:
    if ":" not in arg or arg.startswith(("/", ".")):
        return None
    service, _, path = arg.partition(":")
    return service, path


def _safe(members: list) -> list:
    """Members that stay inside the destination: no absolute or `..` paths, nothing
    under a symlink of the archive, no device nodes."""
    links: set[str] = set()
    out = []
    for m in members:
        parts = m.name.split("/")
        if m.name.startswith("/") or ".." in parts:
            raise ComposeError(f"refusing to extract {m.name!r}: outside the destination")
        if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
            raise ComposeError(f"refusing to extract {m.name!r}: through a symlink")
        if m.issym() or m.islnk():
            links.add(m.name.rstrip("/"))
            if m.islnk() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
                raise ComposeError(f"refusing to extract hard link {m.name!r}")
        if m.isdev():
            continue
        out.append(m)
    return out


def cp(argv: list[str], cctx) -> int:
    import base64
    import io
    import json
    import tarfile

    p = parse_flags(argv, [Flag("index", VALUE, default="0"), Flag("all"),
                           Flag("archive", short="a"), Flag("follow-link", short="L")])
    if len(p.args) != 2:
        raise FlagError("requires exactly 2 arguments: SERVICE:SRC DEST or SRC SERVICE:DEST")
    src, dst = p.args
    index = int(p["index"] or 0)
    s_target, d_target = _split_target(src), _split_target(dst)
    if bool(s_target) == bool(d_target):
        raise FlagError("copying between services or between local paths is not supported")
    client = cctx.backend.client
    if s_target:
        service, path = s_target
        c = _container(cctx, service, index)
        stream = client.raw_stream("GET", f"/containers/{c['Id']}/archive",
                                   params={"path": path})
        data = stream.read()
        stream.close()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            dest_is_dir = os.path.isdir(dst)
            base = os.path.basename(path.rstrip("/")) or "/"
            target_dir = dst if dest_is_dir else os.path.dirname(os.path.abspath(dst))
            if not dest_is_dir:  # rename the top entry to the destination's name
                new = os.path.basename(dst)
                for m in members:
                    if m.name == base or m.name.startswith(base + "/"):
                        m.name = new + m.name[len(base):]
            tar.extractall(target_dir, members=_safe(members))
        return 0
    service, path = d_target  # type: ignore[misc]
    targets = cctx.backend.containers(cctx.project(required=False).name, all=False,
                                      services=[service]) if p["all"] else \
        [_container(cctx, service, index)]
    for c in targets:
        is_dir = path.endswith("/")
        try:
            head = client.head(f"/containers/{c['Id']}/archive", params={"path": path})
            st = json.loads(base64.b64decode(head.get("x-docker-container-path-stat", "")
                                             or "e30="))
            is_dir = bool(int(st.get("mode", 0)) & (1 << 31))
        except Exception:  # noqa: BLE001 - the path may not exist yet
            is_dir = path.endswith("/")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            arc = os.path.basename(src.rstrip("/")) if is_dir else os.path.basename(path)
            tar.add(src, arcname=arc)
        where = path if is_dir else (os.path.dirname(path.rstrip("/")) or "/")
        client.put(f"/containers/{c['Id']}/archive", params={"path": where},
                   body=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    return 0
