"""Docker's shapes for container networking (pure, no kernel): NetworkMode, the create
request's endpoint and port checks, NetworkSettings documents, /etc/hosts text.

engine/networking.py does the wiring; this module is what docker accepts and shows.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.network import ipam, ports
from dockyard.network.store import NetworkRecord

HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n")
COMPOSE_SERVICE = "com.docker.compose.service"
ADDRESS_FIELDS = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                  "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}


def network_mode(hc: dict) -> str:
    """HostConfig.NetworkMode with docker's "default" spelled as what it is: bridge."""
    mode = hc.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def read_text(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def write_text(path: str, text: str) -> None:
    """In place: a running container's bind mount keeps seeing the same file."""
    with open(path, "w") as f:
        f.write(text)


def blank_endpoint(cfg: dict, network_id: str) -> dict:
    """A container's EndpointSettings while it is not running (docker keeps the config)."""
    return {"IPAMConfig": cfg.get("IPAMConfig") or None, "Links": cfg.get("Links") or None,
            "Aliases": cfg.get("Aliases") or None, "MacAddress": cfg.get("MacAddress") or "",
            "DriverOpts": cfg.get("DriverOpts") or None, "GwPriority": 0,
            "NetworkID": network_id, **ADDRESS_FIELDS, "DNSNames": None}


def settings_doc(networks: dict, ports_map: dict | None = None, sandbox_key: str = "",
                 sandbox_id: str = "") -> dict:
    """docker's NetworkSettings; the top-level address fields mirror the `bridge` network."""
    doc: dict[str, Any] = {
        "Bridge": "", "SandboxID": sandbox_id, "SandboxKey": sandbox_key,
        "Ports": ports_map or {}, "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, **ADDRESS_FIELDS, "MacAddress": "",
        "Networks": networks}
    main = networks.get("bridge")
    if main and main.get("IPAddress"):
        for key in list(ADDRESS_FIELDS) + ["MacAddress"]:
            doc[key] = main.get(key, doc[key])
    return doc


def endpoint_config(net: NetworkRecord, epc: dict, cfg: dict) -> dict:
    """One EndpointsConfig entry (create, connect) checked as docker does -> the stopped
    EndpointSettings to record."""
    if not isinstance(epc, dict):
        raise InvalidArgument("invalid EndpointSettings")
    ipam_cfg = epc.get("IPAMConfig") or {}
    aliases = list(epc.get("Aliases") or [])
    if net.builtin and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in "
                              "user defined networks")
    v4, v6 = ipam_cfg.get("IPv4Address") or "", ipam_cfg.get("IPv6Address") or ""
    if v4 or v6:
        if net.builtin or not net.user_subnets:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only" if net.builtin else
                                  "user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        for addr, version in ((v4, 4), (v6, 6)):
            if addr:
                sub = net.config(version)
                if sub is None:
                    raise InvalidArgument(f"invalid address {addr}: no IPv{version} subnet")
                ipam.validate_static(sub, addr, [])
    out = blank_endpoint({**epc, "Aliases": aliases or None,
                          "MacAddress": epc.get("MacAddress") or cfg.get("MacAddress")
                          or ""}, net.id)
    if ipam_cfg:
        out["IPAMConfig"] = {k: v for k, v in ipam_cfg.items() if v} or None
    return out


def check_ports(cfg: dict, hc: dict) -> list[str]:
    """ExposedPorts and PortBindings in docker's canonical keys; bad specs are a 400."""
    exposed = [ports.normalize_key(k) for k in (cfg.get("ExposedPorts") or {})]
    if exposed:
        cfg["ExposedPorts"] = {k: {} for k in exposed}
    bindings = hc.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise InvalidArgument("invalid PortBindings")
    out: dict[str, list[dict]] = {}
    for key, entries in bindings.items():
        checked = []
        for e in entries or [{}]:
            e = e or {}
            host_ip, host_port = e.get("HostIp") or "", str(e.get("HostPort") or "")
            if host_ip:
                try:
                    ipaddress.ip_address(host_ip)
                except ValueError:
                    raise InvalidArgument(f"invalid IP address: {host_ip}") from None
            if host_port:
                ports.parse_range(host_port, "hostPort")
            checked.append({"HostIp": host_ip, "HostPort": host_port})
        out[ports.normalize_key(key)] = checked
    hc["PortBindings"] = out
    return exposed


def extra_hosts(entries: list[str] | None, gateway: str = "") -> list[str]:
    """--add-host name:ip (or name=ip) -> hosts lines; host-gateway is the default bridge's
    gateway, as with docker."""
    out = []
    for entry in entries or []:
        name, sep, addr = entry.partition(":")
        if not sep or "=" in name:
            name, sep, addr = entry.partition("=")
        addr = addr.strip().strip("[]")
        if addr == "host-gateway":
            addr = gateway
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: \"{entry}\"") from None
        if not sep or not name:
            raise InvalidArgument(f"bad format for add-host: \"{entry}\"")
        out.append(f"{addr}\t{name}")
    return out


def hosts_file(c: Any, addrs: list[str], gateway: str = "") -> str:
    """/etc/hosts: localhost, --add-host entries, then the container's own addresses."""
    text = HOSTS + "".join(line + "\n" for line in extra_hosts(
        c.host_config.get("ExtraHosts"), gateway))
    host = c.config.get("Hostname") or c.id[:12]
    names = f"{host}.{c.config['Domainname']} {host}" if c.config.get("Domainname") else host
    for a in addrs:
        text += f"{a}\t{names}\n"
    return text


def write_files(c: Any, hosts: str, resolv: str) -> None:
    write_text(os.path.join(c.path, "hosts"), hosts)
    write_text(os.path.join(c.path, "resolv.conf"), resolv)
    write_text(os.path.join(c.path, "hostname"), (c.config.get("Hostname") or c.id[:12]) + "\n")
