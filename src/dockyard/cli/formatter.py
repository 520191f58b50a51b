"""Docker's `--format` templates (a subset of Go's text/template) and its tables.

Supported: literal text, `{{.Field}}` and `{{.A.B}}`, `{{json .}}` / `{{json .X}}`,
the functions docker adds (`upper`, `lower`, `title`, `join`, `split`,
`truncate`, `pad`, `index`, `println`), string literals, and the `table`
prefix, which prints a header row and aligns columns like docker's tabwriter.
Escapes `\\t` and `\\n` in the format behave as in docker.
"""

import json

from dockyard.errors import InvalidArgument
from dockyard.units import human_duration, human_size, since  # noqa: F401 - re-exported


class Template:
    def __init__(self, text: str):
        self.text = text
        self.table = text.startswith("table")  # "table {{...}}" or "table{{...}}"
        body = text[5:].lstrip(" ") if self.table else text
        body = body.replace("\\t", "\t").replace("\\n", "\n")
        self.parts = _parse(body)

    def render(self, obj) -> str:
        return "".join(p if isinstance(p, str) else _eval(p, obj) for p in self.parts)

    def header(self, names: dict[str, str]) -> str:
        """The table's header: each field action replaced by its column name."""
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                field = next((t[1:] for t in p if t.startswith(".") and len(t) > 1), "")
                out.append(names.get(field, field.upper()))
        return "".join(out)


def _parse(body: str) -> list:
    parts: list = []
    i = 0
    while True:
        start = body.find("{{", i)
        if start < 0:
            parts.append(body[i:])
            return [p for p in parts if p != ""]
        parts.append(body[i:start])
        end = body.find("}}", start)
        if end < 0:
            raise InvalidArgument(f"template parsing error: unclosed action in {body!r}")
        action = body[start + 2:end].strip().strip("-").strip()
        parts.append(_tokens(action))
        i = end + 2


def _tokens(action: str) -> list[str]:
    tokens, i = [], 0
    while i < len(action):
        c = action[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j = i + 1
            while j < len(action) and action[j] != '"':
                j += 2 if action[j] == "\\" else 1
            tokens.append(json.loads(action[i:j + 1]))
            tokens[-1] = '"' + tokens[-1]  # mark string literals
            i = j + 1
        else:
            j = i
            while j < len(action) and not action[j].isspace():
                j += 1
            tokens.append(action[i:j])
            i = j
    if not tokens:
        raise InvalidArgument("template parsing error: empty action")
    return tokens


def _value(token: str, obj):
    if token.startswith('"'):
        return token[1:]
    if token == ".":
        return obj
    if token.startswith("."):
        value = obj
        for name in token[1:].split("."):
            value = _field(value, name)
        return value
    if token.lstrip("-").isdigit():
        return int(token)
    raise InvalidArgument(f'template: function "{token}" not defined')


def _field(value, name: str):
    if isinstance(value, dict):
        if name not in value:
            raise InvalidArgument(f"template: can't evaluate field {name}")
        return value[name]
    if hasattr(value, name):
        return getattr(value, name)
    raise InvalidArgument(f"template: can't evaluate field {name} in type "
                          f"{type(value).__name__}")


def _str(value) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_str(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


FUNCTIONS = {
    "json": lambda v: _go_json(_plain(v)),
    "upper": lambda v: _str(v).upper(),
    "lower": lambda v: _str(v).lower(),
    "title": lambda v: _str(v).title(),
    "join": lambda v, sep: sep.join(_str(x) for x in v),
    "split": lambda v, sep: _str(v).split(sep),
    "truncate": lambda v, n: _str(v)[:n],
    "pad": lambda v, left, right: " " * left + _str(v) + " " * right,
    "index": lambda v, key: v.get(key) if isinstance(v, dict) else v[key],
    "println": lambda *vs: " ".join(_str(v) for v in vs) + "\n",
}


def _go_json(value) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, and <, >, &, U+2028,
    U+2029 escaped (docker's `{{json .}}` prints "\\u003cnone\\u003e")."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _plain(value):
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


def _eval(tokens: list[str], obj) -> str:
    head = tokens[0]
    if head in FUNCTIONS:
        args = [_value(t, obj) for t in tokens[1:]]
        try:
            result = FUNCTIONS[head](*args)
        except TypeError:
            raise InvalidArgument(f"template: wrong number of args for {head}") from None
        return result if isinstance(result, str) else _str(result)
    if not head.startswith((".", '"')):
        raise InvalidArgument(f'template: function "{head}" not defined')
    if len(tokens) != 1:
        raise InvalidArgument(f"template: can't give argument to non-function {head}")
    return _str(_plain(_value(head, obj)))


def render_table(rows: list[list[str]], padding: int = 3, min_width: int = 10) -> str:
    """Aligned columns like docker's tabwriter (minwidth 10, padding 3, last column free)."""
    if not rows:
        return ""
    cols = max(len(r) for r in rows)
    widths = [max(max((len(r[i]) for r in rows if i < len(r) - 1), default=0) + padding,
                  min_width) for i in range(cols)]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def print_formatted(items: list, fmt: str, names: dict[str, str]) -> None:
    """Print `items` with a docker --format string (a table when it starts with "table")."""
    template = Template(fmt)
    if not template.table:
        for item in items:
            print(template.render(item))
        return
    rows = [template.header(names).split("\t")]
    rows += [template.render(item).split("\t") for item in items]
    print(render_table(rows), end="")
