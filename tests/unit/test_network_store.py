"""store.py: networks and endpoints in SQLite; allocation is race-free across threads."""

import ipaddress
import threading

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.network.store import Forbidden, NetworkStore


@pytest.fixture
def store(tmp_path):
    s = NetworkStore(str(tmp_path))
    s.ensure_predefined()
    yield s
    s.close()


def test_predefined(store, tmp_path):
    names = [n.name for n in store.list()]
    assert names == ["bridge", "host", "none"]
    bridge = store.get("bridge")
    assert bridge.configs[0].subnet == ipaddress.ip_network("172.30.0.0/16")
    assert bridge.bridge_name == "dockyard0"
    assert store.get("none").driver == "null" and store.get("host").configs == []
    store.ensure_predefined()  # idempotent
    assert len(store.list()) == 3
    assert (tmp_path / "network" / "network.db").exists()
    with pytest.raises(Forbidden, match="pre-defined network"):
        store.remove("bridge")


def test_create_inspect_and_lookup(store):
    net = store.create("web", labels={"a": "1"}, options={"x": "y"})
    doc = net.to_docker()
    assert len(net.id) == 64 and doc["Id"] == net.id
    assert doc["IPAM"]["Config"] == [{"Subnet": "172.31.0.0/24", "Gateway": "172.31.0.1"}]
    assert doc["Scope"] == "local" and doc["Driver"] == "bridge" and doc["Labels"] == {"a": "1"}
    assert "DockyardUserSubnets" not in doc and doc["Containers"] == {}
    assert net.bridge_name == f"br-{net.id[:12]}"
    assert store.get(net.id).name == "web"
    assert store.get("web").id == net.id
    assert store.get(net.id[:5]).id == net.id
    with pytest.raises(NotFound, match="network nope not found"):
        store.get("nope")
    with pytest.raises(Conflict, match="network with name web already exists"):
        store.create("web")
    assert store.create("web2").configs[0].subnet == ipaddress.ip_network("172.31.1.0/24")


def test_name_wins_over_prefix_and_ambiguity(store):
    a = store.create("n1", network_id="ab" + "0" * 62)
    b = store.create("n2", network_id="ab" + "1" * 62)
    c = store.create("ab", network_id="cd" + "0" * 62)
    assert store.get("ab").id == c.id
    assert store.get("ab0").id == a.id and store.get("ab1").id == b.id
    store.remove("ab")
    with pytest.raises(InvalidArgument, match="ambiguous"):
        store.get("ab")


def test_bad_create(store):
    with pytest.raises(Conflict, match="Pool overlaps"):
        store.create("x", ipam_config=[{"Subnet": "172.30.5.0/24"}])
    with pytest.raises(InvalidArgument):
        store.create("x", ipam_config=[{"Gateway": "10.0.0.1"}])
    with pytest.raises(InvalidArgument):
        store.create("bad name")
    with pytest.raises(NotFound, match="plugin"):
        store.create("x", driver="overlay2000")
    with pytest.raises(InvalidArgument):
        store.create("x", ipam_config=[{"Subnet": "fd00:1::/64"}])  # no --ipv6
    assert [n.name for n in store.list()] == ["bridge", "host", "none"]


def test_host_routes_are_avoided(store):
    net = store.create("r", host_routes=[ipaddress.ip_network("172.31.0.0/23")])
    assert net.configs[0].subnet == ipaddress.ip_network("172.31.2.0/24")


def test_ipv6(store):
    net = store.create("v6", enable_ipv6=True, ipam_config=[{"Subnet": "10.77.0.0/24"},
                                                            {"Subnet": "fd00:77::/64"}])
    ep = store.connect("v6", "c1", "one")
    assert ep.ipv4_cidr == "10.77.0.2/24" and ep.ipv6_cidr == "fd00:77::2/64"
    assert ep.ipv6_gateway == "fd00:77::1"
    ep2 = store.connect(net.id, "c2", "two", ipv6="fd00:77::99")
    assert ep2.ipv6 == "fd00:77::99"


def test_connect_disconnect_release(store):
    store.create("app", ipam_config=[{"Subnet": "10.50.0.0/24", "IPRange": "10.50.0.8/29"}])
    e1 = store.connect("app", "c1", "web", aliases=["www"])
    assert (e1.ipv4, e1.gateway, e1.ipv4_prefixlen) == ("10.50.0.8", "10.50.0.1", 24)
    assert e1.mac == "02:42:0a:32:00:08"
    e2 = store.connect("app", "c2", "db", ipv4="10.50.0.9")
    assert e2.ipv4 == "10.50.0.9"
    with pytest.raises(Conflict, match="Address already in use"):
        store.connect("app", "c3", "x", ipv4="10.50.0.9")
    with pytest.raises(Forbidden, match="already exists"):
        store.connect("app", "c1", "web")
    with pytest.raises(Forbidden, match="active endpoints"):
        store.remove("app")
    assert [e.container_id for e in store.resolve(store.get("app").id, "WWW.")] == ["c1"]
    assert [e.name for e in store.endpoints(container_id="c2")] == ["db"]
    assert store.disconnect("app", "c1").ipv4 == "10.50.0.8"
    assert store.disconnect("app", "c1") is None
    assert store.connect("app", "c4", "z").ipv4 == "10.50.0.8"  # released, reused
    store.disconnect("app", "c2")
    store.disconnect("app", "c4")
    store.remove("app")
    with pytest.raises(NotFound):
        store.get("app")


