"""Networks (issue 5) through the official docker CLI and our `dockyard` CLI against our
daemon: user networks with DNS (names, aliases) and isolation, published ports from
127.0.0.1, a host address and another "host" (a namespace over a veth link), host / none /
container modes, connect and disconnect at run time, inspect fields, docker's errors for
bad input, and a live-restore restart.

One daemon per module with a private data root, exec root, bridge, subnet and chain prefix
(devtools/netconfig.py). No packet leaves the machine: other hosts are namespaces, host
addresses sit on a dummy interface, DNS answers come from the daemon's records. Everything
made is removed; at the end no chain, bridge, veth or namespace of the daemon is left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from test_daemon_containers import _check_nothing_left, _read_pid
from test_daemon_images import DOCKER, Daemon, DockerCLI

from dockyard.devtools.busybox import make_rootfs
from dockyard.network import bridge, netns
from dockyard.network.nat import Nat

pytestmark = [
    pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
]

HTTPD = "mkdir -p /www && echo hello-$0 > /www/index.html && exec httpd -f -p 80 -h /www"


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dyn")


def _netcfg(root: Path) -> dict:
    return json.loads((root / "network-config.json").read_text())


def _our_kernel_state(root: Path) -> dict[str, list[str]]:
    """Chains, bridges, veths and netns files of the daemon at `root` that exist now."""
    cfg = _netcfg(root)
    chains = Nat(cfg["dockyard-chain-prefix"]).present_chains()
    bridges = [b for b in [cfg["bridge"]] if bridge.bridge_exists(b)]
    veths = bridge.list_veths(cfg["bridge"])
    ns_dir = root / "exec" / "netns"
    files = os.listdir(ns_dir) if ns_dir.is_dir() else []
    return {"chains": chains, "bridges": bridges, "veths": veths, "netns": files}


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    d = Daemon(workdir, "--exec-root", str(workdir / "exec"))
    yield d
    monitor_pid = _read_pid(workdir / "exec" / "monitor.pid")
    assert d.stop() == 0, d.logs()
    _check_nothing_left(workdir, monitor_pid, [])
    assert _our_kernel_state(workdir) == {"chains": [], "bridges": [], "veths": [],
                                          "netns": []}
    assert [b for b in _made_bridges if bridge.bridge_exists(b)] == []


_made_bridges: list[str] = []  # user networks' bridges: gone with their networks


@pytest.fixture(scope="module")
def docker(daemon: Daemon, workdir: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI.in_workdir(daemon, workdir)
    yield cli
    cli.remove_all_containers()
    for name in cli("network", "ls", "--format", "{{.Name}}").stdout.split():
        if name not in ("bridge", "host", "none"):
            cli("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def dockyard(daemon: Daemon):
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H",
                            f"unix://{daemon.sock}", *args], capture_output=True, text=True,
                           timeout=60, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} -> {r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r
    return run


@pytest.fixture(scope="module")
def busybox(docker: DockerCLI, workdir: Path) -> str:
    root = make_rootfs(str(workdir / "rootfs"))
    out = workdir / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return docker("import", "-c", 'CMD ["sh"]', str(out), "busybox:dyk").stdout.strip()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _inspect(docker: DockerCLI, name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]


def _ip(docker: DockerCLI, name: str, network: str) -> str:
    return _inspect(docker, name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def http_get(url: str, timeout: float = 5) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.read().decode()


def _wait_http(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(url, 2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _veths_settle(root: Path, expected: list[str], timeout: float = 10) -> None:
    """Released veths go with their namespace, asynchronously: wait for the set to settle."""
    deadline = time.monotonic() + timeout
    while _our_kernel_state(root)["veths"] != expected:
        assert time.monotonic() < deadline, _our_kernel_state(root)["veths"]
        time.sleep(0.05)


def _dnat_lines(root: Path) -> list[str]:
    prefix = _netcfg(root)["dockyard-chain-prefix"]
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if line.startswith(f"-A {prefix} ")]


# -- user networks: DNS and isolation ------------------------------------------------------------

def test_user_network_names_aliases_and_isolation(docker: DockerCLI, dockyard, busybox: str,
                                                  workdir: Path) -> None:
    net_a, net_b = _name("neta"), _name("netb")
    one, two, other = _name("one"), _name("two"), _name("other")
    dockyard("network", "create", net_a)
    docker("network", "create", net_b)
    _made_bridges.extend(f"br-{docker('network', 'inspect', '-f', '{{.Id}}', n).stdout[:12]}"
                         for n in (net_a, net_b))
    try:
        docker("run", "-d", "--name", one, "--network", net_a, "--network-alias", "svc",
               "busybox:dyk", "sleep", "300")
        docker("run", "-d", "--name", two, "--network", net_a, "--network-alias", "svc",
               "busybox:dyk", "sleep", "300")
        docker("run", "-d", "--name", other, "--network", net_b, "busybox:dyk", "sleep", "300")
        ip_one, ip_two = _ip(docker, one, net_a), _ip(docker, two, net_a)
        resolv = docker("exec", one, "cat", "/etc/resolv.conf").stdout
        assert resolv.startswith("nameserver 127.0.0.11\n")
        # by name, both ways
        r = docker("exec", one, "ping", "-c", "1", "-W", "2", two)
        assert f"({ip_two})" in r.stdout
        r = docker("exec", two, "ping", "-c", "1", "-W", "2", one)
        assert f"({ip_one})" in r.stdout
        # by alias: every container holding it
        r = docker("exec", one, "nslookup", "svc")
        assert ip_one in r.stdout and ip_two in r.stdout, r.stdout
        docker("exec", two, "ping", "-c", "1", "-W", "2", "svc")
        # the short id and name.network resolve too; PTR names the container
        short = _inspect(docker, two)["Id"][:12]
        assert ip_two in docker("exec", one, "nslookup", short).stdout
        assert ip_two in docker("exec", one, "nslookup", f"{two}.{net_a}").stdout
        assert two in docker("exec", one, "nslookup", ip_two).stdout
        # another network: no name, no route
        r = docker("exec", other, "nslookup", one, check=False)
        assert ip_one not in r.stdout
        r = docker("exec", other, "ping", "-c", "1", "-W", "1", ip_one, check=False)
        assert r.returncode != 0
        # /etc/hosts: localhost, its own address and name, nothing of the others
        hosts = docker("exec", one, "cat", "/etc/hosts").stdout
        assert "127.0.0.1\tlocalhost" in hosts and ip_one in hosts and two not in hosts
        # inspect: docker's fields
        info = _inspect(docker, one)
        ep = info["NetworkSettings"]["Networks"][net_a]
        assert ep["Aliases"][:1] == ["svc"] and ep["IPPrefixLen"] == 24
        assert ep["Gateway"] and ep["MacAddress"] and ep["EndpointID"]
        assert info["NetworkSettings"]["IPAddress"] == ""  # only the default bridge's
        assert info["HostConfig"]["NetworkMode"] == net_a
        containers = json.loads(docker("network", "inspect", net_a).stdout)[0]["Containers"]
        assert {c["Name"] for c in containers.values()} == {one, two}
    finally:
        docker("rm", "-f", one, two, other, check=False)
        docker("network", "rm", net_a, net_b, check=False)
    _veths_settle(workdir, [])


def test_default_bridge(docker: DockerCLI, busybox: str, workdir: Path) -> None:
    r = docker("run", "--rm", "busybox:dyk", "sh", "-c",
               "ip -4 addr show eth0; ip route; cat /etc/resolv.conf /etc/hosts")
    subnet = ipaddress.ip_interface(_netcfg(workdir)["bip"]).network
    addr = r.stdout.split("inet ", 1)[1].split("/", 1)[0]
    assert ipaddress.ip_address(addr) in subnet
    assert f"default via {subnet.network_address + 1}" in r.stdout
    assert "127.0.0.11" not in r.stdout  # the host's resolvers on the default bridge
    assert f"{addr}\t" in r.stdout


# -- published ports ----------------------------------------------------------------------------

def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    routes = [r for r in bridge.host_routes() if r.version == 4 and r.prefixlen > 0]
    out: list[ipaddress.IPv4Network] = []
    while len(out) < count:
        net = ipaddress.ip_network(f"10.{240 + secrets.randbelow(15)}."
                                   f"{secrets.randbelow(256)}.0/24")
        if net not in out and not any(net.overlaps(r) for r in routes):
            out.append(net)
    return out


class Outside:
    """A dummy interface with a host address, and a namespace ("another host") on a veth
    link to the host; removed by close()."""

    def __init__(self, workdir: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.dummy_net, self.link_net = _free_subnets(2)
        self.links: list[str] = []
        self.ns = str(workdir / f"peer-{self.tag}")
        self.dummy_ip = str(self.dummy_net.network_address + 1)
        self.host_ip = str(self.link_net.network_address + 1)
        self.peer_ip = str(self.link_net.network_address + 2)
        netns.create(self.ns)
        try:
            self._dummy()
            self._link()
        except BaseException:
            self.close()
            raise

    def _dummy(self) -> None:
        name = f"dyd{self.tag}"
        self.links.append(name)
        with IPRoute() as ipr:
            try:
                ipr.link("add", ifname=name, kind="dummy")
            except NetlinkError:
                ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
                ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0], state="up")
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=idx, address=self.dummy_ip, prefixlen=32)
            ipr.link("set", index=idx, state="up")

    def _link(self) -> None:
        name, peer = f"dyh{self.tag}", f"dyh{self.tag}p"
        self.links.append(name)
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=idx, address=self.host_ip, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            fd = os.open(self.ns, os.O_RDONLY)
            try:
                ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fd)
            finally:
                os.close(fd)
        host_ip, peer_ip = self.host_ip, self.peer_ip

        def inside() -> None:
            with IPRoute() as ipr:
                for ifname in ("lo", peer):
                    ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
                i = ipr.link_lookup(ifname=peer)[0]
                ipr.addr("add", index=i, address=peer_ip, prefixlen=24)
                ipr.route("add", dst="0.0.0.0/0", gateway=host_ip)

        netns.run_in(self.ns, inside)

    def get(self, url: str, timeout: float = 5) -> str:
        # Python's client in a thread inside the namespace (busybox wget -T crashes here)
        return netns.run_in(self.ns, http_get, url, timeout)

    def close(self) -> None:
        for link in self.links:
            bridge.detach(link)
        netns.delete(self.ns)


def test_published_port_from_localhost_host_address_and_another_host(
        docker: DockerCLI, dockyard, busybox: str, workdir: Path) -> None:
    web, local = _name("web"), _name("local")
    outside = Outside(workdir)
    try:
        docker("run", "-d", "--name", web, "-p", "80", "busybox:dyk", "sh", "-c", HTTPD, web)
        port = int(docker("port", web, "80/tcp").stdout.split(":")[-1])
        expected = f"hello-{web}\n"
        assert _wait_http(f"http://127.0.0.1:{port}/") == expected
        assert http_get(f"http://{outside.dummy_ip}:{port}/") == expected
        assert outside.get(f"http://{outside.host_ip}:{port}/") == expected
        # the container's own address is not reachable from the other host unpublished
        info = _inspect(docker, web)
        assert info["NetworkSettings"]["Ports"] == {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        assert web in docker("ps", "--format", "{{.Names}} {{.Ports}}").stdout
        assert f"0.0.0.0:{port}->80/tcp" in docker("ps", "--filter", f"name={web}").stdout
        # our CLI: -p with an address, `port`, ps
        dockyard("run", "-d", "--name", local, "-p", "127.0.0.1::80", "busybox:dyk", "sh",
                 "-c", HTTPD, local)
        out = dockyard("port", local).stdout
        assert out.startswith("80/tcp -> 127.0.0.1:")
        lport = int(out.strip().rsplit(":", 1)[1])
        assert _wait_http(f"http://127.0.0.1:{lport}/") == f"hello-{local}\n"
        with pytest.raises(OSError):
            outside.get(f"http://{outside.host_ip}:{lport}/", 2)
        # stop: the rules go, the settings keep the endpoint without address
        docker("stop", "-t", "1", web)
        assert not [line for line in _dnat_lines(workdir) if f"--dport {port} " in line]
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/", 2)
        stopped = _inspect(docker, web)["NetworkSettings"]
        assert stopped["Networks"]["bridge"]["IPAddress"] == "" and stopped["Ports"] == {}
        docker("start", web)
        port2 = int(docker("port", web, "80/tcp").stdout.split(":")[-1])
        assert _wait_http(f"http://127.0.0.1:{port2}/") == expected
    finally:
        docker("rm", "-f", web, local, check=False)
        outside.close()
    assert _dnat_lines(workdir) == []


def test_internal_network_has_no_way_out(docker: DockerCLI, busybox: str,
                                         workdir: Path) -> None:
    inside, outbound = _name("int"), _name("out")
    boxes = [_name("ib"), _name("ib"), _name("ob")]
    outside = Outside(workdir)
    docker("network", "create", "--internal", inside)
    docker("network", "create", outbound)
    try:
        docker("run", "-d", "--name", boxes[0], "--network", inside, "busybox:dyk", "sleep",
               "300")
        docker("run", "-d", "--name", boxes[1], "--network", inside, "busybox:dyk", "sleep",
               "300")
        docker("run", "-d", "--name", boxes[2], "--network", outbound, "busybox:dyk", "sleep",
               "300")
        docker("exec", boxes[0], "ping", "-c", "1", "-W", "2", boxes[1])  # on the bridge: yes
        r = docker("exec", boxes[0], "ping", "-c", "1", "-W", "1", outside.peer_ip,
                   check=False)
        assert r.returncode != 0  # another host: no
        # a normal network reaches the other host (masqueraded), through the host
        docker("exec", boxes[2], "ping", "-c", "1", "-W", "2", outside.peer_ip)
    finally:
        docker("rm", "-f", *boxes, check=False)
        docker("network", "rm", inside, outbound, check=False)
        outside.close()


def test_publish_all_and_expose(docker: DockerCLI, busybox: str) -> None:
    name = _name("pall")
    try:
        docker("run", "-d", "--name", name, "-P", "--expose", "7000-7001/udp", "--expose", "90",
               "busybox:dyk", "sleep", "300")
        ports = _inspect(docker, name)["NetworkSettings"]["Ports"]
        assert set(ports) == {"7000/udp", "7001/udp", "90/tcp"}
        assert all(int(v[0]["HostPort"]) > 1024 for v in ports.values())
    finally:
        docker("rm", "-f", name, check=False)


# -- host, none, container -----------------------------------------------------------------------

def test_host_none_and_container_modes(docker: DockerCLI, busybox: str) -> None:
    with IPRoute() as ipr:
        host_links = sorted(link.get("ifname") for link in ipr.get_links())
    r = docker("run", "--rm", "--network", "host", "busybox:dyk", "ls", "/sys/class/net")
    assert sorted(r.stdout.split()) == host_links
    r = docker("run", "--rm", "--network", "none", "busybox:dyk", "sh", "-c",
               "ls /sys/class/net; ip addr show lo")
    assert r.stdout.split()[0] == "lo" and "UP" in r.stdout and "eth0" not in r.stdout
    owner = _name("owner")
    try:
        docker("run", "-d", "--name", owner, "-h", "ownerhost", "busybox:dyk", "sleep", "300")
        ip = _ip(docker, owner, "bridge")
        r = docker("run", "--rm", "--network", f"container:{owner}", "busybox:dyk", "sh", "-c",
                   "ip -4 addr show eth0; cat /etc/hosts")
        assert ip in r.stdout and "ownerhost" in r.stdout
        r = docker("run", "--rm", "--network", f"container:{owner}", "-p", "80:80",
                   "busybox:dyk", "true", check=False)
        assert r.returncode != 0 and "conflicting options" in r.stderr
    finally:
        docker("rm", "-f", owner, check=False)


def test_connect_and_disconnect_at_run_time(docker: DockerCLI, dockyard, busybox: str) -> None:
    net = _name("live")
    box, peer = _name("box"), _name("peer")
    sub, = _free_subnets(1)
    pre = str(sub.network_address)[:-1]  # "10.x.y."
    dockyard("network", "create", "--subnet", str(sub), net)
    try:
        docker("run", "-d", "--name", box, "busybox:dyk", "sleep", "300")
        docker("run", "-d", "--name", peer, "--network", net, "busybox:dyk", "sleep", "300")
        dockyard("network", "connect", "--ip", f"{pre}50", "--alias", "boxy", net, box)
        r = docker("exec", box, "ip", "-4", "addr")
        assert f"{pre}50/24" in r.stdout and "eth1" in r.stdout
        assert f"{pre}50" in docker("exec", peer, "nslookup", "boxy").stdout
        docker("exec", peer, "ping", "-c", "1", "-W", "2", box)
        nets = _inspect(docker, box)["NetworkSettings"]["Networks"]
        assert set(nets) == {"bridge", net} and nets[net]["IPAddress"] == f"{pre}50"
        r = docker("network", "connect", net, box, check=False)
        assert r.returncode != 0 and "already exists in network" in r.stderr
        docker("network", "disconnect", net, box)
        assert f"{pre}50" not in docker("exec", box, "ip", "-4", "addr").stdout
        assert set(_inspect(docker, box)["NetworkSettings"]["Networks"]) == {"bridge"}
        r = docker("exec", peer, "ping", "-c", "1", "-W", "1", f"{pre}50", check=False)
        assert r.returncode != 0
        docker("network", "connect", net, box)  # again, running: eth1 is free again
        assert pre in docker("exec", box, "ip", "-4", "addr", "show", "eth1").stdout
        docker("network", "disconnect", net, box)
        # a stopped container: recorded, wired at start
        docker("stop", "-t", "0", box)
        docker("network", "connect", net, box)
        docker("start", box)
        assert pre in docker("exec", box, "ip", "-4", "addr", "show", "eth1").stdout
    finally:
        docker("rm", "-f", box, peer, check=False)
        dockyard("network", "rm", net, check=False)


# -- the dockyard CLI's network verbs and docker's errors -------------------------------------------

def test_network_verbs_and_errors(docker: DockerCLI, dockyard, busybox: str,
                                  workdir: Path) -> None:
    net, dup = _name("lab"), _name("dup")
    sub, = _free_subnets(1)
    pre = str(sub.network_address)[:-1]  # "10.x.y."
    out = dockyard("network", "create", "--subnet", str(sub), "--gateway", f"{pre}254", "--label", "team=a", "-o", "com.example=1", net).stdout
    net_id = out.strip()
    assert len(net_id) == 64
    try:
        ls = dockyard("network", "ls").stdout.splitlines()
        assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert any(line.split()[:3] == [net_id[:12], net, "bridge"] for line in ls[1:])
        assert dockyard("network", "ls", "-q", "--filter", "label=team=a").stdout.split() \
            == [net_id[:12]]
        assert dockyard("network", "ls", "--filter", f"name={net}", "--format",
                        "{{.Name}} {{.Driver}} {{.Internal}}").stdout == f"{net} bridge false\n"
        doc = json.loads(dockyard("network", "inspect", net).stdout)[0]
        assert doc["IPAM"]["Config"] == [{"Subnet": str(sub), "Gateway": f"{pre}254"}]
        assert doc["Labels"] == {"team": "a"} and doc["Options"] == {"com.example": "1"}
        # name in use, overlapping subnets: docker's errors, nothing created
        r = docker("network", "create", net, check=False)
        assert r.returncode != 0 and f"network with name {net} already exists" in r.stderr
        r = dockyard("network", "create", "--subnet", f"{pre}128/25", dup, check=False)
        assert r.returncode != 0 and "Pool overlaps with other one on this address space" \
            in r.stderr
        assert dup not in docker("network", "ls").stdout
        r = docker("network", "rm", "bridge", check=False)
        assert "bridge is a pre-defined network and cannot be removed" in r.stderr
        # rm with a running container attached: refused; stopped: fine for docker too
        box = _name("att")
        docker("run", "-d", "--name", box, "--network", net, "busybox:dyk", "sleep", "300")
        r = dockyard("network", "rm", net, check=False)
        assert r.returncode != 0 and "has active endpoints" in r.stderr
        r = docker("network", "prune", "-f")
        assert net not in r.stdout
        # a bad -p is a 400 at create; a static --ip on the default bridge too
        r = docker("run", "--rm", "-p", "127.0.0.1:99999:80", "busybox:dyk", "true",
                   check=False)
        assert r.returncode != 0
        r = docker("run", "--rm", "--ip", f"{pre}9", "busybox:dyk", "true", check=False)
        assert r.returncode != 0 and "user specified IP address is supported" in r.stderr
        docker("rm", "-f", box)
    finally:
        dockyard("network", "rm", net, check=False)
    assert not bridge.bridge_exists(f"br-{net_id[:12]}")
    named, br_name = _name("named"), f"dyb{secrets.token_hex(3)}"
    docker("network", "create", "-o", f"com.docker.network.bridge.name={br_name}", named)
    assert bridge.bridge_exists(br_name)
    r = docker("network", "create", "-o", f"com.docker.network.bridge.name={br_name}",
               _name("again"), check=False)
    assert r.returncode != 0 and "already in use" in r.stderr
    docker("network", "rm", named)
    assert not bridge.bridge_exists(br_name)
    empty = _name("empty")
    docker("network", "create", empty)
    assert empty in dockyard("network", "prune", "-f").stdout
    assert empty not in docker("network", "ls").stdout


def test_port_conflicts_leave_nothing_behind(docker: DockerCLI, busybox: str,
                                             workdir: Path) -> None:
    import socket

    first, second, third = _name("p1"), _name("p2"), _name("p3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        try:
            docker("run", "-d", "--name", first, "-p", "127.0.0.1::80", "busybox:dyk", "sleep",
                   "300")
            taken = int(docker("port", first, "80").stdout.strip().rsplit(":", 1)[1])
            veths = _our_kernel_state(workdir)["veths"]
            rules = _dnat_lines(workdir)
            r = docker("run", "-d", "--name", second, "-p", f"127.0.0.1:{taken}:80",
                       "busybox:dyk", "sleep", "300", check=False)
            assert r.returncode != 0
            assert f"Bind for 127.0.0.1:{taken} failed: port is already allocated" in r.stderr
            r = docker("run", "-d", "--name", third, "-p", f"{busy}:80", "busybox:dyk",
                       "sleep", "300", check=False)
            assert r.returncode != 0 and "address already in use" in r.stderr
            # nothing half-configured: no new veth, rule, endpoint or netns
            _veths_settle(workdir, veths)
            assert _dnat_lines(workdir) == rules
            for name in (second, third):
                ns = _inspect(docker, name)["NetworkSettings"]
                assert ns["Networks"]["bridge"]["IPAddress"] == ""
                assert not os.path.exists(workdir / "exec" / "netns" /
                                          _inspect(docker, name)["Id"])
        finally:
            docker("rm", "-f", first, second, third, check=False)


# -- live-restore ------------------------------------------------------------------------------------

def test_live_restore_keeps_connectivity_and_leaks_nothing(tmp_path: Path, busybox: str,
                                                          workdir: Path) -> None:
    d = Daemon(tmp_path, "--live-restore")
    docker = DockerCLI(d, workdir / "docker-config")
    net, web, client = _name("lr"), _name("lrweb"), _name("lrcli")
    try:
        docker("import", "-c", 'CMD ["sh"]', str(workdir / "busybox.tar"), "busybox:dyk")
        docker("network", "create", net)
        docker("run", "-d", "--name", web, "--network", net, "-p", "127.0.0.1::80",
               "busybox:dyk", "sh", "-c", HTTPD, web)
        docker("run", "-d", "--name", client, "--network", net, "busybox:dyk", "sleep", "300")
        port = int(docker("port", web, "80").stdout.strip().rsplit(":", 1)[1])
        assert _wait_http(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
        assert d.stop() == 0, d.logs()
        # the daemon is down: the port and the network still work
        assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
        d = Daemon(tmp_path, "--live-restore")
        assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
        r = docker("exec", client, "nslookup", web)  # DNS served again
        assert _ip(docker, web, net) in r.stdout
        r = docker("exec", client, "wget", "-q", "-O", "-", f"http://{web}/")
        assert r.stdout == f"hello-{web}\n"
        docker("rm", "-f", web, client)
        docker("network", "rm", net)
        monitor_pid = _read_pid(tmp_path / "exec" / "monitor.pid")
        assert d.stop() == 0, d.logs()
        _check_nothing_left(tmp_path, monitor_pid, [])
        assert _our_kernel_state(tmp_path) == {"chains": [], "bridges": [], "veths": [],
                                               "netns": []}
    finally:
        if d.proc.poll() is None:
            docker("rm", "-f", web, client, check=False)
            docker("network", "rm", net, check=False)
            d.stop()
