"""Published ports: docker's `-p`/`-P` syntax, the API's JSON, host port choice.

Parsing turns `-p [ip:][hostPort:]containerPort[/proto]` (with ranges) into
the Engine API's ExposedPorts / PortBindings; the daemon then resolves each
binding to a concrete host port (`allocate`), checking conflicts against what
we already publish and, for ephemeral ports, that nothing on the host has
bound the port. The kernel forwarding itself is nat.py's job.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.errors import Conflict, InvalidArgument

PROTOS = ("tcp", "udp", "sctp")
DEFAULT_EPHEMERAL = (49153, 60999)


@dataclass(frozen=True)
class Published:
    """One resolved mapping, ready for nat.PortMapping."""

    container_port: int
    proto: str
    host_ip: str  # "" = all addresses
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise InvalidArgument(f"invalid {what}: {text}")
    return int(text)


def parse_range(text: str, what: str = "port") -> tuple[int, int]:
    """'80' -> (80, 80); '8000-8002' -> (8000, 8002)."""
    lo, sep, hi = text.partition("-")
    start = _port(lo, what)
    end = _port(hi, what) if sep else start
    if end < start:
        raise InvalidArgument(f"invalid port range: {text}")
    return start, end


def split_port_proto(key: str) -> tuple[str, str]:
    """'80/udp' -> ('80', 'udp'); the protocol defaults to tcp."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return port, proto


def normalize_key(key: str) -> str:
    """An ExposedPorts/PortBindings key in docker's canonical 'PORT/proto' form."""
    port, proto = split_port_proto(str(key))
    return f"{_port(port, 'containerPort')}/{proto}"


def parse_publish(spec: str) -> list[tuple[str, dict]]:
    """One `-p` value -> [('80/tcp', {'HostIp': '', 'HostPort': '8080'}), ...]."""
    raw = spec.strip()
    if not raw:
        raise InvalidArgument("no port specified: <empty>")
    body, _, proto = raw.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    host_ip = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid IP address: {body}")
        host_ip, body = body[1:end], body[end + 2:]
    parts = body.split(":")
    if host_ip and len(parts) != 2:
        raise InvalidArgument(f"invalid port specification: {spec}")
    if len(parts) == 1:
        host_port, container = "", parts[0]
    elif len(parts) == 2:
        host_port, container = parts
    elif len(parts) == 3:
        host_ip, host_port, container = parts
    else:
        raise InvalidArgument(f"invalid port specification: {spec}")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {host_ip}") from None
    if not container:
        raise InvalidArgument(f"no port specified: {spec}")
    c_start, c_end = parse_range(container, "containerPort")
    out: list[tuple[str, dict]] = []
    if not host_port:
        return [(f"{p}/{proto}", {"HostIp": host_ip, "HostPort": ""})
                for p in range(c_start, c_end + 1)]
    h_start, h_end = parse_range(host_port, "hostPort")
    n_c, n_h = c_end - c_start + 1, h_end - h_start + 1
    if n_c == 1 and n_h >= 1:  # one container port, a host range to pick from
        value = str(h_start) if n_h == 1 else f"{h_start}-{h_end}"
        return [(f"{c_start}/{proto}", {"HostIp": host_ip, "HostPort": value})]
    if n_c != n_h:
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: "
                              f"{container} and {host_port}")
    for i in range(n_c):
        out.append((f"{c_start + i}/{proto}", {"HostIp": host_ip, "HostPort": str(h_start + i)}))
    return out


