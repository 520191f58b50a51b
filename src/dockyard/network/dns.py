"""The embedded DNS server: docker's 127.0.0.11 inside each container.

Containers on user-defined networks get `nameserver 127.0.0.11` in their
resolv.conf. For every such container the daemon opens a UDP and a TCP
socket bound to 127.0.0.11:53 *inside the container's network namespace*
(made by a thread that joined it, see netns.run_in; a socket stays in the
namespace it was made in) and serves them from its own asyncio loop, so no
process per container and no iptables redirection are needed.

Names (container names, aliases, compose services) are answered through the
`lookup(container_key, name, qtype)` callback the engine provides, case-
insensitively, with or without a trailing dot or the container's search
domain; several addresses come shuffled in each answer; TTL 600 as docker.
PTR queries for container addresses go to `reverse(container_key, ip)`.
Everything else is forwarded, from the daemon's (host) namespace, to the
upstream resolvers: the host's resolv.conf by default (loopback resolvers
work too, since forwarding happens in the host namespace), injectable so
tests never send traffic off the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from dockyard.network import netns

log = logging.getLogger(__name__)

DNS_ADDRESS = "127.0.0.11"
TTL = 600  # docker's embedded resolver answers with this TTL
GOOGLE_DNS = ["8.8.8.8", "8.8.4.4"]
GOOGLE_DNS6 = ["2001:4860:4860::8888", "2001:4860:4860::8844"]
UPSTREAM_TIMEOUT = 4.0

Lookup = Callable[[str, str, str], list[str]]
Reverse = Callable[[str, str], list[str]]


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf text."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            try:
                servers.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return servers, search, options


def host_upstreams(path: str = "/etc/resolv.conf", allow_loopback: bool = True) -> list[str]:
    """The resolvers to forward to. Without usable ones, docker's fallback (Google's).

    `allow_loopback=False` is for resolv.conf files written *into* containers
    (the default bridge), where a host loopback resolver is unreachable.
    """
    try:
        with open(path) as f:
            servers, _, _ = parse_resolv_conf(f.read())
    except OSError:
        servers = []
    if not allow_loopback:
        servers = [s for s in servers if not ipaddress.ip_address(s).is_loopback]
    return servers or list(GOOGLE_DNS)


def container_resolv_conf(host_text: str, embedded: bool, dns_servers: list[str] | None = None,
                          dns_search: list[str] | None = None,
                          dns_options: list[str] | None = None) -> str:
    """The /etc/resolv.conf of a container, as docker writes it.

    Embedded (user-defined networks): nameserver 127.0.0.11, with the
    host's (or --dns) servers as the `ExtServers` the server forwards to.
    Otherwise the host's resolvers without loopback ones (or Google's).
    """
    servers, search, options = parse_resolv_conf(host_text)
    ext = dns_servers or servers
    search = dns_search if dns_search is not None else search
    options = dns_options if dns_options is not None else options
    lines = []
    if embedded:
        lines.append(f"nameserver {DNS_ADDRESS}")
    else:
        usable = [s for s in ext if not ipaddress.ip_address(s).is_loopback]
        lines += [f"nameserver {s}" for s in usable or GOOGLE_DNS]
    if search:
        lines.append("search " + " ".join(search))
    if embedded:
        options = [o for o in options if not o.startswith("ndots:")] + ["ndots:0"]
    if options:
        lines.append("options " + " ".join(options))
    if embedded:
        lines += ["", "# Based on host file: '/etc/resolv.conf' (internal resolver)",
                  f"# ExtServers: [{' '.join(ext)}]"]
    return "\n".join(lines) + "\n"


@dataclass
class _Listener:
    key: str
    search: list[str]
    forward: bool
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.base_events.Server | None = None
    socks: list[socket.socket] = field(default_factory=list)
    starting: asyncio.Task | None = None  # serve_threadsafe's start, until it is done


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, listener: _Listener):
        self.server = server
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple) -> None:
        reply = await self.server.handle(self.listener, data, tcp=False)
        if reply and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DNSServer:
    """One server object per daemon; one listener per container namespace."""

    def __init__(self, lookup: Lookup, reverse: Reverse | None = None,
                 upstreams: list[str] | list[tuple[str, int]] | None = None,
                 address: str = DNS_ADDRESS, port: int = 53, ttl: int = TTL,
                 upstream_timeout: float = UPSTREAM_TIMEOUT):
        self.lookup = lookup
        self.reverse = reverse
        raw = upstreams if upstreams is not None else host_upstreams()
        self.upstreams: list[tuple[str, int]] = [u if isinstance(u, tuple) else (u, 53)
                                                 for u in raw]
        self.address = address
        self.port = port
        self.ttl = ttl
        self.upstream_timeout = upstream_timeout
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- sockets in namespaces

    def _make_sockets(self) -> list[socket.socket]:
        """Runs in a thread inside the container's namespace: lo up, bind both sockets."""
        from dockyard.network.rtnl import LOOPBACK_IFINDEX, Rtnl

        with Rtnl() as rt:
            rt.link_up(LOOPBACK_IFINDEX)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for s in (udp, tcp):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.address, self.port))
                s.setblocking(False)
            tcp.listen(64)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        return [udp, tcp]

    async def listen_in(self, netns_path: str, key: str, search: list[str] | None = None,
                        forward: bool = True) -> None:
        """Serve 127.0.0.11:53 (UDP and TCP) inside the namespace at `netns_path`.

        `key` identifies the container to the lookup callbacks; `forward=False`
        answers SERVFAIL instead of forwarding unknown names (internal-only).
        """
        socks = await asyncio.to_thread(self.sockets_in, netns_path)
        await self.serve(netns_path, socks, key, search, forward)

    def sockets_in(self, netns_path: str) -> list[socket.socket]:
        """The UDP and TCP sockets bound to 127.0.0.11:53 inside the namespace (blocking:
        call it from a worker thread, then `serve` them on the loop). A caller that is
        itself a worker must not use listen_in: its to_thread may wait for that worker."""
        return netns.run_in(netns_path, self._make_sockets)

    async def serve(self, netns_path: str, socks: list[socket.socket], key: str,
                    search: list[str] | None = None, forward: bool = True) -> None:
        """Serve sockets made by `sockets_in` (they are closed on failure)."""
        if netns_path in self._listeners:
            await self.close_in(netns_path)
        listener = _Listener(key, [s.strip(".").lower() for s in search or []], forward,
                             socks=socks)
        loop = asyncio.get_running_loop()
        try:
            listener.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDP(self, listener), sock=socks[0])
            listener.tcp = await asyncio.start_server(
                lambda r, w: self._serve_tcp(listener, r, w), sock=socks[1])
        except BaseException:
            self._close_listener(listener)
            raise
        self._listeners[netns_path] = listener

    def serve_threadsafe(self, loop: asyncio.AbstractEventLoop, netns_path: str,
                         socks: list[socket.socket], key: str,
                         search: list[str] | None = None, forward: bool = True) -> None:
        """`serve` from a thread other than the loop's, without waiting for the loop (a
        busy daemon's loop may take a while): the listener counts as serving at once
        (`serving`, `close_in`), and the loop starts answering soon; the sockets are
        bound already, so queries sent meanwhile wait in their buffers."""
        listener = _Listener(key, [s.strip(".").lower() for s in search or []], forward,
                             socks=socks)
        old = self._listeners.get(netns_path)
        self._listeners[netns_path] = listener
        fut = asyncio.run_coroutine_threadsafe(self._start(netns_path, listener, old), loop)
        fut.add_done_callback(_log_failure)

    async def _start(self, netns_path: str, listener: _Listener, old: _Listener | None) -> None:
        if old is not None:
            self._close_listener(old)
        loop = asyncio.get_running_loop()
        listener.starting = asyncio.current_task()
        try:
            if self._listeners.get(netns_path) is listener:  # else closed before it began
                listener.udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UDP(self, listener), sock=listener.socks[0])
            if self._listeners.get(netns_path) is listener:
                listener.tcp = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(listener, r, w), sock=listener.socks[1])
        except BaseException:
            if self._listeners.get(netns_path) is listener:
                del self._listeners[netns_path]
            raise
        finally:
            if self._listeners.get(netns_path) is not listener:  # closed, failed, replaced
                self._close_listener(listener)

    def _close_listener(self, listener: _Listener) -> None:
        if listener.udp is not None:
            listener.udp.close()
        if listener.tcp is not None:
            listener.tcp.close()
        for s in listener.socks:
            s.close()

    async def close_in(self, netns_path: str) -> None:
        """Stop serving a namespace (container stop); nothing if not served."""
        listener = self._listeners.pop(netns_path, None)
        if listener is None:
            return
        starting = listener.starting
        if starting is not None and not starting.done() \
                and starting is not asyncio.current_task():
            await asyncio.wait([starting])  # never close sockets a transport is taking over
        self._close_listener(listener)
        if listener.tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.tcp.wait_closed(), 2)

    async def close(self) -> None:
        for path in list(self._listeners):
            await self.close_in(path)
        for task in list(self._tasks):
            task.cancel()

    def serving(self) -> list[str]:
        return list(self._listeners)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, listener: _Listener, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 10)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]),
                                              10)
                reply = await self.handle(listener, data, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # -- answering

    def _candidates(self, listener: _Listener, qname: str) -> list[str]:
        name = qname.rstrip(".").lower()
        out = [name]
        for domain in listener.search:
            if domain and name.endswith("." + domain):
                out.append(name[: -len(domain) - 1])
        return out

    def _local(self, listener: _Listener, query: dns.message.Message
               ) -> dns.message.Message | None:
        """An answer from the engine's records, or None to forward."""
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN:
            return None
        qtype = dns.rdatatype.to_text(q.rdtype)
        text = q.name.to_text()
        if qtype == "PTR" and self.reverse is not None:
            try:
                ip = dns.reversename.to_address(q.name)
            except (dns.exception.SyntaxError, ValueError):
                return None
            names = self.reverse(listener.key, ip)
            if not names:
                return None
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.RA
            rrset = dns.rrset.from_text_list(q.name, self.ttl, "IN", "PTR",
                                             [n.rstrip(".") + "." for n in names])
            reply.answer.append(rrset)
            return reply
        if qtype not in ("A", "AAAA"):
            return None
        for name in self._candidates(listener, text):
            addrs = self.lookup(listener.key, name, qtype)
            other = [] if addrs else self.lookup(listener.key, name,
                                                 "AAAA" if qtype == "A" else "A")
            if not addrs and not other:
                continue
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.RA
            if addrs:
                # to_wire() shuffles an rrset's records: several addresses come in a
                # different order from one answer to the next, as docker's do
                reply.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", qtype,
                                                             addrs))
            return reply  # the name exists: no AAAA (or A) is NOERROR without answers
        return None

    async def handle(self, listener: _Listener, data: bytes, tcp: bool) -> bytes | None:
        """One query in wire format -> the reply in wire format (None: drop it)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            if len(data) >= 12:  # header readable: FORMERR like a real server
                flags = struct.unpack("!H", data[2:4])[0]
                if not flags & 0x8000:
                    return data[:2] + struct.pack("!HHHHH", 0x8001, 0, 0, 0, 0)
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            if query.flags & dns.flags.QR:
                return None
            return self._error(query, dns.rcode.FORMERR)
        try:
            reply = self._local(listener, query)
        except Exception:  # a failing callback must not kill the server
            log.exception("dns lookup failed")
            return self._error(query, dns.rcode.SERVFAIL)
        if reply is not None:
            try:
                return reply.to_wire(max_size=65535 if tcp else _udp_size(query))
            except dns.exception.TooBig:  # too many addresses for UDP: retry over TCP
                reply.answer = []
                reply.flags |= dns.flags.TC
                return reply.to_wire()
        if not listener.forward or not self.upstreams:
            return self._error(query, dns.rcode.SERVFAIL)
        answer = await self._forward(data, tcp)
        return answer if answer is not None else self._error(query, dns.rcode.SERVFAIL)

    @staticmethod
    def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        reply.set_rcode(rcode)
        return reply.to_wire()

    async def _forward(self, data: bytes, tcp: bool) -> bytes | None:
        for host, port in self.upstreams:
            try:
                if tcp:
                    return await asyncio.wait_for(_tcp_exchange(host, port, data),
                                                  self.upstream_timeout)
                return await asyncio.wait_for(_udp_exchange(host, port, data),
                                              self.upstream_timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
        return None


def _udp_size(query: dns.message.Message) -> int:
    return max(512, query.payload) if query.edns >= 0 else 512


def _log_failure(fut) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("embedded DNS listener: %s", fut.exception())


async def _udp_exchange(host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, (host, port))
        await loop.sock_sendall(s, data)
        while True:
            reply = await loop.sock_recv(s, 65535)
            if reply[:2] == data[:2]:  # same id: ours
                return reply


async def _tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()
