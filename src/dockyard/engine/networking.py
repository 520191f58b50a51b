"""The engine's network manager: containers on networks (one job).

It owns the NetworkStore (networks, endpoints, addresses), the NAT rules
(Nat, our own iptables chains), the embedded DNS server (served on the
daemon's asyncio loop) and the host port allocator, and drives the kernel
through dockyard.network. The Engine calls it at a few points only:

- create    `prepare(c, networking_config)`: NetworkMode, endpoints and ports
            checked (400 for bad input), docker's NetworkSettings recorded
- start     `setup(c)` before the runtime runs: a netns file under
            <exec-root>/netns/<id>, a veth per network, addresses, published
            ports (DNAT), DNS listener on 127.0.0.11 for user networks,
            /etc/hosts, /etc/resolv.conf, /etc/hostname; on failure nothing stays
- exit      `release(c)`: addresses, rules, DNS, veths and the netns go
- remove    `release(c)` again (idempotent)
- daemon    `reconcile(containers)`: adopt running containers (ports, DNS), drop
            what no running container owns (veths, netns files, endpoints), sync NAT

c.extra["netns"] is what the OCI spec uses: a namespace file, or "host".
c.extra["network_settings"] is docker's NetworkSettings (inspect shows it),
c.extra["published"] the NAT mappings of a running container (live-restore).
Docker's documents and input checks (pure) are in engine/netsettings.py; network
objects and connect/disconnect in engine/netops.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from dockyard.engine import netsettings as ns
from dockyard.engine.netops import NetworkOps
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.network import bridge, dns, netns, ports
from dockyard.network.nat import BridgeState, Nat, NatState, PortMapping
from dockyard.network.rtnl import LOOPBACK_IFINDEX, Rtnl
from dockyard.network.store import DEFAULT_BRIDGE_NAME, Forbidden, NetworkRecord, NetworkStore

log = logging.getLogger("dockyard.network")

class NetworkManager(NetworkOps):
    """One per daemon; thread-safe. `loop` is the daemon's asyncio loop (DNS)."""

    def __init__(self, data_root: str, exec_root: str, *, bridge_name: str = DEFAULT_BRIDGE_NAME,
                 bridge_subnet: str | None = None, pools: list[dict] | None = None,
                 chain_prefix: str = "DOCKYARD", iptables: bool = True,
                 dns_servers: list[str] | None = None, dns_search: list[str] | None = None,
                 dns_options: list[str] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None):
        kw: dict[str, Any] = {"bridge_name": bridge_name}
        if bridge_subnet:
            kw["bridge_subnet"] = str(ipaddress.ip_interface(bridge_subnet).network)
        self.store = NetworkStore(data_root, pools or None, **kw)
        self.nat = Nat(chain_prefix) if iptables else None
        self.ports = ports.PortAllocator()
        self.dns_servers = list(dns_servers or [])
        self.dns_search, self.dns_options = dns_search, dns_options
        self.dns = dns.DNSServer(self._lookup, self._reverse,
                                 upstreams=self.dns_servers or dns.host_upstreams())
        self.loop = loop
        self.engine: Any = None
        self.netns_dir = os.path.join(exec_root, "netns")
        netns.prepare_dir(self.netns_dir)
        self._lock = threading.RLock()
        self._published: dict[str, list[PortMapping]] = {}
        self._reserved: dict[str, list[socket.socket]] = {}
        self._doomed: list[str] = []
        self._reaper: threading.Thread | None = None
        self._locks = {what: _share_lock(what) for what in
                       (f"bridge-{bridge_name}", f"chains-{chain_prefix}")}
        self.store.ensure_predefined()
        for net in self.store.list():
            self._ensure_bridge(net)

    def bind(self, engine: Any) -> None:
        """The engine whose containers these are (container: mode, connect, events)."""
        self.engine = engine

    # -- networks -----------------------------------------------------------------------

    def _bridge_nets(self) -> list[NetworkRecord]:
        return [n for n in self.store.list() if n.driver == "bridge"]

    def _ensure_bridge(self, net: NetworkRecord) -> None:
        if net.driver != "bridge":
            return
        addrs = [f"{c.gateway}/{c.subnet.prefixlen}" for c in net.configs]
        bridge.ensure_bridge(net.bridge_name, addrs,
                             int(net.options.get("com.docker.network.driver.mtu") or 1500))

    def _nat_state(self) -> NatState:
        bridges = []
        for n in self._bridge_nets():
            opts = n.options
            bridges.append(BridgeState(
                n.bridge_name, tuple(str(c.subnet) for c in n.configs), internal=n.internal,
                icc=opts.get("com.docker.network.bridge.enable_icc", "true") != "false",
                masquerade=opts.get("com.docker.network.bridge.enable_ip_masquerade",
                                    "true") != "false"))
        with self._lock:
            maps = [m for ms in self._published.values() for m in ms]
        return NatState(bridges, maps)

    def sync(self, verify: bool = False) -> None:
        if self.nat is not None:
            with self._lock:
                self.nat.sync(self._nat_state(), verify)

    def _emit(self, action: str, net: NetworkRecord, container: str = "") -> None:
        if self.engine is None:
            return
        attrs = {"name": net.name, "type": net.driver}
        if container:
            attrs["container"] = container
        self.engine.events.emit("network", action, net.id, attrs)

    # -- create: check the request, record the settings ----------------------------------

    def prepare(self, c: Any, networking: dict | None = None) -> None:
        """At container create: docker's checks, then NetworkSettings with empty addresses."""
        hc, cfg = c.host_config, c.config
        raw = hc.get("NetworkMode") or "default"
        mode = ns.network_mode(hc)
        hc["NetworkMode"] = mode
        endpoints = dict((networking or {}).get("EndpointsConfig") or {})
        if not isinstance(endpoints, dict):
            raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig")
        ns.check_ports(cfg, hc)
        ns.extra_hosts(hc.get("ExtraHosts"), self._gateway())  # a bad --add-host: 400 now
        networks: dict[str, dict] = {}
        if mode.startswith("container:"):
            if not mode[len("container:"):]:
                raise InvalidArgument("invalid network mode: container: needs a name or id")
            if hc.get("PortBindings") or hc.get("PublishAllPorts"):
                raise InvalidArgument("conflicting options: port publishing and the "
                                      "container type network mode")
            if cfg.get("Hostname"):
                raise InvalidArgument("conflicting options: hostname and the network mode")
            if hc.get("Dns") or hc.get("ExtraHosts"):
                raise InvalidArgument("conflicting options: dns and the network mode")
        else:
            net = self.store.get(mode)
            if net.name == "host" and not cfg.get("Hostname"):
                cfg["Hostname"] = socket.gethostname()
            first = {}
            for key in (raw, mode, net.name, net.id):
                first = endpoints.pop(key, None) or first
            networks[net.name] = ns.endpoint_config(net, first, cfg)
            for ref, epc in endpoints.items():  # API >= 1.44: more than one network
                other = self.store.get(ref)
                if other.driver != "bridge" or net.driver != "bridge":
                    raise InvalidArgument("container cannot be connected to multiple networks "
                                          "with one of the networks in private (none) mode")
                networks[other.name] = ns.endpoint_config(other, epc or {}, cfg)
        c.extra["network_settings"] = ns.settings_doc(networks)
        # MACs the user chose (the others follow the address of each start)
        c.extra["user_macs"] = {n: e["MacAddress"] for n, e in networks.items()
                                if e.get("MacAddress")}

    # -- start -----------------------------------------------------------------------------

    def _path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def _settings(self, c: Any) -> dict:
        doc = c.extra.get("network_settings")
        if not doc or "Networks" not in doc:
            c.extra["network_settings"] = doc = ns.settings_doc({})
            mode = ns.network_mode(c.host_config)
            if not mode.startswith("container:"):
                try:
                    net = self.store.get(mode)
                    doc["Networks"][net.name] = ns.blank_endpoint({}, net.id)
                except NotFound:
                    pass
        return doc

    def setup(self, c: Any) -> None:
        """Wire container `c` before its runtime starts; all or nothing."""
        t0 = time.perf_counter()
        self.release(c)  # leftovers of an earlier run
        mode = ns.network_mode(c.host_config)
        try:
            if mode == "host":
                c.extra["netns"] = "host"
                ns.write_files(c, ns.read_text("/etc/hosts", ns.HOSTS),
                               ns.read_text("/etc/resolv.conf"))
                return
            if mode.startswith("container:"):
                self._join(c, mode[len("container:"):])
                return
            path, inside = self._new_netns(c.id)  # lo is up already
            with inside:
                c.extra["netns"] = path
                doc = self._settings(c)
                if mode == "none":
                    doc["SandboxKey"], doc["SandboxID"] = path, secrets.token_hex(32)
                    ns.write_files(c, ns.hosts_file(c, [], self._gateway()),
                                   self._resolv(c, False))
                    return
                self._wire(c, path, doc, inside)
        except BaseException:
            self.release(c)
            raise
        finally:
            log.debug("network setup of %s (%s): %.1f ms", c.id[:12], mode,
                      (time.perf_counter() - t0) * 1e3)

    def _new_netns(self, cid: str) -> tuple[str, Rtnl]:
        """The container's namespace file, and a netlink socket inside it (one thread)."""
        path = self._path(cid)
        if os.path.exists(path):
            netns.delete(path)
        return path, netns.create_with(path, _lo_up)

    def _join(self, c: Any, ref: str) -> None:
        other = self.engine.store.get(ref)
        if other.id == c.id:
            raise InvalidArgument("cannot join own network namespace")
        if not other.state.Running or other.state.Restarting:
            raise Conflict(f"cannot join network namespace of a non running container: "
                           f"container {other.id} is not running")
        target = other.extra.get("netns")
        if not target:
            raise Conflict(f"cannot join network namespace of container {other.id}")
        c.extra["netns"] = target
        c.extra["network_settings"] = ns.settings_doc({})
        c.config["Hostname"] = other.config.get("Hostname") or other.id[:12]  # as docker
        for name in ("hosts", "resolv.conf", "hostname"):
            ns.write_text(os.path.join(c.path, name),
                          ns.read_text(os.path.join(other.path, name)))

    def _wire(self, c: Any, path: str, doc: dict, inside: Rtnl | None = None) -> None:
        networks = doc["Networks"]
        first_ep = None
        user = False
        for i, (name, cfg) in enumerate(list(networks.items())):
            net, ep = self._attach(c, path, name, cfg, f"eth{i}", i == 0, inside)
            networks.pop(name)
            networks[net.name] = self._endpoint_doc(c, net, ep, cfg)
            first_ep = first_ep or (net, ep)
            user = user or not net.builtin
            self._emit("connect", net, c.id)
        doc["SandboxKey"], doc["SandboxID"] = path, secrets.token_hex(32)
        doc["Ports"] = self._publish(c, *first_ep) if first_ep else {}
        if user and self.loop is not None:
            self._dns_listen(c)
        doc.update({k: v for k, v in ns.settings_doc(networks).items()
                    if k in ns.ADDRESS_FIELDS or k == "MacAddress"})
        addrs = [ep.ipv4 for _, ep in [first_ep] if ep.ipv4] if first_ep else []
        ns.write_files(c, ns.hosts_file(c, addrs, self._gateway()),
                          self._resolv(c, user and self.loop is not None))

    def _attach(self, c: Any, path: str, name: str, cfg: dict, ifname: str,
                default_route: bool, inside: Rtnl | None = None):
        net = self.store.get(cfg.get("NetworkID") or name)
        if net.driver != "bridge":
            raise Forbidden(f"container cannot be connected to network {net.name}")
        static = cfg.get("IPAMConfig") or {}
        cname = c.name.lstrip("/")
        aliases = [a for a in cfg.get("Aliases") or [] if a != c.id[:12]]
        if not net.builtin:
            service = (c.config.get("Labels") or {}).get(ns.COMPOSE_SERVICE)
            if service and service not in aliases:
                aliases.append(service)
            aliases.append(c.id[:12])
        ep = self.store.connect(net.id, c.id, cname, aliases,
                                ipv4=static.get("IPv4Address") or None,
                                ipv6=static.get("IPv6Address") or None,
                                mac=(c.extra.get("user_macs") or {}).get(net.name))
        args = (path, net.bridge_name, ep.endpoint_id, ep.ipv4_cidr,
                ep.gateway if default_route else None, ep.ipv6_cidr,
                ep.ipv6_gateway if default_route else None)
        try:
            try:
                bridge.attach(*args, mac=ep.mac, ifname=ifname, inside=inside)
            except NotFound:  # the bridge went away (deleted by hand): make it again
                self._ensure_bridge(net)
                self.sync(verify=True)
                bridge.attach(*args, mac=ep.mac, ifname=ifname, inside=inside)
        except BaseException:
            self.store.disconnect(net.id, c.id)
            raise
        return net, ep

    def _endpoint_doc(self, c: Any, net: NetworkRecord, ep, cfg: dict) -> dict:
        names = None if net.builtin else [c.name.lstrip("/"), *ep.aliases]
        doc = ep.to_endpoint_settings(names)
        doc["IPAMConfig"] = cfg.get("IPAMConfig") or None
        return doc

    def _publish(self, c: Any, net: NetworkRecord, ep) -> dict:
        hc, cfg = c.host_config, c.config
        exposed = list((cfg.get("ExposedPorts") or {}).keys())
        bindings = dict(hc.get("PortBindings") or {})
        if hc.get("PublishAllPorts"):
            bindings = ports.publish_all(exposed, bindings)
        keys = exposed + [k for k in bindings if k not in exposed]
        if not bindings or not ep.ipv4:
            return ports.network_settings_ports(keys, [])
        socks: list[socket.socket] = []
        with self._lock:
            in_use = [(m.proto, m.host_ip, m.host_port) for ms in self._published.values()
                      for m in ms]
            published = self.ports.allocate(bindings, in_use)
            try:
                for p in published:
                    try:
                        socks.append(ports.reserve(p.proto, p.host_ip, p.host_port))
                    except Conflict:
                        raise Conflict(
                            f"driver failed programming external connectivity on endpoint "
                            f"{c.name.lstrip('/')} ({ep.endpoint_id}): failed to bind host port "
                            f"for {p.host_ip or '0.0.0.0'}:{p.host_port}:{ep.ipv4}:"
                            f"{p.container_port}/{p.proto}: address already in use") from None
                maps = [PortMapping(net.bridge_name, ep.ipv4, p.container_port, p.proto,
                                    p.host_ip, p.host_port) for p in published]
                self._published[c.id] = maps
                self._reserved[c.id] = socks
                self.sync()
            except BaseException:
                self._published.pop(c.id, None)
                self._reserved.pop(c.id, None)
                for s in socks:
                    s.close()
                raise
        c.extra["published"] = [dataclasses.asdict(m) for m in maps]
        return ports.network_settings_ports(keys, published)

    # -- files -------------------------------------------------------------------------------

    def _gateway(self) -> str:
        """The default bridge's gateway (--add-host x:host-gateway)."""
        return str(self.store.get("bridge").configs[0].gateway)

    def _resolv(self, c: Any, embedded: bool) -> str:
        hc = c.host_config
        servers = hc.get("Dns") or self.dns_servers or None
        search = hc.get("DnsSearch") or self.dns_search or None
        options = hc.get("DnsOptions") or self.dns_options or None
        return dns.container_resolv_conf(ns.read_text("/etc/resolv.conf"), embedded, servers,
                                         search, options)

    # -- DNS ----------------------------------------------------------------------------------

    def _on_loop(self, coro, timeout: float = 10.0) -> None:
        if self.loop is None or self.loop.is_closed():
            coro.close()
            return
        try:
            if asyncio.get_running_loop() is self.loop:  # never block the loop on itself
                self.loop.create_task(coro)
                return
        except RuntimeError:
            pass
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _dns_listen(self, c: Any) -> None:
        search = c.host_config.get("DnsSearch") or self.dns_search or []
        # names the daemon does not know go to the upstreams, unless every network is internal
        forward = not all(n.internal for n in self._user_networks(c.id))
        path = c.extra["netns"]
        socks = self.dns.sockets_in(path)  # here: the loop's executor may be all engine calls
        try:
            if self.loop is None or self.loop.is_closed():  # the daemon is stopping
                for s in socks:
                    s.close()
            elif _on_thread_of(self.loop):
                self.loop.create_task(self.dns.serve(path, socks, c.id, list(search), forward))
            else:  # not waiting for the loop: the sockets take queries already
                self.dns.serve_threadsafe(self.loop, path, socks, c.id, list(search), forward)
        except BaseException:
            for s in socks:
                s.close()
            raise

    def _user_networks(self, cid: str) -> list[NetworkRecord]:
        nets = []
        for ep in self.store.endpoints(container_id=cid):
            net = self.store.get(ep.network_id)
            if not net.builtin:
                nets.append(net)
        return nets

    def _lookup(self, key: str, name: str, qtype: str) -> list[str]:
        out: list[str] = []
        for net in self._user_networks(key):
            wanted = name.removesuffix("." + net.name.lower())
            for ep in self.store.resolve(net.id, wanted):
                addr = ep.ipv4 if qtype == "A" else ep.ipv6
                if addr and addr not in out:
                    out.append(addr)
        return out

    def _reverse(self, key: str, ip: str) -> list[str]:
        for net in self._user_networks(key):
            ep = self.store.by_address(net.id, ip)
            if ep is not None:
                return [f"{ep.name}.{net.name}"]
        return []

    # -- stop / remove ---------------------------------------------------------------------

    def release(self, c: Any) -> None:
        """Undo setup (exit, failed start, remove); idempotent. Clears the addresses shown
        in c's NetworkSettings, keeping the endpoint configuration as docker does."""
        cid = c.id
        with self._lock:
            maps = self._published.pop(cid, None)
            socks = self._reserved.pop(cid, [])
        for s in socks:
            s.close()
        if maps:
            try:
                self.sync()
            except DockyardError as e:
                log.warning("removing the port rules of %s: %s", cid[:12], e)
        path = self._path(cid)
        if path in self.dns.serving():
            try:
                self._on_loop(self.dns.close_in(path))
            except Exception as e:  # noqa: BLE001 - the namespace goes anyway
                log.warning("closing the DNS listener of %s: %s", cid[:12], e)
        veths = []
        for ep in self.store.endpoints(container_id=cid):
            veths.append(bridge.veth_name(ep.endpoint_id))
            self.store.disconnect(ep.network_id, cid)
            try:
                self._emit("disconnect", self.store.get(ep.network_id), cid)
            except NotFound:
                pass
        if os.path.exists(path):
            netns.delete(path)  # the kernel destroys the veths with the namespace...
        if veths:  # ...and a worker makes sure (deleting a veth waits ~30 ms for RCU)
            self._reap(veths)
        c.extra.pop("netns", None)
        c.extra.pop("published", None)
        doc = c.extra.get("network_settings")
        if doc and "Networks" in doc:
            for name, ep_doc in doc["Networks"].items():
                mac = (c.extra.get("user_macs") or {}).get(name, "")
                doc["Networks"][name] = ns.blank_endpoint({**ep_doc, "MacAddress": mac},
                                                          ep_doc.get("NetworkID", ""))
            c.extra["network_settings"] = ns.settings_doc(doc["Networks"])

    def _reap(self, veths: list[str]) -> None:
        with self._lock:
            self._doomed.extend(veths)
            if self._reaper is not None and self._reaper.is_alive():
                return
            self._reaper = threading.Thread(target=self._reap_all, name="dockyard-veths",
                                            daemon=True)
            self._reaper.start()

    def _reap_all(self) -> None:
        while True:
            with self._lock:
                if not self._doomed:
                    self._reaper = None
                    return
                name = self._doomed.pop(0)
            try:
                bridge.detach(name)
            except Exception as e:  # noqa: BLE001 - reconcile removes it at the next start
                log.warning("deleting %s: %s", name, e)

    def wait_reaped(self, timeout: float = 10.0) -> None:
        """Until the veths of released containers are gone (daemon stop, tests)."""
        thread = self._reaper
        if thread is not None:
            thread.join(timeout)

    # -- daemon start / stop ----------------------------------------------------------------------

    def reconcile(self, containers: list) -> None:
        """Adopt running containers (ports, DNS), remove what nothing running owns."""
        running = {c.id: c for c in containers
                   if c.state.Running and not c.state.Restarting}
        busy = set(running) | set(getattr(self.engine, "_starting", ()))  # being wired now
        for c in running.values():
            with self._lock:
                if c.id not in self._published and c.extra.get("published"):
                    maps = [PortMapping(**m) for m in c.extra["published"]]
                    self._published[c.id] = maps
                    socks = []
                    for m in maps:
                        try:
                            socks.append(ports.reserve(m.proto, m.host_ip, m.host_port))
                        except Conflict:
                            pass
                    self._reserved[c.id] = socks
            path = c.extra.get("netns") or ""
            if path.startswith(self.netns_dir + "/") and os.path.exists(path) \
                    and path not in self.dns.serving() and self.loop is not None \
                    and self._user_networks(c.id):
                try:
                    self._dns_listen(c)
                except Exception as e:  # noqa: BLE001 - the container keeps running
                    log.warning("DNS for %s: %s", c.id[:12], e)
        for ep in self.store.endpoints():
            if ep.container_id not in busy:
                self.store.disconnect(ep.network_id, ep.container_id)
        keep = {ep.endpoint_id for ep in self.store.endpoints()}
        for net in self._bridge_nets():
            bridge.remove_stale_veths(net.bridge_name, sorted(keep))
        if os.path.isdir(self.netns_dir):
            for name in os.listdir(self.netns_dir):
                if name not in busy:
                    netns.delete(os.path.join(self.netns_dir, name))
        with self._lock:
            for cid in [k for k in self._published if k not in busy]:
                self._published.pop(cid, None)
                for s in self._reserved.pop(cid, []):
                    s.close()
        self.sync(verify=True)

    def close(self) -> None:
        """Stop serving DNS (the kernel state stays for live-restore)."""
        self.wait_reaped()
        for path in self.dns.serving():
            try:
                self._on_loop(self.dns.close_in(path), 5)
            except Exception as e:  # noqa: BLE001 - shutting down
                log.debug("closing DNS in %s: %s", path, e)
        with self._lock:
            for socks in self._reserved.values():
                for s in socks:
                    s.close()
            self._reserved.clear()
        self.store.close()

    def purge(self) -> None:
        """Nothing runs any more (daemon stop): remove our rules, bridges and netns mount.
        The next start recreates bridges and rules."""
        mine = {what: _sole_user(fd) for what, fd in self._locks.items()}
        for what, sole in mine.items():
            if sole:  # nobody else: the lock file goes too (we hold it until we exit)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(LOCK_DIR, what + ".lock"))
        if self.nat is not None and mine[f"chains-{self.nat.prefix}"]:
            self.nat.remove_all()
        for net in self._bridge_nets():
            if net.name != "bridge" or mine[f"bridge-{net.bridge_name}"]:
                bridge.delete_bridge(net.bridge_name)
        if os.path.isdir(self.netns_dir):
            for name in os.listdir(self.netns_dir):
                netns.delete(os.path.join(self.netns_dir, name))
        while netns.is_mounted(self.netns_dir):
            from dockyard.linux import mount as _mount
            _mount.umount(self.netns_dir, _mount.MNT_DETACH)


