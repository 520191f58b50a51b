"""Typed instructions from parser nodes: flags parsed and checked, arguments split.

Variables are not expanded here (what a variable holds depends on the steps
before); the executor expands the raw words with expand.py when it runs a step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dockyard.build.parser import DockerfileError, Heredoc, Node, json_form

FLAGS: dict[str, dict[str, str]] = {  # instruction -> flag -> kind (str|bool|list)
    "from": {"platform": "str"},
    "run": {"mount": "list", "network": "str", "security": "str"},
    "copy": {"from": "str", "chown": "str", "chmod": "str", "link": "bool",
             "parents": "bool", "exclude": "list"},
    "add": {"chown": "str", "chmod": "str", "link": "bool", "checksum": "str",
            "keep-git-dir": "bool", "exclude": "list"},
    "healthcheck": {"interval": "str", "timeout": "str", "start-period": "str",
                    "start-interval": "str", "retries": "str"},
}


@dataclass
class Instruction:
    node: Node
    flags: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node.cmd.upper()

    @property
    def line(self) -> int:
        return self.node.line


@dataclass
class From(Instruction):
    image: str = ""
    stage_name: str = ""


@dataclass
class Command(Instruction):
    """RUN, CMD, ENTRYPOINT: exec form (`argv`) or shell form (`shell_text`)."""

    argv: list[str] | None = None
    shell_text: str = ""
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class Pairs(Instruction):
    """ENV, LABEL: raw `name=value` words (legacy `ENV name value` made into one)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)  # raw, unexpanded


@dataclass
class Arg(Instruction):
    args: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class Words(Instruction):
    """EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, SHELL, MAINTAINER: raw words."""

    words: list[str] = field(default_factory=list)
    is_json: bool = False


@dataclass
class CopyLike(Instruction):
    """COPY, ADD: raw sources and destination; flags in `flags`."""

    sources: list[str] = field(default_factory=list)
    dest: str = ""
    is_json: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class Healthcheck(Instruction):
    test: list[str] | None = None  # None: HEALTHCHECK NONE


@dataclass
class OnBuild(Instruction):
    expression: str = ""


def _err(node: Node, message: str) -> DockerfileError:
    return DockerfileError(message, node.line)


