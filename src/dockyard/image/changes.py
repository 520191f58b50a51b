"""`--change` instructions of `docker import` / `docker commit` applied to a config."""

import json
import shlex

from dockyard.build.parser import json_form  # the Dockerfile's own rule
from dockyard.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
           "WORKDIR", "STOPSIGNAL", "HEALTHCHECK")


def _command(rest: str, instruction: str) -> list[str]:
    exec_form = json_form(rest)
    if exec_form is not None:
        return exec_form
    if not rest:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, instruction: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:  # the old form: ENV key value with spaces
        return [(words[0], rest.split(None, 1)[1] if len(words) > 1 else "")]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instruction} names can not be blank: {word!r}")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply each `INSTRUCTION args` to a container config (docker's Config keys)."""
    cfg = dict(config)
    for change in changes:
        instruction, _, rest = change.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction not in ALLOWED:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        if instruction in ("CMD", "ENTRYPOINT"):
            cfg["Cmd" if instruction == "CMD" else "Entrypoint"] = _command(rest, instruction)
        elif instruction == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for key, value in _pairs(rest, instruction):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif instruction == "LABEL":
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(_pairs(rest, instruction))}
        elif instruction == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            for path in paths:
                vols[path] = {}
            cfg["Volumes"] = vols
        elif instruction == "USER":
            cfg["User"] = rest
        elif instruction == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif instruction == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif instruction == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        else:
            raise InvalidArgument(f"{instruction} is not supported by --change yet")
    return cfg
