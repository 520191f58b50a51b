"""Kernel NAT and filtering for bridge networks: iptables, in chains of our own.

The whole rule set is a function of a desired state (bridges and published
ports). `sync(state)` renders it and applies it with one `iptables-restore
--noflush` per address family: every chain of ours is declared with
`:CHAIN - [0:0]`, which flushes it, and refilled, all in one transaction, so
the kernel never sees half a rule set and a restart (reconcile) just calls
sync again. Docker's DOCKER* chains are never touched; our chains are named
from a prefix (DOCKYARD by default, something unique in tests):

  nat    PREFIX             DNAT of published ports; jumped to from PREROUTING
                            and OUTPUT for local destinations (so 127.0.0.1:PORT
                            and the host's own addresses work)
  nat    PREFIX-POSTROUTING MASQUERADE: bridge subnets going out, 127/8 sources
                            DNATed onto a bridge (route_localnet), hairpin
  filter PREFIX-FORWARD     established/related, published ports, icc,
                            internal networks, outbound; jumped to first thing
                            from FORWARD
  filter PREFIX-ISOLATION-1/-2  drop traffic between two different bridges

The jumps from the built-in chains are inserted once (looked up with
iptables-save first). This module and `iptables-save` are the only places the
network code runs programs.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

from dockyard.errors import SystemError_
from dockyard.network import bridge as _bridge

DEFAULT_PREFIX = "DOCKYARD"
PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class BridgeState:
    """One bridge network as NAT sees it."""

    name: str  # the Linux bridge
    subnets: tuple[str, ...]  # CIDRs, IPv4 and/or IPv6
    internal: bool = False
    icc: bool = True
    masquerade: bool = True


@dataclass(frozen=True)
class PortMapping:
    """One published port: host_ip:host_port -> container_ip:container_port/proto."""

    bridge: str
    container_ip: str
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "" / 0.0.0.0 / :: = every address of the family
    host_port: int = 0


@dataclass
class NatState:
    bridges: list[BridgeState] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)


def _version(addr: str) -> int:
    return ipaddress.ip_network(addr, strict=False).version


def _chain_of(rule: str) -> str:
    return rule.split(" ", 2)[1]


def incremental(old: dict[str, list[str]], new: dict[str, list[str]]) -> list[str] | None:
    """The iptables-restore lines (per table, with COMMIT) that turn our chains' rules
    `old` into `new` by deleting and inserting only what differs — or None when that
    cannot keep the order (then the chains are rewritten whole). Deleting a rule and
    inserting one at its place are far cheaper to commit than flushing and refilling
    every chain. `[]`: nothing to do."""
    lines: list[str] = []
    for table in ("nat", "filter"):
        before, after = old.get(table, []), new.get(table, [])
        if len(set(before)) != len(before) or len(set(after)) != len(after):
            return None  # duplicates: positions would be ambiguous
        kept_old = [r for r in before if r in set(after)]
        kept_new = [r for r in after if r in set(before)]
        if kept_old != kept_new:
            return None  # the rules we keep would change order
        ops = ["-D" + r[2:] for r in before if r not in set(after)]
        position: dict[str, int] = {}
        for r in after:
            chain = _chain_of(r)
            position[chain] = position.get(chain, 0) + 1
            if r not in set(before):  # ascending positions: each lands where `new` has it
                ops.append(f"-I {chain} {position[chain]} {r.split(' ', 2)[2]}")
        if ops:
            lines += [f"*{table}", *ops, "COMMIT"]
    return lines


class Nat:
    """Applies NatState to the kernel. Thread-safe; one instance per daemon."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, ipv6: bool | None = None):
        if not prefix or len(prefix) > 16 or not prefix.replace("-", "").isalnum():
            raise ValueError(f"bad chain prefix {prefix!r}")
        self.prefix = prefix
        self.ipv6 = ipv6  # None: only when a bridge has an IPv6 subnet
        self._lock = threading.Lock()
        # per family: True = our hooks and chains are in place, False = absent, None = unknown
        self._installed: dict[int, bool | None] = {4: None, 6: None}
        # per family: the rules our chains hold since our last successful restore
        self._applied: dict[int, dict[str, list[str]] | None] = {4: None, 6: None}

    # -- chain names

    @property
    def chains(self) -> dict[str, list[str]]:
        p = self.prefix
        return {"nat": [p, f"{p}-POSTROUTING"],
                "filter": [f"{p}-FORWARD", f"{p}-ISOLATION-1", f"{p}-ISOLATION-2"]}

    def hooks(self, version: int) -> dict[str, list[str]]:
        """The rules in built-in chains that jump to ours (iptables-save spelling)."""
        p = self.prefix
        out = {"nat": [f"-A PREROUTING -m addrtype --dst-type LOCAL -j {p}",
                       f"-A OUTPUT -m addrtype --dst-type LOCAL -j {p}",
                       f"-A POSTROUTING -j {p}-POSTROUTING"],
               "filter": [f"-A FORWARD -j {p}-FORWARD"]}
        return out

    # -- rendering (pure)

    def render(self, state: NatState, version: int) -> dict[str, list[str]]:
        """The rules of our chains for one family, per table (without declarations)."""
        p = self.prefix
        nat: list[str] = []
        post: list[str] = []
        fwd: list[str] = [f"-A {p}-FORWARD -j {p}-ISOLATION-1"]
        iso1: list[str] = []
        iso2: list[str] = []
        bridges = [b for b in state.bridges
                   if any(_version(s) == version for s in b.subnets)]
        for b in bridges:
            subnets = [s for s in b.subnets if _version(s) == version]
            iso1.append(f"-A {p}-ISOLATION-1 -i {b.name} ! -o {b.name} -j {p}-ISOLATION-2")
            iso2.append(f"-A {p}-ISOLATION-2 -o {b.name} -j DROP")
            if b.internal:
                fwd.append(f"-A {p}-FORWARD -i {b.name} ! -o {b.name} -j DROP")
                fwd.append(f"-A {p}-FORWARD -o {b.name} ! -i {b.name} -j DROP")
            else:
                fwd.append(f"-A {p}-FORWARD -o {b.name} -m conntrack --ctstate "
                           "RELATED,ESTABLISHED -j ACCEPT")
                if b.masquerade:
                    for s in subnets:
                        post.append(f"-A {p}-POSTROUTING -s {s} ! -o {b.name} -j MASQUERADE")
                if version == 4:
                    post.append(f"-A {p}-POSTROUTING -s 127.0.0.0/8 -o {b.name} "
                                "-j MASQUERADE")
            for m in state.ports:
                if m.bridge != b.name or _version(m.container_ip) != version:
                    continue
                if b.internal:
                    continue  # nothing reaches an internal network from outside
                if m.host_ip and _version(m.host_ip) != version:
                    continue  # e.g. -p [::]:80:80 to an IPv4 container: not this family
                cip = m.container_ip
                plen = 32 if version == 4 else 128
                # only DNATed traffic: the container's address itself is not reachable
                # from other hosts (as with Docker 28), published or not
                fwd.append(f"-A {p}-FORWARD -d {cip}/{plen} -o {b.name} -p {m.proto} "
                           f"-m {m.proto} --dport {m.container_port} "
                           "-m conntrack --ctstate DNAT -j ACCEPT")
                post.append(f"-A {p}-POSTROUTING -s {cip}/{plen} -d {cip}/{plen} -p {m.proto} "
                            f"-m {m.proto} --dport {m.container_port} -j MASQUERADE")
                dest = f"{cip}:{m.container_port}" if version == 4 else \
                    f"[{cip}]:{m.container_port}"
                match = ""
                if m.host_ip and m.host_ip not in ("0.0.0.0", "::"):
                    match = f"-d {m.host_ip}/{plen} "
                elif version == 6:
                    match = "! -d ::1/128 "  # no route_localnet for IPv6
                nat.append(f"-A {p} {match}-p {m.proto} -m {m.proto} --dport {m.host_port} "
                           f"-j DNAT --to-destination {dest}")
            fwd.append(f"-A {p}-FORWARD -i {b.name} -o {b.name} -j "
                       f"{'ACCEPT' if b.icc else 'DROP'}")
            if not b.internal:
                fwd.append(f"-A {p}-FORWARD -i {b.name} ! -o {b.name} -j ACCEPT")
            # unsolicited traffic into the bridge (not to a published port) stops here
            fwd.append(f"-A {p}-FORWARD -o {b.name} -j DROP")
        return {"nat": nat + post, "filter": fwd + iso1 + iso2}

    def restore_input(self, state: NatState | None, version: int, existing: str | None) -> str:
        """The iptables-restore text: hooks added (state) or removed (None), chains rewritten.

        `existing` is iptables-save's output, to see which hooks are already
        there; None means they are known to be (nothing to add or remove).
        """
        rules = self.render(state, version) if state is not None else {"nat": [], "filter": []}
        present = [line.strip() for line in (existing or "").splitlines()]
        lines: list[str] = []
        for table in ("nat", "filter"):
            lines.append(f"*{table}")
            ours = self.chains[table]
            for chain in ours:
                lines.append(f":{chain} - [0:0]")
            for hook in self.hooks(version)[table] if existing is not None else []:
                if state is not None and hook not in present:
                    lines.append("-I" + hook[2:] if table == "filter" else hook)
                elif state is None:
                    lines += ["-D" + hook[2:]] * sum(1 for x in present if x == hook)
            lines += rules[table]
            if state is None:
                lines += [f"-X {chain}" for chain in ours]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    # -- applying

    @staticmethod
    def _run(argv: list[str], data: str | None = None) -> str:
        try:
            proc = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SystemError_(f"{argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            raise SystemError_(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}"
                               + (f"\ninput:\n{data}" if data else ""))
        return proc.stdout

    def _save(self, version: int) -> str:
        tool = "iptables-save" if version == 4 else "ip6tables-save"
        return self._run([tool, "-t", "nat"]) + self._run([tool, "-t", "filter"])

    def _apply(self, state: NatState | None, version: int, verify: bool) -> None:
        tool = "iptables-restore" if version == 4 else "ip6tables-restore"
        if state is None and self._installed[version] is False and not verify:
            return  # known absent
        if state is not None and self._installed[version] and not verify:
            existing = None  # hooks known in place: skip iptables-save (it is slow)
            rules = self.render(state, version)
            known = self._applied[version]
            delta = incremental(known, rules) if known is not None else None
            if delta is not None:
                if delta:
                    self._applied[version] = None  # unknown if the restore fails
                    self._run([tool, "--noflush", "--wait"], "\n".join(delta) + "\n")
                self._applied[version] = rules
                return
        else:
            existing = self._save(version)
            if state is None and not any(f":{c} " in existing
                                         for cs in self.chains.values() for c in cs):
                self._installed[version] = False
                return
        self._installed[version] = None  # unknown until the restore succeeded
        self._applied[version] = None
        self._run([tool, "--noflush", "--wait"], self.restore_input(state, version, existing))
        self._installed[version] = state is not None
        self._applied[version] = self.render(state, version) if state is not None else None

    def _want_v6(self, state: NatState) -> bool:
        if self.ipv6 is not None:
            return self.ipv6
        return any(_version(s) == 6 for b in state.bridges for s in b.subnets)

    def sync(self, state: NatState, verify: bool = False) -> None:
        """Make the kernel's rules of ours exactly those of `state` (idempotent).

        The first sync of an instance, and any with `verify=True` (daemon start,
        reconcile), reads the current rules to (re)insert missing hooks; later
        ones trust that the hooks are still in place and only rewrite our chains.
        """
        with self._lock:
            for b in state.bridges:
                try:
                    _bridge.set_route_localnet(b.name)
                except FileNotFoundError:
                    pass  # the bridge is not there (yet): its rules are harmless
            if state.bridges:
                _bridge.enable_bridge_netfilter()
            self._apply(state, 4, verify)
            if self._want_v6(state):
                self._apply(state, 6, verify)
            elif shutil.which("ip6tables-restore"):
                self._apply(None, 6, verify)

    def remove_all(self) -> None:
        """Delete our hooks and chains in both families (daemon cleanup, tests)."""
        with self._lock:
            self._apply(None, 4, True)
            if shutil.which("ip6tables-restore"):
                self._apply(None, 6, True)

    def present_chains(self) -> list[str]:
        """Our chains currently in the kernel, both families (for checks and tests)."""
        found = []
        for version in (4, 6):
            text = self._save(version)
            for cs in self.chains.values():
                found += [c for c in cs if f"\n:{c} " in text]
        return found
