"""`dockyard image ...` and docker's top-level aliases (images, pull, push, tag, rmi,
history, save, load, import). Parsing and output only: every verb is an Engine
API request through dockyard.client, so it works against any daemon (ours or
dockerd); credentials for pulls and pushes come from the client's config.json.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from dockyard.cli.common import client_for, verb_parser
from dockyard.cli.formatter import human_size, print_formatted, since
from dockyard.errors import DockyardError, InvalidArgument, NotFound

SUBCOMMANDS = ("ls", "list", "pull", "push", "tag", "rm", "inspect", "history", "save", "load",
               "import", "prune", "bootstrap", "build")
IMAGE_COLUMNS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG",
                 "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE"}
HISTORY_COLUMNS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}
NONE = "<none>"


_parser = verb_parser


_client = client_for


def _path(name: str, tail: str = "") -> str:
    """/images/<name>[/tail], the name quoted for a URL path (slashes kept, as docker)."""
    return "/images/" + urllib.parse.quote(name, safe="/:@") + tail


def _error(message: str) -> int:
    """A client-side error, docker's way: "Error: ..." and exit 1."""
    print(f"Error: {message}", file=sys.stderr)
    return 1


def _auth_headers(ctx, name: str) -> dict[str, str]:
    from dockyard.client.auth import registry_auth_header

    header = registry_auth_header(ctx.config_dir, name)
    return {"X-Registry-Auth": header} if header else {}


def image(argv: list[str], ctx) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard image COMMAND\n\nCommands:\n  " + "\n  ".join(SUBCOMMANDS))
        return 0
    sub, rest = argv[0], argv[1:]
    handlers = {"ls": ls, "list": ls, "pull": pull, "push": push, "tag": tag, "rm": rm,
                "inspect": inspect, "history": history, "save": save, "load": load,
                "import": import_, "prune": prune,
                "build": lambda a, c: __import__("dockyard.cli.build",
                                                 fromlist=["_"]).build(a, c),
                "bootstrap": lambda a, c: __import__("dockyard.cli.bootstrap",
                                                     fromlist=["_"]).bootstrap(a, c)}
    if sub not in handlers:
        print(f"dockyard: 'image {sub}' is not a dockyard command.", file=sys.stderr)
        return 1
    return handlers[sub](rest, ctx)


# -- ls ---------------------------------------------------------------------------

