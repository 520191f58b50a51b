"""A service as docker compose sees it: compose-go's JSON form of a ServiceConfig
(what `docker compose config --format json` prints for it), and the config-hash
docker compose derives from it.

docker compose labels each container with com.docker.compose.config-hash, the
SHA-256 of Go's json.Marshal of the service's model, and recreates a container
whose label differs. For `docker compose up` to accept containers we created (and
we its), our label must be that same digest, so this module renders a canonical
service (normalize.py) field by field in compose-go's struct order, with Go's
encodings: omitempty, map keys sorted, sizes as quoted byte counts, durations in
time.Duration's notation, float32 in shortest form, <, > and & escaped.

Checked against docker compose 2.40 (compose-go 2.9), whose hash leaves out build,
pull_policy, scale, deploy.replicas, depends_on and profiles.
"""

from __future__ import annotations

import json
import posixpath
import re
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from dockyard.compose.convert import to_bytes, to_ns
from dockyard.compose.errors import ComposeError
from dockyard.compose.normalize import list_or_dict

OMIT = object()
EXTENSIONS = "#extensions"  # a struct's x-* keys, kept aside (json:"-", yaml inline)
Render = Callable[[Any], Any]

HASH_EXCLUDED = ("build", "pull_policy", "scale", "depends_on", "profiles")


# -- Go's scalar encodings ------------------------------------------------------------------

def go_string(value: Any) -> Any:
    if value is None or value == "":
        return OMIT
    return _go_str(value)


def _go_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def go_bool(value: Any) -> Any:
    return True if value in (True, "true", "True", 1) else OMIT


def go_bool_ptr(value: Any) -> Any:
    return OMIT if value is None else value in (True, "true", "True", 1)


def go_int(value: Any) -> Any:
    if value in (None, "", 0):
        return OMIT
    return int(value)


def go_int_ptr(value: Any) -> Any:
    return OMIT if value is None else int(value)


def go_float32(value: Any) -> Any:
    if value in (None, "", 0):
        return OMIT
    return Float32(float(value))


class Float32(float):
    """A float32 value, written as Go writes one (see dumps)."""

    def go_text(self) -> str:
        """The shortest decimal that reads back as the same float32, in plain
        notation unless Go would use an exponent."""
        target = struct.unpack("f", struct.pack("f", self))[0]
        for digits in range(1, 18):
            text = f"{target:.{digits}g}"
            if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
                break
        if target != 0 and (abs(target) < 1e-6 or abs(target) >= 1e21):
            mantissa, _, exp = text.partition("e")
            return f"{mantissa}e{exp[0]}{exp[1:].lstrip('0') or '0'}"
        return format(Decimal(text), "f")


def go_bytes(value: Any) -> Any:
    """UnitBytes: a byte count in a JSON string."""
    if value in (None, "", 0):
        return OMIT
    try:
        n = to_bytes(value, "size")
    except ComposeError:  # reported with its path where the value is used
        return str(value)
    return OMIT if n == 0 else str(n)


def _byte_count(value: Any) -> str:
    """A UnitBytes that Go writes even when zero."""
    try:
        return str(to_bytes(value or 0, "size"))
    except ComposeError:  # reported with its path where the value is used
        return str(value)


def go_duration(value: Any) -> Any:
    """*Duration: time.Duration's String() ("1m30s", "500ms", "1h0m0s")."""
    if value is None:
        return OMIT
    try:
        return duration_string(to_ns(value, "duration"))
    except ComposeError:  # reported with its path where the value is used
        return str(value)


def duration_string(ns: int) -> str:
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{width}d}".rstrip("0")


# -- Go's composite encodings ---------------------------------------------------------------

def go_list(value: Any) -> Any:
    """[]string, StringList, StringOrNumberList: omitted when empty."""
    if not value:
        return OMIT
    return [_go_str(v) for v in value]


def go_command(value: Any) -> Any:
    """ShellCommand: always present, null when unset."""
    return None if value is None else [_go_str(v) for v in value]


