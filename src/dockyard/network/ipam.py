"""IP address management: pure logic, no I/O.

Subnets, gateways and ip-ranges are parsed and checked here; new subnets are
carved from address pools, and addresses are picked from a subnet given the
set already in use. The store (store.py) calls these functions inside one
SQLite transaction, so the "in use" sets it passes are authoritative.

Address choices. Docker's docker0 is 172.17.0.0/16 and its default pools are
172.17-31.0.0/16 then 192.168.0.0/16 by /20. To run next to Docker on one
machine without colliding with docker0, Dockyard's default `bridge` network
(on `dockyard0`) is 172.30.0.0/16, and user-defined networks are carved by
/24 from 172.31.0.0/16 and then 10.213.0.0/16 (daemon.json's
default-address-pools overrides them, in Docker's format). Docker itself skips
pools that overlap a route of the host, so while our bridges are up it will
not pick our subnets, and we do the same with its networks (`host_routes`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockyard.errors import Conflict, InvalidArgument

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_BRIDGE_SUBNET = "172.30.0.0/16"
DEFAULT_ADDRESS_POOLS: list[dict] = [
    {"base": "172.31.0.0/16", "size": 24},
    {"base": "10.213.0.0/16", "size": 24},
]
DOCKER0_SUBNET = "172.17.0.0/16"


@dataclass(frozen=True)
class Pool:
    """One default-address-pools entry: carve networks of /`size` out of `base`."""

    base: Network
    size: int


@dataclass
class SubnetConfig:
    """One IPAM.Config entry of a network, validated."""

    subnet: Network
    gateway: Address
    ip_range: Network | None = None
    aux_addresses: dict[str, Address] = field(default_factory=dict)

    def to_docker(self) -> dict:
        doc: dict = {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}
        if self.ip_range is not None:
            doc["IPRange"] = str(self.ip_range)
        if self.aux_addresses:
            doc["AuxiliaryAddresses"] = {k: str(v) for k, v in self.aux_addresses.items()}
        return doc

    @classmethod
    def from_docker(cls, doc: dict) -> SubnetConfig:
        return validate_config(doc.get("Subnet", ""), doc.get("Gateway") or None,
                               doc.get("IPRange") or None, doc.get("AuxiliaryAddresses") or {})


def family(net: Network | Address) -> str:
    return "IPv4" if net.version == 4 else "IPv6"


def parse_subnet(text: str) -> Network:
    """A CIDR subnet; host bits must be zero (docker: "it should be 10.1.0.0/16")."""
    text = (text or "").strip()
    if "/" not in text:
        raise InvalidArgument(f"invalid subnet {text!r}: it should be in CIDR format")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid subnet {text!r}") from None
        raise InvalidArgument(f"invalid subnet {text} : it should be {net}") from None


def parse_address(text: str, what: str = "address") -> Address:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}") from None


def parse_pools(pools: Iterable[dict]) -> list[Pool]:
    """Docker's default-address-pools: [{"base": "172.30.0.0/16", "size": 24}, ...]."""
    out: list[Pool] = []
    for entry in pools:
        if not isinstance(entry, dict) or "base" not in entry or "size" not in entry:
            raise InvalidArgument(f"invalid address pool {entry!r}: needs base and size")
        base = parse_subnet(str(entry["base"]))
        try:
            size = int(entry["size"])
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid address pool size {entry['size']!r}") from None
        if size < base.prefixlen or size > base.max_prefixlen:
            raise InvalidArgument(
                f"invalid pools size: {size} (must be between {base.prefixlen} and "
                f"{base.max_prefixlen} for {base})")
        out.append(Pool(base, size))
    return out


def first_host(subnet: Network) -> Address:
    """The gateway docker picks: the first address after the network address."""
    if subnet.num_addresses <= 2 and subnet.version == 4:
        return subnet.network_address
    return subnet.network_address + 1


def validate_config(subnet: str, gateway: str | None = None, ip_range: str | None = None,
                    aux_addresses: dict[str, str] | None = None) -> SubnetConfig:
    """Check one --subnet/--gateway/--ip-range/--aux-address set; fill in the gateway."""
    net = parse_subnet(subnet)
    rng = None
    if ip_range:
        rng = parse_subnet(ip_range)
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidArgument(f"invalid ip-range {ip_range}: it must be within subnet {net}")
    if gateway:
        gw = parse_address(gateway, "gateway")
        if gw.version != net.version or gw not in net:
            raise InvalidArgument(f"invalid gateway {gateway}: it must be within subnet {net}")
    else:
        gw = first_host(net)
    aux: dict[str, Address] = {}
    for name, value in (aux_addresses or {}).items():
        addr = parse_address(value, "auxiliary address")
        if addr.version != net.version or addr not in net:
            raise InvalidArgument(f"invalid auxiliary address {name}={value}: "
                                  f"it must be within subnet {net}")
        aux[name] = addr
    return SubnetConfig(net, gw, rng, aux)


def overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


def check_no_overlap(subnet: Network, in_use: Iterable[Network]) -> None:
    """Refuse a requested subnet that overlaps one already used by another network."""
    for other in in_use:
        if overlaps(subnet, other):
            raise Conflict("Pool overlaps with other one on this address space")


def next_subnet(pools: Iterable[Pool], in_use: Iterable[Network],
                host_routes: Iterable[Network] = (), version: int = 4) -> Network:
    """The first /size subnet of the pools that overlaps neither `in_use` nor a host route.

    Host routes that cover everything (a default route, /0) are ignored, as Docker does.
    """
    used = [n for n in in_use if n.version == version]
    routes = [r for r in host_routes if r.version == version and r.prefixlen > 0]
    taken = used + routes
    for pool in pools:
        if pool.base.version != version:
            continue
        candidate = pool.base.network_address
        step = 1 << (pool.base.max_prefixlen - pool.size)
        end = int(pool.base.broadcast_address)
        while int(candidate) <= end:
            sub = ipaddress.ip_network(f"{candidate}/{pool.size}")
            clash = next((t for t in taken if overlaps(sub, t)), None)
            if clash is None:
                return sub
            # jump past the clashing network when it is bigger than one step
            nxt = max(int(sub.network_address) + step,
                      (int(clash.broadcast_address) + 1 + step - 1) // step * step)
            if nxt > end:
                break
            candidate = ipaddress.ip_address(nxt) if version == 4 else ipaddress.IPv6Address(nxt)
    raise InvalidArgument(
        f"could not find an available, non-overlapping {'IPv4' if version == 4 else 'IPv6'} "
        "address pool among the defaults to assign to the network")


def reserved_addresses(cfg: SubnetConfig) -> set[Address]:
    """Addresses never handed to a container: network, broadcast, gateway, aux."""
    net = cfg.subnet
    res: set[Address] = {cfg.gateway, *cfg.aux_addresses.values()}
    if net.version == 4 and net.prefixlen < 31:
        res |= {net.network_address, net.broadcast_address}
    elif net.version == 6 and net.prefixlen < 127:
        res.add(net.network_address)  # the subnet-router anycast address
    return res


def allocate(cfg: SubnetConfig, in_use: Iterable[Address]) -> Address:
    """The lowest free address of the ip-range (or the subnet)."""
    taken = {a for a in in_use if a.version == cfg.subnet.version} | reserved_addresses(cfg)
    pool = cfg.ip_range or cfg.subnet
    start, end = int(pool.network_address), int(pool.broadcast_address)
    factory = ipaddress.IPv4Address if pool.version == 4 else ipaddress.IPv6Address
    # the free address is found after at most len(taken)+1 probes
    cur = start
    while cur <= end:
        addr = factory(cur)
        if addr not in taken:
            return addr
        cur += 1
    raise InvalidArgument(
        f"no available {family(pool)} addresses on this network's address pools: {pool}")


def validate_static(cfg: SubnetConfig, address: str, in_use: Iterable[Address]) -> Address:
    """Check a user-given --ip/--ip6 against the subnet, the range and what is taken."""
    addr = parse_address(address, "IP address")
    if addr.version != cfg.subnet.version:
        raise InvalidArgument(f"invalid address {address}: wrong address family")
    if addr not in (cfg.ip_range or cfg.subnet):
        raise InvalidArgument(
            f"no configured subnet or ip-range contain the IP address {address}")
    if addr in reserved_addresses(cfg) or addr in set(in_use):
        raise Conflict(f"Address already in use: {address}")
    return addr


def prefixed(addr: Address, subnet: Network) -> str:
    """'172.31.0.2/24': an address with its subnet's prefix length."""
    return f"{addr}/{subnet.prefixlen}"


def mac_for(addr: ipaddress.IPv4Address | None, seed: bytes = b"") -> str:
    """A locally administered MAC: 02:42 + the IPv4 address (docker's old scheme).

    Without an IPv4 address, bytes of `seed` (an endpoint id) are used instead.
    """
    tail = addr.packed if addr is not None else (seed + bytes(4))[:4]
    return ":".join(f"{b:02x}" for b in bytes([0x02, 0x42]) + tail)
