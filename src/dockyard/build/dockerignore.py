"""`.dockerignore`: docker's patterns (moby/patternmatcher).

One pattern per line; `#` lines are comments; each pattern is cleaned like Go's
filepath.Clean with a leading `/` dropped; `**` matches any number of
directories; `!` makes an exception. The last pattern that matches a path
decides; a pattern that matches a parent directory matches everything in it.
The Dockerfile and .dockerignore are always sent (the daemon needs them) but
COPY and ADD do not see them when they are ignored (context.py).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from dockyard.build.match import BadPattern, translate


@dataclass
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern
    dirs: int  # how many path components the pattern has


def read(text: str | bytes) -> list[str]:
    """The patterns of a .dockerignore file (comments and blanks dropped)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    out = []
    for line in text.removeprefix("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        neg = line.startswith("!")
        if neg:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line).lstrip("/") or "."
            if line == "." and not neg:
                line = "."
        out.append(("!" if neg else "") + line)
    return out


def _regex(pattern: str) -> re.Pattern:
    return re.compile("^" + translate(pattern, double_star=True) + "$", re.DOTALL)


class Matcher:
    def __init__(self, patterns: list[str]):
        self.patterns: list[Pattern] = []
        for p in patterns:
            neg = p.startswith("!")
            text = p[1:] if neg else p
            if not text:
                raise BadPattern(p)
            self.patterns.append(Pattern(text, neg, _regex(text), text.count("/") + 1))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def ignored(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is left out of the context."""
        path = path.strip("/")
        parents = path.split("/")
        result = False
        for p in self.patterns:
            if p.exclusion != result:
                continue  # cannot change the answer
            hit = bool(p.regex.match(path))
            if not hit:
                # the pattern may match a parent directory: `dir` ignores `dir/x`
                for k in range(1, len(parents)):
                    if p.regex.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                result = not p.exclusion
        return result

    def may_hold_exceptions(self, directory: str) -> bool:
        """Whether an ignored directory might still have an excepted path below it
        (the walk has to go in)."""
        if not self.has_exclusions:
            return False
        directory = directory.strip("/") + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            text = p.text
            if "**" in text or text.startswith(directory) or _prefix_may_match(text, directory):
                return True
        return False


def _prefix_may_match(pattern: str, directory: str) -> bool:
    parts = pattern.split("/")
    dparts = directory.strip("/").split("/")
    if len(parts) <= len(dparts):
        return False
    from dockyard.build.match import match
    try:
        return all(match(p, d) for p, d in zip(parts, dparts))
    except BadPattern:
        return False
