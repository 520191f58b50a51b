"""dns.py without namespaces: resolv.conf handling and the query logic (handle()).

The upstream is a tiny server on 127.0.0.1: no traffic leaves the machine.
"""

import asyncio
import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from dockyard.network import dns as edns
from dockyard.network.dns import DNSServer, _Listener

HOST_RESOLV = """# generated
nameserver 127.0.0.53
nameserver 10.0.0.2 # office
search corp.example lab.example
options edns0 ndots:2
"""


def test_parse_resolv_conf():
    servers, search, options = edns.parse_resolv_conf(HOST_RESOLV + "nameserver bogus\n"
                                                      "nameserver fe80::1%eth0\n")
    assert servers == ["127.0.0.53", "10.0.0.2", "fe80::1"]
    assert search == ["corp.example", "lab.example"]
    assert options == ["edns0", "ndots:2"]


def test_host_upstreams(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text("nameserver 127.0.0.53\n")
    assert edns.host_upstreams(str(p)) == ["127.0.0.53"]  # we forward from the host netns
    assert edns.host_upstreams(str(p), allow_loopback=False) == edns.GOOGLE_DNS
    assert edns.host_upstreams(str(tmp_path / "missing")) == edns.GOOGLE_DNS
    p.write_text(HOST_RESOLV)
    assert edns.host_upstreams(str(p), allow_loopback=False) == ["10.0.0.2"]


def test_container_resolv_conf():
    embedded = edns.container_resolv_conf(HOST_RESOLV, embedded=True)
    lines = embedded.splitlines()
    assert lines[0] == "nameserver 127.0.0.11"
    assert "search corp.example lab.example" in lines
    assert "options edns0 ndots:0" in lines
    assert "# ExtServers: [127.0.0.53 10.0.0.2]" in lines
    plain = edns.container_resolv_conf(HOST_RESOLV, embedded=False)
    assert plain.splitlines()[0] == "nameserver 10.0.0.2" and "127.0.0.53" not in plain
    only_loop = edns.container_resolv_conf("nameserver 127.0.0.1\n", embedded=False)
    assert only_loop == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    custom = edns.container_resolv_conf(HOST_RESOLV, embedded=False, dns_servers=["1.1.1.1"],
                                        dns_search=[], dns_options=["rotate"])
    assert custom == "nameserver 1.1.1.1\noptions rotate\n"


class Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 5, "IN", "A", "198.51.100.9"))
        self.transport.sendto(r.to_wire(), addr)


async def _tcp_upstream(reader, writer):
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    q = dns.message.from_wire(await reader.readexactly(size))
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 5, "IN", "A", "198.51.100.10"))
    wire = r.to_wire()
    writer.write(struct.pack("!H", len(wire)) + wire)
    await writer.drain()
    writer.close()


def lookup(key, name, qtype):
    table = {("c1", "web", "A"): ["10.0.0.5"], ("c1", "v6only", "AAAA"): ["fd00::5"],
             ("c1", "many", "A"): [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(200)]}
    if name == "boom":
        raise RuntimeError("callback failure")
    return table.get((key, name, qtype), [])


def test_handle_local_forward_and_errors():
    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Upstream,
                                                           local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        tcp_server = await asyncio.start_server(_tcp_upstream, "127.0.0.1", port)
        server = DNSServer(lookup, lambda key, ip: ["web.net"] if ip == "10.0.0.5" else [],
                           upstreams=[("127.0.0.1", 1), ("127.0.0.1", port)],
                           upstream_timeout=1.0)
        listener = _Listener("c1", ["corp.example"], True)

        async def ask(name, rdtype="A", tcp=False, lst=listener):
            q = dns.message.make_query(name, rdtype)
            wire = await server.handle(lst, q.to_wire(), tcp)
            r = dns.message.from_wire(wire)
            assert r.id == q.id
            return r

        r = await ask("Web.")
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "10.0.0.5"
        assert r.answer[0].ttl == 600 and r.flags & dns.flags.AA == 0
        assert (await ask("web.corp.example")).answer[0][0].to_text() == "10.0.0.5"
        r = await ask("v6only")  # exists, no IPv4: empty NOERROR, not forwarded
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        assert (await ask("v6only", "AAAA")).answer[0][0].to_text() == "fd00::5"
        r = await ask("5.0.0.10.in-addr.arpa.", "PTR")
        assert r.answer[0][0].to_text() == "web.net."
        # forwarded (the first upstream is dead: the second answers), UDP and TCP
        assert (await ask("example.org")).answer[0][0].to_text() == "198.51.100.9"
        r = await ask("example.org", tcp=True)
        assert r.answer[0][0].to_text() == "198.51.100.10"
        assert (await ask("9.9.9.9.in-addr.arpa.", "PTR")).answer[0][0].to_text() == \
            "198.51.100.9"
        # too big for UDP: truncated, complete over TCP
        r = await ask("many")
        assert r.flags & dns.flags.TC and not r.answer
        assert len((await ask("many", tcp=True)).answer[0]) == 200
        # a failing callback: SERVFAIL, the server lives on
        assert (await ask("boom")).rcode() == dns.rcode.SERVFAIL
        # no forwarding for this container
        closed = _Listener("c1", [], False)
        assert (await ask("example.org", lst=closed)).rcode() == dns.rcode.SERVFAIL
        # garbage
        assert await server.handle(listener, b"\x01", False) is None
        bad = await server.handle(listener, b"\x12\x34" + b"\x00" * 10 + b"\xff\xff", False)
        assert bad[:2] == b"\x12\x34" and bad[3] & 0x0F == dns.rcode.FORMERR
        resp = dns.message.make_response(dns.message.make_query("x", "A")).to_wire()
        assert await server.handle(listener, resp, False) is None  # a response: dropped
        tcp_server.close()
        transport.close()

    asyncio.run(main())