def parse_publish_list(specs: Iterable[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Every `-p` of a `run` -> (ExposedPorts, PortBindings) as the API sends them."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in specs:
        for key, binding in parse_publish(spec):
            exposed[key] = {}
            bindings.setdefault(key, []).append(binding)
    return exposed, bindings


def parse_expose(spec: str) -> list[str]:
    """`--expose 80`, `--expose 7000-7002/udp`, a Dockerfile EXPOSE word -> keys."""
    port, proto = split_port_proto(spec.strip())
    start, end = parse_range(port, "containerPort")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def publish_all(exposed: Iterable[str], bindings: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """`-P`: every exposed port without a binding gets an ephemeral one."""
    out = {normalize_key(k): list(v) for k, v in (bindings or {}).items()}
    for key in exposed:
        out.setdefault(normalize_key(key), [{"HostIp": "", "HostPort": ""}])
    return out


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral port range (docker uses it too), or docker's default."""
    try:
        with open(path) as f:
            lo, hi = (int(x) for x in f.read().split())
        if 0 < lo <= hi <= 65535:
            return lo, hi
    except (OSError, ValueError):
        pass
    return DEFAULT_EPHEMERAL


def _overlap(ip_a: str, ip_b: str) -> bool:
    wild = ("", "0.0.0.0", "::")
    return ip_a == ip_b or ip_a in wild or ip_b in wild


def port_is_free(proto: str, host_ip: str, port: int) -> bool:
    """True if we can bind host_ip:port for proto (nothing on the host holds it)."""
    family = socket.AF_INET6 if host_ip and ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as s:
            s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError:
        return False
    return True


def reserve(proto: str, host_ip: str, port: int) -> socket.socket:
    """Bind (not listen on) the host port, so no other program takes it while published."""
    family = socket.AF_INET6 if host_ip and ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(family, kind)
    try:
        s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError as exc:
        s.close()
        raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port} failed: {exc.strerror}") from exc
    return s


def _display(host_ip: str) -> str:
    return host_ip or "0.0.0.0"


class PortAllocator:
    """Chooses host ports; one per daemon, so ephemeral choices rotate like docker's."""

    def __init__(self, ephemeral: tuple[int, int] | None = None):
        self.range = ephemeral or ephemeral_range()
        self._next = self.range[0]
        self._lock = threading.Lock()

    def allocate(self, bindings: dict[str, list[dict]],
                 in_use: Iterable[tuple[str, str, int]] = ()) -> list[Published]:
        """Resolve PortBindings; `in_use` = (proto, host_ip, host_port) we already publish.

        Raises Conflict with docker's wording when a fixed port is taken.
        """
        taken = list(in_use)
        out: list[Published] = []
        with self._lock:
            for key, entries in (bindings or {}).items():
                port, proto = split_port_proto(key)
                cport = _port(port, "containerPort")
                for entry in entries or [{}]:
                    host_ip = (entry or {}).get("HostIp") or ""
                    if host_ip:
                        try:
                            host_ip = str(ipaddress.ip_address(host_ip))
                        except ValueError:
                            raise InvalidArgument(f"invalid IP address: {host_ip}") from None
                    spec = str((entry or {}).get("HostPort") or "")
                    hport = self._choose(proto, host_ip, spec, taken)
                    taken.append((proto, host_ip, hport))
                    out.append(Published(cport, proto, host_ip, hport))
        return out

    def _busy(self, proto: str, host_ip: str, port: int, taken: list) -> bool:
        return any(p == proto and hp == port and _overlap(ip, host_ip) for p, ip, hp in taken)

    def _choose(self, proto: str, host_ip: str, spec: str, taken: list) -> int:
        if spec and "-" not in spec:
            port = _port(spec, "hostPort")
            if self._busy(proto, host_ip, port, taken):
                raise Conflict(f"Bind for {_display(host_ip)}:{port} failed: "
                               "port is already allocated")
            return port
        if spec:  # a host range: the first free port in it
            lo, hi = parse_range(spec, "hostPort")
            for port in range(lo, hi + 1):
                if not self._busy(proto, host_ip, port, taken) and \
                        port_is_free(proto, host_ip, port):
                    return port
            raise Conflict(f"Bind for {_display(host_ip)}:{spec} failed: "
                           "port is already allocated")
        lo, hi = self.range
        count = hi - lo + 1
        start = self._next
        for port in itertools.islice(itertools.chain(range(start, hi + 1), range(lo, start)),
                                     count):
            if not self._busy(proto, host_ip, port, taken) and port_is_free(proto, host_ip, port):
                self._next = port + 1 if port < hi else lo
                return port
        raise Conflict(f"Bind for {_display(host_ip)}:0 failed: no ephemeral port available")


def network_settings_ports(exposed: Iterable[str], published: Iterable[Published],
                           ipv6: bool = False) -> dict[str, list[dict] | None]:
    """NetworkSettings.Ports as docker shows it: every exposed port, None if unpublished."""
    out: dict[str, list[dict] | None] = {normalize_key(k): None for k in exposed}
    for p in published:
        entries = out.get(p.key) or []
        ips = [p.host_ip] if p.host_ip else (["0.0.0.0", "::"] if ipv6 else ["0.0.0.0"])
        entries += [{"HostIp": ip, "HostPort": str(p.host_port)} for ip in ips]
        out[p.key] = entries
    return out


def summary_ports(ports_map: dict | None) -> list[dict]:
    """NetworkSettings.Ports -> `docker ps`'s Ports list (ContainerSummary.Ports)."""
    out: list[dict] = []
    for key, entries in (ports_map or {}).items():
        port, _, proto = key.partition("/")
        if not port.isdigit():
            continue
        if not entries:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for e in entries:
            out.append({"IP": e.get("HostIp") or "", "PrivatePort": int(port),
                        "PublicPort": int(e.get("HostPort") or 0), "Type": proto or "tcp"})
    return out
