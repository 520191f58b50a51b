"""NetworkStore: networks and their endpoints in SQLite, with race-free IPAM.

One database, <data-root>/network/network.db (WAL). A network row keeps
docker's inspect fields as a JSON document; an endpoint row is one container
on one network, with its addresses. UNIQUE(network, address) is the last line
of defence; the real guarantee is that every allocation reads what is in use
and inserts its choice inside one `BEGIN IMMEDIATE` transaction (which takes
the database's write lock first), so concurrent starts — threads or
processes — never get the same address or carve the same subnet.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.network import filters as filters_
from dockyard.network import ipam

PREDEFINED = ("bridge", "host", "none")
DRIVERS = ("bridge", "host", "null")
DEFAULT_BRIDGE_NAME = "dockyard0"
_PRIVATE = "DockyardUserSubnets"  # doc key, never shown: subnets came from the user

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint_id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    mac TEXT NOT NULL DEFAULT '',
    ipv4 TEXT,
    ipv6 TEXT,
    static TEXT NOT NULL DEFAULT '{}',
    UNIQUE (network_id, container_id),
    UNIQUE (network_id, ipv4),
    UNIQUE (network_id, ipv6)
);
CREATE INDEX IF NOT EXISTS endpoints_container ON endpoints(container_id);
"""


class Forbidden(DockyardError):
    """Docker answers 403 for operations on the predefined networks."""

    status = 403


@dataclass
class NetworkRecord:
    """A network as stored; `to_docker()` gives the inspect document."""

    id: str
    name: str
    driver: str
    created: str
    doc: dict

    @property
    def internal(self) -> bool:
        return bool(self.doc.get("Internal"))

    @property
    def enable_ipv6(self) -> bool:
        return bool(self.doc.get("EnableIPv6"))

    @property
    def options(self) -> dict[str, str]:
        return self.doc.get("Options") or {}

    @property
    def labels(self) -> dict[str, str]:
        return self.doc.get("Labels") or {}

    @property
    def builtin(self) -> bool:
        return self.name in PREDEFINED

    @property
    def user_subnets(self) -> bool:
        return bool(self.doc.get(_PRIVATE))

    @property
    def configs(self) -> list[ipam.SubnetConfig]:
        return [ipam.SubnetConfig.from_docker(c) for c in self.doc["IPAM"]["Config"]]

    def config(self, version: int) -> ipam.SubnetConfig | None:
        return next((c for c in self.configs if c.subnet.version == version), None)

    @property
    def bridge_name(self) -> str:
        """The Linux bridge: the option docker uses, else br-<first 12 hex of the id>."""
        return self.options.get("com.docker.network.bridge.name") or f"br-{self.id[:12]}"

    def to_docker(self, containers: dict | None = None) -> dict:
        doc = {k: v for k, v in self.doc.items() if k != _PRIVATE}
        doc.update({"Name": self.name, "Id": self.id, "Created": self.created,
                    "Driver": self.driver, "Containers": containers or {}})
        return doc


@dataclass
class Endpoint:
    """One container on one network."""

    endpoint_id: str
    network_id: str
    container_id: str
    name: str
    aliases: list[str] = field(default_factory=list)
    mac: str = ""
    ipv4: str | None = None  # bare address
    ipv6: str | None = None
    ipv4_prefixlen: int = 0
    ipv6_prefixlen: int = 0
    gateway: str = ""
    ipv6_gateway: str = ""
    static: dict[str, str] = field(default_factory=dict)  # docker's IPAMConfig as asked

    def to_network_containers(self) -> dict:
        """This endpoint's entry in a network's inspect "Containers" map."""
        return {"Name": self.name, "EndpointID": self.endpoint_id, "MacAddress": self.mac,
                "IPv4Address": self.ipv4_cidr or "", "IPv6Address": self.ipv6_cidr or ""}

    def to_endpoint_settings(self, dns_names: list[str] | None = None) -> dict:
        """The container inspect's NetworkSettings.Networks[<network>] value."""
        return {
            "IPAMConfig": self.static or None, "Links": None, "Aliases": self.aliases or None,
            "MacAddress": self.mac, "DriverOpts": None, "GwPriority": 0,
            "NetworkID": self.network_id, "EndpointID": self.endpoint_id,
            "Gateway": self.gateway if self.ipv4 else "", "IPAddress": self.ipv4 or "",
            "IPPrefixLen": self.ipv4_prefixlen if self.ipv4 else 0,
            "IPv6Gateway": self.ipv6_gateway if self.ipv6 else "",
            "GlobalIPv6Address": self.ipv6 or "",
            "GlobalIPv6PrefixLen": self.ipv6_prefixlen if self.ipv6 else 0,
            "DNSNames": dns_names if dns_names is not None else None,
        }

    @property
    def ipv4_cidr(self) -> str | None:
        return f"{self.ipv4}/{self.ipv4_prefixlen}" if self.ipv4 else None

    @property
    def ipv6_cidr(self) -> str | None:
        return f"{self.ipv6}/{self.ipv6_prefixlen}" if self.ipv6 else None


