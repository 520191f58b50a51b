"""The network core on real kernels parts: namespaces, bridges, veths, iptables, DNS.

Everything a test makes has a unique name (dyt<hex> bridges and links, a
DYT<HEX> iptables chain prefix, namespace files under a private directory)
and is removed by the fixture's finalizer, even on failure. No packet is
sent to a non-local address: "other hosts" are network namespaces on veth
links, the DNS upstream is a tiny server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.network import bridge, netns
from dockyard.network.dns import DNSServer
from dockyard.network.nat import BridgeState, Nat, NatState, PortMapping
from dockyard.network.ports import PortAllocator
from dockyard.network.rtnl import LOOPBACK_IFINDEX, Rtnl
from dockyard.network.store import NetworkStore

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="needs nsenter"),
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="needs iptables"),
]

BUSYBOX = "/bin/busybox"
NO_PROXY_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """/24s in 10.240.0.0/12 that no host route (nor a concurrent test run) uses."""
    routes = bridge.host_routes()
    out = []
    while len(out) < count:
        net = ipaddress.ip_network(f"10.{secrets.randbelow(15) + 240}.{secrets.randbelow(256)}.0/24")
        if net not in out and not any(net.overlaps(r) for r in routes if r.version == 4
                                      and r.prefixlen > 0):
            out.append(net)
    return out


def host(net: ipaddress.IPv4Network, n: int) -> str:
    return str(net.network_address + n)


class Env:
    """What a test made, and its removal."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.dir = tempfile.mkdtemp(prefix=f"dyt-net-{self.tag}-", dir="/run")
        self.nat = Nat(prefix=f"DYT{self.tag.upper()}")
        self.bridges: list[str] = []
        self.links: list[str] = []
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def name(self, suffix: str) -> str:
        return f"dyt{self.tag}{suffix}"

    def netns(self, suffix: str) -> str:
        path = os.path.join(self.dir, suffix)
        self.namespaces.append(path)
        return netns.create(path)

    def bridge(self, suffix: str, net: ipaddress.IPv4Network) -> str:
        name = self.name(suffix)
        self.bridges.append(name)
        bridge.ensure_bridge(name, [f"{host(net, 1)}/{net.prefixlen}"])
        return name

    def attach(self, ns: str, br: str, net: ipaddress.IPv4Network, n: int) -> str:
        veth = bridge.attach(ns, br, secrets.token_hex(32), f"{host(net, n)}/{net.prefixlen}",
                             host(net, 1))
        self.links.append(veth)
        return veth

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(["nsenter", f"--net={ns}", *argv], env=NO_PROXY_ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.nat.remove_all()
        for link in self.links:
            bridge.detach(link)
        for br in self.bridges:
            bridge.delete_bridge(br)
        for path in self.namespaces:
            netns.delete(path)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()
        assert e.nat.present_chains() == []


def run_in_ns(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True, text=True,
                          timeout=timeout, env=NO_PROXY_ENV, check=False)


def ping(ns: str, ip: str) -> bool:
    return run_in_ns(ns, BUSYBOX, "ping", "-c", "1", "-W", "2", ip).returncode == 0


def wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def nat_state(*bridges: tuple[str, ipaddress.IPv4Network], ports=(), internal=()):
    return NatState([BridgeState(b, (str(n),), internal=b in internal) for b, n in bridges],
                    list(ports))


# --------------------------------------------------------------------------- netns


def test_netns_create_delete_leaves_no_mount(env):
    before = os.readlink("/proc/thread-self/ns/net")
    path = env.netns("plain")
    assert netns.is_mounted(path)
    inode = os.stat(path).st_ino
    assert inode != os.stat("/proc/self/ns/net").st_ino
    with pytest.raises(FileExistsError):
        netns.create(path)
    # the caller's namespace never changed
    assert os.readlink("/proc/thread-self/ns/net") == before
    names = netns.run_in(path, lambda: socket.if_nameindex())
    assert [n for _, n in names] == ["lo"]
    netns.delete(path)
    netns.delete(path)  # idempotent
    assert not os.path.exists(path) and not netns.is_mounted(path)


def test_netns_create_with_runs_inside_and_cleans_up(env):
    path = os.path.join(env.dir, "with")
    env.namespaces.append(path)
    inside = netns.create_with(path, Rtnl)  # a netlink socket made in the new namespace
    with inside:
        inside.link_up(LOOPBACK_IFINDEX)
        assert inside.link_index("lo") == LOOPBACK_IFINDEX
    with IPRoute() as ipr:  # nothing happened on the host's lo
        assert ipr.link_lookup(ifname="lo")
    up = netns.run_in(path, lambda: [ln.get("state") for ln in IPRoute().get_links()])
    assert up == ["up"]

    def boom() -> None:
        raise RuntimeError("boom")

    failed = os.path.join(env.dir, "failed")
    with pytest.raises(RuntimeError):
        netns.create_with(failed, boom)
    assert not os.path.exists(failed) and not netns.is_mounted(failed)


def test_netns_prepare_dir_is_shared(env):
    d = os.path.join(env.dir, "shared")
    netns.prepare_dir(d)
    try:
        netns.prepare_dir(d)  # again: already a mount point
        path = os.path.join(d, "ns1")
        netns.create(path)
        netns.delete(path)
        assert not netns.is_mounted(path)
    finally:
        while netns.is_mounted(d):
            subprocess.run(["umount", "-l", d], check=False)


# --------------------------------------------------------------------------- bridge + isolation


def test_ping_on_bridge_and_isolation_between_bridges(env):
    net_a, net_b = free_subnets(2)
    br_a, br_b = env.bridge("a", net_a), env.bridge("b", net_b)
    bridge.ensure_bridge(br_a, [f"{host(net_a, 1)}/24"])  # idempotent
    ns1, ns2, ns3 = env.netns("one"), env.netns("two"), env.netns("three")
    v1 = env.attach(ns1, br_a, net_a, 2)
    env.attach(ns2, br_a, net_a, 3)
    env.attach(ns3, br_b, net_b, 2)
    assert sorted(bridge.list_veths(br_a)) == sorted(env.links[:2])
    assert bridge.list_veths(br_b) == [env.links[2]]
    env.nat.sync(nat_state((br_a, net_a), (br_b, net_b)))

    out = run_in_ns(ns1, BUSYBOX, "ip", "route").stdout
    assert f"default via {host(net_a, 1)}" in out
    assert ping(ns1, host(net_a, 3))
    assert ping(ns2, host(net_a, 2))
    assert ping(ns1, host(net_a, 1))  # the gateway
    assert not ping(ns3, host(net_a, 2))  # another bridge: dropped
    assert not ping(ns1, host(net_b, 2))
    assert ping(ns3, host(net_b, 1))

    # without our rules the host would route between the bridges: the rules do it
    env.nat.remove_all()
    assert ping(ns3, host(net_a, 2))
    env.nat.sync(nat_state((br_a, net_a), (br_b, net_b)))
    assert not ping(ns3, host(net_a, 2))

    # reconcile: a veth no endpoint owns is removed, the others stay
    assert bridge.remove_stale_veths(br_a, [v1[len("veth"):]]) == [env.links[1]]
    assert bridge.list_veths(br_a) == [v1]
    assert not ping(ns1, host(net_a, 3))

    bridge.detach(v1)
    bridge.detach(v1)
    assert v1 not in bridge.list_veths(br_a)


def test_ipv6_on_a_bridge(env):
    net, = free_subnets(1)
    # compressed as `ip` prints it (a group like 00e0 shows as e0)
    v6 = str(ipaddress.ip_address(f"fd00:{secrets.token_hex(2)}:{secrets.token_hex(2)}::"))
    name = env.name("v")
    env.bridges.append(name)
    bridge.ensure_bridge(name, [f"{host(net, 1)}/24", f"{v6}1/64"])
    ns1, ns2 = env.netns("v1"), env.netns("v2")
    for ns, n in ((ns1, 2), (ns2, 3)):
        env.links.append(bridge.attach(ns, name, secrets.token_hex(32), f"{host(net, n)}/24",
                                       host(net, 1), f"{v6}{n}/64", f"{v6}1"))
    out = run_in_ns(ns1, BUSYBOX, "ip", "-6", "route").stdout
    assert f"default via {v6}1" in out
    assert run_in_ns(ns1, BUSYBOX, "ping", "-6", "-c", "1", "-W", "3", f"{v6}3").returncode == 0


def test_failed_attach_leaves_nothing(env):
    net, = free_subnets(1)
    br = env.bridge("f", net)
    ns = env.netns("fail")
    endpoint = secrets.token_hex(32)
    with pytest.raises(Exception):  # noqa: B017 - the gateway is off-link: the route fails
        bridge.attach(ns, br, endpoint, f"{host(net, 2)}/24", "192.0.2.77")
    assert bridge.list_veths(br) == []
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=bridge.veth_name(endpoint))
    assert [n for _, n in netns.run_in(ns, socket.if_nameindex)] == ["lo"]
    with pytest.raises(Exception):  # noqa: B017
        bridge.attach(ns, env.name("nobr"), endpoint, f"{host(net, 2)}/24")
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=bridge.veth_name(endpoint))


