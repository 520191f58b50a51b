"""In-process cost of container networking: NetworkManager.setup / release in a loop,
without the daemon, the runtime or the CLI around them (what `net_start_bridge` measures
end to end). Needs root. Not a scenario (the leading underscore keeps discovery away):

    .venv/bin/python -m bench.scenarios._net_inproc [--runs 50] [--profile]

Modes: `none` (netns + lo), `bridge` (the default bridge), `user` (a user network with
the embedded DNS listener on a loop thread), `publish` (default bridge, -p 127.0.0.1::80:
the NAT sync). Each prints median / p90 / min in ms of setup and of release; `--profile`
adds a cProfile of the bridge mode's setup + release.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from types import SimpleNamespace


def _container(root: str, network: str, publish: bool = False) -> SimpleNamespace:
    cid = secrets.token_hex(32)
    path = os.path.join(root, "containers", cid)
    os.makedirs(path)
    hc = {"NetworkMode": network}
    cfg: dict = {}
    if publish:
        hc["PortBindings"] = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        cfg["ExposedPorts"] = {"80/tcp": {}}
    return SimpleNamespace(id=cid, name="/c" + cid[:8], host_config=hc, config=cfg,
                           extra={}, path=path)


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
    return (f"median {statistics.median(xs) * 1e3:6.2f}  p90 {p90 * 1e3:6.2f}  "
            f"min {xs[0] * 1e3:6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--modes", default="none,bridge,user,publish")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from dockyard.devtools.netconfig import private_network_config
    from dockyard.engine.networking import NetworkManager

    root = tempfile.mkdtemp(prefix="dyk-netinproc-", dir="/run")
    cfg = private_network_config(root)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    mgr = NetworkManager(os.path.join(root, "data"), os.path.join(root, "exec"),
                         bridge_name=cfg["bridge"], bridge_subnet=cfg["bip"],
                         chain_prefix=cfg["dockyard-chain-prefix"], loop=loop,
                         dns_servers=["127.0.0.1"])
    mgr.engine = SimpleNamespace(events=SimpleNamespace(emit=lambda *a, **k: None),
                                 _starting=set())
    user = None
    try:
        mgr.sync(verify=True)
        if "user" in args.modes:
            user = mgr.create_network({"Name": f"inproc-{secrets.token_hex(3)}",
                                       "Options": {"com.docker.network.bridge.name":
                                                   "dykip" + secrets.token_hex(3)}})
        for mode in args.modes.split(","):
            net = {"none": "none", "bridge": "bridge", "publish": "bridge"}.get(mode)
            net = net or (user.name if user else "bridge")
            ups, downs = [], []
            for i in range(args.warmup + args.runs):
                c = _container(root, net, publish=mode == "publish")
                mgr.prepare(c, None)
                t0 = time.perf_counter()
                mgr.setup(c)
                t1 = time.perf_counter()
                mgr.release(c)
                t2 = time.perf_counter()
                if i >= args.warmup:
                    ups.append(t1 - t0)
                    downs.append(t2 - t1)
                mgr.wait_reaped()
            print(f"{mode:8s} setup   {_stats(ups)}")
            print(f"{mode:8s} release {_stats(downs)}")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            for _ in range(args.runs):
                c = _container(root, "bridge")
                mgr.prepare(c, None)
                prof.enable()
                mgr.setup(c)
                mgr.release(c)
                prof.disable()
                mgr.wait_reaped()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    finally:
        mgr.wait_reaped()
        if user is not None:
            mgr.remove_network(user.id)
        mgr.close()
        mgr.purge()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