LOCK_DIR = "/run/dockyard-net"


def _on_thread_of(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _share_lock(what: str) -> int:
    """A shared flock on /run/dockyard-net/<what>.lock, held for the daemon's life: daemons
    that share the default bridge or the chain prefix see each other (a warning at start,
    and the last one to stop is the one that removes them)."""
    import fcntl

    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(LOCK_DIR, what + ".lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning("another dockyard daemon uses %s: their addresses and port rules will "
                    "clash; give each daemon its own bridge, bip and dockyard-chain-prefix "
                    "in daemon.json", what.replace("-", " ", 1))
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _sole_user(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lo_up() -> Rtnl:
    """In a new namespace: a netlink socket there (it stays there), with lo brought up."""
    inside = Rtnl()
    try:
        inside.link_up(LOOPBACK_IFINDEX)
    except BaseException:
        inside.close()
        raise
    return inside


class NoNetwork:
    """An engine without a network manager (library use, tests): containers get a fresh
    network namespace from the runtime, with nothing in it."""

    def bind(self, engine: Any) -> None:
        pass

    def prepare(self, c: Any, networking: dict | None = None) -> None:
        pass

    def setup(self, c: Any) -> None:
        pass

    def release(self, c: Any) -> None:
        pass

    def reconcile(self, containers: list) -> None:
        pass

    def close(self) -> None:
        pass

    def purge(self) -> None:
        pass
