"""The bridge driver's kernel side, through netlink (pyroute2), never `ip`.

A network is a Linux bridge holding the gateway address; a container joins
it through a veth pair whose host end is enslaved to the bridge and whose
other end is created directly inside the container's network namespace as
eth0 (one netlink request: no temporary name, no move, no rename).
Host ends are named veth + 7 hex characters of the endpoint id, so that the
engine's reconcile can tell which leftovers are its own (`list_veths`).

Everything done inside a container's namespace goes through a netlink socket
made by a thread that joined it (netns.run_in, netns.create_with; a socket
stays in the namespace it was made in): pyroute2's own netns support forks,
which the threaded daemon must not do.
"""

from __future__ import annotations

import errno
import ipaddress
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import Conflict, NotFound
from dockyard.network import netns
from dockyard.network.rtnl import LOOPBACK_IFINDEX, Rtnl

VETH_PREFIX = "veth"
IFA_F_NODAD = 0x02


def veth_name(endpoint_id: str) -> str:
    """The host end's name for an endpoint: veth + its first 7 hex characters."""
    return VETH_PREFIX + endpoint_id[:7]


def write_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys value if it differs (paths relative to /proc/sys allowed)."""
    if not path.startswith("/"):
        path = "/proc/sys/" + path
    with open(path) as f:  # FileNotFoundError: no such knob (module not loaded)
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def enable_forwarding(ipv6: bool = False) -> None:
    """Routing between the bridges and the outside needs forwarding on (Docker does it too)."""
    write_sysctl("net/ipv4/ip_forward", "1")
    if ipv6:
        write_sysctl("net/ipv6/conf/all/forwarding", "1")


def enable_bridge_netfilter() -> bool:
    """Make bridged IPv4/IPv6 traffic cross iptables (for isolation and hairpin NAT).

    Returns False when br_netfilter is not loaded (nothing to switch on).
    """
    try:
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
        write_sysctl("net/bridge/bridge-nf-call-ip6tables", "1")
    except FileNotFoundError:
        return False
    return True


def set_route_localnet(bridge: str) -> None:
    """Let DNAT from 127.0.0.1 to a container leave through `bridge` (published ports)."""
    write_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1")


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _split(cidr: str) -> tuple[str, int]:
    iface = ipaddress.ip_interface(cidr)
    return str(iface.ip), iface.network.prefixlen


def ensure_bridge(name: str, addresses: list[str], mtu: int = 1500) -> int:
    """Create the bridge if missing, give it exactly `addresses`, bring it up.

    Idempotent: called at network creation and at every daemon start.
    Returns the bridge's interface index.
    """
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            idx = _index(ipr, name)
            assert idx is not None
        link = ipr.get_links(idx)[0]
        if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "bridge":
            raise Conflict(f"cannot create network: interface {name} exists and is not a "
                           "bridge")
        if link.get("mtu") != mtu:
            ipr.link("set", index=idx, mtu=mtu)
        wanted = {_split(a) for a in addresses}
        have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)
                if a.get("scope") == 0}
        for addr, plen in have - wanted:
            if ipaddress.ip_address(addr).is_link_local:
                continue
            ipr.addr("del", index=idx, address=addr, prefixlen=plen)
        for addr, plen in wanted - have:
            flags = IFA_F_NODAD if ipaddress.ip_address(addr).version == 6 else 0
            ipr.addr("add", index=idx, address=addr, prefixlen=plen, flags=flags)
        ipr.link("set", index=idx, state="up")
    enable_forwarding(ipv6=any(ipaddress.ip_interface(a).version == 6 for a in addresses))
    return idx


def delete_bridge(name: str) -> None:
    """Remove a bridge (and with it the routes to its subnet); nothing if absent."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise


def bridge_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, name) is not None


def _ipv6_sysctls(ifname: str) -> None:
    """Inside the container's namespace (a thread that joined it): IPv6 on for eth0."""
    write_sysctl("net/ipv6/conf/all/disable_ipv6", "0")
    write_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")