def go_mapping(value: Any) -> Any:
    """Mapping, Labels, Options: map[string]string."""
    if not value:
        return OMIT
    if isinstance(value, list):
        value = list_or_dict(value)
    return {str(k): "" if v is None else _go_str(v) for k, v in sorted(value.items())}


def go_mapping_eq(value: Any) -> Any:
    """MappingWithEquals: map[string]*string (null for a name without a value)."""
    if not value:
        return OMIT
    return {str(k): None if v is None else _go_str(v) for k, v in sorted(value.items())}


def go_struct(*fields: tuple[str, Render], always: tuple[str, ...] = ()) -> Render:
    """A Go struct (pointer): omitted when None; fields in declaration order. Fields
    named in `always` are struct values Go writes even when empty."""
    def render(value: Any) -> Any:
        if value is None:
            return OMIT
        out: dict[str, Any] = {}
        for key, fn in fields:
            v = value.get(key) if isinstance(value, dict) else None
            if v is None and key in always:
                v = {}
            r = fn(v)
            if r is not OMIT:
                out[key] = r
        extensions = {k: v for k, v in value.items() if str(k).startswith("x-")} \
            if isinstance(value, dict) else {}
        if extensions:  # x-* keys: in the YAML (goyaml.py), not in the JSON (dumps)
            out[EXTENSIONS] = extensions
        return out
    return render


def list_of(render: Render) -> Render:
    def out(value: Any) -> Any:
        if not value:
            return OMIT
        return [render(v) for v in value]
    return out


def map_of(render: Render, null: bool = False) -> Render:
    def out(value: Any) -> Any:
        if not value:
            return OMIT
        return {str(k): (None if v is None and null else render(v))
                for k, v in sorted(value.items())}
    return out


# -- compose-go's types, in their declaration order ---------------------------------------

def _ulimit(value: Any) -> Any:
    """A single limit as a number (compose-go writes a zero one as {}), else
    {soft, hard}."""
    single = value.get("single") if isinstance(value, dict) else value
    if single:
        return int(single)
    return {k: int(value[k]) for k in ("soft", "hard")
            if isinstance(value, dict) and single is None and value.get(k)}


def _file_mode(value: Any) -> Any:
    if value is None:
        return OMIT
    mode = int(value, 8) if isinstance(value, str) else int(value)
    return f"0{mode:o}"


def _device_count(value: Any) -> Any:
    if value in (None, "", 0):
        return OMIT
    if str(value).lower() == "all":
        return -1
    try:
        return int(value)
    except ValueError:  # reported with its path where the value is used
        return str(value)


def _device_mapping(value: Any) -> Any:
    if isinstance(value, str):  # source[:target[:permissions]]
        parts = value.split(":")
        value = {"source": parts[0], "target": parts[1] if len(parts) > 1 and parts[1]
                 else parts[0], "permissions": parts[2] if len(parts) > 2 else "rwm"}
    return go_struct(("source", go_string), ("target", go_string),
                     ("permissions", go_string))(value)


def _extra_hosts(value: Any) -> Any:
    """HostsList: "host=ip" strings, sorted (our canonical form is host:ip)."""
    if not value:
        return OMIT
    return sorted(h.replace(":", "=", 1) if "=" not in h else h for h in value)


_device_request_fields = go_struct(("capabilities", go_list), ("driver", go_string),
                                   ("count", _device_count), ("device_ids", go_list),
                                   ("options", go_mapping))


def _device_request(value: Any) -> Any:
    # compose-go: a request with neither count nor device_ids asks for all devices
    if isinstance(value, dict) and value.get("count") is None and not value.get("device_ids"):
        value = {**value, "count": "all"}
    return _device_request_fields(value)


_hook = go_struct(
    ("command", go_command), ("user", go_string), ("privileged", go_bool),
    ("working_dir", go_string), ("environment", go_mapping_eq))
_throttle = list_of(lambda d: {"Path": d.get("path", ""), "Rate": _byte_count(d.get("rate"))})
_weight_device = list_of(lambda d: {"Path": d.get("path", ""),
                                    "Weight": int(d.get("weight") or 0)})
