"""The Engine API calls Compose makes, over the CLI's client (dockyard.client):
the project's containers by label, networks and volumes with their compose labels,
images, container create/start/stop/remove. No engine code: this works against any
daemon speaking the Docker Engine API (a remote one, or dockerd).
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from dockyard.compose import convert
from dockyard.compose.errors import ComposeError
from dockyard.compose.model import Project
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from dockyard.client.api import Client


def missing_route(e: DockyardError) -> bool:
    """A 404 for an endpoint the daemon does not have (not for a missing object)."""
    text = str(e).lower()
    return isinstance(e, NotFound) and ("404: not found" in text or "page not found" in text
                                        or text.strip() == "not found")


class Backend:
    """One per command; thread-safe (a client per thread, the API is stateless)."""

    def __init__(self, host: str | None, out: Any = None) -> None:
        self.host = host
        self.out = out or sys.stderr
        self._local = threading.local()
        self._version: str | None = None
        self._print_lock = threading.Lock()
        self.diverged: set[str] = set()  # services whose network/volume was made again

    @property
    def client(self) -> Client:
        c = getattr(self._local, "client", None)
        if c is None:
            from dockyard.client.api import Client

            c = Client(self.host, version=self._version)
            if self._version is None:  # negotiated once, for every thread's client
                self._version = c.api_version
            self._local.client = c
        return c

    def status(self, text: str) -> None:
        """A progress line on stderr, like docker compose's plain progress output."""
        with self._print_lock:
            print(text, file=self.out, flush=True)

    # -- containers -------------------------------------------------------------------------
    def containers(self, project: str, all: bool = True, oneoff: bool | None = False,
                   services: list[str] | None = None) -> list[dict[str, Any]]:
        labels = [f"{convert.PROJECT}={project}"]
        if oneoff is not None:
            labels.append(f"{convert.ONEOFF}={'True' if oneoff else 'False'}")
        found = self.client.get("/containers/json", params={
            "all": all, "filters": {"label": labels}})
        if services:
            found = [c for c in found if (c.get("Labels") or {}).get(convert.SERVICE)
                     in services]
        return sorted(found, key=lambda c: ((c.get("Labels") or {}).get(convert.SERVICE, ""),
                                            _num(c)))

    def projects(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for c in self.client.get("/containers/json", params={
                "all": True, "filters": {"label": [convert.PROJECT]}}):
            out.setdefault(c["Labels"][convert.PROJECT], []).append(c)
        return out

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.client.get(f"/containers/{cid}/json")

    def create(self, project: Project, name: str, svc: dict[str, Any], number: int,
               image_id: str, cname: str = "", oneoff: bool = False,
               body: dict[str, Any] | None = None) -> str:
        if body is None:
            body = convert.create_body(project, name, svc, number, image_id, oneoff,
                                       self.service_container)
        cname = cname or convert.container_name(project, name, svc, number)
        resp = self.client.post("/containers/create", params={"name": cname}, body=body)
        cid = resp["Id"]
        files = convert.injected_files(project, svc, f"services.{name}")
        if files:
            self.client.put(f"/containers/{cid}/archive", params={"path": "/"},
                            body=_tar(files), headers={"Content-Type": "application/x-tar"})
        if not svc.get("network_mode"):
            for net, epc in convert.extra_networks(project, name, svc):
                self.client.post(f"/networks/{net}/connect",
                                 body={"Container": cid, "EndpointConfig": epc})
        return cid

    def service_container(self, service: str) -> str:
        """network_mode / volumes_from `service:x`: the id of x's first container."""
        project = getattr(self, "project_name", "")
        found = self.containers(project, services=[service])
        if not found:
            raise ComposeError(f"service {service!r} has no container")
        return min(found, key=short_name)["Id"]  # docker compose's pick: by name

    def start(self, cid: str) -> None:
        self.client.post(f"/containers/{cid}/start")

    def stop(self, cid: str, timeout: int | None) -> None:
        self.client.post(f"/containers/{cid}/stop", params={"t": timeout})

    def remove(self, cid: str, force: bool = True, volumes: bool = False) -> None:
        try:
            self.client.delete(f"/containers/{cid}", params={"force": force, "v": volumes})
        except NotFound:
            pass

    def rename(self, cid: str, name: str) -> None:
        self.client.post(f"/containers/{cid}/rename", params={"name": name})

    # -- images -----------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        try:
            return self.client.get(f"/images/{ref}/json")["Id"]
        except NotFound:
            return None

    def pull(self, ref: str, quiet: bool = True) -> None:
        import os

        from dockyard.client.auth import registry_auth_header
        from dockyard.client.progress import display
        from dockyard.client.reference import split

        repo, tag, digest = split(ref)
        name, tag = repo, (digest or tag or "latest")
        config_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        auth = registry_auth_header(config_dir, ref)
        headers = {"X-Registry-Auth": auth} if auth else {}
        display(self.client.stream_json("POST", "/images/create",
                                        params={"fromImage": name, "tag": tag},
                                        headers=headers), None if quiet else self.out)

    # -- networks and volumes ---------------------------------------------------------------
    def ensure_network(self, project: Project, key: str) -> str:
        """The network's id, made if missing. One of the project's whose config-hash
        label differs from its definition is removed and made again, as docker compose
        does: the services on it are stopped and noted in `diverged` (to be recreated)."""
        from dockyard.compose import gojson

        spec = project.networks[key]
        name = project.network_name(key)
        info = self._inspect("networks", name)
        if spec.get("external"):
            if info is None:
                raise ComposeError(f"network {name} declared as external, but could not "
                                   "be found")
            return info["Id"]
        digest = gojson.network_hash(spec)
        if info is not None:
            labels = info.get("Labels") or {}
            if labels.get(convert.PROJECT) not in (None, project.name):
                self.status(f"WARN[0000] a network with name {name} exists but was not "
                            f"created for project \"{project.name}\"")
            if labels.get(convert.CONFIG_HASH, digest) == digest:
                return info["Id"]
            self._remove_diverged_network(project, key, info)
        body: dict[str, Any] = {
            "Name": name, "Driver": spec.get("driver") or "bridge",
            "Options": spec.get("driver_opts") or {}, "Internal": bool(spec.get("internal")),
            "Attachable": bool(spec.get("attachable")),
            "EnableIPv6": bool(spec.get("enable_ipv6")), "CheckDuplicate": True,
            "Labels": {**(spec.get("labels") or {}), convert.PROJECT: project.name,
                       convert.NETWORK: key, convert.VERSION: convert.COMPOSE_VERSION,
                       convert.CONFIG_HASH: digest},
        }
        ipam = spec.get("ipam")
        if ipam:
            body["IPAM"] = {"Driver": ipam.get("driver") or "default",
                            "Options": ipam.get("options") or {},
                            "Config": [{"Subnet": c.get("subnet", ""),
                                        "Gateway": c.get("gateway", ""),
                                        "IPRange": c.get("ip_range", "")}
                                       for c in ipam.get("config") or []]}
        self.status(f" Network {name}  Creating")
        made = self.client.post("/networks/create", body=body)
        self.status(f" Network {name}  Created")
        return made["Id"]

    def _inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        """GET /networks/<name> or /volumes/<name>; None when there is none."""
        try:
            return self.client.get(f"/{kind}/{name}")
        except NotFound as e:
            if missing_route(e):
                raise ComposeError(f"{kind[:-1]} {name}: the daemon has no {kind} API "
                                   f"(needs /{kind})") from None
            return None

    def _remove_diverged_network(self, project: Project, key: str,
                                 info: dict[str, Any]) -> None:
        services = [n for n, s in project.services.items()
                    if not s.get("network_mode") and key in (s.get("networks") or {})]
        with self._print_lock:
            self.diverged.update(services)
        for c in self.containers(project.name, services=services) if services else []:
            if c.get("State") == "running":
                self.status(f" Container {short_name(c)}  Stopping")
                self.stop(c["Id"], None)
                self.status(f" Container {short_name(c)}  Stopped")
        for cid in info.get("Containers") or {}:
            try:
                self.client.post(f"/networks/{info['Id']}/disconnect",
                                 body={"Container": cid, "Force": True})
            except NotFound:
                pass
        self.client.delete(f"/networks/{info['Id']}")
        self.status(f" Network {info['Name']}  Removed")

    def ensure_volume(self, project: Project, key: str, recreate: bool = False) -> None:
        """Made if missing. One of the project's whose config-hash label differs from
        its definition is kept with docker compose's warning (its data would be lost),
        unless `recreate` (up --yes): then the containers using it go too."""
        from dockyard.compose import gojson

        spec = project.volumes[key]
        name = project.volume_name(key)
        info = self._inspect("volumes", name)
        if spec.get("external"):
            if info is None:
                raise ComposeError(f"external volume \"{name}\" not found")
            return
        digest = gojson.volume_hash(spec)
        if info is not None:
            actual = (info.get("Labels") or {}).get(convert.CONFIG_HASH, digest)
            if actual == digest:
                return
            if not recreate:
                self.status(f"WARN[0000] Volume \"{name}\" exists but doesn't match "
                            "configuration in compose file. Recreate (data will be lost)? "
                            "No (use up --yes to recreate it)")
                return
            self._remove_diverged_volume(project, key, name)
        self.status(f" Volume \"{name}\"  Creating")
        self.client.post("/volumes/create", body={
            "Name": name, "Driver": spec.get("driver") or "local",
            "DriverOpts": {k: str(v) for k, v in (spec.get("driver_opts") or {}).items()},
            "Labels": {**(spec.get("labels") or {}), convert.PROJECT: project.name,
                       convert.VOLUME: key, convert.VERSION: convert.COMPOSE_VERSION,
                       convert.CONFIG_HASH: digest}})
        self.status(f" Volume \"{name}\"  Created")

    def _remove_diverged_volume(self, project: Project, key: str, name: str) -> None:
        services = [n for n, s in project.services.items()
                    if any(v.get("type") == "volume" and v.get("source") == key
                           for v in s.get("volumes") or [])]
        with self._print_lock:
            self.diverged.update(services)
        for c in self.containers(project.name, services=services) if services else []:
            self.status(f" Container {short_name(c)}  Removing")
            self.remove(c["Id"], force=True)
            self.status(f" Container {short_name(c)}  Removed")
        self.client.delete(f"/volumes/{name}")
        self.status(f" Volume {name}  Removed")

    def project_networks(self, project: str) -> list[dict[str, Any]]:
        try:
            return self.client.get("/networks", params={
                "filters": {"label": [f"{convert.PROJECT}={project}"]}})
        except NotFound as e:
            if missing_route(e):
                return []
            raise

    def project_volumes(self, project: str) -> list[dict[str, Any]]:
        try:
            resp = self.client.get("/volumes", params={
                "filters": {"label": [f"{convert.PROJECT}={project}"]}})
        except NotFound as e:
            if missing_route(e):
                return []
            raise
        return resp.get("Volumes") or []


def _tar(files: list[tuple[str, bytes, int]]) -> bytes:
    """A tar of files at absolute paths (their directories included), for PUT archive."""
    import io
    import tarfile

    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for target, data, mode in files:
            parts = target.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _num(c: dict[str, Any]) -> int:
    try:
        return int((c.get("Labels") or {}).get(convert.NUMBER) or 0)
    except ValueError:
        return 0


def short_name(c: dict[str, Any]) -> str:
    """The container's own name (not a link alias `/other/name`)."""
    names = c.get("Names") or []
    for n in names:
        if n.rfind("/") == 0:
            return n[1:]
    return names[0].lstrip("/") if names else c.get("Id", "")[:12]