def test_attach_details_and_a_leftover_veth(env):
    net, = free_subnets(1)
    br = env.bridge("d", net)
    endpoint = secrets.token_hex(32)
    veth = bridge.veth_name(endpoint)
    env.links.append(veth)
    first = os.path.join(env.dir, "first")
    env.namespaces.append(first)
    with netns.create_with(first, Rtnl) as inside:  # the engine's way: socket from create
        assert bridge.attach(first, br, endpoint, f"{host(net, 2)}/24", host(net, 1),
                             mac="02:42:0a:00:00:02", inside=inside) == veth
    # a crashed attempt's veth for the same endpoint is replaced, not an error
    second = env.netns("second")
    bridge.attach(second, br, endpoint, f"{host(net, 3)}/24", host(net, 1))
    with IPRoute() as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=veth)[0])[0]
        assert link.get("master") == ipr.link_lookup(ifname=br)[0]
        assert link.get("state") == "up"
        assert link.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA",
                               "IFLA_BRPORT_MODE") == 1  # hairpin
    assert [n for _, n in netns.run_in(first, socket.if_nameindex)] == ["lo"]

    def inside_view():
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            eth0 = ipr.get_links(idx)[0]
            addrs = [(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)
                     if a["family"] == socket.AF_INET]
            gws = [r.get("gateway") for r in ipr.get_routes(family=socket.AF_INET)
                   if r["dst_len"] == 0]
            return eth0.get("state"), addrs, gws

    assert netns.run_in(second, inside_view) == ("up", [(host(net, 3), 24)], [host(net, 1)])
    assert ping(second, host(net, 1))
    bridge.detach(veth)
    bridge.detach(veth)  # idempotent
    assert bridge.list_veths(br) == []


