"""`dockyard image ...` and docker's top-level aliases (images, pull, push, tag, rmi,
history, save, load, import). Parsing and output only: the work is in
dockyard.image.service (in-process until the daemon serves the same verbs)."""

import argparse
import json
import os
import sys
import time

from dockyard.cli.formatter import human_size, print_formatted, since
from dockyard.errors import DockyardError, InvalidArgument, NotFound

SUBCOMMANDS = ("ls", "list", "pull", "push", "tag", "rm", "inspect", "history", "save", "load",
               "import", "prune")
IMAGE_COLUMNS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG",
                 "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE"}


def _parser(prog: str, usage: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"dockyard {prog}", usage=f"dockyard {usage}",
                                   allow_abbrev=False)


def _service(ctx):
    from dockyard.image.service import ImageService

    insecure = tuple(filter(None, os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "").split(",")))
    mirrors = tuple(filter(None, os.environ.get("DOCKYARD_REGISTRY_MIRRORS", "").split(",")))
    return ImageService(ctx.data_root, config_dir=ctx.config_dir, insecure=insecure,
                        mirrors=mirrors)


def image(argv: list[str], ctx) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard image COMMAND\n\nCommands:\n  " + "\n  ".join(SUBCOMMANDS))
        return 0
    sub, rest = argv[0], argv[1:]
    handlers = {"ls": ls, "list": ls, "pull": pull, "push": push, "tag": tag, "rm": rm,
                "inspect": inspect, "history": history, "save": save, "load": load,
                "import": import_, "prune": prune}
    if sub not in handlers:
        print(f"dockyard: 'image {sub}' is not a dockyard command.", file=sys.stderr)
        return 1
    return handlers[sub](rest, ctx)


# -- ls ---------------------------------------------------------------------------

def ls(argv: list[str], ctx) -> int:
    p = _parser("images", "images [OPTIONS] [REPOSITORY[:TAG]]")
    p.add_argument("reference", nargs="?")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    args = p.parse_args(argv)
    svc = _service(ctx)
    from dockyard.image.listing import image_rows

    # docker's needDigest: --digests, or a format that asks for {{.Digest}}
    digests = args.digests or "{{.Digest}}" in (args.format or "")
    rows = image_rows(svc, args.filter, args.reference, show_all=args.all,
                      no_trunc=args.no_trunc, show_digests=digests)
    if args.quiet:  # one line per row, as docker's CLI (an ID repeats per tag)
        print("".join(row["ID"] + "\n" for row in rows), end="")
        return 0
    fmt = args.format
    if not fmt:
        cols = ["{{.Repository}}", "{{.Tag}}"] + (["{{.Digest}}"] if args.digests else [])
        fmt = "table " + "\t".join(cols + ["{{.ID}}", "{{.CreatedSince}}", "{{.Size}}"])
    print_formatted(rows, fmt, IMAGE_COLUMNS)
    return 0


# -- pull / push ------------------------------------------------------------------

def pull(argv: list[str], ctx) -> int:
    p = _parser("pull", "pull [OPTIONS] NAME[:TAG|@DIGEST]")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("-a", "--all-tags", action="store_true")
    args = p.parse_args(argv)
    from dockyard.registry.progress import Progress, for_stream

    progress = Progress() if args.quiet else for_stream(sys.stdout)
    svc = _service(ctx)
    svc.pull(args.name, progress)
    print(svc.reference(args.name))
    return 0


def push(argv: list[str], ctx) -> int:
    p = _parser("push", "push [OPTIONS] NAME[:TAG]")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    args = p.parse_args(argv)
    from dockyard.registry.progress import Progress, for_stream

    progress = Progress() if args.quiet else for_stream(sys.stdout)
    digest = _service(ctx).push(args.name, progress)
    if args.quiet:
        print(digest)
    return 0


# -- tag / rm ---------------------------------------------------------------------

