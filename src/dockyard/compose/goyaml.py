"""The project as docker compose prints it in YAML (`compose config`): compose-go's
model (gojson.py) through go-yaml v3's rules, which differ from its JSON in places:

- omitempty also drops struct values that are empty (a network's `ipam: {}`,
  deploy's `resources: {}`), and a nil command or entrypoint;
- blkio_config's device entries have lower-case keys (their fields have no tags);
- sequences are indented under their key, strings are double-quoted only when a
  plain scalar would read back as something else (a number, a bool — YAML 1.1's
  `yes`/`on`/`y` too —, null, a sexagesimal) or cannot be plain; multi-line
  strings are literal blocks.
"""

from __future__ import annotations

import io
import re
from typing import Any

from dockyard.compose.gojson import EXTENSIONS, Float32

_NOT_STRINGS = re.compile(
    r"""^(?:[-+]?(?:0|[1-9][0-9_]*)                 # decimal
        |[-+]?0[0-7_]+|[-+]?0o[0-7_]+               # octal
        |[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+         # hex, binary
        |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?   # float
        |[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?      # sexagesimal
        |~|null|Null|NULL
        |y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE
        |on|On|ON|off|Off|OFF)$""", re.VERBOSE)


def yaml_model(doc: Any, path: tuple[str, ...] = ()) -> Any:
    """The JSON model with go-yaml's omissions and key names."""
    if isinstance(doc, list):
        return [yaml_model(v, path) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if key == EXTENSIONS:
            continue  # inline, at the end (below)
        where = path + (key,)
        if value is None and key in ("command", "entrypoint") and _is_struct_field(path):
            continue  # a nil ShellCommand
        if value == {} and key in ("ipam", "resources", "placement", "exec"):
            continue  # empty struct values
        if key in ("weight_device", "device_read_bps", "device_read_iops",
                   "device_write_bps", "device_write_iops") and isinstance(value, list):
            value = [{k.lower(): v for k, v in d.items()} for d in value]
        if key == "ulimits" and isinstance(value, dict):  # go-yaml writes both limits
            value = {k: v if not isinstance(v, dict) else
                     {"soft": v.get("soft", 0), "hard": v.get("hard", 0)}
                     for k, v in value.items()}
        value = yaml_model(value, where)
        if key == "exec" and value == {}:
            continue
        out[key] = value
    out.update(doc.get(EXTENSIONS) or {})
    return out


def _is_struct_field(path: tuple[str, ...]) -> bool:
    """Whether `path` is a service or a hook (whose command is a ShellCommand), not a
    map such as environment (whose null values stay)."""
    return (len(path) == 2 and path[0] == "services") or \
        path[-1:] in (("exec",), ("post_start",), ("pre_stop",))


def dumps(doc: dict[str, Any]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)  # "- " indented under its key

    probe = yaml.emitter.Emitter(io.StringIO())

    def string(dumper: Any, data: str) -> Any:
        if "\n" in data:
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
        analysis = probe.analyze_scalar(data)
        plain = data and analysis.allow_block_plain and not _NOT_STRINGS.match(data)
        return dumper.represent_scalar("tag:yaml.org,2002:str", data,
                                       style=None if plain else '"')

    Dumper.add_representer(str, string)
    Dumper.add_representer(Float32, lambda dumper, data: dumper.represent_scalar(
        "tag:yaml.org,2002:float", data.go_text()))
    return yaml.dump(yaml_model(doc), Dumper=Dumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=float("inf"))