def test_internal_network_keeps_traffic_on_the_bridge(env):
    net_a, net_out = free_subnets(2)
    br = env.bridge("i", net_a)
    ns1, ns2 = env.netns("i1"), env.netns("i2")
    env.attach(ns1, br, net_a, 2)
    env.attach(ns2, br, net_a, 3)
    # "outside": a namespace on a veth link to the host
    outside = env.netns("out")
    link = env.name("o")
    make_host_link(env, outside, link, net_out)
    env.nat.sync(nat_state((br, net_a), internal=(br,)))
    assert ping(ns1, host(net_a, 3))
    assert not ping(ns1, host(net_out, 2))
    env.nat.sync(nat_state((br, net_a)))
    assert ping(ns1, host(net_out, 2))  # not internal: masqueraded out


# --------------------------------------------------------------------------- published ports


def make_host_link(env: Env, ns: str, name: str, net: ipaddress.IPv4Network) -> None:
    """A veth link host<->ns: host side .1, ns side .2 with a default route to the host."""
    peer = name + "p"
    env.links.append(name)
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address=host(net, 1), prefixlen=24)
        ipr.link("set", index=idx, state="up")
        fd = os.open(ns, os.O_RDONLY)
        try:
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fd)
        finally:
            os.close(fd)

    def inside() -> None:
        with IPRoute() as ipr:
            for ifname in ("lo", peer):
                i = ipr.link_lookup(ifname=ifname)[0]
                ipr.link("set", index=i, state="up")
            i = ipr.link_lookup(ifname=peer)[0]
            ipr.addr("add", index=i, address=host(net, 2), prefixlen=24)
            ipr.route("add", dst="0.0.0.0/0", gateway=host(net, 1))

    netns.run_in(ns, inside)


def make_dummy(env: Env, name: str, address: str) -> None:
    """An interface holding a private host address: a dummy, or a host-only veth pair
    where the kernel has no dummy driver."""
    env.links.append(name)
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except NetlinkError:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
            ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0], state="up")
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address=address, prefixlen=32)
        ipr.link("set", index=idx, state="up")


def http_get(url: str, timeout: float = 5) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.read().decode()


