"""One file's services and resources in their canonical (long) form, the shape
`compose config` prints and the rest of the package works on:

    environment/labels/sysctls/annotations: {KEY: "value" | None}
    ports:      [{target: 80, published: "8080", protocol: tcp, mode: ingress, host_ip}]
    volumes:    [{type: bind|volume|tmpfs, source, target, read_only, ...}]
    networks:   {name: {aliases, ipv4_address, ...} | None}
    depends_on: {service: {condition, required, restart}}
    command/entrypoint: lists; env_file: [{path, required}]; extends: {service, file}
    secrets/configs: [{source, target}]

Relative paths (build contexts, binds, env files, secret files) are made absolute
against `base` (the directory of the file that named them, or the project's).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from dockyard.compose.errors import ComposeError, where

LIST_OR_DICT = ("environment", "labels", "sysctls", "annotations")
STRING_OR_LIST = ("dns", "dns_search", "dns_opt", "tmpfs", "env_file", "label_file")


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def list_or_dict(value: Any, sep: str = "=") -> dict[str, str | None]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value:
        key, eq, val = str(item).partition(sep)
        out[key] = val if eq else None
    return out


def string_or_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ComposeError(f"invalid command line {value!r}: {e}") from None
    return [str(v) for v in value]


def _abs(path: str, base: str) -> str:
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


# -- ports ----------------------------------------------------------------------------------

def _port_range(text: str, what: str) -> list[int]:
    first, dash, last = text.partition("-")
    try:
        lo = int(first)
        hi = int(last) if dash else lo
    except ValueError:
        raise ComposeError(f"invalid {what} port {text!r}") from None
    if not 0 < lo <= hi <= 65535 and not (lo == 0 and what == "published"):
        raise ComposeError(f"invalid {what} port range {text!r}")
    return list(range(lo, hi + 1))


def parse_port(spec: Any) -> list[dict[str, Any]]:
    """The short syntax `[[host_ip:]published:]target[/protocol]` (ranges too), or a
    long-syntax mapping, as long-syntax entries."""
    if isinstance(spec, dict):
        out = {"mode": spec.get("mode") or "ingress", "target": int(spec["target"]),
               "protocol": spec.get("protocol") or "tcp"}
        if spec.get("published") not in (None, ""):
            out["published"] = str(spec["published"])
        for key in ("host_ip", "name", "app_protocol"):
            if spec.get(key):
                out[key] = spec[key]
        return [out]
    text = str(spec)
    body, _, proto = text.partition("/")
    proto = proto or "tcp"
    host_ip = ""
    if body.startswith("["):  # [ipv6]:published:target
        end = body.find("]")
        host_ip, body = body[1:end], body[end + 2:]
    parts = body.split(":")
    if len(parts) == 3:
        host_ip, published, target = parts
    elif len(parts) == 2:
        published, target = parts
    elif len(parts) == 1:
        published, target = "", parts[0]
    else:
        raise ComposeError(f"invalid port specification {text!r}")
    targets = _port_range(target, "container")
    pubs = _port_range(published, "published") if published else []
    if pubs and len(pubs) != len(targets) and len(pubs) != 1 and len(targets) == len(pubs):
        raise ComposeError(f"invalid port specification {text!r}")
    entries = []
    for i, t in enumerate(targets):
        e: dict[str, Any] = {"mode": "ingress", "target": t, "protocol": proto}
        if pubs:
            if len(pubs) == len(targets):
                e["published"] = str(pubs[i])
            elif len(targets) == 1:
                e["published"] = published  # a host range for one container port
            else:
                raise ComposeError(f"invalid port specification {text!r}: ranges differ in "
                                   "size")
        if host_ip:
            e["host_ip"] = host_ip
        entries.append(e)
    # docker compose orders a range's ports as strings ("1000/tcp" < "998/tcp")
    return sorted(entries, key=lambda e: f"{e['target']}/{proto}")


# -- volumes --------------------------------------------------------------------------------

def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or (len(source) > 1 and source[1] == ":")


def parse_volume(spec: Any, base: str) -> dict[str, Any]:
    if isinstance(spec, dict):
        v = dict(spec)
        if v.get("type") == "bind" and v.get("source"):
            v["source"] = _abs(str(v["source"]), base)
        if v.get("read_only") is not None:
            v["read_only"] = v["read_only"] in (True, "true", "True")
        return v
    text = str(spec)
    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0], "volume": {}}
    if len(parts) > 3:
        raise ComposeError(f"invalid volume specification {text!r}: too many colons")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    v: dict[str, Any] = {}
    if _is_path(source):
        v = {"type": "bind", "source": _abs(source, base), "target": target,
             "bind": {"create_host_path": True}}
    else:
        v = {"type": "volume", "source": source, "target": target, "volume": {}}
    for opt in filter(None, mode.split(",")):
        if opt == "ro":
            v["read_only"] = True
        elif opt == "rw":
            pass
        elif opt == "nocopy" and v["type"] == "volume":
            v["volume"]["nocopy"] = True
        elif opt in ("z", "Z") and v["type"] == "bind":
            v["bind"]["selinux"] = opt
        elif opt in ("shared", "rshared", "slave", "rslave", "private", "rprivate") \
                and v["type"] == "bind":
            v["bind"]["propagation"] = opt
        else:
            raise ComposeError(f"invalid volume specification {text!r}: unknown mode {opt!r}")
    return v


# -- the rest of a service ------------------------------------------------------------------

def _depends_on(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list):
        return {str(s): {"condition": "service_started", "required": True} for s in value}
    out = {}
    for name, spec in (value or {}).items():
        spec = dict(spec or {})
        out[name] = {"condition": spec.get("condition") or "service_started",
                     "required": spec.get("required", True) not in (False, "false"),
                     **({"restart": spec["restart"] in (True, "true")}
                        if "restart" in spec else {})}
    return out


def _networks(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(n): None for n in value}
    # `name: {}` stays an (empty) object: docker compose's config-hash tells it from null
    return {k: (dict(v) if v is not None else None) for k, v in (value or {}).items()}


def _healthcheck(value: dict[str, Any]) -> dict[str, Any]:
    h = dict(value)
    if h.get("disable") in (True, "true"):
        return {"disable": True}
    test = h.get("test")
    if isinstance(test, str):
        h["test"] = ["CMD-SHELL", test]
    elif isinstance(test, list):
        h["test"] = [str(t) for t in test]
    if "retries" in h:
        h["retries"] = int(h["retries"])
    return h


def _file_refs(value: Any, kind: str) -> list[dict[str, Any]]:
    """Targets as written (docker compose's config-hash sees them so); a secret's
    defaults to /run/secrets/<source>. mount_target() is where it is mounted."""
    out = []
    for item in value or []:
        ref = {"source": item} if isinstance(item, str) else dict(item)
        if kind == "secrets":
            ref.setdefault("target", f"/run/secrets/{ref['source']}")
        out.append(ref)
    return out


def mount_target(kind: str, ref: dict[str, Any]) -> str:
    """Where a service's secret or config is mounted: its target, relative ones under
    /run/secrets (secrets) or / (configs); a config without one at /<source>."""
    target = str(ref.get("target") or "")
    if not target:
        return f"/run/secrets/{ref['source']}" if kind == "secrets" else f"/{ref['source']}"
    if target.startswith("/"):
        return target
    return f"/run/secrets/{target}" if kind == "secrets" else f"/{target}"


def _ulimits(value: dict[str, Any]) -> dict[str, dict[str, int]]:
    out = {}
    for name, lim in value.items():
        if isinstance(lim, dict):
            out[name] = {"soft": int(lim["soft"]), "hard": int(lim["hard"])}
        else:  # "single" remembers the short form (docker compose's config-hash differs)
            out[name] = {"soft": int(lim), "hard": int(lim), "single": int(lim)}
    return out


def _extra_hosts(value: Any) -> list[str]:
    if isinstance(value, dict):
        pairs = [(str(h), ip) for h, ip in value.items()]
    else:
        pairs = [tuple(str(h).split("=" if "=" in str(h) else ":", 1)) for h in value]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ComposeError(f"invalid extra host {pair[0]!r}: expected host:ip")
        host, ips = pair
        for ip in ips if isinstance(ips, list) else [ips]:
            out.append(f"{host}:{ip}")
    return out


def _build(value: Any, base: str) -> dict[str, Any]:
    b = {"context": value} if isinstance(value, str) else dict(value)
    context = str(b.get("context") or ".")
    if "://" not in context and not context.startswith("git@"):
        context = _abs(context, base)
    b["context"] = context
    b.setdefault("dockerfile", "Dockerfile")
    for key in ("args", "labels"):
        if key in b:
            b[key] = list_or_dict(b[key])
    return b


def _hooks(value: Any) -> list[dict[str, Any]]:
    return [{**h, "command": command(h.get("command"))} for h in value or []]


def _develop(value: Any, base: str) -> dict[str, Any]:
    d = dict(value or {})
    watch = []
    for trigger in d.get("watch") or []:
        t = {**trigger, "path": _abs(str(trigger.get("path") or "."), base)}
        for key in ("ignore", "include"):
            if key in t:
                t[key] = string_or_list(t[key])
        if t.get("exec"):
            t["exec"] = _hooks([t["exec"]])[0]
        watch.append(t)
    if watch:
        d["watch"] = watch
    return d


def _gpus(value: Any) -> list[dict[str, Any]]:
    return [{"count": "all"}] if isinstance(value, str) else [dict(v) for v in value or []]


def _env_files(value: Any, base: str) -> list[dict[str, Any]]:
    out = []
    for item in string_or_list(value):
        if isinstance(item, dict):
            out.append({"path": _abs(item["path"], base),
                        "required": item.get("required", True) not in (False, "false")})
        else:
            out.append({"path": _abs(item, base), "required": True})
    return out


def service(name: str, raw: dict[str, Any], base: str, file: str) -> dict[str, Any]:
    """One service in canonical form (paths absolute against `base`)."""
    s: dict[str, Any] = {}
    try:
        for key, value in raw.items():
            if key in LIST_OR_DICT:
                s[key] = list_or_dict(value)
            elif key in ("command", "entrypoint"):
                s[key] = command(value)
            elif key == "env_file":
                s[key] = _env_files(value, base)
            elif key == "label_file":
                s[key] = [_abs(p, base) for p in string_or_list(value)]
            elif key in STRING_OR_LIST or key in ("cap_add", "cap_drop", "security_opt",
                                                  "expose", "profiles", "links",
                                                  "external_links", "volumes_from",
                                                  "group_add", "device_cgroup_rules"):
                s[key] = [str(v) for v in string_or_list(value)]
            elif key == "ports":
                s[key] = [e for p in value for e in parse_port(p)]
            elif key == "volumes":
                s[key] = [parse_volume(v, base) for v in value]
            elif key == "networks":
                s[key] = _networks(value)
            elif key == "depends_on":
                s[key] = _depends_on(value)
            elif key == "healthcheck":
                s[key] = _healthcheck(value)
            elif key in ("secrets", "configs"):
                s[key] = _file_refs(value, key)
            elif key == "ulimits":
                s[key] = _ulimits(value)
            elif key == "build":
                s[key] = _build(value, base)
            elif key == "extra_hosts":
                s[key] = _extra_hosts(value)
            elif key in ("post_start", "pre_stop"):
                s[key] = _hooks(value)
            elif key == "develop":
                s[key] = _develop(value, base)
            elif key == "gpus":
                s[key] = _gpus(value)
            elif key == "extends":
                ext = {"service": value} if isinstance(value, str) else dict(value)
                if ext.get("file"):
                    ext["file"] = _abs(ext["file"], base)
                s[key] = ext
            elif key == "scale":
                s[key] = int(value)
            elif key in ("tty", "stdin_open", "init", "read_only", "privileged",
                         "oom_kill_disable"):
                s[key] = value in (True, "true", "True", "1", 1)
            else:
                s[key] = value
    except ComposeError as e:
        raise ComposeError(f"{where(file, f'services.{name}.{key}')}: {e}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ComposeError(f"{where(file, f'services.{name}.{key}')}: invalid value: "
                           f"{e}") from None
    return s


def resource(kind: str, key: str, raw: Any, base: str) -> dict[str, Any]:
    """A top-level network, volume, secret or config in canonical form."""
    r = dict(raw or {})
    ext = r.get("external")
    if isinstance(ext, dict):  # legacy `external: {name: x}`
        r["external"] = True
        if ext.get("name"):
            r["name"] = ext["name"]
    elif ext is not None:
        r["external"] = ext in (True, "true")
    if "labels" in r:
        r["labels"] = list_or_dict(r["labels"])
    if kind in ("secrets", "configs") and r.get("file"):
        r["file"] = _abs(str(r["file"]), base)
    return r
