"""Networking core: the library the engine drives for bridge networks.

One job per module, no engine or API imports (arrows point down the stack):

- ipam.py    pure logic: subnets, pools (default-address-pools), gateways,
             next free address, static --ip checks
- store.py   NetworkStore: networks and endpoints in SQLite; allocations are
             one BEGIN IMMEDIATE transaction each, so never duplicated
- filters.py docker's `network ls` / `network prune` filters
- netns.py   network namespaces as files, created and entered in threads
             (the daemon never forks), run_in() for sockets/netlink inside
- bridge.py  pyroute2: bridges, veth pairs into namespaces, eth0 addresses
             and routes, sysctls (forwarding, route_localnet, bridge-nf)
- nat.py     iptables chains of our own (prefix DOCKYARD), rendered from a
             desired state and applied atomically with iptables-restore
- ports.py   -p/-P syntax, PortBindings, host port allocation and conflicts
- dns.py     the embedded DNS server on 127.0.0.11 in each container's
             namespace, served from the daemon's asyncio loop

The engine keeps the desired state (which containers are on which network,
with which published ports) and calls: store for allocation, netns + bridge
to wire a container, nat.sync for the rules, dns.listen_in per container.
At daemon start, reconcile = ensure_bridge for each network, nat.sync with
the full state, and removal of veths (bridge.list_veths) and namespace files
no container owns.
"""
