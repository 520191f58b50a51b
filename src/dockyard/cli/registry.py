"""`dockyard registry serve`: run the registry server in the foreground."""

from __future__ import annotations

import argparse
import sys

from dockyard.errors import InvalidArgument


def _size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
             "g": 1 << 30, "gb": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("kmgb")
    unit = t[len(num):]
    if not num.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError(f"invalid size: {text}")
    return int(num) * units[unit]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard registry serve",
                                description="Serve an OCI distribution registry.")
    p.add_argument("--addr", default="127.0.0.1:5000", help="HOST:PORT to listen on")
    p.add_argument("--root", default="/var/lib/dockyard/registry", help="storage directory")
    p.add_argument("--htpasswd", help="htpasswd file with bcrypt entries (basic auth)")
    p.add_argument("--token-auth", action="store_true",
                   help="bearer token auth; tokens from /token (checked against --htpasswd)")
    p.add_argument("--realm", help="token realm URL (default: this server's /token)")
    p.add_argument("--tls-cert", help="PEM certificate (with --tls-key): serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--max-blob-size", type=_size, help="largest accepted blob (e.g. 2g)")
    p.add_argument("--read-only", action="store_true", help="refuse pushes and deletes")
    p.add_argument("--disable-delete", action="store_true", help="refuse DELETE requests")
    return p


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidArgument(f"invalid --addr: {addr} (want HOST:PORT)")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    host, port = _split_addr(args.addr)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    from aiohttp import web

    from dockyard.registry.server import make_app

    ssl_ctx = None
    if args.tls_cert:
        import ssl

        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    app = make_app(args.root, htpasswd=args.htpasswd, token_auth=args.token_auth,
                   realm=args.realm, max_blob_size=args.max_blob_size,
                   read_only=args.read_only, allow_delete=not args.disable_delete)
    scheme = "https" if ssl_ctx else "http"
    web.run_app(app, host=host, port=port, ssl_context=ssl_ctx, access_log=None,
                print=lambda _m: print(f"registry listening on {scheme}://{host}:{port}",
                                       flush=True))
    return 0


def registry(argv: list[str], ctx: object) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard registry serve [OPTIONS]\n\n"
              "Commands:\n  serve       Serve an OCI distribution registry")
        return 0
    if argv[0] != "serve":
        print(f"dockyard registry: unknown command: {argv[0]}", file=sys.stderr)
        return 1
    return serve(argv[1:])