def test_published_port_from_localhost_host_address_and_another_host(env, tmp_path):
    net, net_dummy, net_peer = free_subnets(3)
    br = env.bridge("p", net)
    ctr = env.netns("web")
    env.attach(ctr, br, net, 2)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(f"hello from {env.tag}\n")
    env.spawn(ctr, BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(www))
    assert wait_until(lambda: run_in_ns(ctr, BUSYBOX, "wget", "-q", "-O", "-",
                                        f"http://{host(net, 2)}/").returncode == 0)

    published = PortAllocator().allocate({"80/tcp": [{"HostIp": "", "HostPort": ""}]})
    hport = published[0].host_port
    mapping = PortMapping(br, host(net, 2), 80, "tcp", "", hport)
    state = nat_state((br, net), ports=[mapping])
    env.nat.sync(state)

    expected = f"hello from {env.tag}\n"
    assert http_get(f"http://127.0.0.1:{hport}/") == expected
    # the host's own non-loopback address (a dummy interface: nothing leaves the machine)
    dummy_ip = host(net_dummy, 1)
    make_dummy(env, env.name("d"), dummy_ip)
    assert http_get(f"http://{dummy_ip}:{hport}/") == expected
    # another host: a namespace over a veth link, reaching the host's address on that link
    peer = env.netns("peer")
    make_host_link(env, peer, env.name("h"), net_peer)
    # (Python's client in a thread inside the namespace: busybox wget -T crashes)
    assert netns.run_in(peer, http_get, f"http://{host(net_peer, 1)}:{hport}/") == expected
    # ...but not the container's address directly (unpublished traffic into the bridge)
    netns.run_in(peer, _add_route, str(net), host(net_peer, 1))
    with pytest.raises(OSError):
        netns.run_in(peer, http_get, f"http://{host(net, 2)}:80/", 2)

    # a port bound to 127.0.0.1 only is not reachable from the other host
    local_only = PortMapping(br, host(net, 2), 80, "tcp", "127.0.0.1", hport + 1)
    env.nat.sync(nat_state((br, net), ports=[mapping, local_only]))
    assert http_get(f"http://127.0.0.1:{hport + 1}/") == expected
    with pytest.raises(OSError):
        netns.run_in(peer, http_get, f"http://{host(net_peer, 1)}:{hport + 1}/", 2)

    # unpublished: gone
    env.nat.sync(nat_state((br, net)))
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{hport}/")


def _add_route(dst: str, gateway: str) -> None:
    with IPRoute() as ipr:
        ipr.route("add", dst=dst, gateway=gateway)


def test_sync_is_idempotent_and_remove_all_leaves_nothing(env):
    net, = free_subnets(1)
    br = env.bridge("s", net)
    state = nat_state((br, net), ports=[PortMapping(br, host(net, 2), 80, "tcp", "", 40123)])

    def ours() -> list[str]:
        text = subprocess.run(["iptables-save"], capture_output=True, text=True,
                              check=True).stdout
        return sorted(line for line in text.splitlines() if env.nat.prefix in line)

    env.nat.sync(state)
    first = ours()
    assert any("DNAT" in line and "40123" in line for line in first)
    env.nat.sync(state)
    env.nat.sync(state)
    assert ours() == first
    assert sum(1 for line in first if line.startswith("-A FORWARD ")) == 1
    # another prefix (a running daemon's chains) is not touched by our remove_all
    other = Nat(prefix=f"DYU{env.tag.upper()}")
    try:
        other.sync(state)
        env.nat.remove_all()
        assert ours() == [] and env.nat.present_chains() == []
        assert len(other.present_chains()) == 5
    finally:
        other.remove_all()
    assert other.present_chains() == []


def test_incremental_sync_matches_a_full_rewrite(env):
    """After a full sync, publishing and unpublishing only deletes and inserts rules;
    the kernel then holds, in order, exactly what a rewrite from scratch gives."""
    net, = free_subnets(1)
    br = env.bridge("i", net)

    def ours() -> list[str]:
        text = subprocess.run(["iptables-save"], capture_output=True, text=True,
                              check=True).stdout
        return [line for line in text.splitlines()
                if line.startswith("-A ") and env.nat.prefix in line.split()[1]]

    p1 = PortMapping(br, host(net, 2), 80, "tcp", "", 40131)
    p2 = PortMapping(br, host(net, 3), 53, "udp", "127.0.0.1", 40132)
    states = [nat_state((br, net), ports=[]), nat_state((br, net), ports=[p1]),
              nat_state((br, net), ports=[p1, p2]), nat_state((br, net), ports=[p2]),
              nat_state((br, net), ports=[])]
    env.nat.sync(states[0])
    for st in states[1:]:
        env.nat.sync(st)  # incremental
        incremental_rules = ours()
        fresh = Nat(prefix=env.nat.prefix)
        fresh.sync(st, verify=True)  # a full rewrite of the same chains
        assert ours() == incremental_rules


