"""Go's filepath.Match for COPY/ADD wildcards: `*` and `?` never match `/`, `[...]`
classes with `^` negation and ranges, `\\` escapes; a malformed pattern is an error."""

from __future__ import annotations

import functools
import re

from dockyard.errors import InvalidArgument


class BadPattern(InvalidArgument):
    def __init__(self, pattern: str):
        super().__init__(f"syntax error in pattern: {pattern!r}")


def has_meta(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re.Pattern:
    return re.compile(translate(pattern), re.DOTALL)


def translate(pattern: str, double_star: bool = False) -> str:
    """The pattern as a regular expression (unanchored). `double_star`: `**` also
    matches across directories and `**/` any number of them (.dockerignore's rule)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*" and double_star and pattern.startswith("**", i):
            i += 1
            if pattern.startswith("/", i + 1):
                i += 1
                out.append("(.*/)?")  # `**/`: zero or more directories
            else:
                out.append(".*")
        elif ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= n:
                raise BadPattern(pattern)
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i, cls = _class(pattern, i + 1)
            out.append(cls)
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _class(pattern: str, i: int) -> tuple[int, str]:
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    parts: list[str] = []
    first = True
    while True:
        if i >= n:
            raise BadPattern(pattern)
        if pattern[i] == "]" and not first:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        first = False
        if i < n and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise BadPattern(pattern)
            parts.append(re.escape(lo) + "-" + re.escape(hi))
        else:
            parts.append(re.escape(lo))
    body = "".join(parts)
    # a class never matches the separator (Go: "non-Separator character")
    return i, (f"[^/{body}]" if negate else f"(?!/)[{body}]")


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise BadPattern(pattern)
    return pattern[i], i + 1


def match(pattern: str, name: str) -> bool:
    """filepath.Match(pattern, name); BadPattern for a malformed pattern."""
    return compile_pattern(pattern).fullmatch(name) is not None
