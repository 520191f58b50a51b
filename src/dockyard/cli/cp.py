"""`dockyard cp [-a] [-L] [-q] SRC DEST`: docker cp's path rules over the archive API.

CONTAINER:PATH on one side, a local path (or `-` for a tar on stdin/stdout) on
the other. As docker/cli: the destination decides (an existing directory gets
the source inside it; otherwise the source takes the destination's name; a
trailing `/.` on the source copies its contents; a directory never overwrites
a file; a destination ending in `/` must be a directory). Local trees are read
and written through directory fds, never following a symlink out of them.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import sys
import threading
from dataclasses import dataclass
from typing import Any

from dockyard.cli.runflags import Flag
from dockyard.errors import DockyardError, NotFound

USAGE = """[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
        dockyard cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"""
FLAGS = [Flag("archive", short="a"), Flag("follow-link", short="L"), Flag("quiet", short="q")]
GO_DIR, GO_SYMLINK = 1 << 31, 1 << 27


class CpError(Exception):
    pass


@dataclass
class Info:
    path: str
    exists: bool = False
    is_dir: bool = False
    rebase: str = ""


def split_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: (container, path); container "" for a local path."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return "", arg
    container, _, path = arg.partition(":")
    return container, path


def split_dir_entry(path: str) -> tuple[str, str]:
    """archive.SplitPathDirEntry: "/a/b/." -> ("/a/b", "."), "/a/b/" -> ("/a", "b")."""
    clean = posixpath.normpath(path) if path else "."
    if path.endswith("/.") or path == ".":
        clean = clean.rstrip("/") + "/." if clean != "/" else "/."
    return posixpath.dirname(clean) or ".", posixpath.basename(clean)


def asserts_dir(path: str) -> bool:
    return path.endswith(("/", "/.")) or path == "."


def prepare(src: Info, dst: Info) -> tuple[str, str, str]:
    """archive.PrepareArchiveCopy: (directory to extract into, old base, new base);
    old == new means no renaming."""
    dst_dir, dst_base = split_dir_entry(dst.path)
    _, src_base = split_dir_entry(src.path)
    src_base = src.rebase or src_base
    if dst.exists and dst.is_dir:
        return dst.path, src_base, src_base
    if dst.exists and src.is_dir:
        raise CpError("cannot copy directory")
    if dst.exists or src.is_dir:
        return dst_dir, src_base, dst_base
    if asserts_dir(dst.path):
        raise CpError("no such directory")
    return dst_dir, src_base, dst_base


def local_destination(path: str) -> Info:
    """archive.CopyInfoDestinationPath: follow a symlinked destination; the parent of a
    missing one must be a directory."""
    original = path
    for _ in range(64):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent, _ = split_dir_entry(path)
            if not os.path.isdir(parent):
                if os.path.exists(parent):
                    raise CpError("not a directory") from None
                raise CpError(f"stat {parent}: no such file or directory") from None
            return Info(path)
        if not os.path.islink(path):
            import stat as st_
            return Info(path, True, st_.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        if not target.startswith("/"):
            target = os.path.join(split_dir_entry(path)[0], target)
        path = target
    raise CpError(f"too many symlinks in {original}")


def _stat_of(headers: dict[str, str]) -> dict:
    raw = headers.get("x-docker-container-path-stat", "")
    try:
        return json.loads(base64.b64decode(raw)) if raw else {}
    except ValueError:
        return {}


def _container_stat(client: Any, container: str, path: str) -> dict | None:
    try:
        return _stat_of(client.head(f"/containers/{container}/archive", {"path": path}))
    except NotFound:
        return None  # as docker's CLI: the GET or PUT then says what is missing


def _rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """archive.GetRebaseName."""
    if path.endswith("/.") and not resolved.endswith("/."):
        resolved += "/."
    elif path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    _, base = split_dir_entry(path)
    _, rbase = split_dir_entry(resolved)
    return resolved, base if base != rbase else ""


# -- container -> local ------------------------------------------------------------------

def copy_from(client: Any, container: str, src_path: str, dst: str, follow: bool) -> int:
    from dockyard.tarcopy import extract, renamer

    rebase = ""
    if follow:
        st = _container_stat(client, container, src_path)
        if st and st.get("mode", 0) & GO_SYMLINK:
            target = st.get("linkTarget", "")
            if not target.startswith("/"):
                target = posixpath.join(split_dir_entry(src_path)[0], target)
            src_path, rebase = _rebase_name(src_path, target)
    dst_info = None if dst == "-" else local_destination(dst)
    stream = client.raw_stream("GET", f"/containers/{container}/archive", {"path": src_path})
    with stream:
        st = _stat_of(stream.headers)
        if dst_info is None:
            total = 0
            for chunk in stream:
                sys.stdout.buffer.write(chunk)
                total += len(chunk)
            sys.stdout.buffer.flush()
            return total
        src = Info(src_path, True, bool(st.get("mode", 0) & GO_DIR), rebase)
        into, _old, new = prepare(src, dst_info)
        archived = split_dir_entry(src_path)[1]  # what the daemon named the entries
        name_map = renamer(archived, new) if archived != new else None
        # docker's CLI extracts with NoLchown: the files are the copying user's
        return extract(into, stream, rename=name_map,  # type: ignore[arg-type]
                       owner=(os.getuid(), os.getgid()))


# -- local -> container ------------------------------------------------------------------

def _local_source(path: str, follow: bool) -> Info:
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise CpError(f"lstat {os.path.abspath(path)}: no such file or directory") from None
    rebase = ""
    if follow and os.path.islink(path):
        resolved = os.path.realpath(path)
        path, rebase = _rebase_name(path, resolved)
    return Info(path, True, os.path.isdir(path) and (follow or not os.path.islink(path)),
                rebase)


def _write_local_tree(w: Any, src: Info, top: str) -> None:
    """The local source as entries named `top` (and `top/...`)."""
    path = src.path
    if path.endswith(("/.", "/")) or (src.rebase and os.path.isdir(path)):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        w.dir(fd, top, "/")
        return
    parent, name = os.path.split(os.path.abspath(path))
    pfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        w.add(pfd, name, top, "/")
    finally:
        os.close(pfd)


def copy_to(client: Any, src: str, container: str, dst_path: str, archive: bool,
            follow: bool) -> int:
    from dockyard.tarcopy import TreeWriter

    st = _container_stat(client, container, dst_path)
    dst = Info(dst_path)
    if st is not None:
        if st.get("mode", 0) & GO_SYMLINK:
            target = st.get("linkTarget", "")
            if not target.startswith("/"):
                target = posixpath.join(split_dir_entry(dst_path)[0], target)
            dst.path = target
            st = _container_stat(client, container, target)
        if st is not None:
            dst.exists, dst.is_dir = True, bool(st.get("mode", 0) & GO_DIR)
    params = {"path": dst.path, "noOverwriteDirNonDir": "true"}
    if archive:
        params["copyUIDGID"] = "true"
    if src == "-":
        if not dst.is_dir:
            raise CpError(f'destination "{container}:{dst_path}" must be a directory')
        client.put(f"/containers/{container}/archive", params, body=sys.stdin.buffer)
        return 0
    info = _local_source(src, follow)
    if not dst.exists and asserts_dir(dst_path) and not info.is_dir:
        raise CpError(f'destination "{container}:{dst_path}" must be a directory')
    into, old, new = prepare(info, dst)
    params["path"] = into
    rfd, wfd = os.pipe()
    errors: list[BaseException] = []
    counted = [0]

    def produce() -> None:
        with os.fdopen(wfd, "wb") as out:
            w = TreeWriter(out)
            try:
                _write_local_tree(w, info, new if old != new else old)
                w.close()
            except (OSError, DockyardError) as e:  # reported after the request
                errors.append(e)
            counted[0] = w.count

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    with os.fdopen(rfd, "rb") as body:
        try:
            client.put(f"/containers/{container}/archive", params, body=_Chunks(body))
        finally:
            t.join()
    if errors:
        raise CpError(str(errors[0]))
    return counted[0]


class _Chunks:
    """A pipe's read end as an iterable of chunks (sent with chunked encoding)."""

    def __init__(self, f: Any):
        self.f = f

    def __iter__(self):  # type: ignore[no-untyped-def]
        while chunk := self.f.read(1 << 20):
            yield chunk


def cp(argv: list[str], ctx) -> int:
    from dockyard.cli.container import _client, _err, _parse

    p = _parse("cp", USAGE, argv, FLAGS, 2, 2)
    src, dst = p.args
    src_c, src_path = split_arg(src)
    dst_c, dst_path = split_arg(dst)
    if src_c and dst_c:
        print("copying between containers is not supported", file=sys.stderr)
        return 1
    if not src_c and not dst_c:
        print("must specify at least one container source", file=sys.stderr)
        return 1
    if (src_c and not src_path) or (dst_c and not dst_path):
        print("path cannot be empty", file=sys.stderr)  # docker's message
        return 1
    client = _client(ctx)
    try:
        if src_c:
            copy_from(client, src_c, src_path, dst_path, p["follow-link"])
            where = dst_path
        else:
            copy_to(client, src_path, dst_c, dst_path, p["archive"], p["follow-link"])
            where = f"{dst_c}:{dst_path}"
        if not p["quiet"] and sys.stderr.isatty() and "-" not in (src_path, dst_path):
            print(f"Successfully copied to {where}", file=sys.stderr)
        return 0
    except CpError as e:
        print(str(e), file=sys.stderr)
        return 1
    except DockyardError as e:
        print(_err(e), file=sys.stderr)
        return 1
    except OSError as e:
        print(str(e), file=sys.stderr)
        return 1
    finally:
        client.close()