def tag(argv: list[str], ctx) -> int:
    p = _parser("tag", "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
    p.add_argument("source")
    p.add_argument("target")
    args = p.parse_args(argv)
    _service(ctx).tag(args.source, args.target)
    return 0


def rm(argv: list[str], ctx) -> int:
    p = _parser("rmi", "rmi [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    args = p.parse_args(argv)
    svc = _service(ctx)
    status = 0
    for name in args.images:
        try:
            for kind, text in svc.remove(name, force=args.force):
                print(f"{kind}: {text}")
        except DockyardError as e:  # as docker: report it, go on with the next image
            print(f"Error response from daemon: {e}", file=sys.stderr)
            status = 1
    return status


# -- inspect / history --------------------------------------------------------------

def inspect(argv: list[str], ctx) -> int:
    p = _parser("image inspect", "image inspect [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--format")
    args = p.parse_args(argv)
    from dockyard.image.inspect import inspect as shape

    svc = _service(ctx)
    found, status = [], 0
    for name in args.images:
        try:
            found.append(shape(svc.get(name), svc.graph_driver(name)))
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    if args.format:
        print_formatted(found, args.format, {})
    else:
        print(json.dumps(found, indent=4))
    return status


def history(argv: list[str], ctx) -> int:
    p = _parser("history", "history [OPTIONS] IMAGE")
    p.add_argument("image")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    args = p.parse_args(argv)
    from dockyard.image.inspect import history as rows_of

    rows = rows_of(_service(ctx).get(args.image))
    human = args.human.lower() not in ("false", "0")
    out = []
    for r in rows:
        rid = r["Id"] if args.no_trunc or r["Id"] == "<missing>" else r["Id"][7:19]
        created_by = r["CreatedBy"]
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        out.append({"ID": rid, "CreatedSince": since(r["Created"]) if human else
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["Created"])),
                    "CreatedBy": created_by, "Size": human_size(r["Size"]) if human
                    else str(r["Size"]), "Comment": r["Comment"]})
    if args.quiet:
        print("\n".join(o["ID"] for o in out))
        return 0
    fmt = args.format or ("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
                          "{{.Comment}}")
    print_formatted(out, fmt, {"ID": "IMAGE", "CreatedSince": "CREATED",
                               "CreatedBy": "CREATED BY", "Size": "SIZE",
                               "Comment": "COMMENT"})
    return 0


# -- save / load / import ---------------------------------------------------------

def save(argv: list[str], ctx) -> int:
    p = _parser("save", "save [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    from dockyard.image.archive import save as save_archive

    svc = _service(ctx)
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "wb") as f:
            save_archive(svc, args.images, f)
        os.replace(tmp, args.output)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    save_archive(svc, args.images, sys.stdout.buffer)
    return 0


def load(argv: list[str], ctx) -> int:
    p = _parser("load", "load [OPTIONS]")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    from dockyard.image.archive import load as load_archive

    svc = _service(ctx)
    if args.input:
        with open(args.input, "rb") as f:
            loaded = load_archive(svc, f)
    else:
        loaded = load_archive(svc, sys.stdin.buffer)
    for line in loaded:
        print(line)
    return 0


def import_(argv: list[str], ctx) -> int:
    p = _parser("import", "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
    p.add_argument("source")
    p.add_argument("reference", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform")
    args = p.parse_args(argv)
    from dockyard.image.changes import apply_changes

    config = apply_changes({}, args.change)
    svc = _service(ctx)
    if args.source == "-":
        image_id = svc.import_(sys.stdin.buffer, reference=args.reference, changes=config,
                               message=args.message)
    elif "://" in args.source:
        raise InvalidArgument(f"importing from a URL is not supported: {args.source}")
    else:
        with open(args.source, "rb") as f:
            image_id = svc.import_(f, reference=args.reference, changes=config,
                                   message=args.message)
    print(image_id)
    return 0


def prune(argv: list[str], ctx) -> int:
    p = _parser("image prune", "image prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    args = p.parse_args(argv)
    if not args.force and sys.stdin.isatty():
        what = "all images without at least one container associated to them" if args.all \
            else "all dangling images"
        answer = input(f"WARNING! This will remove {what}.\nAre you sure you want to "
                       "continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    svc = _service(ctx)
    names = {image.id: image.repo_tags + image.repo_digests for image in svc.list()}
    deleted, space = svc.prune(all_images=args.all)
    if deleted:
        print("Deleted Images:")
        for image_id in deleted:
            for name in names.get(image_id, []):
                print(f"untagged: {name}")
            print(f"deleted: {image_id}")
        print()
    print(f"Total reclaimed space: {human_size(space, 4)}")  # units.HumanSize, as docker
    return 0
