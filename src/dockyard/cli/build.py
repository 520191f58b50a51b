"""`dockyard build` / `dockyard image build` / `dockyard builder prune`.

The context directory is sent as a tar filtered by its .dockerignore (the
Dockerfile and .dockerignore are always sent: the daemon needs them, and hides
them from COPY when they are ignored); a Dockerfile outside the context is
added under a generated name. Output: the daemon's stream as it comes (plain),
or on a terminal a live view that keeps the running step's last output lines
in place (--progress=tty, the default on a TTY).

--secret id=X[,src=FILE|,env=VAR]: the legacy API has no secret channel, so each
secret travels in the context tar as .dockyard.secrets/<hex of the id> (a
reserved top-level directory); the daemon takes it out of the context before
anything else sees it (build/context.py) and only RUN --mount=type=secret reads
it. A context directory that itself holds .dockyard.secrets is refused.

A failed build exits as docker's CLI does: with the code in the error's
errorDetail (a RUN's exit code), else 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import tarfile
import tempfile
from typing import Any, TextIO

from dockyard.cli.common import client_for
from dockyard.client.api import iter_json
from dockyard.errors import DockyardError

LIVE_LINES = 6


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"dockyard {prog}",
                                usage=f"dockyard {prog} [OPTIONS] PATH | URL | -",
                                allow_abbrev=False)
    p.add_argument("context")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file", default="")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target", default="")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--iidfile", default="")
    p.add_argument("--network", default="")
    p.add_argument("--progress", default="auto", choices=("auto", "plain", "tty"))
    p.add_argument("--rm", default="true", nargs="?", const="true")
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--shm-size", default="")
    p.add_argument("-m", "--memory", default="")
    p.add_argument("--memory-swap", default="")
    p.add_argument("--cpu-shares", type=int, default=0)
    p.add_argument("--cpu-period", type=int, default=0)
    p.add_argument("--cpu-quota", type=int, default=0)
    p.add_argument("--cpuset-cpus", default="")
    p.add_argument("--cpuset-mems", default="")
    p.add_argument("--platform", default="")
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("--cache-from", action="append", default=[])
    return p


def read_secrets(specs: list[str]) -> dict[str, bytes]:
    """--secret id=X,src=FILE | id=X,env=VAR (type=file|env; without src or env: the
    environment variable X if set, else the file X, as buildx)."""
    out: dict[str, bytes] = {}
    for spec in specs:
        fields: dict[str, str] = {}
        for part in spec.split(","):
            k, eq, v = part.partition("=")
            if not eq:
                raise DockyardError(f"invalid secret {spec!r}: expected key=value fields")
            k = k.strip().lower()
            fields[{"source": "src"}.get(k, k)] = v
        ident = fields.get("id", "")
        kind = fields.get("type", "")
        src, env = fields.get("src", ""), fields.get("env", "")
        if kind == "env" and not env:
            env, src = src or ident, ""
        if not ident:
            ident = env or os.path.basename(src)
        if not ident:
            raise DockyardError(f"invalid secret {spec!r}: no id")
        if not src and not env:
            if kind != "file" and ident in os.environ:
                env = ident
            else:
                src = ident
        if env:
            if env not in os.environ:
                raise DockyardError(f"secret {ident}: environment variable {env} is not set")
            out[ident] = os.environ[env].encode()
        else:
            try:
                with open(os.path.expanduser(src), "rb") as f:
                    out[ident] = f.read()
            except OSError as e:
                raise DockyardError(f"secret {ident}: cannot read {src}: "
                                    f"{e.strerror}") from None
    return out


_client = client_for


# -- the context -------------------------------------------------------------------------

def context_tar(root: str, dockerfile: str, out: Any,
                secret_files: dict[str, bytes] | None = None) -> str:
    """Write the context at `root` to `out` as a tar; returns the Dockerfile's name in it."""
    from dockyard.build import dockerignore
    from dockyard.build.context import SECRETS_DIR

    root = os.path.abspath(root)
    if os.path.lexists(os.path.join(root, SECRETS_DIR)):
        raise DockyardError(f"the context holds {SECRETS_DIR}, which is reserved for "
                            "build secrets")
    patterns: list[str] = []
    ign = os.path.join(root, ".dockerignore")
    if os.path.isfile(ign):
        with open(ign, "rb") as f:
            patterns = dockerignore.read(f.read())
    matcher = dockerignore.Matcher(patterns)
    df_path = os.path.abspath(dockerfile) if dockerfile else os.path.join(root, "Dockerfile")
    inside = os.path.commonpath([root, df_path]) == root
    df_name = os.path.relpath(df_path, root) if inside else \
        f".dockerfile.{secrets.token_hex(10)}"
    always = {".dockerignore", df_name}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for base, dirs, files in os.walk(root):
            dirs.sort()
            rel_base = os.path.relpath(base, root)
            rel_base = "" if rel_base == "." else rel_base
            keep_dirs = []
            for d in dirs:
                rel = os.path.join(rel_base, d)
                full = os.path.join(base, d)
                if os.path.islink(full):
                    files.append(d)  # a symlink to a directory is sent as a link
                    continue
                if matcher.ignored(rel):
                    if matcher.may_hold_exceptions(rel):
                        keep_dirs.append(d)
                    continue
                keep_dirs.append(d)
                tar.add(full, arcname=rel, recursive=False)
            dirs[:] = keep_dirs
            for name in sorted(files):
                rel = os.path.join(rel_base, name)
                if matcher.ignored(rel) and rel not in always:
                    continue
                _add(tar, os.path.join(base, name), rel)
        if not inside:
            _add(tar, df_path, df_name)
        _add_secrets(tar, secret_files or {})
    return df_name


