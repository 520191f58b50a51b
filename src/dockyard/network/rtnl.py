"""A small synchronous rtnetlink client for the container start path.

pyroute2's IPRoute (0.9) runs an asyncio event loop per thread and per call:
opening one costs ~0.3-0.6 ms and every request ~0.2-0.7 ms of Python, which
made a veth's dozen round trips the bulk of a container's network setup. Here
the messages are still pyroute2's (ifinfmsg, ifaddrmsg, rtmsg: encoding and
NetlinkError), sent on a plain NETLINK_ROUTE socket and acknowledged in
~40 us. A socket belongs to the network namespace it was *made* in, whichever
thread uses it afterwards: `Rtnl.socket_in` makes one inside a container's
namespace (netns.run_in) that the caller then drives from its own thread.

Not thread-safe: one Rtnl per user (a socket costs a few microseconds).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Self

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

IFF_UP = 0x1
LOOPBACK_IFINDEX = 1  # the kernel gives `lo` this index in every namespace
_HDR = struct.Struct("=LHHLL")  # nlmsghdr
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_NETLINK_EXT_ACK = 11
_SOL_NETLINK = 270


class Rtnl:
    """One NETLINK_ROUTE socket in the namespace it was created in."""

    def __init__(self, sock: socket.socket | None = None):
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 0)  # NETLINK_ROUTE
        self.sock = sock
        self.sock.bind((0, 0))
        self.seq = 0

    @classmethod
    def socket_in(cls, netns_path: str) -> Rtnl:
        """An Rtnl for the network namespace at `netns_path` (usable from any thread)."""
        from dockyard.network import netns

        return cls(netns.socket_in(netns_path, socket.AF_NETLINK,
                                   socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the exchange

    def _send(self, msg, msg_type: int, flags: int) -> int:
        self.seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        return self.seq

    def _replies(self, seq: int):
        """The messages answering `seq`, as (type, bytes); NetlinkError on an error."""
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    raise NetlinkError(errno.EPROTO, f"bad netlink message length {length}")
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        code = struct.unpack_from("=i", data, off + _HDR.size)[0]
                        if code:
                            raise NetlinkError(-code)
                        return
                    if mtype == NLMSG_DONE:
                        return
                    yield mtype, data[off:off + length]
                off += (length + 3) & ~3

    def request(self, msg, msg_type: int, flags: int = 0) -> None:
        """Send a change request and wait for its acknowledgement."""
        seq = self._send(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
        for _ in self._replies(seq):
            pass

    # -- links

    def link_index(self, ifname: str) -> int | None:
        """The index of `ifname`, or None."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
        try:
            seq = self._send(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK)
            index = None
            for mtype, data in self._replies(seq):
                if mtype == RTM_NEWLINK:
                    index = struct.unpack_from("=i", data, _HDR.size + 4)[0]
            return index
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.EINVAL):  # EINVAL: a name it refuses
                return None
            raise

    def link_up(self, index: int = 0, ifname: str = "") -> None:
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        if not index:
            msg["attrs"] = [("IFLA_IFNAME", ifname)]
        self.request(msg, RTM_NEWLINK)

    def link_del(self, ifname: str) -> bool:
        """Delete a link by name; False if there was none."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
        try:
            self.request(msg, RTM_DELLINK)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        return True

    def add_veth(self, host: str, peer: str, netns_fd: int, master: int, mtu: int = 1500,
                 peer_mac: str | None = None) -> None:
        """A veth pair: `host` enslaved to `master` and up, `peer` created directly in the
        namespace of `netns_fd` (down: the kernel links the pair after configuring the
        peer, so it cannot come up in this request). EEXIST if `host` exists."""
        peer_attrs: list = [("IFLA_IFNAME", peer), ("IFLA_MTU", mtu),
                            ("IFLA_NET_NS_FD", netns_fd)]
        if peer_mac:
            peer_attrs.append(("IFLA_ADDRESS", peer_mac))
        msg = ifinfmsg()
        msg["flags"], msg["change"] = IFF_UP, IFF_UP
        msg["attrs"] = [
            ("IFLA_IFNAME", host), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [
                    ("VETH_INFO_PEER", {"attrs": peer_attrs})]})]})]
        self.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)

    def set_hairpin(self, ifname: str, on: bool = True) -> None:
        """The bridge port `ifname` sends frames back where they came from (hairpin)."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname), ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_SLAVE_KIND", "bridge"),
            ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", int(on))]})]})]
        self.request(msg, RTM_NEWLINK)

    # -- addresses and routes

    def add_address(self, index: int, cidr: str, flags: int = 0) -> None:
        iface = ipaddress.ip_interface(cidr)
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        msg["prefixlen"], msg["index"], msg["flags"] = iface.network.prefixlen, index, flags
        attrs = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
        if iface.version == 4:
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
        if flags > 0xFF:
            attrs.append(("IFA_FLAGS", flags))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: str, oif: int) -> None:
        version = ipaddress.ip_address(gateway).version
        msg = rtmsg()
        msg["family"] = socket.AF_INET if version == 4 else socket.AF_INET6
        msg["table"], msg["proto"] = _RT_TABLE_MAIN, _RTPROT_BOOT
        msg["scope"], msg["type"] = _RT_SCOPE_UNIVERSE, _RTN_UNICAST
        msg["attrs"] = [("RTA_TABLE", _RT_TABLE_MAIN), ("RTA_GATEWAY", gateway),
                        ("RTA_OIF", oif)]
        self.request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)
