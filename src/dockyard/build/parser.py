"""The Dockerfile front end: text -> an AST of instruction nodes with line numbers.

Follows BuildKit's parser (frontend/dockerfile/parser): parser directives at the
top (`# syntax=`, `# escape=`, `# check=`), comments, line continuations with the
escape character (comment and empty lines inside a continuation are skipped),
heredocs for RUN/COPY/ADD (`<<EOF`, `<<-EOF`, quoted names disable expansion),
and JSON (exec) form vs shell form. Flags (`--from=x`) are split off the front of
the arguments here; what they mean is instructions.py's business.

Errors are DockerfileError: `Dockerfile:7: unknown instruction: RUNN`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

INSTRUCTIONS = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from",
                "healthcheck", "label", "maintainer", "onbuild", "run", "shell",
                "stopsignal", "user", "volume", "workdir")
HEREDOC_INSTRUCTIONS = ("run", "copy", "add")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\2")
MAX_DOCKERFILE = 8 << 20


class DockerfileError(InvalidArgument):
    """A Dockerfile problem with its file and line: `Dockerfile:7: message`."""

    def __init__(self, message: str, line: int = 0, filename: str = "Dockerfile"):
        self.message, self.line, self.filename = message, line, filename
        where = f"{filename}:{line}: " if line else f"{filename}: "
        super().__init__(where + message)


@dataclass
class Heredoc:
    name: str
    content: str
    expand: bool = True  # an unquoted name: variables are expanded in the body
    chomp: bool = False  # <<-: leading tabs removed


@dataclass
class Node:
    cmd: str  # lower case instruction name
    args: str  # the arguments after the flags, continuations joined
    line: int
    end_line: int
    original: str = ""  # the instruction as written (continuations joined)
    flags: list[str] = field(default_factory=list)  # ["--from=build", "--link"]
    json: list[str] | None = None  # exec/JSON form
    heredocs: list[Heredoc] = field(default_factory=list)
    next: Node | None = None  # ONBUILD's inner instruction


@dataclass
class Dockerfile:
    nodes: list[Node]
    directives: dict[str, str]
    escape: str = "\\"
    filename: str = "Dockerfile"
    warnings: list[str] = field(default_factory=list)


def _directives(lines: list[str], filename: str) -> tuple[dict[str, str], int]:
    """The parser directives at the top; returns them and the index of the first line
    after them."""
    found: dict[str, str] = {}
    i = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            return found, i
        name, value = m.group(1).lower(), m.group(2)
        if name in _KNOWN_DIRECTIVES:
            if name in found:
                raise DockerfileError(f"only one {name} parser directive can be used",
                                      i + 1, filename)
            found[name] = value
    return found, len(lines)


def _strip_comment_lines(text: str) -> bool:
    s = text.lstrip()
    return s.startswith("#")


def _trailing_escape(line: str, escape: str) -> str | None:
    """The line without its continuation escape, or None if it does not continue."""
    stripped = line.rstrip(" \t\r")
    if stripped.endswith(escape):
        return stripped[:-1]
    return None


def parse(text: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    if isinstance(text, bytes):
        if len(text) > MAX_DOCKERFILE:
            raise DockerfileError("file is too large", 0, filename)
        text = text.decode("utf-8", errors="replace")
    text = text.removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").split("\n")
    directives, start = _directives(lines, filename)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token '{escape}' does not match ` or \\",
                              1, filename)
    df = Dockerfile([], directives, escape, filename)
    i = start
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i
        parts: list[str] = []
        cont = _trailing_escape(raw, escape)
        if cont is None:
            parts.append(raw)
            i += 1
        else:
            parts.append(cont)
            i += 1
            while i < n:
                line = lines[i]
                if _strip_comment_lines(line):
                    i += 1
                    continue
                if not line.strip():
                    df.warnings.append(f"{filename}:{i + 1}: empty continuation line")
                    i += 1
                    continue
                more = _trailing_escape(line, escape)
                i += 1
                if more is None:
                    parts.append(line)
                    break
                parts.append(more)
        joined = "".join(parts).strip()
        node, i = _node(joined, first + 1, i, lines, df)
        df.nodes.append(node)
    return df


def _node(text: str, line: int, i: int, lines: list[str], df: Dockerfile
          ) -> tuple[Node, int]:
    word, _, rest = text.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = more + " " + rest if rest else more
    cmd = word.lower()
    rest = rest.strip()
    if cmd not in INSTRUCTIONS:
        raise DockerfileError(f"unknown instruction: {word.upper()}", line, df.filename)
    node = Node(cmd=cmd, args="", line=line, end_line=i, original=text)
    if cmd == "onbuild":
        if not rest:
            raise DockerfileError("ONBUILD requires at least one argument", line, df.filename)
        inner_word = rest.split(None, 1)[0].lower()
        if inner_word in ("onbuild",):
            raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                                  line, df.filename)
        if inner_word in ("from", "maintainer"):
            raise DockerfileError(f"{inner_word.upper()} isn't allowed as an ONBUILD trigger",
                                  line, df.filename)
        inner, _ = _node(rest, line, i, [], Dockerfile([], {}, df.escape, df.filename))
        node.next = inner
        node.args = rest
        return node, i
    flags, rest = split_flags(rest)
    node.flags = flags
    node.args = rest
    if cmd in HEREDOC_INSTRUCTIONS:
        found = list(_HEREDOC.finditer(rest))
        if found and not rest.lstrip().startswith("["):
            for m in found:
                body, i = _read_heredoc(m.group(3), m.group(1) == "-", lines, i, line, df)
                node.heredocs.append(Heredoc(m.group(3), body, expand=not m.group(2),
                                             chomp=m.group(1) == "-"))
            node.end_line = i
    node.json = json_form(rest)
    return node, i


def json_form(rest: str) -> list[str] | None:
    """An instruction's arguments in JSON (exec) form, a list of strings; None for the
    shell form (including text that only starts with `[`)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _read_heredoc(name: str, chomp: bool, lines: list[str], i: int, line: int,
                  df: Dockerfile) -> tuple[str, int]:
    body: list[str] = []
    while i < len(lines):
        text = lines[i]
        i += 1
        check = text.lstrip("\t") if chomp else text
        if check == name:
            return "".join(b + "\n" for b in body), i
        body.append(check)
    raise DockerfileError(f"unterminated heredoc {name}", line, df.filename)


