"""The engine's read side: ps, inspect, logs, top, stats (a mixin of Engine)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from dockyard.engine import listing, logs, procinfo
from dockyard.engine.model import Container
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.runtime import container as rt


class EngineQueries:
    """Needs self.store, self.images, self.runtime_root, self._removing, self._starting,
    self._paths() and self._driver() from Engine."""

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int = -1, size: bool = False) -> list[dict]:
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        listing.check_filters(filters)
        containers = self.store.list()
        by_ref: dict[str, Container] = {}
        if "before" in filters or "since" in filters:
            for v in filters.get("before", []) + filters.get("since", []):
                by_ref[v] = self.store.get(v)
        image_ids: dict[str, str] = {}
        for ref in filters.get("ancestor", []):
            try:
                image_ids[ref] = self.images.get(ref).id
            except (NotFound, InvalidArgument):
                image_ids[ref] = ""
        out = []
        for c in containers:
            if not all and not c.state.Running and "status" not in filters \
                    and "exited" not in filters and limit <= 0:
                continue
            if c.id in self._removing:
                c.state.Status = "removing"
            if listing.matches(c, filters, image_ids, by_ref):
                out.append(listing.summary(c))
        out = out[:limit] if limit > 0 else out
        if size:  # walks each upper dir: only when asked (ps -s)
            from dockyard.engine.containerfs import sizes
            by_id = {c.id: c for c in containers}
            for row in out:
                row["SizeRw"], row["SizeRootFs"] = sizes(self, by_id[row["Id"]])
        return out

    def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.store.get(ref)
        rootfs, _, log_path = self._paths(c)
        graph: dict = {"Name": "overlay2", "Data": None}
        try:
            lowers, upper = self.images.snapshots.diff_dirs(f"container-{c.id}")
            graph["Data"] = {"LowerDir": ":".join(lowers), "MergedDir": rootfs,
                             "UpperDir": upper, "WorkDir": os.path.join(
                                 os.path.dirname(upper), "work")}
        except (NotFound, InvalidArgument):
            pass
        sizes = None
        if size:
            rw = self.images.snapshots.usage(f"container-{c.id}")
            sizes = (rw, rw + self.images.get(c.image).size)
        if c.id in self._removing:
            c.state.Status = "removing"
        return c.inspect(log_path=log_path if self._driver(c) == "json-file" else "",
                         graph_driver=graph, size=sizes)

    def logs(self, ref: str, *, follow: bool = False, since: float | None = None,
             until: float | None = None, tail: int | None = None, timestamps: bool = False,
             stop: threading.Event | None = None) -> Iterator[tuple[str, str, str]]:
        c = self.store.get(ref)
        if self._driver(c) == "none":
            raise InvalidArgument('configured logging driver does not support reading')
        _, _, log_path = self._paths(c)
        cid = c.id

        def running() -> bool:
            try:
                cur = self.store.get(cid)
            except NotFound:
                return False
            return cur.state.Running or cid in self._starting

        return logs.read(log_path, follow=follow, since=since, until=until, tail=tail,
                         timestamps=timestamps, running=running, stop=stop)

    def top(self, ref: str, ps_args: str = "-ef") -> dict:
        c = self.store.get(ref)
        if not c.state.Running or c.state.Restarting:
            raise Conflict(f"Container {c.id} is not running")
        return procinfo.top(rt.pids(self.runtime_root, c.id), ps_args)

    def stats(self, ref: str, previous: dict | None = None) -> dict:
        c = self.store.get(ref)
        data: dict = {}
        networks: dict = {}
        if c.state.Running and not c.state.Restarting:
            try:
                data = rt.stats(self.runtime_root, c.id)
            except DockyardError:
                data = {}
            if (c.host_config.get("NetworkMode") or "") != "host" and c.state.Pid:
                networks = procinfo.net_stats(c.state.Pid)
        return procinfo.docker_stats(data, c.name, c.id, previous, networks)

    def oom_count(self, ref: str) -> int:
        c = self.store.get(ref)
        return rt.oom_count(self.runtime_root, c.id)
