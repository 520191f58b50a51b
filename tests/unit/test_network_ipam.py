"""ipam.py: subnets, pools, gateways and address allocation (pure logic)."""

import ipaddress

import pytest

from dockyard.errors import Conflict, InvalidArgument
from dockyard.network import ipam

N = ipaddress.ip_network
A = ipaddress.ip_address


def test_default_bridge_does_not_collide_with_docker0():
    assert not ipam.overlaps(N(ipam.DEFAULT_BRIDGE_SUBNET), N(ipam.DOCKER0_SUBNET))
    for pool in ipam.parse_pools(ipam.DEFAULT_ADDRESS_POOLS):
        assert not ipam.overlaps(pool.base, N(ipam.DOCKER0_SUBNET))
        assert not ipam.overlaps(pool.base, N(ipam.DEFAULT_BRIDGE_SUBNET))


@pytest.mark.parametrize("text", ["", "10.0.0.0", "10.0.0.0/33", "foo/24", "10.0.0.300/24",
                                  "fd00::/129", "/24"])
def test_parse_subnet_bad(text):
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        ipam.parse_subnet(text)


def test_parse_subnet_host_bits():
    with pytest.raises(InvalidArgument, match="it should be 10.1.0.0/16"):
        ipam.parse_subnet("10.1.2.3/16")


def test_parse_subnet_ok():
    assert ipam.parse_subnet(" 10.1.0.0/16 ") == N("10.1.0.0/16")
    assert ipam.parse_subnet("fd00:1::/64") == N("fd00:1::/64")


@pytest.mark.parametrize("pools", [[{"base": "10.0.0.0/16"}], [{"base": "10.0.0.0/16", "size": 8}],
                                   [{"base": "10.0.0.0/16", "size": 33}], ["x"],
                                   [{"base": "10.0.0.0/16", "size": "big"}]])
def test_parse_pools_bad(pools):
    with pytest.raises(InvalidArgument):
        ipam.parse_pools(pools)


def test_validate_config_gateway_default_and_given():
    cfg = ipam.validate_config("10.5.0.0/24")
    assert cfg.gateway == A("10.5.0.1")
    assert ipam.validate_config("10.5.0.0/24", "10.5.0.254").gateway == A("10.5.0.254")
    assert ipam.validate_config("fd00:5::/64").gateway == A("fd00:5::1")
    assert cfg.to_docker() == {"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"}


@pytest.mark.parametrize("args", [("10.5.0.0/24", "10.6.0.1"), ("10.5.0.0/24", "fd00::1"),
                                  ("10.5.0.0/24", "nope"), ("10.5.0.0/24", None, "10.6.0.0/25"),
                                  ("10.5.0.0/24", None, "10.5.0.0/23"),
                                  ("10.5.0.0/24", None, "10.5.0.128"),
                                  ("10.5.0.0/24", None, None, {"h": "10.9.0.1"})])
def test_validate_config_bad(args):
    with pytest.raises(InvalidArgument):
        ipam.validate_config(*args)


def test_roundtrip_docker_doc():
    cfg = ipam.validate_config("10.5.0.0/24", "10.5.0.1", "10.5.0.128/25", {"r": "10.5.0.2"})
    doc = cfg.to_docker()
    assert doc["IPRange"] == "10.5.0.128/25"
    assert ipam.SubnetConfig.from_docker(doc) == cfg


def test_overlap_check():
    ipam.check_no_overlap(N("10.1.0.0/24"), [N("10.1.1.0/24"), N("fd00::/64")])
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        ipam.check_no_overlap(N("10.1.0.0/16"), [N("10.1.5.0/24")])
    with pytest.raises(Conflict):
        ipam.check_no_overlap(N("10.1.5.128/25"), [N("10.1.0.0/16")])