def _add_secrets(tar: tarfile.TarFile, values: dict[str, bytes]) -> None:
    from dockyard.build.context import SECRETS_DIR

    if not values:
        return
    info = tarfile.TarInfo(SECRETS_DIR)
    info.type, info.mode = tarfile.DIRTYPE, 0o700
    tar.addfile(info)
    for ident, data in sorted(values.items()):
        info = tarfile.TarInfo(f"{SECRETS_DIR}/{ident.encode().hex()}")
        info.size, info.mode = len(data), 0o400
        tar.addfile(info, io.BytesIO(data))


def _add(tar: tarfile.TarFile, path: str, rel: str) -> None:
    info = tar.gettarinfo(path, arcname=rel)
    info.uname = info.gname = ""
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    elif info.issym() or info.isdir():
        tar.addfile(info)


# -- output ------------------------------------------------------------------------------------

class LiveView:
    """Step headers and results stay; a running step's output scrolls in a small window."""

    def __init__(self, out: TextIO):
        self.out = out
        self.window: list[str] = []
        self.partial = ""

    def _clear(self) -> None:
        if self.window:
            self.out.write(f"\x1b[{len(self.window)}A\x1b[J")
            self.window = []

    def text(self, text: str) -> None:
        for line in (self.partial + text).splitlines(keepends=True):
            if not line.endswith("\n"):
                self.partial = line
                break
            self.partial = ""
            if line.startswith(("Step ", " ---> ", "Successfully", "Removing intermediate")):
                self._clear()
                self.out.write(line)
            else:
                self._clear_only()
                self.window = (self.window + [line.rstrip("\n")[:200]])[-LIVE_LINES:]
                self.out.write("".join(f"\x1b[2m  {w}\x1b[0m\n" for w in self.window))
        self.out.flush()

    def _clear_only(self) -> None:
        if self.window:
            self.out.write(f"\x1b[{len(self.window)}A\x1b[J")

    def finish(self) -> None:
        """The last output lines stay on screen (they explain a failed step)."""
        self.window = []
        if self.partial:
            self.out.write(self.partial + "\n")
            self.partial = ""


def show(messages, out: TextIO, tty: bool) -> list[Any]:
    aux: list[Any] = []
    live = LiveView(out) if tty else None
    try:
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            if "aux" in msg:
                aux.append(msg["aux"])
            elif msg.get("stream") is not None:
                if live is not None:
                    live.text(str(msg["stream"]))
                else:
                    out.write(str(msg["stream"]))
                    out.flush()
            elif msg.get("status"):
                out.write(str(msg["status"]) + ("" if not msg.get("id") else
                                                f" {msg['id']}") + "\n")
    finally:
        if live is not None:
            live.finish()
    return aux


# -- verbs ---------------------------------------------------------------------------------------

def _size(text: str, flag: str) -> int:
    if not text:
        return 0
    from dockyard.cli.runflags import ram_in_bytes

    return ram_in_bytes(text, flag)