def split_flags(rest: str) -> tuple[list[str], str]:
    """`--a=1 --b x y` -> (["--a=1", "--b"], "x y"): leading words that start with --."""
    flags: list[str] = []
    while rest.startswith("--"):
        m = re.match(r"(\S+)(\s+|$)", rest)
        if not m:
            break
        word = m.group(1)
        if word == "--":
            break
        # a quoted value may hold spaces: --mount="type=bind,source=a b"
        if '"' in word and word.count('"') % 2:
            end = rest.find('"', rest.find('"') + 1)
            if end > 0:
                m2 = re.match(r"\S*", rest[end + 1:])
                word = rest[:end + 1] + (m2.group(0) if m2 else "")
                flags.append(word)
                rest = rest[len(word):].lstrip()
                continue
        flags.append(word)
        rest = rest[m.end():]
    return flags, rest.strip()


def dump(node: Node) -> dict:
    """A plain dict of a node (tests' expected ASTs)."""
    out: dict = {"cmd": node.cmd, "line": node.line, "args": node.args}
    if node.end_line != node.line:
        out["end_line"] = node.end_line
    if node.flags:
        out["flags"] = node.flags
    if node.json is not None:
        out["json"] = node.json
    if node.heredocs:
        out["heredocs"] = [{"name": h.name, "content": h.content, "expand": h.expand,
                            "chomp": h.chomp} for h in node.heredocs]
    if node.next is not None:
        out["next"] = dump(node.next)
    return out