def attach(netns_path: str, bridge: str, endpoint_id: str, ipv4: str | None = None,
           gateway: str | None = None, ipv6: str | None = None, gateway6: str | None = None,
           mac: str | None = None, ifname: str = "eth0", mtu: int = 1500,
           hairpin: bool = True, inside: Rtnl | None = None) -> str:
    """Plug a namespace into a bridge; return the host end's name.

    The veth pair is created with its peer already inside the namespace under
    its final name, and the host end enslaved and up (one netlink request),
    then the namespace side gets its addresses and routes through `inside`, a
    netlink socket made in the namespace (netns.create_with / Rtnl.socket_in;
    one is made here if not given). `ipv4`/`ipv6` are CIDRs (the container's
    address with the subnet's prefix). Docker still routes `--internal`
    networks through the gateway; the NAT rules are what keep their traffic on
    the bridge. On failure nothing stays behind.
    """
    host = veth_name(endpoint_id)
    with Rtnl() as rt:
        br = rt.link_index(bridge)
        if br is None:
            raise NotFound(f"bridge {bridge} does not exist")
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                rt.add_veth(host, ifname, fd, br, mtu, mac)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
                rt.link_del(host)  # a leftover of a crashed attempt for this endpoint
                rt.add_veth(host, ifname, fd, br, mtu, mac)
        finally:
            os.close(fd)
        try:
            if hairpin:  # a container may reach its own published port via the host
                rt.set_hairpin(host)
            own = inside is None
            if own:
                inside = Rtnl.socket_in(netns_path)
            try:
                if ipv6:
                    netns.run_in(netns_path, _ipv6_sysctls, ifname)
                inside.link_up(LOOPBACK_IFINDEX)
                idx = inside.link_index(ifname)
                if idx is None:
                    raise RuntimeError(f"{ifname} did not arrive in the namespace")
                if ipv4:
                    inside.add_address(idx, ipv4)
                if ipv6:
                    inside.add_address(idx, ipv6, IFA_F_NODAD)
                inside.link_up(idx)
                if ipv4 and gateway:
                    inside.add_default_route(gateway, idx)
                if ipv6 and gateway6:
                    inside.add_default_route(gateway6, idx)
            finally:
                if own:
                    inside.close()
        except BaseException:
            detach(host)
            raise
    return host


def detach(host_veth: str) -> None:
    """Delete a veth pair by its host end (the peer goes with it); idempotent."""
    with Rtnl() as rt:
        rt.link_del(host_veth)


def list_veths(bridge: str | None = None) -> list[str]:
    """Host-side veths named like ours (veth + 7 hex), optionally only those on `bridge`.

    Docker names its veths the same way: reconcile must ask per bridge of ours.
    """
    with IPRoute() as ipr:
        master = None
        if bridge is not None:
            master = _index(ipr, bridge)
            if master is None:
                return []
        out = []
        for link in ipr.get_links():
            name = link.get("ifname") or ""
            if not (name.startswith(VETH_PREFIX) and len(name) == 11):
                continue
            if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "veth":
                continue
            if master is not None and link.get("master") != master:
                continue
            out.append(name)
        return sorted(out)


def remove_stale_veths(bridge: str, endpoint_ids: list[str]) -> list[str]:
    """Reconcile: delete veths on `bridge` that belong to none of `endpoint_ids`."""
    keep = {veth_name(e) for e in endpoint_ids}
    stale = [v for v in list_veths(bridge) if v not in keep]
    for v in stale:
        detach(v)
    return stale


def host_routes(exclude_bridges: tuple[str, ...] = ()) -> list[ipaddress.IPv4Network
                                                              | ipaddress.IPv6Network]:
    """Destinations of the host's routes, for IPAM to avoid (default routes, host and
    multicast routes left out).

    Read from /proc/net/route and /proc/net/ipv6_route: a netlink dump through pyroute2
    costs tens of milliseconds on every network create. Routes through
    `exclude_bridges` (our own) are left out: those subnets are already in the store.
    """
    skip = set(exclude_bridges) | {"lo"}
    out: list = []
    try:
        with open("/proc/net/route") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        fields = row.split()
        if len(fields) < 8 or fields[0] in skip:
            continue
        try:
            dst = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            net = ipaddress.ip_network(f"{dst}/{mask}", strict=False)
        except ValueError:
            continue
        if net.prefixlen:
            out.append(net)
    try:
        with open("/proc/net/ipv6_route") as f:
            rows = f.read().splitlines()
    except OSError:
        rows = []
    for row in rows:
        fields = row.split()
        if len(fields) < 10 or fields[9] in skip:
            continue
        try:
            net = ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16)), strict=False)
        except ValueError:
            continue
        if 0 < net.prefixlen < 128 and not net.is_multicast:
            out.append(net)
    return out
