"""Validation of a compose file against the Compose Specification's JSON schema
(compose-spec.json, shipped in this package), with errors that name the file and
the path: `compose.yaml: services.web-fe.ports[0]: ...`. A legacy top-level
`version:` is accepted and ignored. Checks the schema cannot express (undefined
networks, volumes, secrets, configs, services in depends_on) are in `references`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from dockyard.compose.errors import ComposeError, dotted, where

SCHEMA_NAME = "compose-spec.json"


@functools.cache
def _validator() -> Any:
    import jsonschema

    with open(os.path.join(os.path.dirname(__file__), SCHEMA_NAME), encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "mapping"
    return "null" if value is None else type(value).__name__


def _message(err: Any) -> str:
    """docker compose's wording for the common failures."""
    kind = err.validator
    if kind == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        import re
        pats = list(err.schema.get("patternProperties", {}))
        extra = [k for k in extra if not any(re.search(p, str(k)) for p in pats)]
        if len(extra) == 1:
            return f"additional properties '{extra[0]}' not allowed"
        return "additional properties " + ", ".join(f"'{k}'" for k in extra) + " not allowed"
    if kind == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"must be a {want}, not {_type_name(err.instance)}"
    if kind == "required":
        return err.message.replace("is a required property", "is required")
    if kind == "enum":
        return f"must be one of {', '.join(map(str, err.validator_value))}"
    if kind in ("oneOf", "anyOf"):
        return f"invalid value {json.dumps(err.instance)[:80]}: does not match any of the " \
               "allowed forms"
    if kind == "uniqueItems":
        return f"array items must be unique: {json.dumps(err.instance)[:80]}"
    if kind == "pattern":
        return f"{json.dumps(err.instance)} does not match {err.validator_value}"
    return err.message


def _best(errors: list[Any]) -> Any:
    import jsonschema

    return jsonschema.exceptions.best_match(errors)


def _cache_marker(doc: Any) -> str | None:
    """Where a document that validated once is remembered: the schema is fixed, so a
    document (after interpolation) valid once stays valid; this saves importing
    jsonschema (~0.1 s) at every command on an unchanged project."""
    from dockyard.compose.planner import sha256_hex

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        schema = os.stat(os.path.join(os.path.dirname(__file__), SCHEMA_NAME))
        data = json.dumps([schema.st_size, schema.st_mtime_ns, doc], sort_keys=True,
                          default=str).encode()
    except (OSError, TypeError, ValueError):
        return None
    return os.path.join(base, "dockyard", "compose-valid", sha256_hex(data))


def _remember(marker: str | None) -> None:
    if marker is None:
        return
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w"):
            pass
    except OSError:
        pass  # a read-only home: validate every time


def validate(doc: Any, file: str) -> None:
    """Raise ComposeError for the first schema violation in `doc` (one file)."""
    if not isinstance(doc, dict):
        raise ComposeError(f"{file}: top-level object must be a mapping")
    marker = _cache_marker(doc)
    if marker is not None and os.path.exists(marker):
        return
    errors = list(_validator().iter_errors(doc))
    if not errors:
        _remember(marker)
        return
    err = _best(errors)
    # descend into oneOf/anyOf to the most specific cause
    while err.context:
        deeper = _best(err.context)
        if deeper is None or (deeper.validator == "type" and len(err.context) > 1
                              and err.validator in ("oneOf", "anyOf")
                              and all(e.validator == "type" for e in err.context)):
            break
        err = deeper
    path = dotted(list(err.absolute_path))
    raise ComposeError(f"validating {where(file, path) or file}: {_message(err)}")


def references(project: Any) -> None:
    """Names a service uses must be defined: networks, volumes, secrets, configs and
    the services of depends_on / extends / network_mode: service:x."""
    services = project.services
    for name, svc in services.items():
        file = project.sources.get(name, "")
        base = f"services.{name}"
        for net in (svc.get("networks") or {}):
            if net not in project.networks:
                raise ComposeError(f"{where(file, base + '.networks')}: service \"{name}\" "
                                   f"refers to undefined network {net}: invalid compose project")
        for i, vol in enumerate(svc.get("volumes") or []):
            if vol.get("type") == "volume" and vol.get("source") \
                    and vol["source"] not in project.volumes:
                raise ComposeError(f"{where(file, f'{base}.volumes[{i}]')}: service \"{name}\" "
                                   f"refers to undefined volume {vol['source']}: invalid compose "
                                   "project")
        for kind, defined in (("secrets", project.secrets), ("configs", project.configs)):
            for i, ref in enumerate(svc.get(kind) or []):
                if ref["source"] not in defined:
                    raise ComposeError(f"{where(file, f'{base}.{kind}[{i}]')}: service "
                                       f"\"{name}\" refers to undefined {kind[:-1]} "
                                       f"{ref['source']}: invalid compose project")
        for dep, spec in (svc.get("depends_on") or {}).items():
            if dep not in services and dep not in project.disabled and spec.get("required", True):
                raise ComposeError(f"{where(file, base + '.depends_on')}: service \"{name}\" "
                                   f"depends on undefined service \"{dep}\": invalid compose "
                                   "project")
        mode = svc.get("network_mode") or ""
        if mode.startswith("service:") and mode[8:] not in services:
            raise ComposeError(f"{where(file, base + '.network_mode')}: service \"{name}\" "
                               f"uses the network of undefined service \"{mode[8:]}\"")