def test_ipv6_rules_follow_ipv6_networks(env):
    net, = free_subnets(1)
    br = env.bridge("6", net)
    bridge.ensure_bridge(br, [f"{host(net, 1)}/24", "fd00:dead:beef::1/64"])
    state = NatState([BridgeState(br, (str(net), "fd00:dead:beef::/64"))],
                     [PortMapping(br, "fd00:dead:beef::2", 80, "tcp", "", 40124)])
    env.nat.sync(state)
    text = subprocess.run(["ip6tables-save"], capture_output=True, text=True, check=True).stdout
    assert "--to-destination [fd00:dead:beef::2]:80" in text
    env.nat.sync(nat_state((br, net)))
    text = subprocess.run(["ip6tables-save"], capture_output=True, text=True, check=True).stdout
    assert env.nat.prefix not in text


# --------------------------------------------------------------------------- IPAM across processes


def test_concurrent_allocations_across_processes(tmp_path):
    store = NetworkStore(str(tmp_path))
    store.create("busy", ipam_config=[{"Subnet": "10.99.0.0/24"}])
    script = (
        "import sys\n"
        "from dockyard.network.store import NetworkStore\n"
        "s = NetworkStore(sys.argv[1])\n"
        "for j in range(10):\n"
        "    print(s.connect('busy', f'{sys.argv[2]}-{j}', 'n').ipv4, flush=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"p{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(6)]
    results: list[str] = []

    def threads_too() -> None:
        for j in range(10):
            results.append(NetworkStore(str(tmp_path)).connect("busy", f"t-{j}", "t").ipv4)

    t = threading.Thread(target=threads_too)
    t.start()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        results += out.split()
    t.join()
    assert len(results) == 70 and len(set(results)) == 70
    assert len(store.endpoints()) == 70


# --------------------------------------------------------------------------- DNS


class LoopThread:
    """An asyncio loop in a thread: the daemon's loop stand-in."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Upstream(asyncio.DatagramProtocol):
    """A loopback 'upstream resolver': forwarded.example -> 198.51.100.7, else NXDOMAIN."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        q = dns.message.from_wire(data)
        name = q.question[0].name.to_text()
        self.queries.append(name)
        r = dns.message.make_response(q)
        if name == "forwarded.example." and q.question[0].rdtype == 1:
            r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "198.51.100.7"))
        elif name != "forwarded.example.":
            r.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(r.to_wire(), addr)