def test_next_subnet_from_pools():
    pools = ipam.parse_pools(ipam.DEFAULT_ADDRESS_POOLS)
    assert ipam.next_subnet(pools, []) == N("172.31.0.0/24")
    assert ipam.next_subnet(pools, [N("172.31.0.0/24")]) == N("172.31.1.0/24")
    # a bigger network in use is jumped over, a host route is avoided, the default route is not
    used = [N("172.31.0.0/20")]
    routes = [N("172.31.16.0/24"), N("0.0.0.0/0")]
    assert ipam.next_subnet(pools, used, routes) == N("172.31.17.0/24")
    # the first pool full: the second pool
    assert ipam.next_subnet(pools, [N("172.31.0.0/16")]) == N("10.213.0.0/24")
    # a host route that covers a whole pool
    assert ipam.next_subnet(pools, [], [N("172.16.0.0/12")]) == N("10.213.0.0/24")


def test_next_subnet_exhausted():
    pools = ipam.parse_pools([{"base": "10.9.0.0/23", "size": 24}])
    with pytest.raises(InvalidArgument, match="could not find an available, non-overlapping "
                                              "IPv4 address pool"):
        ipam.next_subnet(pools, [N("10.9.0.0/24"), N("10.9.1.0/24")])
    with pytest.raises(InvalidArgument, match="IPv6"):
        ipam.next_subnet(pools, [], version=6)


def test_next_subnet_ipv6_pool():
    pools = ipam.parse_pools([{"base": "fd00:dd::/48", "size": 64}])
    assert ipam.next_subnet(pools, [N("fd00:dd::/64")], version=6) == N("fd00:dd:0:1::/64")


def test_allocate_skips_network_gateway_broadcast():
    cfg = ipam.validate_config("10.5.0.0/30")
    assert ipam.allocate(cfg, []) == A("10.5.0.2")
    with pytest.raises(InvalidArgument, match="no available IPv4 addresses"):
        ipam.allocate(cfg, [A("10.5.0.2")])
    cfg = ipam.validate_config("10.5.0.0/24", "10.5.0.2")
    assert ipam.allocate(cfg, []) == A("10.5.0.1")
    assert ipam.allocate(cfg, [A("10.5.0.1")]) == A("10.5.0.3")


def test_allocate_in_range_and_aux():
    cfg = ipam.validate_config("10.5.0.0/24", None, "10.5.0.128/25", {"x": "10.5.0.128"})
    assert ipam.allocate(cfg, []) == A("10.5.0.129")
    full = [A(f"10.5.0.{i}") for i in range(129, 255)]
    with pytest.raises(InvalidArgument):
        ipam.allocate(cfg, full)


def test_allocate_ipv6():
    cfg = ipam.validate_config("fd00:5::/64")
    assert ipam.allocate(cfg, []) == A("fd00:5::2")
    assert ipam.allocate(cfg, [A("fd00:5::2"), A("10.0.0.1")]) == A("fd00:5::3")


def test_validate_static():
    cfg = ipam.validate_config("10.5.0.0/24", None, "10.5.0.0/25")
    assert ipam.validate_static(cfg, "10.5.0.7", []) == A("10.5.0.7")
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.validate_static(cfg, "10.5.0.7", [A("10.5.0.7")])
    with pytest.raises(Conflict):
        ipam.validate_static(cfg, "10.5.0.1", [])  # the gateway
    with pytest.raises(InvalidArgument, match="no configured subnet or ip-range"):
        ipam.validate_static(cfg, "10.5.0.200", [])
    with pytest.raises(InvalidArgument):
        ipam.validate_static(cfg, "10.6.0.2", [])
    with pytest.raises(InvalidArgument):
        ipam.validate_static(cfg, "fd00::2", [])
    with pytest.raises(InvalidArgument):
        ipam.validate_static(cfg, "banana", [])


def test_mac():
    assert ipam.mac_for(A("172.31.0.2")) == "02:42:ac:1f:00:02"
    assert ipam.mac_for(None, bytes.fromhex("deadbeef")) == "02:42:de:ad:be:ef"
    assert ipam.prefixed(A("10.0.0.2"), N("10.0.0.0/24")) == "10.0.0.2/24"