_resource = go_struct(
    ("cpus", go_float32), ("memory", go_bytes), ("pids", go_int),
    ("devices", list_of(_device_request)),
    ("generic_resources", list_of(go_struct(
        ("discrete_resource_spec", go_struct(("kind", _go_str), ("value", int)))))))
_update = go_struct(
    ("parallelism", go_int_ptr), ("delay", go_duration), ("failure_action", go_string),
    ("monitor", go_duration), ("max_failure_ratio", go_float32), ("order", go_string))
_deploy = go_struct(
    ("mode", go_string), ("replicas", go_int_ptr), ("labels", go_mapping),
    ("update_config", _update), ("rollback_config", _update),
    ("resources", go_struct(("limits", _resource), ("reservations", _resource))),
    ("restart_policy", go_struct(
        ("condition", go_string), ("delay", go_duration), ("max_attempts", go_int_ptr),
        ("window", go_duration))),
    ("placement", go_struct(
        ("constraints", go_list), ("preferences", list_of(go_struct(("spread", go_string)))),
        ("max_replicas_per_node", go_int))),
    ("endpoint_mode", go_string), always=("resources", "placement"))
_file_ref = go_struct(
    ("source", go_string), ("target", go_string), ("uid", go_string), ("gid", go_string),
    ("mode", _file_mode))
_healthcheck = go_struct(
    ("test", go_list), ("timeout", go_duration), ("interval", go_duration),
    ("retries", go_int_ptr), ("start_period", go_duration), ("start_interval", go_duration),
    ("disable", go_bool))
_network = go_struct(
    ("aliases", go_list), ("driver_opts", go_mapping), ("gw_priority", go_int),
    ("interface_name", go_string), ("ipv4_address", go_string), ("ipv6_address", go_string),
    ("link_local_ips", go_list), ("mac_address", go_string), ("priority", go_int))
_port = go_struct(
    ("name", go_string), ("mode", go_string), ("host_ip", go_string), ("target", go_int),
    ("published", go_string), ("protocol", go_string), ("app_protocol", go_string))
_volume = go_struct(
    ("type", go_string), ("source", go_string),
    ("target", lambda t: go_string(posixpath.normpath(t) if t else t)),
    ("read_only", go_bool), ("consistency", go_string),
    ("bind", go_struct(("selinux", go_string), ("propagation", go_string),
                       ("create_host_path", go_bool), ("recursive", go_string))),
    ("volume", go_struct(("labels", go_mapping), ("nocopy", go_bool), ("subpath", go_string))),
    ("tmpfs", go_struct(("size", go_bytes), ("mode", go_int))),
    ("image", go_struct(("subpath", go_string))))
_trigger = go_struct(
    ("path", _go_str), ("action", _go_str), ("target", go_string), ("exec", _hook),
    ("include", go_list), ("ignore", go_list), ("initial_sync", go_bool), always=("exec",))
_build = go_struct(
    ("context", go_string), ("dockerfile", go_string), ("dockerfile_inline", go_string),
    ("entitlements", go_list), ("args", go_mapping_eq), ("provenance", go_string),
    ("sbom", go_string), ("ssh", go_list), ("labels", go_mapping), ("cache_from", go_list),
    ("cache_to", go_list), ("no_cache", go_bool), ("additional_contexts", go_mapping),
    ("pull", go_bool), ("extra_hosts", _extra_hosts), ("isolation", go_string),
    ("network", go_string), ("target", go_string), ("secrets", list_of(_file_ref)),
    ("shm_size", go_bytes), ("tags", go_list), ("ulimits", map_of(_ulimit)),
    ("platforms", go_list), ("privileged", go_bool))


def implicit_depends_on(svc: dict[str, Any]) -> dict[str, Any]:
    """depends_on with what links, `service:` namespaces and volumes_from imply, as
    compose-go adds them when it loads a project."""
    from dockyard.compose.planner import references

    deps = dict(svc.get("depends_on") or {})
    for name, how in references(svc):
        dep = {"condition": "service_started", "required": True}
        if how != "volumes_from":  # compose-go restarts with links and namespaces
            dep["restart"] = True
        deps.setdefault(name, dep)
    return deps


