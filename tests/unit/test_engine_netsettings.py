"""engine/netsettings.py: docker's network checks and documents (no kernel, no root)."""

from types import SimpleNamespace

import pytest

from dockyard.engine import netsettings as ns
from dockyard.errors import Conflict, InvalidArgument
from dockyard.network.store import NetworkStore


@pytest.fixture
def store(tmp_path):
    s = NetworkStore(str(tmp_path))
    s.ensure_predefined()
    yield s
    s.close()


def test_network_mode():
    assert ns.network_mode({}) == "bridge"
    assert ns.network_mode({"NetworkMode": "default"}) == "bridge"
    assert ns.network_mode({"NetworkMode": "container:web"}) == "container:web"


def test_check_ports_normalizes_and_refuses_bad_specs():
    cfg = {"ExposedPorts": {"80": {}, "53/UDP": {}}}
    hc = {"PortBindings": {"80": [{"HostPort": "8080"}], "90/tcp": None}}
    assert ns.check_ports(cfg, hc) == ["80/tcp", "53/udp"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                  "90/tcp": [{"HostIp": "", "HostPort": ""}]}
    for bad in ({"80/tcp": [{"HostPort": "99999"}]}, {"80/xyz": []},
                {"80/tcp": [{"HostIp": "1.2.3", "HostPort": "1"}]}, {"0": []}):
        with pytest.raises(InvalidArgument):
            ns.check_ports({}, {"PortBindings": bad})


def test_endpoint_config(store):
    bridge, user = store.get("bridge"), store.create("u", ipam_config=[{"Subnet": "10.9.0.0/24"}])
    auto = store.create("auto")
    with pytest.raises(InvalidArgument, match="network-scoped alias"):
        ns.endpoint_config(bridge, {"Aliases": ["x"]}, {})
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        ns.endpoint_config(bridge, {"IPAMConfig": {"IPv4Address": "172.30.0.9"}}, {})
    with pytest.raises(InvalidArgument, match="user configured subnets"):
        ns.endpoint_config(auto, {"IPAMConfig": {"IPv4Address": "172.31.0.9"}}, {})
    with pytest.raises(InvalidArgument, match="no configured subnet"):
        ns.endpoint_config(user, {"IPAMConfig": {"IPv4Address": "10.8.0.9"}}, {})
    with pytest.raises(Conflict):  # the gateway
        ns.endpoint_config(user, {"IPAMConfig": {"IPv4Address": "10.9.0.1"}}, {})
    doc = ns.endpoint_config(user, {"Aliases": ["db"], "IPAMConfig": {"IPv4Address":
                                                                     "10.9.0.9"}},
                             {"MacAddress": "02:42:00:00:00:09"})
    assert doc["Aliases"] == ["db"] and doc["IPAMConfig"] == {"IPv4Address": "10.9.0.9"}
    assert doc["NetworkID"] == user.id and doc["IPAddress"] == "" and doc["EndpointID"] == ""
    assert doc["MacAddress"] == "02:42:00:00:00:09"


def test_settings_doc_mirrors_the_default_bridge():
    ep = {**ns.blank_endpoint({}, "n1"), "IPAddress": "172.30.0.2", "IPPrefixLen": 16,
          "Gateway": "172.30.0.1", "MacAddress": "02:42:ac:1e:00:02", "EndpointID": "e"}
    doc = ns.settings_doc({"bridge": ep}, {"80/tcp": None}, "/run/x", "s")
    assert doc["IPAddress"] == "172.30.0.2" and doc["Gateway"] == "172.30.0.1"
    assert doc["MacAddress"] == "02:42:ac:1e:00:02" and doc["Ports"] == {"80/tcp": None}
    assert doc["SandboxKey"] == "/run/x"
    assert ns.settings_doc({"mynet": ep})["IPAddress"] == ""


def test_hosts_file_and_extra_hosts():
    c = SimpleNamespace(id="ab" * 32, config={"Hostname": "web", "Domainname": "example"},
                        host_config={"ExtraHosts": ["db:10.0.0.5", "gw:host-gateway",
                                                    "v6=[::1]"]})
    text = ns.hosts_file(c, ["172.30.0.2"], "172.30.0.1")
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "10.0.0.5\tdb\n" in text and "172.30.0.1\tgw\n" in text and "::1\tv6\n" in text
    assert text.endswith("172.30.0.2\tweb.example web\n")
    for bad in (["nocolon"], ["x:notanip"], [":1.2.3.4"]):
        with pytest.raises(InvalidArgument):
            ns.extra_hosts(bad)