def test_embedded_dns_in_a_namespace(env):
    net, = free_subnets(1)
    br = env.bridge("n", net)
    ns = env.netns("dns")
    env.attach(ns, br, net, 2)
    records = {"web": [host(net, 10)], "db": [host(net, 20), host(net, 21), host(net, 22)]}
    seen_keys: list[str] = []

    def lookup(key: str, name: str, qtype: str) -> list[str]:
        seen_keys.append(key)
        return list(records.get(name, [])) if qtype == "A" else []

    def reverse(key: str, ip: str) -> list[str]:
        return [f"{n}.mynet" for n, ips in records.items() if ip in ips]

    lt = LoopThread()
    upstream = Upstream()
    server = None
    try:
        transport, _ = lt.run(lt.loop.create_datagram_endpoint(
            lambda: upstream, local_addr=("127.0.0.1", 0)))
        up_port = transport.get_extra_info("sockname")[1]
        server = DNSServer(lookup, reverse, upstreams=[("127.0.0.1", up_port)])
        lt.run(server.listen_in(ns, "ctr1", search=["corp.test"]))

        out = run_in_ns(ns, BUSYBOX, "nslookup", "web", "127.0.0.11")
        assert out.returncode == 0 and host(net, 10) in out.stdout, out.stdout + out.stderr
        assert "ctr1" in seen_keys
        out = run_in_ns(ns, BUSYBOX, "nslookup", "forwarded.example", "127.0.0.11")
        assert "198.51.100.7" in out.stdout, out.stdout + out.stderr
        assert "forwarded.example." in upstream.queries
        out = run_in_ns(ns, BUSYBOX, "nslookup", "nosuch.example", "127.0.0.11")
        assert out.returncode != 0 or "NXDOMAIN" in out.stdout + out.stderr

        def ask(name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
            q = dns.message.make_query(name, rdtype)
            if tcp:
                return dns.query.tcp(q, "127.0.0.11", timeout=5)
            return dns.query.udp(q, "127.0.0.11", timeout=5)

        r = netns.run_in(ns, ask, "WEB.")
        assert r.answer[0].ttl == 600 and [x.to_text() for x in r.answer[0]] == [host(net, 10)]
        assert netns.run_in(ns, ask, "web.corp.test").answer[0][0].to_text() == host(net, 10)
        r = netns.run_in(ns, ask, "web", "AAAA")  # exists, no IPv6: NOERROR, no answer
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        firsts = {netns.run_in(ns, ask, "db").answer[0][0].to_text() for _ in range(30)}
        assert len(firsts) > 1  # the order changes between answers
        r = netns.run_in(ns, ask, "db", "A", True)
        assert len(r.answer[0]) == 3
        rev = ipaddress.ip_address(host(net, 10)).reverse_pointer
        r = netns.run_in(ns, ask, rev, "PTR")
        assert r.answer[0][0].to_text() == "web.mynet."
        # the sockets live in the container's namespace only
        with pytest.raises((OSError, dns.exception.Timeout)):
            dns.query.udp(dns.message.make_query("web", "A"), "127.0.0.11", timeout=1)

        lt.run(server.close_in(ns))
        assert server.serving() == []
        out = run_in_ns(ns, BUSYBOX, "nslookup", "web", "127.0.0.11", timeout=30)
        assert host(net, 10) not in out.stdout
        lt.run(server.listen_in(ns, "ctr1"))  # again after close: the port is free
        assert server.serving() == [ns]
        transport.close()
    finally:
        if server is not None:
            lt.run(server.close())
        lt.stop()


def test_embedded_dns_served_without_waiting_for_the_loop(env):
    """serve_threadsafe (the engine's start path): answers once the loop gets to it, and a
    close right after it (a container that exits at once) leaves nothing behind."""
    net, = free_subnets(1)
    br = env.bridge("t", net)
    ns = env.netns("dnsts")
    env.attach(ns, br, net, 2)
    lt = LoopThread()
    server = DNSServer(lambda key, name, qtype: [host(net, 10)] if name == "web" else [],
                       upstreams=[("127.0.0.1", 9)])
    try:
        server.serve_threadsafe(lt.loop, ns, server.sockets_in(ns), "ctr1")
        assert server.serving() == [ns]  # at once, before the loop ran anything

        def ask():
            return dns.query.udp(dns.message.make_query("web", "A"), "127.0.0.11", timeout=5)

        assert netns.run_in(ns, ask).answer[0][0].to_text() == host(net, 10)
        lt.run(server.close_in(ns))
        for _ in range(20):  # closed before (or while) the loop starts serving it
            server.serve_threadsafe(lt.loop, ns, server.sockets_in(ns), "ctr1")
            lt.run(server.close_in(ns))
            assert server.serving() == []
        lt.run(server.listen_in(ns, "ctr1"))  # the port is free again
        assert netns.run_in(ns, ask).answer[0][0].to_text() == host(net, 10)
    finally:
        lt.run(server.close())
        lt.stop()


def test_host_routes_match_the_kernels_main_table() -> None:
    """host_routes reads /proc; it must list what a netlink dump of the main table lists
    (defaults and IPv6 host/multicast routes aside)."""
    from pyroute2 import IPRoute

    expected = set()
    with IPRoute() as ipr:
        for fam in (2, 10):
            for r in ipr.get_routes(family=fam, table=254):
                dst = r.get("dst")
                if dst is None or not r["dst_len"]:
                    continue
                net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                if net.version == 6 and (net.prefixlen == 128 or net.is_multicast):
                    continue
                expected.add(net)
    assert expected <= set(bridge.host_routes()) | {
        n for n in expected if n.version == 6 and n.is_link_local}
    assert {n for n in bridge.host_routes() if n.version == 4} == \
        {n for n in expected if n.version == 4}
