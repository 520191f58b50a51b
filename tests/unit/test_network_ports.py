"""ports.py: docker's -p/-P syntax, PortBindings, host port allocation."""

import socket

import pytest

from dockyard.errors import Conflict, InvalidArgument
from dockyard.network import ports
from dockyard.network.ports import PortAllocator, Published


def b(ip="", port=""):
    return {"HostIp": ip, "HostPort": port}


@pytest.mark.parametrize("spec,expected", [
    ("80", [("80/tcp", b())]),
    ("80/udp", [("80/udp", b())]),
    ("8080:80", [("80/tcp", b("", "8080"))]),
    ("8080:80/UDP", [("80/udp", b("", "8080"))]),
    ("127.0.0.1:8080:80", [("80/tcp", b("127.0.0.1", "8080"))]),
    ("127.0.0.1::80", [("80/tcp", b("127.0.0.1"))]),
    ("[::1]:8080:80", [("80/tcp", b("::1", "8080"))]),
    ("[fe80::0001]::53/udp", [("53/udp", b("fe80::1"))]),
    ("8000-8002:80-82", [("80/tcp", b("", "8000")), ("81/tcp", b("", "8001")),
                         ("82/tcp", b("", "8002"))]),
    ("80-81", [("80/tcp", b()), ("81/tcp", b())]),
    ("8000-8010:80", [("80/tcp", b("", "8000-8010"))]),
    ("0.0.0.0:9000-9001:90-91/sctp", [("90/sctp", b("0.0.0.0", "9000")),
                                       ("91/sctp", b("0.0.0.0", "9001"))]),
])
def test_parse_publish(spec, expected):
    assert ports.parse_publish(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "no port specified"),
    ("80/icmp", "invalid proto"),
    ("abc", "invalid containerPort"),
    ("8080:", "no port specified"),
    ("0", "invalid containerPort"),
    ("65536", "invalid containerPort"),
    ("x:80", "invalid hostPort"),
    ("70000:80", "invalid hostPort"),
    ("1.2.3.999:80:80", "invalid IP address"),
    ("host:80:80", "invalid IP address"),
    ("[::1:80:80", "invalid IP address"),
    ("1:2:3:4", "invalid port specification"),
    ("8000-8001:80-82", "invalid ranges specified"),
    ("82-80", "invalid port range"),
    ("-80", "invalid containerPort"),
])
def test_parse_publish_bad(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        ports.parse_publish(spec)


def test_parse_publish_list_and_expose():
    exposed, bindings = ports.parse_publish_list(["8080:80", "127.0.0.1:8081:80", "53/udp"])
    assert exposed == {"80/tcp": {}, "53/udp": {}}
    assert bindings == {"80/tcp": [b("", "8080"), b("127.0.0.1", "8081")], "53/udp": [b()]}
    assert ports.parse_expose("7000-7002/udp") == ["7000/udp", "7001/udp", "7002/udp"]
    assert ports.parse_expose("80") == ["80/tcp"]
    assert ports.normalize_key("443") == "443/tcp"
    with pytest.raises(InvalidArgument):
        ports.parse_expose("80/foo")


def test_publish_all_keeps_explicit_bindings():
    out = ports.publish_all(["80/tcp", "443", "53/udp"], {"80/tcp": [b("", "8080")]})
    assert out == {"80/tcp": [b("", "8080")], "443/tcp": [b()], "53/udp": [b()]}


def test_ephemeral_range(tmp_path):
    p = tmp_path / "r"
    p.write_text("40000\t40010\n")
    assert ports.ephemeral_range(str(p)) == (40000, 40010)
    p.write_text("garbage")
    assert ports.ephemeral_range(str(p)) == ports.DEFAULT_EPHEMERAL
    assert ports.ephemeral_range(str(tmp_path / "none")) == ports.DEFAULT_EPHEMERAL


def _free_block(n=20):
    """A run of n ports that are currently free for tcp on 127.0.0.1 (best effort)."""
    for base in range(42000, 48000, 50):
        if all(ports.port_is_free("tcp", "127.0.0.1", p) for p in range(base, base + n)):
            return base
    pytest.skip("no free port block")


def test_allocate_fixed_and_conflicts():
    alloc = PortAllocator((40000, 40010))
    got = alloc.allocate({"80/tcp": [b("", "8080")], "53/udp": [b("", "8080")]})
    assert got == [Published(80, "tcp", "", 8080), Published(53, "udp", "", 8080)]
    with pytest.raises(Conflict, match=r"^Bind for 0.0.0.0:8080 failed: port is already "
                                       "allocated$"):
        alloc.allocate({"80/tcp": [b("", "8080")]}, in_use=[("tcp", "", 8080)])
    with pytest.raises(Conflict, match="Bind for 127.0.0.1:8080 failed"):
        alloc.allocate({"80/tcp": [b("127.0.0.1", "8080")]}, in_use=[("tcp", "0.0.0.0", 8080)])
    # another address, another protocol: no conflict
    alloc.allocate({"80/tcp": [b("127.0.0.1", "8080")]}, in_use=[("tcp", "127.0.0.2", 8080)])
    alloc.allocate({"80/tcp": [b("", "8080")]}, in_use=[("udp", "", 8080)])
    # two bindings of one request clash with each other
    with pytest.raises(Conflict):
        alloc.allocate({"80/tcp": [b("", "8080")], "81/tcp": [b("", "8080")]})
    with pytest.raises(InvalidArgument):
        alloc.allocate({"80/tcp": [b("nope", "8080")]})
    with pytest.raises(InvalidArgument):
        alloc.allocate({"80/xyz": [b("", "8080")]})


def test_allocate_ephemeral_skips_used_and_bound():
    base = _free_block()
    alloc = PortAllocator((base, base + 9))
    holder = socket.socket()
    holder.bind(("127.0.0.1", base + 1))  # someone else's
    try:
        got = alloc.allocate({"80/tcp": [b("127.0.0.1")], "81/tcp": [b("127.0.0.1")]},
                             in_use=[("tcp", "", base)])
        assert [p.host_port for p in got] == [base + 2, base + 3]
        # rotation: the next request starts after the last choice
        assert alloc.allocate({"82/tcp": [b("127.0.0.1")]})[0].host_port == base + 4
        # a host range picks the first usable port in it
        got = alloc.allocate({"80/tcp": [b("127.0.0.1", f"{base}-{base + 3}")]},
                             in_use=[("tcp", "", base)])
        assert got[0].host_port == base + 2
        with pytest.raises(Conflict):
            alloc.allocate({"80/tcp": [b("127.0.0.1", f"{base}-{base + 1}")]},
                           in_use=[("tcp", "", base)])
    finally:
        holder.close()


def test_allocate_exhausted():
    base = _free_block()
    alloc = PortAllocator((base, base + 1))
    with pytest.raises(Conflict):
        alloc.allocate({"80/tcp": [b()]}, in_use=[("tcp", "", base), ("tcp", "", base + 1)])


def test_reserve_holds_the_port():
    base = _free_block()
    s = ports.reserve("tcp", "127.0.0.1", base)
    try:
        assert not ports.port_is_free("tcp", "127.0.0.1", base)
        with pytest.raises(Conflict, match=f"Bind for 127.0.0.1:{base} failed"):
            ports.reserve("tcp", "127.0.0.1", base)
    finally:
        s.close()


def test_network_settings_ports():
    pub = [Published(80, "tcp", "", 32768), Published(80, "tcp", "127.0.0.1", 8080)]
    assert ports.network_settings_ports(["80/tcp", "443"], pub) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"},
                   {"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "443/tcp": None,
    }
    assert ports.network_settings_ports([], pub[:1], ipv6=True)["80/tcp"][1]["HostIp"] == "::"
