"""`dockyard image bootstrap`: build the offline base images and load them into the
daemon. The work is dockyard.bootstrap's (debootstrap and tar on this machine);
the daemon only sees POST /images/load and pushes, so -H works for a remote one.
"""

from __future__ import annotations

import argparse
import sys
import time

USAGE = """dockyard image bootstrap [OPTIONS]

Build base images from Debian packages (debootstrap, from the mirror apt uses)
and load them into the daemon: debian:bookworm-slim, python:3.11-slim, redis:7
and busybox:latest by default (`--list` shows every name)."""


def bootstrap(argv: list[str], ctx) -> int:
    from dockyard.bootstrap import images, load

    p = argparse.ArgumentParser(prog="dockyard image bootstrap", usage=USAGE,
                                allow_abbrev=False)
    p.add_argument("--only", nargs="+", metavar="NAME", default=[],
                   help="only these images (debian, python, python-flask, redis, busybox, "
                        "or any of their tags)")
    p.add_argument("--refresh", action="store_true",
                   help="rebuild from the Debian archive instead of the cache")
    p.add_argument("--registry", metavar="HOST:PORT",
                   help="also push them to this registry, as docker.io's names "
                        "(library/...), for daemons that use it as a mirror")
    p.add_argument("--cache", default=images.CACHE, help="cache directory (default %(default)s)")
    p.add_argument("--force-load", action="store_true",
                   help="load even images the daemon has already")
    p.add_argument("--list", action="store_true", help="list the images and exit")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for spec in images.SPECS.values():
            mark = "*" if spec.name in images.DEFAULT else " "
            print(f"{mark} {spec.name:13} {', '.join(spec.tags)}\n    {spec.description}")
        return 0

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    from dockyard.client.api import Client

    client = Client(getattr(ctx, "host", None))
    client.ping()  # no daemon: fail before minutes of debootstrap
    started = time.monotonic()
    builder = images.Builder(args.cache, log, args.refresh)
    built = []
    for spec in images.select(args.only):
        log(f"{spec.tags[0]}: building" if args.refresh else f"{spec.tags[0]}: preparing")
        b = builder.build(spec)
        log(f"{spec.tags[0]}: {b.image_id[:19]} ({len(b.layers)} layer"
            f"{'s' if len(b.layers) > 1 else ''})")
        built.append(b)
    for name in builder.prune():
        log(f"removed from the cache: {name} (no longer used)")
    todo = built if args.force_load else load.missing(client, built)
    if todo:
        for line in load.load(client, todo):
            log(line)
    else:
        log("the daemon has every image already")
    if args.registry:
        for b in built:
            for name in load.push(client, b, args.registry):
                log(f"pushed {name}")
    log(f"done in {time.monotonic() - started:.1f}s: "
        + " ".join(t for b in built for t in b.spec.tags[:1]))
    return 0


if __name__ == "__main__":
    sys.exit(bootstrap(sys.argv[1:], None))