def parse_flags(node: Node) -> dict:
    allowed = FLAGS.get(node.cmd, {})
    out: dict = {}
    for raw in node.flags:
        name, eq, value = raw[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise _err(node, f"unknown flag: {name}")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise _err(node, f"expecting boolean value for flag {name}, not: {value}")
            out[name] = (value.lower() == "true") if eq else True
        elif kind == "list":
            if not eq:
                raise _err(node, f"missing a value on flag: {name}")
            out.setdefault(name, []).append(value)
        else:
            if not eq:
                raise _err(node, f"missing a value on flag: {name}")
            if name in out:
                raise _err(node, f"duplicate flag specified: {name}")
            out[name] = value
    return out


def split_raw(text: str, escape: str = "\\") -> list[str]:
    """Words on unquoted whitespace, quotes and escapes kept (BuildKit's parseWords)."""
    words, cur, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t\n":
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
            if ch == escape and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch in "'\"":
                quote = ch
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _pairs(node: Node, escape: str) -> list[tuple[str, str]]:
    name = node.cmd.upper()
    words = split_raw(node.args, escape)
    if not words:
        raise _err(node, f"{name} requires at least one argument")
    if "=" not in words[0]:
        if name == "LABEL":
            raise _err(node, "LABEL requires at least one argument" if len(words) < 2 else
                       f"Syntax error - can't find = in {words[0]!r}. Must be of the form: "
                       "name=value")
        parts = re.split(r"[ \t]+", node.args.strip(), maxsplit=1)
        if len(parts) < 2:
            raise _err(node, f"{name} must have two arguments")
        return [(parts[0], parts[1])]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            raise _err(node, f"Syntax error - can't find = in {w!r}. Must be of the form: "
                             "name=value")
        if not key:
            raise _err(node, f"{name} names can not be blank")
        out.append((key, value))
    return out


def build(node: Node, escape: str = "\\") -> Instruction:
    """The typed instruction of one node (DockerfileError on bad arguments)."""
    flags = parse_flags(node)
    cmd = node.cmd
    args = node.args
    if cmd == "from":
        words = split_raw(args, escape)
        if len(words) == 1:
            return From(node, flags, image=words[0])
        if len(words) == 3 and words[1].lower() == "as":
            stage = words[2].lower()
            if not re.fullmatch(r"[a-z][a-z0-9_.-]*", stage):
                raise _err(node, f"invalid name for build stage: {words[2]!r}, name can't "
                                 "start with a number or contain symbols")
            return From(node, flags, image=words[0], stage_name=stage)
        raise _err(node, "FROM requires either one or three arguments")
    if cmd in ("run", "cmd", "entrypoint"):
        if node.json is not None:
            if cmd == "run" and not node.json:
                raise _err(node, "RUN requires at least one argument")
            return Command(node, flags, argv=list(node.json))
        if not args and cmd == "run":
            raise _err(node, "RUN requires at least one argument")
        return Command(node, flags, shell_text=args, heredocs=list(node.heredocs))
    if cmd in ("env", "label"):
        return Pairs(node, flags, pairs=_pairs(node, escape))
    if cmd == "arg":
        words = split_raw(args, escape)
        if not words:
            raise _err(node, "ARG requires at least one argument")
        out: list[tuple[str, str | None]] = []
        for w in words:
            key, eq, value = w.partition("=")
            if not key:
                raise _err(node, "ARG names can not be blank")
            out.append((key, value if eq else None))
        return Arg(node, flags, args=out)
    if cmd in ("copy", "add"):
        if node.json is not None:
            parts, is_json = list(node.json), True
        else:
            parts, is_json = split_raw(args, escape), False
        if len(parts) < 2:
            raise _err(node, f"{cmd.upper()} requires at least two arguments, but only one "
                             "was provided. Destination could not be determined.")
        return CopyLike(node, flags, sources=parts[:-1], dest=parts[-1], is_json=is_json,
                        heredocs=list(node.heredocs))
    if cmd == "healthcheck":
        words = args.split(None, 1)
        if not words:
            raise _err(node, "HEALTHCHECK requires an argument")
        kind = words[0].upper()
        if kind == "NONE":
            if len(words) > 1 or flags:
                raise _err(node, "HEALTHCHECK NONE takes no arguments")
            return Healthcheck(node, flags, test=None)
        if kind != "CMD":
            raise _err(node, f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
        rest = words[1] if len(words) > 1 else ""
        if not rest.strip():
            raise _err(node, "Missing command after HEALTHCHECK CMD")
        exec_form = json_form(rest)
        test = ["CMD", *exec_form] if exec_form is not None else None
        return Healthcheck(node, flags, test=test or ["CMD-SHELL", rest])
    if cmd == "onbuild":
        return OnBuild(node, flags, expression=args)
    # EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, SHELL, MAINTAINER
    if node.json is not None and cmd in ("volume", "shell"):
        words, is_json = list(node.json), True
    elif cmd == "shell":
        raise _err(node, "SHELL requires the arguments to be in JSON form")
    elif cmd in ("user", "workdir", "stopsignal", "maintainer"):
        words, is_json = ([args] if args else []), False
    else:
        words, is_json = split_raw(args, escape), False
    if not words:
        raise _err(node, f"{cmd.upper()} requires at least one argument")
    if cmd in ("user", "workdir", "stopsignal") and len(split_raw(args, escape)) > 1 \
            and cmd != "workdir":
        raise _err(node, f"{cmd.upper()} requires exactly one argument")
    return Words(node, flags, words=words, is_json=is_json)


def parse_duration(text: str, what: str) -> int:
    """Go's time.ParseDuration -> nanoseconds."""
    units = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
    if text in ("0", ""):
        return 0
    total, pos = 0.0, 0
    for m in re.finditer(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise DockerfileError(f"time: invalid duration {text!r} for {what}")
    return int(total)
