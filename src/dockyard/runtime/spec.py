"""Loading and validating an OCI bundle's config.json.

A hand-written validator for the fields the runtime acts on: it is much
faster to import than a JSON-schema library (the runtime's start-up time is
benchmarked) and every error names the field as a dotted path, e.g.
`linux.namespaces[2].type: unknown namespace type "foo"`.
"""

import os

from dockyard.errors import ConfigError
from dockyard.linux.namespaces import NAMESPACES
from dockyard.runtime import jsonio

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
DEVICE_TYPES = ("c", "b", "u", "p")
BIND_OPTIONS = ("bind", "rbind")


def _check(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise ConfigError(field, message)


def _type(value, types, field: str, name: str) -> None:
    # bool is an int subclass: an int field must not accept true/false
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in
                                           (types if isinstance(types, tuple) else (types,)))
    _check(ok, field, f"must be {name}, not {type(value).__name__}")


def _obj(parent: dict, key: str, field: str, required: bool = False) -> dict | None:
    value = parent.get(key)
    if value is None:
        _check(not required, field, "is required")
        return None
    _type(value, dict, field, "an object")
    return value


def _list(parent: dict, key: str, field: str) -> list:
    value = parent.get(key)
    if value is None:
        return []
    _type(value, list, field, "an array")
    return value


def _strings(parent: dict, key: str, field: str) -> list[str]:
    values = _list(parent, key, field)
    for i, v in enumerate(values):
        _type(v, str, f"{field}[{i}]", "a string")
    return values


def _int(parent: dict, key: str, field: str, required: bool = False) -> int | None:
    value = parent.get(key)
    if value is None:
        _check(not required, field, "is required")
        return None
    _type(value, int, field, "an integer")
    return value