def _depends_on(value: Any) -> Any:
    if not value:
        return OMIT
    out = {}
    for name, dep in sorted(value.items()):
        d: dict[str, Any] = {"condition": dep.get("condition") or "service_started"}
        if dep.get("restart"):
            d["restart"] = True
        d["required"] = bool(dep.get("required", True))
        out[name] = d
    return out


SERVICE: tuple[tuple[str, Render], ...] = (
    ("profiles", go_list), ("annotations", go_mapping), ("attach", go_bool_ptr),
    ("build", _build), ("develop", go_struct(("watch", list_of(_trigger)))),
    ("blkio_config", go_struct(("weight", go_int), ("weight_device", _weight_device),
                            ("device_read_bps", _throttle), ("device_read_iops", _throttle),
                            ("device_write_bps", _throttle),
                            ("device_write_iops", _throttle))),
    ("cap_add", go_list), ("cap_drop", go_list), ("cgroup_parent", go_string),
    ("cgroup", go_string), ("cpu_count", go_int), ("cpu_percent", go_float32),
    ("cpu_period", go_int), ("cpu_quota", go_int), ("cpu_rt_period", go_int),
    ("cpu_rt_runtime", go_int), ("cpus", go_float32), ("cpuset", go_string),
    ("cpu_shares", go_int), ("command", go_command), ("configs", list_of(_file_ref)),
    ("container_name", go_string),
    ("credential_spec", go_struct(("config", go_string), ("file", go_string),
                               ("registry", go_string))),
    ("depends_on", _depends_on), ("deploy", _deploy), ("device_cgroup_rules", go_list),
    ("devices", list_of(_device_mapping)), ("dns", go_list), ("dns_opt", go_list),
    ("dns_search", go_list), ("dockerfile", go_string), ("domainname", go_string),
    ("entrypoint", go_command),
    ("provider", go_struct(("type", go_string), ("options", map_of(go_list)))),
    ("environment", go_mapping_eq), ("env_file", lambda v: OMIT),
    ("expose", go_list), ("extends", lambda v: OMIT), ("external_links", go_list),
    ("extra_hosts", _extra_hosts), ("group_add", go_list),
    ("gpus", list_of(_device_request)), ("hostname", go_string),
    ("healthcheck", _healthcheck), ("image", go_string), ("init", go_bool_ptr),
    ("ipc", go_string), ("isolation", go_string), ("labels", go_mapping),
    ("label_file", go_list), ("links", go_list),
    ("logging", go_struct(("driver", go_string), ("options", go_mapping))),
    ("log_driver", go_string), ("log_opt", go_mapping), ("mem_limit", go_bytes),
    ("mem_reservation", go_bytes), ("memswap_limit", go_bytes),
    ("mem_swappiness", go_bytes), ("mac_address", go_string),
    ("models", map_of(go_struct(("endpoint_var", go_string), ("model_var", go_string)),
                      null=True)),
    ("net", go_string), ("network_mode", go_string),
    ("networks", map_of(_network, null=True)), ("oom_kill_disable", go_bool),
    ("oom_score_adj", go_int), ("pid", go_string), ("pids_limit", go_int),
    ("platform", go_string), ("ports", list_of(_port)), ("privileged", go_bool),
    ("pull_policy", go_string), ("read_only", go_bool), ("restart", go_string),
    ("runtime", go_string), ("scale", go_int_ptr), ("secrets", list_of(_file_ref)),
    ("security_opt", go_list), ("shm_size", go_bytes), ("stdin_open", go_bool),
    ("stop_grace_period", go_duration), ("stop_signal", go_string),
    ("storage_opt", go_mapping), ("sysctls", go_mapping), ("tmpfs", go_list),
    ("tty", go_bool), ("ulimits", map_of(_ulimit)), ("use_api_socket", go_bool),
    ("user", go_string), ("userns_mode", go_string), ("uts", go_string),
    ("volume_driver", go_string), ("volumes", list_of(_volume)),
    ("volumes_from", go_list), ("working_dir", go_string),
    ("post_start", list_of(_hook)), ("pre_stop", list_of(_hook)),
)


