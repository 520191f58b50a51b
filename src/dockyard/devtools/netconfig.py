"""daemon.json network keys for private daemons (tests, benchmarks): a default bridge, an
iptables chain prefix and a default-bridge subnet of their own, so that several daemons
(and a real one, and dockerd) run side by side without sharing kernel objects.

The choice is kept in <root>/network-config.json: a daemon restarted on the same root
(live-restore) finds its bridge, chains and subnet again.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets


def _taken() -> list[ipaddress.IPv4Network]:
    from dockyard.network.bridge import host_routes

    return [r for r in host_routes() if r.version == 4 and r.prefixlen > 0]


def private_network_config(root: str | os.PathLike) -> dict:
    """{"bridge", "bip", "dockyard-chain-prefix"} unique to `root` (made once, then reused)."""
    path = os.path.join(os.fspath(root), "network-config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    taken = _taken()
    while True:
        net = ipaddress.ip_network(f"10.{200 + secrets.randbelow(30)}."
                                   f"{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            break
    tag = secrets.token_hex(3)
    doc = {"bridge": f"dyk{tag}", "bip": f"{net.network_address + 1}/24",
           "dockyard-chain-prefix": f"DYK{tag.upper()}"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)
    return doc
