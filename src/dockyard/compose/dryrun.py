"""`compose --dry-run`: every command runs as usual against the daemon, but nothing
changes. Like docker compose's dry-run client, the Backend's client is wrapped: reads
(GET, HEAD) go to the daemon, writes are not sent and get a plausible answer (a fake
container id, an empty pull stream). What the run "did" is remembered, so later reads
in the same command see it: created containers are listed and inspected (started ones
as running and healthy, so depends_on conditions and --wait go on), removed ones
disappear, pulled and built images exist. Progress lines get compose's prefix.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import tarfile
import threading
from typing import Any

from dockyard.cli.runflags import FlagError, parse_flags
from dockyard.compose import convert
from dockyard.compose.backend import Backend
from dockyard.compose.errors import ComposeError
from dockyard.errors import NotFound

PREFIX = " DRY-RUN MODE - "

_CONTAINER = re.compile(r"^/containers/([^/]+)(?:/([a-z]+))?$")
# the state a container is left in by a (simulated) POST /containers/{id}/<verb>
_AFTER = {"start": "running", "restart": "running", "unpause": "running",
          "stop": "exited", "kill": "exited", "pause": "paused"}


def _image_key(ref: str) -> str:
    """`busybox`, `busybox:latest` and `docker.io/library/busybox` are one image."""
    from dockyard.client.reference import normalized

    return normalized(ref)


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class Simulation:
    """What the dry run has done so far (shared by the command's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: dict[str, dict[str, Any]] = {}  # fake id -> container summary
        self.states: dict[str, str] = {}   # container id -> state it was put in
        self.images: dict[str, str] = {}   # normalized ref -> fake image id
        self.objects: dict[str, dict[str, Any]] = {}  # "/networks/x", "/volumes/y" made
        self.one_shot: set[str] = set()    # services others wait on to complete

    def saw(self, labels: dict[str, str]) -> None:
        """A container waiting for `x: service_completed_successfully` makes x a job:
        once "started" it counts as exited 0 rather than running."""
        for dep in (labels.get(convert.DEPENDS_ON) or "").split(","):
            name, _, rest = dep.partition(":")
            if rest.startswith("service_completed_successfully"):
                self.one_shot.add(name)

    def state(self, status: str, labels: dict[str, str]) -> dict[str, Any]:
        if status == "running" and labels.get(convert.SERVICE) in self.one_shot:
            status = "exited"
        state: dict[str, Any] = {"Status": status, "Running": status in ("running", "paused"),
                                 "Paused": status == "paused", "Restarting": False,
                                 "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0,
                                 "Error": ""}
        if status == "running":
            state["Health"] = {"Status": "healthy", "FailingStreak": 0, "Log": []}
        return state


def _empty_tar() -> bytes:
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w").close()
    return buf.getvalue()


class DryRunClient:
    """A dockyard.client.api.Client that only reads: the other calls are simulated."""

    def __init__(self, real: Any, sim: Simulation) -> None:
        self.real = real
        self.sim = sim

    def __getattr__(self, name: str) -> Any:  # api_version, host, close, ...
        return getattr(self.real, name)

    # -- reads ------------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        if path == "/containers/json":
            return self._list(self.real.get(path, params, **kw), params or {})
        m = _CONTAINER.match(path)
        if m and m.group(2) == "json":
            return self._inspect(m.group(1), params, **kw)
        try:
            return self.real.get(path, params, **kw)
        except NotFound:
            if path in self.sim.objects:
                return self.sim.objects[path]
            if path.startswith("/images/") and path.endswith("/json"):
                image = self.sim.images.get(_image_key(path[len("/images/"):-len("/json")]))
                if image:
                    return {"Id": image, "RepoTags": [], "Config": {}, "Size": 0}
            raise

    def head(self, path: str, params: dict[str, Any] | None = None) -> dict[str, str]:
        return self.real.head(path, params)

    def _list(self, found: list[dict[str, Any]], params: dict[str, Any]) -> list[dict]:
        wanted = ((params.get("filters") or {}).get("label")) or []
        out = []
        with self.sim.lock:
            for c in found:
                self.sim.saw(c.get("Labels") or {})
            fakes = [c for c in self.sim.created.values()
                     if _labels_match(c["Labels"], wanted)]
            for c in [*found, *fakes]:
                status = self.sim.states.get(c["Id"])
                if status == "removed":
                    continue
                if status:
                    status = self.sim.state(status, c.get("Labels") or {})["Status"]
                    c = {**c, "State": status, "Status": status.capitalize()}
                if params.get("all") or c.get("State") in ("running", "paused"):
                    out.append(c)
        return out

    def _inspect(self, ref: str, params: Any, **kw: Any) -> dict[str, Any]:
        with self.sim.lock:
            fake = self.sim.created.get(ref) or next(
                (c for c in self.sim.created.values() if c["Names"][0] == "/" + ref), None)
        if fake is not None:
            info = {"Id": fake["Id"], "Name": fake["Names"][0], "Image": fake["ImageID"],
                    "Config": {"Labels": fake["Labels"], "Image": fake["Image"],
                               "Tty": False},
                    "HostConfig": {}, "Mounts": [], "NetworkSettings": {"Networks": {}}}
        else:
            info = self.real.get(f"/containers/{ref}/json", params, **kw)
        with self.sim.lock:
            status = self.sim.states.get(info["Id"]) or (fake and "created")
            if status == "removed":
                raise NotFound(f"No such container: {ref}")
            if status:
                info["State"] = self.sim.state(status, (info.get("Config") or {}).get(
                    "Labels") or {})
        return info

    def raw_stream(self, method: str, path: str, params: dict[str, Any] | None = None,
                   body: Any = None, headers: dict[str, str] | None = None) -> Any:
        if method == "GET" and path.endswith("/archive"):
            # `cp SERVICE:SRC DEST` writes nothing here either: check SRC, copy no file
            self._stat(path, (params or {}).get("path", ""))
            return io.BytesIO(_empty_tar())  # reads like a ResponseStream
        if method in ("GET", "HEAD"):
            return self.real.raw_stream(method, path, params, body, headers)
        self.call(method, path, params, body, headers)
        return io.BytesIO()

    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: Any = None, headers: dict[str, str] | None = None) -> Any:
        if method == "GET":  # events
            return self.real.stream_json(method, path, params, body, headers)
        params = params or {}
        if path == "/images/create":  # pull: the image now "exists"
            tag = params.get("tag") or "latest"
            sep = "@" if tag.startswith("sha256:") else ":"
            self._image(f"{params.get('fromImage')}{sep}{tag}")
            return iter([])
        if path == "/build":
            tags = params.get("t") or []
            tags = [tags] if isinstance(tags, str) else tags
            image = "dryRun-" + hashlib.sha1(json.dumps(tags).encode()).hexdigest()
            for tag in tags:
                self._image(tag, image)
            return iter([{"stream": f"==> writing image {image}\n"},
                         *({"stream": f"==> naming to {t}\n"} for t in tags),
                         {"aux": {"ID": image}}])
        return iter([])  # push and the rest: nothing sent

    def _image(self, ref: str, image: str = "") -> None:
        image = image or "dryRun-" + hashlib.sha1(ref.encode()).hexdigest()
        with self.sim.lock:
            self.sim.images[_image_key(ref)] = image

    def hijack(self, *args: Any, **kw: Any) -> Any:
        raise ComposeError("interactive run is not supported in dry-run mode")

    # -- writes -----------------------------------------------------------------------------
    def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
        if method in ("GET", "HEAD"):
            return self.real.request(method, path, *args, **kw)
        raise ComposeError(f"{method} {path} is not simulated in dry-run mode")

    def call(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: Any = None, headers: dict[str, str] | None = None) -> Any:
        if method == "GET":
            return self.get(path, params)
        if method == "HEAD":
            return self.real.call(method, path, params, body, headers)
        params = params or {}
        if method == "POST" and path == "/containers/create":
            return self._create(params.get("name") or "", body or {})
        if method == "POST" and path in ("/networks/create", "/volumes/create"):
            return self._object(path.split("/")[1], body or {})
        if method == "DELETE" and path.startswith(("/networks/", "/volumes/", "/images/")):
            # removing what does not exist fails as it would
            self.get(path + "/json" if path.startswith("/images/") else path)
            return None
        m = _CONTAINER.match(path)
        if not m:
            return None  # connect, disconnect, prune, ...: nothing to remember
        cid, verb = m.groups()
        cid = self._id(cid)
        if method == "DELETE" and verb is None:
            self._inspect(cid, None)  # a missing container is still an error
            self._put(cid, "removed")
        elif method == "POST" and verb in _AFTER:
            self._inspect(cid, None)
            self._put(cid, _AFTER[verb])
        elif method == "PUT" and verb == "archive" and cid not in self.sim.created:
            self._stat(path, params.get("path", ""))  # where it would be extracted
        return None

    def _stat(self, path: str, where: str) -> None:
        """HEAD .../archive: the path exists in the container (a 404 has no message)."""
        try:
            self.real.head(path, {"path": where})
        except NotFound:
            cid = path.split("/")[2]
            raise ComposeError(f"Could not find the file {where} in container {cid}") from None

    def post(self, path: str, params: dict[str, Any] | None = None, body: Any = None,
             **kw: Any) -> Any:
        return self.call("POST", path, params, body, **kw)

    def put(self, path: str, params: dict[str, Any] | None = None, body: Any = None,
            **kw: Any) -> Any:
        return self.call("PUT", path, params, body, **kw)

    def delete(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("DELETE", path, params, **kw)

    def _id(self, ref: str) -> str:
        with self.sim.lock:
            for c in self.sim.created.values():
                if ref in (c["Id"], c["Names"][0][1:]):
                    return c["Id"]
        return ref

    def _put(self, cid: str, status: str) -> None:
        with self.sim.lock:
            self.sim.states[cid] = status

    def _object(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """A network or volume "created": later inspects of it find it."""
        name = body.get("Name") or ""
        info = {**body, "Id": secrets.token_hex(32), "Scope": "local"}
        with self.sim.lock:
            self.sim.objects[f"/{kind}/{name}"] = info
        return {"Id": info["Id"], "Warning": ""} if kind == "networks" else info

    def _create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        cid = secrets.token_hex(32)
        labels = dict(body.get("Labels") or {})
        image = body.get("Image") or ""
        with self.sim.lock:
            self.sim.saw(labels)
            self.sim.created[cid] = {
                "Id": cid, "Names": ["/" + (name or cid[:12])], "Image": image,
                "ImageID": image, "Command": "", "Created": 0, "Labels": labels,
                "State": "created", "Status": "Created", "Ports": [], "Mounts": []}
        return {"Id": cid, "Warnings": []}


class DryRunBackend(Backend):
    """The Backend of `compose --dry-run`: its client changes nothing."""

    def __init__(self, host: str | None, out: Any = None) -> None:
        super().__init__(host, out)
        self.sim = Simulation()

    @property
    def client(self) -> Any:
        wrapped = getattr(self._local, "dry_client", None)
        if wrapped is None:
            wrapped = self._local.dry_client = DryRunClient(super().client, self.sim)
        return wrapped

    def status(self, text: str) -> None:
        super().status(text if text.startswith("WARN[") else PREFIX + text)


# -- commands whose dry run differs from running them ------------------------------------------

def up(argv: list[str], cctx) -> int:
    """Attached `up` would follow the logs of containers that were never made: converge,
    then stop there like docker compose."""
    from dockyard.compose.commands import lifecycle
    from dockyard.compose.up import Converger

    p = parse_flags(argv, lifecycle.UP_FLAGS)
    if p["detach"] or p["wait"] or p["no-start"]:
        return lifecycle.up(argv, cctx)
    project = cctx.project(enabled=p.args)
    if p["exit-code-from"]:
        project.service(p["exit-code-from"])
    Converger(cctx.backend, project, lifecycle._up_options(p, p.args, start=True)).run()
    print("end of 'compose up' output, interactive run is not supported in dry-run mode",
          flush=True)
    return 0


def exec_(argv: list[str], cctx) -> int:
    """Only a detached exec can be simulated (an attached one needs its output)."""
    from dockyard.compose.commands.interact import EXEC_FLAGS, _container

    p = parse_flags(argv, EXEC_FLAGS, interspersed=False)
    if len(p.args) < 2:
        raise FlagError("requires at least 2 arguments: SERVICE COMMAND [ARGS...]")
    c = _container(cctx, p.args[0], int(p["index"] or 0))
    if not p["detach"]:
        raise ComposeError("interactive exec is not supported in dry-run mode")
    command = " ".join(json.dumps(a) for a in p.args[1:])
    print(f"{PREFIX}Executing command [{command}] in {c['Id']} (detached mode)", flush=True)
    return 0


def command(verb: str, fn: Any) -> Any:
    """The function that runs `verb` under --dry-run."""
    return {"up": up, "exec": exec_}.get(verb, fn)


__all__ = ["PREFIX", "DryRunBackend", "DryRunClient", "command"]
