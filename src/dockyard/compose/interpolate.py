"""Variable interpolation in compose files, and the .env / --env-file reader.

    ${VAR} $VAR        the value, or "" (with a warning) when unset
    ${VAR:-default}    default when unset or empty;  ${VAR-default}  when unset
    ${VAR:+other}      other when set and non-empty; ${VAR+other}    when set
    ${VAR:?error}      error when unset or empty;    ${VAR?error}    when unset
    $$                 a literal $

Defaults and alternatives are interpolated themselves (nested ${...}). Errors
name the file and the path of the value: `compose.yaml: services.web.image:
required variable TAG is missing a value: set TAG`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from dockyard.compose.errors import ComposeError, dotted, where

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Warn = Callable[[str], None]


def _stderr_warning(msg: str) -> None:
    print(f'WARN[0000] {msg}', file=sys.stderr)


class _Error(Exception):
    pass


def _find_close(text: str, start: int) -> int:
    """Index of the `}` closing the `${` whose body starts at `start` (nesting aware)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise _Error(f"invalid interpolation format for {text!r}: missing closing brace")


def substitute(text: str, env: Mapping[str, str], warn: Warn | None = None) -> str:
    """One string, interpolated. Raises _Error on a bad template or a required variable."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$":
            j = text.find("$", i)
            j = n if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _find_close(text, i + 2)
            out.append(_braced(text[i + 2:end], env, warn, text))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if not m:
                raise _Error(f"invalid interpolation format for {text!r}: "
                             "you may need to escape any $ with another $")
            out.append(_lookup(m.group(), env, warn))
            i = m.end()
    return "".join(out)


def _lookup(name: str, env: Mapping[str, str], warn: Warn | None) -> str:
    if name in env:
        return env[name]
    if warn is not None:
        warn(f'The "{name}" variable is not set. Defaulting to a blank string.')
    return ""


def _braced(body: str, env: Mapping[str, str], warn: Warn | None, whole: str) -> str:
    m = _NAME.match(body)
    if not m:
        raise _Error(f"invalid interpolation format for {whole!r}: "
                     "you may need to escape any $ with another $")
    name, rest = m.group(), body[m.end():]
    if not rest:
        return _lookup(name, env, warn)
    colon = rest.startswith(":")
    op = rest[1:2] if colon else rest[:1]
    arg = rest[2:] if colon else rest[1:]
    if op not in ("-", "?", "+"):
        raise _Error(f"invalid interpolation format for {whole!r}: "
                     "you may need to escape any $ with another $")
    is_set = name in env
    usable = is_set and (env[name] != "" or not colon)
    if op == "-":
        return env[name] if usable else substitute(arg, env, warn)
    if op == "+":
        return substitute(arg, env, warn) if usable else ""
    if usable:
        return env[name]
    message = substitute(arg, env, warn)
    raise _Error(f"required variable {name} is missing a value"
                 + (f": {message}" if message else ""))


def interpolate(doc: Any, env: Mapping[str, str], file: str = "",
                path: tuple = (), warn: Warn | None = _stderr_warning) -> Any:
    """Every string value of a loaded YAML document interpolated (keys are not).
    Errors become ComposeError naming `file` and the value's path."""
    if isinstance(doc, str):
        try:
            return substitute(doc, env, warn)
        except _Error as e:
            raise ComposeError(f"{where(file, dotted(path))}: {e}") from None
    if isinstance(doc, dict):
        return {k: interpolate(v, env, file, path + (k,), warn) for k, v in doc.items()}
    if isinstance(doc, list):
        return [interpolate(v, env, file, path + (i,), warn) for i, v in enumerate(doc)]
    return doc


# -- .env files ---------------------------------------------------------------------------

def _unquote(value: str, env: Mapping[str, str], file: str, lineno: int) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        inner = (inner.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"')
                 .replace("\\\\", "\\"))
        try:
            return substitute(inner, env, None)
        except _Error as e:
            raise ComposeError(f"{file}:{lineno}: {e}") from None
    # unquoted: a ' #' starts a comment
    hash_at = value.find(" #")
    if hash_at >= 0:
        value = value[:hash_at].rstrip()
    try:
        return substitute(value, env, None)
    except _Error as e:
        raise ComposeError(f"{file}:{lineno}: {e}") from None


def read_env_file(path: str, base: Mapping[str, str] | None = None,
                  lookup_unset: bool = True) -> dict[str, str]:
    """KEY=VALUE lines (docker compose's dotenv: comments, `export`, quotes, ${...}
    against earlier keys and `base`). A bare `KEY` takes the value from `base` when
    `lookup_unset`, else is skipped."""
    base = dict(base or {})
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ComposeError(f"couldn't read env file {path}: {e.strerror or e}") from None
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not key or not re.fullmatch(r"[^\s=]+", key):
            raise ComposeError(f"{path}:{lineno}: unexpected character in variable name "
                               f"{key!r}")
        if not eq:
            if lookup_unset and key in base:
                out[key] = base[key]
            continue
        out[key] = _unquote(value, {**base, **out}, path, lineno)
    return out


def project_environment(workdir: str, env_files: list[str] | None,
                        os_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables for interpolation: the .env in the project directory (or the
    --env-file files, in order), overridden by the process environment."""
    os_env = dict(os.environ if os_env is None else os_env)
    files = env_files
    if not files:
        default = os.path.join(workdir, ".env")
        files = [default] if os.path.isfile(default) else []
    merged: dict[str, str] = {}
    for path in files:
        merged.update(read_env_file(path, {**merged, **os_env}))
    merged.update(os_env)
    return merged