def test_static_ip_needs_user_subnet(store):
    store.create("auto")
    with pytest.raises(InvalidArgument, match="user configured subnets"):
        store.connect("auto", "c", "c", ipv4="172.31.0.5")
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        store.connect("bridge", "c", "c", ipv4="172.30.0.5")


def test_filters(store):
    store.create("front", labels={"tier": "web", "x": ""})
    store.create("back", labels={"tier": "db"})
    store.connect("back", "c1", "db")

    def names(**f):
        return sorted(n.name for n in store.list({k: v for k, v in f.items()}))

    assert names(driver=["bridge"]) == ["back", "bridge", "front"]
    assert names(name=["ro"]) == ["front"]
    assert names(name=["^b"]) == ["back", "bridge"]
    assert names(label=["tier"]) == ["back", "front"]
    assert names(label=["tier=db"]) == ["back"]
    assert names(label=["tier", "x"]) == ["front"]
    assert names(type=["builtin"]) == ["bridge", "host", "none"]
    assert names(type=["custom"]) == ["back", "front"]
    assert names(dangling=["true"]) == ["front"]
    assert names(dangling=["false"]) == ["back", "bridge", "host", "none"]
    assert names(scope=["local"]) == ["back", "bridge", "front", "host", "none"]
    assert names(scope=["swarm"]) == []
    assert names(id=[store.get("front").id[:10]]) == ["front"]
    for bad in ({"color": ["x"]}, {"type": ["weird"]}, {"dangling": ["maybe"]}):
        with pytest.raises(InvalidArgument):
            store.list(bad)


def test_concurrent_allocation_threads(tmp_path):
    store = NetworkStore(str(tmp_path))
    store.create("busy", ipam_config=[{"Subnet": "10.60.0.0/24"}])
    got: list[str] = []
    errors: list[Exception] = []

    def worker(i: int) -> None:
        s = NetworkStore(str(tmp_path))  # its own connections, like another process
        try:
            for j in range(5):
                got.append(s.connect("busy", f"c{i}-{j}", f"n{i}-{j}").ipv4)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 80 and len(set(got)) == 80
    # subnet carving is serialised too
    nets: list[str] = []

    def creator(i: int) -> None:
        s = NetworkStore(str(tmp_path))
        nets.append(str(s.create(f"par{i}").configs[0].subnet))
        s.close()

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(nets)) == 8
    store.close()


def test_create_from_api_and_docker_views(store):
    net = store.create_from_api({
        "Name": "api", "Driver": "bridge", "Internal": True, "Attachable": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.70.0.0/24",
                                                  "Gateway": "10.70.0.254"}]},
        "Options": {"com.docker.network.bridge.name": "dytapi0"}, "Labels": {"k": "v"}})
    doc = net.to_docker()
    assert doc["Internal"] is True and doc["Attachable"] is True and doc["EnableIPv6"] is False
    assert doc["IPAM"] == {"Driver": "default", "Options": {},
                           "Config": [{"Subnet": "10.70.0.0/24", "Gateway": "10.70.0.254"}]}
    assert net.bridge_name == "dytapi0" and net.internal
    ep = store.connect("api", "c" * 64, "web", aliases=["w"], ipv4="10.70.0.9")
    assert ep.to_network_containers() == {
        "Name": "web", "EndpointID": ep.endpoint_id, "MacAddress": "02:42:0a:46:00:09",
        "IPv4Address": "10.70.0.9/24", "IPv6Address": ""}
    settings = ep.to_endpoint_settings(["web", "w", "c" * 12])
    assert settings["IPAMConfig"] == {"IPv4Address": "10.70.0.9"}
    assert settings["IPAddress"] == "10.70.0.9" and settings["Gateway"] == "10.70.0.254"
    assert settings["IPPrefixLen"] == 24 and settings["Aliases"] == ["w"]
    assert settings["NetworkID"] == net.id and settings["DNSNames"][0] == "web"
    assert store.endpoints(net.id)[0].static == {"IPv4Address": "10.70.0.9"}
    assert store.by_address(net.id, "10.70.0.9").container_id == "c" * 64
    assert store.by_address(net.id, "10.70.0.10") is None
    assert store.by_address(net.id, "junk") is None
    dyn = store.connect("bridge", "d" * 64, "dyn")
    assert dyn.to_endpoint_settings()["IPAMConfig"] is None


@pytest.mark.parametrize("body,error", [
    ({}, InvalidArgument),
    ({"Name": ""}, InvalidArgument),
    ({"Name": "x", "Ingress": True}, Forbidden),
    ({"Name": "x", "IPAM": {"Driver": "custom"}}, NotFound),
    ({"Name": "x", "IPAM": {"Config": "10.0.0.0/8"}}, InvalidArgument),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.1/8"}]}}, InvalidArgument),
    ({"Name": "x", "Labels": {"a": 1}}, InvalidArgument),
    ({"Name": "x", "Driver": "host"}, Forbidden),
    ({"Name": "host"}, Conflict),
    ([], InvalidArgument),
])
def test_create_from_api_bad(store, body, error):
    with pytest.raises(error):
        store.create_from_api(body)