_ipam = go_struct(
    ("driver", go_string),
    ("config", list_of(go_struct(("subnet", go_string), ("gateway", go_string),
                                 ("ip_range", go_string), ("aux_addresses", go_mapping)))))
NETWORK: tuple[tuple[str, Render], ...] = (
    ("name", go_string), ("driver", go_string), ("driver_opts", go_mapping),
    ("ipam", _ipam), ("external", go_bool), ("internal", go_bool), ("attachable", go_bool),
    ("labels", go_mapping), ("enable_ipv4", go_bool_ptr), ("enable_ipv6", go_bool_ptr))
VOLUME: tuple[tuple[str, Render], ...] = (
    ("name", go_string), ("driver", go_string), ("driver_opts", go_mapping),
    ("external", go_bool), ("labels", go_mapping))


FILE_OBJECT: tuple[tuple[str, Render], ...] = (
    ("name", go_string), ("file", go_string), ("environment", go_string),
    ("content", go_string), ("external", go_bool), ("labels", go_mapping),
    ("driver", go_string), ("driver_opts", go_mapping), ("template_driver", go_string))


def file_object_model(kind: str, key: str, spec: dict[str, Any], project: str
                      ) -> dict[str, Any]:
    """A top-level secret or config: its name defaults to <project>_<key> (the key
    when external); a secret's content is not shown, nor a config's taken from the
    environment (compose-go's marshalling)."""
    spec = dict(spec)
    spec.setdefault("name", key if spec.get("external") else f"{project}_{key}")
    if kind == "secrets" or spec.get("environment"):
        spec.pop("content", None)
    return go_struct(*FILE_OBJECT)(spec)


def network_model(spec: dict[str, Any]) -> dict[str, Any]:
    return go_struct(*NETWORK, always=("ipam",))(spec)


def volume_model(spec: dict[str, Any]) -> dict[str, Any]:
    return go_struct(*VOLUME)(spec)


def network_hash(spec: dict[str, Any]) -> str:
    """docker compose's NetworkHash: the label on the networks it creates; a network
    whose label differs is removed and made again."""
    from dockyard.compose.planner import sha256_hex

    return sha256_hex(dumps(network_model(spec)).encode())


def volume_hash(spec: dict[str, Any]) -> str:
    """docker compose's VolumeHash (the driver counts as "local" when not given)."""
    from dockyard.compose.planner import sha256_hex

    return sha256_hex(dumps(volume_model({**spec, "driver": spec.get("driver")
                                          or "local"})).encode())


def service_model(svc: dict[str, Any]) -> dict[str, Any]:
    """The service as compose-go's JSON object (fields in its order)."""
    svc = dict(svc)
    if svc.get("networks") is not None and "network_mode" in svc:
        svc.pop("networks")
    svc["depends_on"] = implicit_depends_on(svc)
    return go_struct(*SERVICE)(svc)


_FLOAT_MARK = "\x00f32:"
_FLOAT_RE = re.compile(r'"\\u0000f32:([^"]*)"')


def _mark_floats(value: Any) -> Any:
    # json writes float subclasses with float.__repr__: carry Go's text in a
    # string, then unquote it; extensions are not in Go's JSON
    if isinstance(value, Float32):
        return _FLOAT_MARK + value.go_text()
    if isinstance(value, dict):
        return {k: _mark_floats(v) for k, v in value.items() if k != EXTENSIONS}
    if isinstance(value, list):
        return [_mark_floats(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON as Go's encoding/json writes it (compact by default; HTML-safe)."""
    sep = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(_mark_floats(value), ensure_ascii=False, separators=sep,
                      indent=indent)
    for char, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                      ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, esc)
    return _FLOAT_RE.sub(lambda m: m.group(1), text)


def config_hash(svc: dict[str, Any]) -> str:
    """docker compose's ServiceHash of a canonical service."""
    from dockyard.compose.planner import sha256_hex

    model = service_model(svc)
    for key in HASH_EXCLUDED:
        model.pop(key, None)
    if "deploy" in model:
        model["deploy"] = {k: v for k, v in model["deploy"].items() if k != "replicas"}
    return sha256_hex(dumps(model).encode())