def _filters(specs: list[str]) -> dict[str, dict[str, bool]]:
    """--filter key=value flags -> the API's filters ({"key": {"value": true}})."""
    out: dict[str, dict[str, bool]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        out.setdefault(key.strip(), {})[value] = True
    return out


def _names(summary: dict, show_digests: bool) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows of one image, as docker's CLI makes them: one per
    tag (per tag and digest with `show_digests`), one per repository only digests name."""
    tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
    digests: dict[str, list[str]] = {}
    for ref in summary.get("RepoDigests") or []:
        repo, _, digest = ref.partition("@")
        if ref != "<none>@<none>":
            digests.setdefault(repo, []).append(digest)
    if not tags and not digests:
        return [(NONE, NONE, NONE)]
    rows = []
    for t in tags:
        repo, _, name = t.rpartition(":")
        for digest in (digests.get(repo) if show_digests and digests.get(repo) else [NONE]):
            rows.append((repo, name, digest))
    tagged = {repo for repo, _, _ in rows}
    for repo, found in digests.items():
        if repo not in tagged:
            rows += [(repo, NONE, d) for d in (found if show_digests else [NONE])]
    return rows


def _image_rows(summaries: list[dict], no_trunc: bool, show_digests: bool) -> list[dict]:
    rows = []
    for s in sorted(summaries, key=lambda s: s.get("Created") or 0, reverse=True):
        image_id = s["Id"] if no_trunc else s["Id"].removeprefix("sha256:")[:12]
        created, size = s.get("Created") or 0, s.get("Size") or 0
        for repo, tag_, digest in _names(s, show_digests):
            rows.append({
                "Containers": "N/A",
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
                "CreatedSince": since(created),
                "Digest": digest,
                "ID": image_id,
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": human_size(size),
                "Tag": tag_,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(size, 4),  # units.HumanSize, as docker
            })
    return rows


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
    filters = _filters(args.filter)
    if args.reference:  # as docker's CLI: the argument is one more reference filter
        filters.setdefault("reference", {})[args.reference] = True
    summaries = _client(ctx).get("/images/json", params={"all": args.all,
                                                         "filters": filters or None})
    # docker's needDigest: --digests, or a format that asks for {{.Digest}}
    digests = args.digests or "{{.Digest}}" in (args.format or "")
    rows = _image_rows(summaries or [], args.no_trunc, digests)
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

def _with_default_tag(name: str, quiet: bool) -> str:
    """docker's "Using default tag: latest" for a name with neither tag nor digest."""
    from dockyard.client.reference import split

    _, tag_, digest = split(name)
    if tag_ or digest:
        return name
    if not quiet:
        print("Using default tag: latest")
    return name + ":latest"


def pull(argv: list[str], ctx) -> int:
    p = _parser("pull", "pull [OPTIONS] NAME[:TAG|@DIGEST]")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("-a", "--all-tags", action="store_true")
    args = p.parse_args(argv)
    from dockyard.client.progress import display
    from dockyard.client.reference import normalized, split

    out = None if args.quiet else sys.stdout
    if args.all_tags:  # a name without a tag: the daemon pulls every tag
        _, tag_, digest = split(args.name)
        if tag_ or digest:
            return _error("tag can't be used with --all-tags/-a")
        name = args.name
    else:
        name = _with_default_tag(args.name, args.quiet)
    messages = _client(ctx).stream_json(
        "POST", "/images/create", params={"fromImage": name, "platform": args.platform},
        headers=_auth_headers(ctx, name))
    display(messages, out)
    print(normalized(name, default_tag=not args.all_tags))
    return 0


def push(argv: list[str], ctx) -> int:
    p = _parser("push", "push [OPTIONS] NAME[:TAG]")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    args = p.parse_args(argv)
    from dockyard.client.progress import display
    from dockyard.client.reference import split

    out = None if args.quiet else sys.stdout
    repo, tag_, digest = split(args.name)
    if args.all_tags and (tag_ or digest):
        return _error("tag can't be used with --all-tags/-a")
    if not args.all_tags:
        repo, tag_, digest = split(_with_default_tag(args.name, args.quiet))
    messages = _client(ctx).stream_json(
        "POST", _path(repo, "/push"), params={"tag": digest or tag_ or None},
        headers=_auth_headers(ctx, repo))
    aux = display(messages, out)
    if args.quiet:
        for info in aux:
            if isinstance(info, dict) and info.get("Digest"):
                print(info["Digest"])
    return 0


# -- tag / rm ---------------------------------------------------------------------

def tag(argv: list[str], ctx) -> int:
    p = _parser("tag", "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
    p.add_argument("source")
    p.add_argument("target")
    args = p.parse_args(argv)
    from dockyard.client.reference import split

    repo, tag_, digest = split(args.target)
    if digest:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    _client(ctx).post(_path(args.source, "/tag"), params={"repo": repo, "tag": tag_ or None})
    return 0


def rm(argv: list[str], ctx) -> int:
    p = _parser("rmi", "rmi [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    args = p.parse_args(argv)
    client = _client(ctx)
    params = {"force": args.force, "noprune": args.no_prune}
    status = 0
    for name in args.images:
        try:
            lines = client.delete(_path(name), params=params) or []
        except DockyardError as e:  # as docker: report it, go on with the next image
            if type(e).__name__ == "CannotConnect":
                raise
            print(f"Error response from daemon: {e}", file=sys.stderr)
            status = 1
            continue
        for entry in lines:
            for kind, text in entry.items():
                print(f"{kind}: {text}")
    return status


# -- inspect / history --------------------------------------------------------------

def inspect(argv: list[str], ctx) -> int:
    p = _parser("image inspect", "image inspect [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--format")
    args = p.parse_args(argv)
    client = _client(ctx)
    found, status = [], 0
    for name in args.images:
        try:
            found.append(client.get(_path(name, "/json")))
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    if args.format:
        print_formatted(found, args.format, {})
    else:
        print(json.dumps(found, indent=4))
    return status


def _history_row(r: dict, human: bool, no_trunc: bool) -> dict:
    rid = r["Id"] if no_trunc or r["Id"] == "<missing>" else r["Id"].removeprefix("sha256:")[:12]
    created_by = r.get("CreatedBy") or ""
    if not no_trunc and len(created_by) > 45:
        created_by = created_by[:44] + "…"
    created, size = r.get("Created") or 0, r.get("Size") or 0
    return {"ID": rid,
            "CreatedSince": since(created) if human else
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
            "CreatedBy": created_by,
            "Size": human_size(size) if human else str(size),
            "Comment": r.get("Comment") or ""}


def history(argv: list[str], ctx) -> int:
    p = _parser("history", "history [OPTIONS] IMAGE")
    p.add_argument("image")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    args = p.parse_args(argv)
    human = args.human.lower() not in ("false", "0")
    rows = _client(ctx).get(_path(args.image, "/history")) or []
    out = [_history_row(r, human, args.no_trunc) for r in rows]
    if args.quiet:
        print("\n".join(o["ID"] for o in out))
        return 0
    fmt = args.format or ("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
                          "{{.Comment}}")
    print_formatted(out, fmt, HISTORY_COLUMNS)
    return 0


# -- save / load / import ---------------------------------------------------------

def _copy(stream, out) -> None:
    """The daemon's body to `out`; a body cut short (the daemon failed mid-way) raises."""
    import http.client

    try:
        for chunk in stream:
            out.write(chunk)
    except (http.client.HTTPException, OSError) as e:
        raise DockyardError(f"error reading the image archive from the daemon: {e}") from None


class LocalFileError(Exception):
    """A file of ours (-i, -o, an import source) cannot be opened: "Error: ...", exit 1."""


def _open(path: str, mode: str):
    try:
        return open(path, mode)  # the caller's `with` closes it
    except OSError as e:
        raise LocalFileError(f"open {path}: {(e.strerror or str(e)).lower()}") from None


def _local_files(verb: Callable[[list[str], Any], int]) -> Callable[[list[str], Any], int]:
    """A verb whose LocalFileError prints as docker's client-side errors do."""
    @functools.wraps(verb)
    def run(argv: list[str], ctx) -> int:
        try:
            return verb(argv, ctx)
        except LocalFileError as e:
            return _error(str(e))
    return run


@_local_files
def save(argv: list[str], ctx) -> int:
    p = _parser("save", "save [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    if not args.output and sys.stdout.isatty():
        return _error("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    stream = _client(ctx).raw_stream("GET", "/images/get", params={"names": args.images})
    with stream:
        if not args.output:
            _copy(stream, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        tmp = args.output + ".tmp"  # the file appears only once the archive is whole
        try:
            with _open(tmp, "wb") as f:
                _copy(stream, f)
            os.replace(tmp, args.output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return 0


@_local_files
def load(argv: list[str], ctx) -> int:
    p = _parser("load", "load [OPTIONS]")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    from dockyard.client.progress import display

    if not args.input and sys.stdin.isatty():
        return _error("requested load from stdin, but stdin is empty")
    headers = {"Content-Type": "application/x-tar"}
    client = _client(ctx)
    with _open(args.input, "rb") if args.input else _stdin() as body:
        messages = client.stream_json("POST", "/images/load", params={"quiet": args.quiet},
                                      body=body, headers=headers)
        display(messages, sys.stdout)
    return 0


def _stdin():
    """Standard input as a request body; a dup, so closing the body leaves fd 0 open."""
    return os.fdopen(os.dup(sys.stdin.fileno()), "rb")


@_local_files
def import_(argv: list[str], ctx) -> int:
    p = _parser("import", "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
    p.add_argument("source")
    p.add_argument("reference", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform")
    args = p.parse_args(argv)
    from dockyard.client.progress import display

    params: dict[str, Any] = {"repo": args.reference, "message": args.message or None,
                              "changes": args.change, "platform": args.platform}
    client = _client(ctx)
    if "://" in args.source:  # the daemon fetches a URL itself, as dockerd does
        messages = client.stream_json("POST", "/images/create",
                                      params={"fromSrc": args.source, **params})
        display(messages, sys.stdout)
        return 0
    with _stdin() if args.source == "-" else _open(args.source, "rb") as body:
        messages = client.stream_json("POST", "/images/create",
                                      params={"fromSrc": "-", **params}, body=body,
                                      headers={"Content-Type": "application/x-tar"})
        display(messages, sys.stdout)
    return 0


def prune(argv: list[str], ctx) -> int:
    p = _parser("image prune", "image prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    args = p.parse_args(argv)
    filters = _filters(args.filter)
    filters["dangling"] = {"false" if args.all else "true": True}
    if not args.force and sys.stdin.isatty():
        what = "all images without at least one container associated to them" if args.all \
            else "all dangling images"
        answer = input(f"WARNING! This will remove {what}.\nAre you sure you want to "
                       "continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    report = _client(ctx).post("/images/prune", params={"filters": filters}) or {}
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for entry in deleted:
            for kind, text in entry.items():
                print(f"{kind.lower()}: {text}")
        print()
    # units.HumanSize, as docker
    print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0
