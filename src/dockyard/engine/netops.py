"""Network objects and run-time attachment: `network create|ls|inspect|rm|prune` and
`network connect|disconnect` (a mixin of engine/networking.py's NetworkManager, which
provides the store, bridges, NAT sync, events and the wiring helpers used here).
"""

from __future__ import annotations

import socket

from dockyard.engine import netsettings as ns
from dockyard.errors import Conflict
from dockyard.network import bridge, netns
from dockyard.network.store import Forbidden, NetworkRecord


class NetworkOps:
    """Needs from NetworkManager: store, engine, dns, loop, _bridge_nets, _ensure_bridge,
    sync, _emit, _settings, _attach, _endpoint_doc, _dns_listen, _user_networks, _on_loop."""

    # -- networks ----------------------------------------------------------------------------

    def create_network(self, body: dict) -> NetworkRecord:
        ours = tuple(n.bridge_name for n in self._bridge_nets())
        routes = bridge.host_routes(exclude_bridges=ours)
        options = body.get("Options") if isinstance(body, dict) else None
        wanted = options.get("com.docker.network.bridge.name") \
            if isinstance(options, dict) else None
        if wanted and (wanted in ours or bridge.bridge_exists(wanted)):
            raise Conflict(f"cannot create network: bridge name {wanted} is already in use")
        net = self.store.create_from_api(body, host_routes=routes)
        try:
            self._ensure_bridge(net)
            self.sync()
        except BaseException:
            self.store.remove(net.id)
            if net.driver == "bridge":
                bridge.delete_bridge(net.bridge_name)
            raise
        self._emit("create", net)
        return net

    def inspect_network(self, ref: str) -> dict:
        net = self.store.get(ref)
        eps = self.store.endpoints(network_id=net.id)
        return net.to_docker({e.container_id: e.to_network_containers() for e in eps})

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        out = []
        for net in self.store.list(filters):
            eps = self.store.endpoints(network_id=net.id)
            out.append(net.to_docker({e.container_id: e.to_network_containers()
                                      for e in eps}))
        return out

    def _drop_all(self, nets: list[NetworkRecord]) -> None:
        """Delete the networks' bridges and rewrite the rules without them, at the same
        time: the kernel takes tens of milliseconds to unregister a bridge, and the
        rules' commit as long (both are done when this returns)."""
        import threading

        failures: list[BaseException] = []

        def delete_bridges() -> None:
            for net in nets:
                if net.driver == "bridge":
                    try:
                        bridge.delete_bridge(net.bridge_name)
                    except Exception as e:  # noqa: BLE001 - raised below, in the caller
                        failures.append(e)
        worker = threading.Thread(target=delete_bridges, name="bridge-delete")
        worker.start()
        try:
            self.sync()
        finally:
            worker.join()
        for net in nets:
            self._emit("destroy", net)
        if failures:
            raise failures[0]

    def remove_network(self, ref: str) -> None:
        self._drop_all([self.store.remove(ref)])

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        removed = self.store.prune(filters)
        if removed:
            self._drop_all(removed)
        return [n.name for n in removed]

    # -- connect / disconnect --------------------------------------------------------------

    def connect(self, net_ref: str, container_ref: str, epc: dict | None = None) -> None:
        engine = self.engine
        net = self.store.get(net_ref)
        with engine._cond:
            c = engine.store.get(container_ref)
        mode = ns.network_mode(c.host_config)
        if mode == "none" or net.driver == "null":
            raise Forbidden("container cannot be connected to multiple networks with one of "
                            "the networks in private (none) mode")
        if mode == "host" or net.driver == "host":
            raise Forbidden("container cannot be disconnected from host network or connected "
                            "to host network")
        if mode.startswith("container:"):
            raise Forbidden("container sharing network namespace with another container or "
                            "host cannot be connected to any other network")
        doc = self._settings(c)
        if net.name in doc["Networks"]:
            raise Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in "
                            f"network {net.name}")
        cfg = ns.endpoint_config(net, dict(epc or {}), {})  # Config.MacAddress: eth0's only
        if cfg["MacAddress"]:
            c.extra.setdefault("user_macs", {})[net.name] = cfg["MacAddress"]
        running = c.state.Running and not c.state.Restarting and c.extra.get("netns")
        if running:
            path = c.extra["netns"]
            first = not self.store.endpoints(container_id=c.id)
            taken = {n for _, n in netns.run_in(path, socket.if_nameindex)}
            ifname = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
            net, ep = self._attach(c, path, net.name, cfg, ifname, first)
            cfg = self._endpoint_doc(c, net, ep, cfg)
            if not net.builtin and path not in self.dns.serving() and self.loop is not None:
                self._dns_listen(c)
        with engine._cond:
            fresh = engine.store.get(c.id)
            fdoc = self._settings(fresh)
            fdoc["Networks"][net.name] = cfg
            if cfg.get("MacAddress") and net.name in (c.extra.get("user_macs") or {}):
                fresh.extra.setdefault("user_macs", {})[net.name] = cfg["MacAddress"]
            fresh.extra["network_settings"] = {**ns.settings_doc(fdoc["Networks"], fdoc.get(
                "Ports"), fdoc.get("SandboxKey", ""), fdoc.get("SandboxID", ""))}
            engine._save(fresh)
        self._emit("connect", net, c.id)

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        engine = self.engine
        net = self.store.get(net_ref)
        with engine._cond:
            c = engine.store.get(container_ref)
        doc = self._settings(c)
        if net.name not in doc["Networks"]:
            raise Forbidden(f"container {c.id} is not connected to network {net.name}")
        if net.driver != "bridge" and not force:
            raise Forbidden(f"container cannot be disconnected from {net.name} network")
        if c.state.Running and c.extra.get("netns"):
            for ep in self.store.endpoints(network_id=net.id, container_id=c.id):
                bridge.detach(bridge.veth_name(ep.endpoint_id))
                self.store.disconnect(net.id, c.id)
            if not self._user_networks(c.id) and c.extra["netns"] in self.dns.serving():
                self._on_loop(self.dns.close_in(c.extra["netns"]))
        with engine._cond:
            fresh = engine.store.get(c.id)
            fdoc = self._settings(fresh)
            fdoc["Networks"].pop(net.name, None)
            (fresh.extra.get("user_macs") or {}).pop(net.name, None)
            fresh.extra["network_settings"] = ns.settings_doc(
                fdoc["Networks"], fdoc.get("Ports"), fdoc.get("SandboxKey", ""),
                fdoc.get("SandboxID", ""))
            engine._save(fresh)
        self._emit("disconnect", net, c.id)