def _now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


class NetworkStore:
    """Networks and endpoints of one data root."""

    def __init__(self, data_root: str, pools: list[dict] | None = None,
                 bridge_subnet: str = ipam.DEFAULT_BRIDGE_SUBNET,
                 bridge_name: str = DEFAULT_BRIDGE_NAME):
        self.dir = os.path.join(data_root, "network")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.dir, "network.db")
        self.pools = ipam.parse_pools(pools if pools is not None else ipam.DEFAULT_ADDRESS_POOLS)
        self.bridge_subnet = bridge_subnet
        self.bridge_name = bridge_name
        self._local = threading.local()
        self._db().executescript(SCHEMA)  # IF NOT EXISTS: safe from several processes

    # -- connections and transactions

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- networks

    @staticmethod
    def _record(row: tuple) -> NetworkRecord:
        return NetworkRecord(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def _all(self, db: sqlite3.Connection) -> list[NetworkRecord]:
        rows = db.execute("SELECT id, name, driver, created, doc FROM networks ORDER BY created")
        return [self._record(r) for r in rows]

    def create(self, name: str, driver: str = "bridge", ipam_config: list[dict] | None = None,
               options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               internal: bool = False, enable_ipv6: bool = False, attachable: bool = False,
               host_routes: Iterable[ipam.Network] = (), network_id: str | None = None,
               ipam_options: dict[str, str] | None = None) -> NetworkRecord:
        """Create a network; subnets not given are carved from the pools.

        `host_routes` are the destinations of the host's routes (not ours), to skip.
        """
        if not name or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise InvalidArgument(f"invalid network name {name!r}")
        driver = driver or "bridge"
        if driver not in DRIVERS:
            raise NotFound(f'plugin "{driver}" not found')
        if driver in ("host", "null") and name not in PREDEFINED:
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        configs = [self._parse_config(c) for c in ipam_config or []]
        user = bool(configs)
        if driver == "bridge":
            for version in (4, 6):
                if len([c for c in configs if c.subnet.version == version]) > 1:
                    raise InvalidArgument(f"bridge network supports one IPv{version} subnet only")
            if enable_ipv6 is False and any(c.subnet.version == 6 for c in configs):
                raise InvalidArgument("an IPv6 subnet was given but IPv6 is not enabled "
                                      "(use --ipv6)")
        network_id = network_id or secrets.token_hex(32)
        with self._tx() as db:
            existing = self._all(db)
            if any(n.name == name for n in existing):
                raise Conflict(f"network with name {name} already exists")
            in_use = [c.subnet for n in existing for c in n.configs]
            for c in configs:
                ipam.check_no_overlap(c.subnet, in_use)
            if driver == "bridge":
                if not any(c.subnet.version == 4 for c in configs):
                    sub = ipam.next_subnet(self.pools, in_use, host_routes, 4)
                    configs.insert(0, ipam.validate_config(str(sub)))
                if enable_ipv6 and not any(c.subnet.version == 6 for c in configs):
                    sub = ipam.next_subnet(self.pools, in_use, host_routes, 6)
                    configs.append(ipam.validate_config(str(sub)))
            else:
                configs = []
            created = _now()
            doc = {
                "Name": name, "Id": network_id, "Created": created, "Scope": "local",
                "Driver": driver, "EnableIPv4": True, "EnableIPv6": bool(enable_ipv6),
                "IPAM": {"Driver": "default", "Options": ipam_options or {},
                         "Config": [c.to_docker() for c in configs]},
                "Internal": bool(internal), "Attachable": bool(attachable), "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": dict(options or {}), "Labels": dict(labels or {}),
                _PRIVATE: user,
            }
            db.execute("INSERT INTO networks (id, name, driver, created, doc) VALUES (?,?,?,?,?)",
                       (network_id, name, driver, created, json.dumps(doc)))
        return NetworkRecord(network_id, name, driver, created, doc)

    @staticmethod
    def _parse_config(c: dict) -> ipam.SubnetConfig:
        if not isinstance(c, dict):
            raise InvalidArgument("invalid IPAM config")
        if not c.get("Subnet"):
            if c.get("IPRange") or c.get("Gateway"):
                raise InvalidArgument("ip-range and gateway need a subnet (--subnet)")
            raise InvalidArgument("invalid subnet ''")
        return ipam.validate_config(c["Subnet"], c.get("Gateway") or None,
                                    c.get("IPRange") or None, c.get("AuxiliaryAddresses") or {})

    def create_from_api(self, body: dict, host_routes: Iterable[ipam.Network] = ()
                        ) -> NetworkRecord:
        """POST /networks/create's body (docker's NetworkCreateRequest) -> a network."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid network create request")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name must not be empty")
        if body.get("Ingress"):
            raise Forbidden("ingress networks are only available in swarm mode")
        if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
            raise InvalidArgument("config-only networks are not supported")
        ipam_doc = body.get("IPAM") or {}
        if not isinstance(ipam_doc, dict):
            raise InvalidArgument("invalid IPAM")
        if (ipam_doc.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_doc["Driver"]}" not found')
        config = ipam_doc.get("Config") or []
        if not isinstance(config, list):
            raise InvalidArgument("invalid IPAM config")
        for key in ("Options", "Labels"):
            value = body.get(key) or {}
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise InvalidArgument(f"invalid {key}: expected a map of strings")
        return self.create(name, body.get("Driver") or "bridge", config,
                           options=body.get("Options") or {}, labels=body.get("Labels") or {},
                           internal=bool(body.get("Internal")),
                           enable_ipv6=bool(body.get("EnableIPv6")),
                           attachable=bool(body.get("Attachable")), host_routes=host_routes,
                           ipam_options=ipam_doc.get("Options") or {})

    def ensure_predefined(self) -> None:
        """Create `bridge`, `host` and `none` if missing (daemon start)."""
        have = {n.name for n in self.list()}
        if "bridge" not in have:
            self.create("bridge", "bridge", [{"Subnet": self.bridge_subnet}], options={
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": self.bridge_name,
                "com.docker.network.driver.mtu": "1500",
            })
            self._set_user_subnets("bridge", False)
        if "host" not in have:
            self.create("host", "host")
        if "none" not in have:
            self.create("none", "null")

    def _set_user_subnets(self, name: str, value: bool) -> None:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM networks WHERE name=?", (name,)).fetchone()
            doc = json.loads(row[0])
            doc[_PRIVATE] = value
            db.execute("UPDATE networks SET doc=? WHERE name=?", (json.dumps(doc), name))

    def get(self, ref: str) -> NetworkRecord:
        """Docker's lookup: exact id, then exact name, then a unique id prefix."""
        db = self._db()
        q = "SELECT id, name, driver, created, doc FROM networks WHERE "
        row = db.execute(q + "id=?", (ref,)).fetchone()
        if row is None:
            row = db.execute(q + "name=?", (ref,)).fetchone()
        if row is None and ref and re.fullmatch(r"[0-9a-f]+", ref):
            rows = db.execute(q + "id LIKE ?", (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches "
                                      "found based on ID prefix)")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"network {ref} not found")
        return self._record(row)

    def list(self, filters: dict[str, list[str]] | None = None) -> list[NetworkRecord]:
        """All networks matching docker's filters (driver, id, label, name, scope, type,
        dangling)."""
        if filters:
            filters_.validate_filters(filters)
        nets = self._all(self._db())
        if not filters:
            return nets
        used = {r[0] for r in self._db().execute("SELECT DISTINCT network_id FROM endpoints")}
        return [n for n in nets if filters_.match(n, filters, n.id in used)]

    def remove(self, ref: str) -> NetworkRecord:
        net = self.get(ref)
        if net.builtin:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        with self._tx() as db:
            count = db.execute("SELECT COUNT(*) FROM endpoints WHERE network_id=?",
                               (net.id,)).fetchone()[0]
            if count:
                raise Forbidden(f"error while removing network: network {net.name} id "
                                f"{net.id} has active endpoints")
            db.execute("DELETE FROM networks WHERE id=?", (net.id,))
        return net

    def prune(self, filters: dict[str, list[str]] | None = None) -> list[NetworkRecord]:
        """Remove unused custom networks (docker's prune filters: until, label, label!)."""
        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = None
        if filters.get("until"):
            until = filters_.parse_until(filters["until"][-1])
        removed = []
        for net in self.list({"dangling": ["true"]}):
            if until is not None and net.created >= until:
                continue
            if not all(filters_.label_match(net.labels, v) for v in filters.get("label", [])):
                continue
            if any(filters_.label_match(net.labels, v) for v in filters.get("label!", [])):
                continue
            try:
                removed.append(self.remove(net.id))
            except (Forbidden, NotFound):
                continue  # got an endpoint (or went away) meanwhile
        return removed

    def subnets_in_use(self) -> list[ipam.Network]:
        return [c.subnet for n in self.list() for c in n.configs]

    # -- endpoints

    def connect(self, ref: str, container_id: str, name: str, aliases: Iterable[str] = (),
                ipv4: str | None = None, ipv6: str | None = None, mac: str | None = None,
                endpoint_id: str | None = None) -> Endpoint:
        """Attach a container: allocate (or check the static) addresses, atomically."""
        net = self.get(ref)
        if (ipv4 or ipv6) and not net.user_subnets:
            if net.name == "bridge" or net.builtin:
                raise InvalidArgument("user specified IP address is supported on user "
                                      "defined networks only")
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        endpoint_id = endpoint_id or secrets.token_hex(32)
        cfg4, cfg6 = net.config(4), net.config(6) if net.enable_ipv6 else None
        if ipv6 and cfg6 is None:
            raise InvalidArgument(f"network {net.name} has no IPv6 subnet for address {ipv6}")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM networks WHERE id=?", (net.id,)).fetchone() is None:
                raise NotFound(f"network {ref} not found")
            if db.execute("SELECT 1 FROM endpoints WHERE network_id=? AND container_id=?",
                          (net.id, container_id)).fetchone():
                raise Forbidden(f"endpoint with name {name} already exists in network "
                                f"{net.name}")
            rows = db.execute("SELECT ipv4, ipv6 FROM endpoints WHERE network_id=?",
                              (net.id,)).fetchall()
            a4, a6 = None, None
            if cfg4 is not None:
                used4 = {ipaddress.ip_address(r[0]) for r in rows if r[0]}
                a4 = (ipam.validate_static(cfg4, ipv4, used4) if ipv4
                      else ipam.allocate(cfg4, used4))
            if cfg6 is not None:
                used6 = {ipaddress.ip_address(r[1]) for r in rows if r[1]}
                a6 = (ipam.validate_static(cfg6, ipv6, used6) if ipv6
                      else ipam.allocate(cfg6, used6))
            mac = mac or ipam.mac_for(a4, bytes.fromhex(endpoint_id[:8]))  # type: ignore[arg-type]
            static = {k: v for k, v in (("IPv4Address", ipv4), ("IPv6Address", ipv6)) if v}
            row = (endpoint_id, net.id, container_id, name, json.dumps(list(aliases)), mac,
                   str(a4) if a4 else None, str(a6) if a6 else None, json.dumps(static))
            db.execute(f"INSERT INTO endpoints ({_EP_COLS}) VALUES (?,?,?,?,?,?,?,?,?)", row)
        return self._endpoint(net, row)

    def disconnect(self, ref: str, container_id: str) -> Endpoint | None:
        """Detach a container and release its addresses; None if it was not attached."""
        net = self.get(ref)
        with self._tx() as db:
            row = db.execute(f"SELECT {_EP_COLS} FROM endpoints WHERE network_id=? AND "
                             "container_id=?", (net.id, container_id)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM endpoints WHERE endpoint_id=?", (row[0],))
        return self._endpoint(net, row)

    def endpoints(self, network_id: str | None = None,
                  container_id: str | None = None) -> list[Endpoint]:
        where, args = [], []
        if network_id:
            where.append("network_id=?")
            args.append(network_id)
        if container_id:
            where.append("container_id=?")
            args.append(container_id)
        sql = f"SELECT {_EP_COLS} FROM endpoints"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db().execute(sql + " ORDER BY rowid", args).fetchall()
        nets: dict[str, NetworkRecord] = {}
        out = []
        for row in rows:
            if row[1] not in nets:
                nets[row[1]] = self.get(row[1])
            out.append(self._endpoint(nets[row[1]], row))
        return out

    def resolve(self, network_id: str, name: str) -> list[Endpoint]:
        """Endpoints of a network whose name or alias is `name` (case-insensitive)."""
        key = name.rstrip(".").lower()
        return [e for e in self.endpoints(network_id)
                if e.name.lower() == key or key in (a.lower() for a in e.aliases)]

    def by_address(self, network_id: str, address: str) -> Endpoint | None:
        """The endpoint holding `address` on a network (for PTR answers)."""
        try:
            addr = str(ipaddress.ip_address(address))
        except ValueError:
            return None
        row = self._db().execute(f"SELECT {_EP_COLS} FROM endpoints WHERE network_id=? AND "
                                 "(ipv4=? OR ipv6=?)", (network_id, addr, addr)).fetchone()
        return self._endpoint(self.get(network_id), row) if row else None

    @staticmethod
    def _endpoint(net: NetworkRecord, row: tuple) -> Endpoint:
        ep = Endpoint(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7],
                      static=json.loads(row[8]) if len(row) > 8 else {})
        c4, c6 = net.config(4), net.config(6)
        if c4 is not None:
            ep.ipv4_prefixlen, ep.gateway = c4.subnet.prefixlen, str(c4.gateway)
        if c6 is not None:
            ep.ipv6_prefixlen, ep.ipv6_gateway = c6.subnet.prefixlen, str(c6.gateway)
        return ep


_EP_COLS = "endpoint_id, network_id, container_id, name, aliases, mac, ipv4, ipv6, static"