def load(bundle: str) -> dict:
    """Read and validate <bundle>/config.json; raise ConfigError on any problem."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = jsonio.load(f)
    except FileNotFoundError:
        raise ConfigError("", f"no config.json in bundle {bundle}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError("", f"{path}: invalid JSON: {e}") from None
    validate(spec, bundle)
    return spec


def validate(spec, bundle: str | None = None, need_process: bool = True) -> None:
    _type(spec, dict, "config.json", "an object")
    _check(isinstance(spec.get("ociVersion"), str), "ociVersion", "is required (a string)")
    root = _obj(spec, "root", "root", required=True)
    _check(isinstance(root.get("path"), str) and root["path"] != "", "root.path",
           "is required (a string)")
    if "readonly" in root:
        _type(root["readonly"], bool, "root.readonly", "a boolean")
    if bundle is not None:
        rootfs = rootfs_path(spec, bundle)
        _check(os.path.isdir(rootfs), "root.path", f"no such directory: {rootfs}")
    process = _obj(spec, "process", "process", required=need_process)
    if process is not None:
        validate_process(process, "process")
    if "hostname" in spec:
        _type(spec["hostname"], str, "hostname", "a string")
    for i, m in enumerate(_list(spec, "mounts", "mounts")):
        _validate_mount(m, f"mounts[{i}]")
    hooks = _obj(spec, "hooks", "hooks")
    for kind in HOOK_KINDS if hooks else ():
        for i, hook in enumerate(_list(hooks, kind, f"hooks.{kind}")):
            validate_hook(hook, f"hooks.{kind}[{i}]")
    annotations = _obj(spec, "annotations", "annotations") or {}
    for k, v in annotations.items():
        _type(v, str, f"annotations.{k}", "a string")
    linux = _obj(spec, "linux", "linux")
    if linux is not None:
        _validate_linux(linux)


def rootfs_path(spec: dict, bundle: str) -> str:
    path = spec["root"]["path"]
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(bundle, path))


def validate_process(process: dict, field: str) -> None:
    args = _strings(process, "args", f"{field}.args")
    _check(len(args) > 0, f"{field}.args", "must name the program to run")
    cwd = process.get("cwd", "/")
    _type(cwd, str, f"{field}.cwd", "a string")
    _check(cwd.startswith("/"), f"{field}.cwd", f"must be an absolute path, not {cwd!r}")
    for i, e in enumerate(_strings(process, "env", f"{field}.env")):
        _check("=" in e, f"{field}.env[{i}]", f"must be KEY=value, not {e!r}")
    for key in ("terminal", "noNewPrivileges"):
        if key in process:
            _type(process[key], bool, f"{field}.{key}", "a boolean")
    user = _obj(process, "user", f"{field}.user")
    if user is not None:
        for key in ("uid", "gid", "umask"):
            value = _int(user, key, f"{field}.user.{key}")
            _check(value is None or value >= 0, f"{field}.user.{key}", "must not be negative")
        for i, g in enumerate(_list(user, "additionalGids", f"{field}.user.additionalGids")):
            _type(g, int, f"{field}.user.additionalGids[{i}]", "an integer")
    caps = _obj(process, "capabilities", f"{field}.capabilities") or {}
    for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        _strings(caps, key, f"{field}.capabilities.{key}")
    for i, rl in enumerate(_list(process, "rlimits", f"{field}.rlimits")):
        f = f"{field}.rlimits[{i}]"
        _type(rl, dict, f, "an object")
        _check(rl.get("type") in RLIMITS, f"{f}.type", f"unknown rlimit {rl.get('type')!r}")
        _int(rl, "hard", f"{f}.hard", required=True)
        _int(rl, "soft", f"{f}.soft", required=True)
    _int(process, "oomScoreAdj", f"{field}.oomScoreAdj")
    if process.get("oomScoreAdj") is not None:
        _check(-1000 <= process["oomScoreAdj"] <= 1000, f"{field}.oomScoreAdj",
               "must be between -1000 and 1000")


def validate_hook(hook, field: str) -> None:
    _type(hook, dict, field, "an object")
    path = hook.get("path")
    _check(isinstance(path, str) and path.startswith("/"), f"{field}.path",
           "is required (an absolute path)")
    _strings(hook, "args", f"{field}.args")
    _strings(hook, "env", f"{field}.env")
    timeout = _int(hook, "timeout", f"{field}.timeout")
    _check(timeout is None or timeout > 0, f"{field}.timeout", "must be positive")


def _known_filesystems() -> set[str]:
    with open("/proc/filesystems") as f:
        return {line.split()[-1] for line in f if line.strip()}


def _validate_mount(m, field: str) -> None:
    _type(m, dict, field, "an object")
    dest = m.get("destination")
    _check(isinstance(dest, str) and dest.startswith("/"), f"{field}.destination",
           "is required (an absolute path)")
    options = _strings(m, "options", f"{field}.options")
    if "source" in m:
        _type(m["source"], str, f"{field}.source", "a string")
    mtype = m.get("type")
    is_bind = mtype == "bind" or any(o in BIND_OPTIONS for o in options)
    if mtype is not None:
        _type(mtype, str, f"{field}.type", "a string")
    if is_bind:
        _check(bool(m.get("source")), f"{field}.source", "a bind mount needs a source")
    elif mtype not in ("", None, "none"):
        _check(mtype in _known_filesystems(), f"{field}.type", f"unknown mount type {mtype!r}")
    else:
        _check(False, f"{field}.type", "is required unless the mount is a bind mount")


def _validate_linux(linux: dict) -> None:
    seen: set[str] = set()
    for i, ns in enumerate(_list(linux, "namespaces", "linux.namespaces")):
        f = f"linux.namespaces[{i}]"
        _type(ns, dict, f, "an object")
        kind = ns.get("type")
        _check(kind in NAMESPACES, f"{f}.type", f"unknown namespace type {kind!r}")
        _check(kind not in seen, f"{f}.type", f"namespace {kind!r} listed twice")
        seen.add(kind)
        if ns.get("path"):
            _type(ns["path"], str, f"{f}.path", "a string")
            _check(os.path.exists(ns["path"]), f"{f}.path", f"no such file: {ns['path']}")
    for key in ("uidMappings", "gidMappings"):
        for i, m in enumerate(_list(linux, key, f"linux.{key}")):
            f = f"linux.{key}[{i}]"
            _type(m, dict, f, "an object")
            for k in ("containerID", "hostID", "size"):
                _int(m, k, f"{f}.{k}", required=True)
    if linux.get("uidMappings") or linux.get("gidMappings"):
        _check("user" in seen, "linux.uidMappings", "mappings need a user namespace")
    for i, d in enumerate(_list(linux, "devices", "linux.devices")):
        f = f"linux.devices[{i}]"
        _type(d, dict, f, "an object")
        _check(isinstance(d.get("path"), str) and d["path"].startswith("/dev/"), f"{f}.path",
               "is required (a path under /dev)")
        _check(d.get("type") in DEVICE_TYPES, f"{f}.type", f"unknown device type {d.get('type')!r}")
        if d["type"] != "p":
            _int(d, "major", f"{f}.major", required=True)
            _int(d, "minor", f"{f}.minor", required=True)
    if "cgroupsPath" in linux:
        _type(linux["cgroupsPath"], str, "linux.cgroupsPath", "a string")
    _obj(linux, "resources", "linux.resources")
    sysctl = _obj(linux, "sysctl", "linux.sysctl") or {}
    for k, v in sysctl.items():
        _type(v, str, f"linux.sysctl.{k}", "a string")
        _check(".." not in k and "/" not in k.replace(".", ""), f"linux.sysctl.{k}",
               "invalid sysctl name")
    _obj(linux, "seccomp", "linux.seccomp")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(_strings(linux, key, f"linux.{key}")):
            _check(p.startswith("/"), f"linux.{key}[{i}]", "must be an absolute path")
    prop = linux.get("rootfsPropagation")
    _check(prop in (None, "", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"), "linux.rootfsPropagation",
           f"unknown propagation {prop!r}")
