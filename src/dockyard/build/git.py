"""Git sources: `ADD <git-url> <dest>` and `POST /build?remote=<git-url>`.

`repo#ref:subdir` as docker. The URL, the ref and the subdirectory are checked
first: none may start with `-` (CVE-2019-13139: a ref read as an option of git),
and `..` may not leave the checkout. git runs with every argument after `--`,
no prompts, no system or user configuration, only the http(s), git and ssh
transports (never ext:: or file), a shallow fetch of the one ref.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from dockyard.errors import InvalidArgument

_GIT_URL = re.compile(r"^(git://|git@|ssh://|https?://[^#]*\.git(#|$))")
TIMEOUT = 300


def is_git_url(src: str) -> bool:
    return bool(_GIT_URL.match(src))


def check_git_url(url: str) -> tuple[str, str, str]:
    """(repository, ref, subdir) of a git URL `repo#ref:subdir`; refuses anything that
    could be read as an option by git (CVE-2019-13139)."""
    repo, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    for part, what in ((repo, "URL"), (ref, "ref"), (subdir, "subdirectory")):
        if part.startswith("-"):
            raise InvalidArgument(f"invalid git {what} {part!r}: it must not start with '-'")
    if ".." in subdir.split("/"):
        raise InvalidArgument(f"invalid git subdirectory {subdir!r}")
    return repo, ref, subdir


def _git(args: list[str], cwd: str, home: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_ALLOW_PROTOCOL": "http:https:git:ssh", "GIT_ASKPASS": "/bin/false",
           "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
    try:
        r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                           timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InvalidArgument("git is not installed on the daemon's host") from None
    except subprocess.TimeoutExpired:
        raise InvalidArgument(f"git {args[0]} timed out") from None
    if r.returncode != 0:
        raise InvalidArgument(f"git {args[0]} failed: "
                              f"{r.stderr.decode(errors='replace').strip()[-500:]}")
    return r.stdout.decode(errors="replace").strip()


def checkout(url: str, scratch: str, keep_git_dir: bool = False) -> tuple[str, str, str]:
    """Fetch `url` into a new directory under `scratch`; returns (that directory, the
    directory the URL's subdir names inside it, the commit)."""
    repo, ref, subdir = check_git_url(url)
    root = tempfile.mkdtemp(dir=scratch)
    home = tempfile.mkdtemp(dir=scratch)
    try:
        work = os.path.join(root, "checkout")
        _git(["init", "-q", "--", work], root, home)
        _git(["remote", "add", "origin", "--", repo], work, home)
        try:
            _git(["fetch", "-q", "--depth=1", "--", "origin", ref or "HEAD"], work, home)
        except InvalidArgument as e:
            if "shallow" not in str(e):
                raise
            # a server without shallow fetches (the dumb http transport): all of it
            _git(["fetch", "-q", "--", "origin", ref or "HEAD"], work, home)
        _git(["checkout", "-q", "FETCH_HEAD"], work, home)
        commit = _git(["rev-parse", "HEAD"], work, home)
        if not keep_git_dir:
            shutil.rmtree(os.path.join(work, ".git"), ignore_errors=True)
        top = os.path.realpath(os.path.join(work, subdir)) if subdir else work
        if os.path.commonpath([top, os.path.realpath(work)]) != os.path.realpath(work) \
                or not os.path.isdir(top):
            raise InvalidArgument(f"git subdirectory {subdir!r} is not a directory of the "
                                  "repository")
        return root, top, commit
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(home, ignore_errors=True)