def _build_args(specs: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        out[key] = value if eq else os.environ.get(key)
    return out


def build(argv: list[str], ctx: Any) -> int:
    args = _parser("build").parse_args(argv)
    labels = {}
    for spec in args.label:
        k, _, v = spec.partition("=")
        labels[k] = v
    params: dict[str, Any] = {
        "t": args.tag or None, "q": args.quiet or None, "nocache": args.no_cache or None,
        "pull": args.pull or None, "target": args.target or None,
        "buildargs": json.dumps(_build_args(args.build_arg)) if args.build_arg else None,
        "labels": json.dumps(labels) if labels else None,
        "networkmode": args.network or None, "rm": "0" if args.rm == "false" else "1",
        "forcerm": args.force_rm or None,
        "extrahosts": ",".join(args.add_host) if args.add_host else None,
        "shmsize": _size(args.shm_size, "--shm-size") or None,
        "memory": _size(args.memory, "--memory") or None,
        "memswap": (-1 if args.memory_swap == "-1" else _size(args.memory_swap,
                                                              "--memory-swap")) or None,
        "cpushares": args.cpu_shares or None, "cpuperiod": args.cpu_period or None,
        "cpuquota": args.cpu_quota or None, "cpusetcpus": args.cpuset_cpus or None,
        "cpusetmems": args.cpuset_mems or None, "platform": args.platform or None,
        "cachefrom": json.dumps(args.cache_from) if args.cache_from else None,
    }
    try:
        secret_values = read_secrets(args.secret)
    except DockyardError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryFile() as body:
        if args.context == "-":
            if secret_values:
                print("ERROR: --secret needs a context directory", file=sys.stderr)
                return 1
            data = sys.stdin.buffer.read()
            if data[257:262] == b"ustar" or data[:2] == b"\x1f\x8b":
                body.write(data)
            else:  # a Dockerfile alone
                with tarfile.open(fileobj=body, mode="w|") as tar:
                    info = tarfile.TarInfo("Dockerfile")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            params["dockerfile"] = args.file or None
        else:
            if not os.path.isdir(args.context):
                print(f"ERROR: unable to prepare context: path {args.context!r} not found",
                      file=sys.stderr)
                return 1
            if args.file == "-":
                data = sys.stdin.buffer.read()
                with tempfile.NamedTemporaryFile("wb", delete=False) as f:
                    f.write(data)
                try:
                    params["dockerfile"] = context_tar(args.context, f.name, body, secret_values)
                finally:
                    os.unlink(f.name)
            else:
                params["dockerfile"] = context_tar(args.context, args.file, body, secret_values)
        body.seek(0)
        tty = args.progress == "tty" or (args.progress == "auto" and sys.stdout.isatty())
        # an HTTP error raises here (main prints "Error response from daemon: ...")
        stream = _client(ctx).raw_stream("POST", "/build", params=params, body=body,
                                         headers={"Content-Type": "application/x-tar"})
        failed: list[tuple[int, str]] = []
        with stream:
            aux = show(_until_error(iter_json(stream), failed),
                       sys.stdout if not args.quiet else io.StringIO(), tty and not args.quiet)
        if failed:  # an error in the stream: printed as it is, exit code as docker's CLI
            sys.stdout.flush()
            code, message = failed[0]
            print(message, file=sys.stderr)
            return code
    image_id = next((a["ID"] for a in aux if isinstance(a, dict) and a.get("ID")), "")
    if args.quiet and image_id:
        print(image_id)
    if args.iidfile and image_id:
        with open(args.iidfile, "w") as f:
            f.write(image_id)
    return 0


def _until_error(messages: Any, failed: list[tuple[int, str]]) -> Any:
    """The messages up to an error, which goes to `failed` as (exit code, message)."""
    for msg in messages:
        if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
            detail = msg.get("errorDetail") if isinstance(msg.get("errorDetail"), dict) else {}
            code = detail.get("code")
            message = detail.get("message") or msg.get("error") or "unknown error"
            failed.append((code if isinstance(code, int) and 0 < code < 256 else 1,
                           str(message)))
            return
        yield msg


def image_build(argv: list[str], ctx: Any) -> int:
    return build(argv, ctx)


def builder(argv: list[str], ctx: Any) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  dockyard builder COMMAND\n\nCommands:\n  prune")
        return 0
    if argv[0] != "prune":
        print(f"dockyard: 'builder {argv[0]}' is not a dockyard command.", file=sys.stderr)
        return 1
    p = argparse.ArgumentParser(prog="dockyard builder prune", allow_abbrev=False)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.add_argument("--keep-storage", default="")
    args = p.parse_args(argv[1:])
    if not args.force and sys.stdin.isatty():
        what = "all build cache" if args.all else "all dangling build cache"
        answer = input(f"WARNING! This will remove {what}. Are you sure you want to "
                       "continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    filters: dict[str, dict[str, bool]] = {}
    for spec in args.filter:
        k, _, v = spec.partition("=")
        filters.setdefault(k, {})[v] = True
    report = _client(ctx).post("/build/prune", params={
        "all": args.all or None, "filters": json.dumps(filters) if filters else None,
        "keep-storage": _size(args.keep_storage, "--keep-storage") or None}) or {}
    deleted = report.get("CachesDeleted") or []
    if deleted:
        print("Deleted build cache objects:")
        for key in deleted:
            print(key.removeprefix("sha256:")[:25])
    from dockyard.units import human_size

    print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
