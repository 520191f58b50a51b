"""Loading a project: find the files, read YAML, interpolate, validate, normalize,
resolve `include` and `extends`, merge the -f files, name the project, apply
profiles, check references.

    project = load(Options(files=["compose.yaml", "ci.yaml"], profiles=["debug"]))

Files: -f (several times, merged in order; "-" is stdin), else compose.yaml,
compose.yml, docker-compose.yml or docker-compose.yaml in the working directory
or the nearest parent that has one, plus its compose.override.* file. Project
name: -p, COMPOSE_PROJECT_NAME, the top-level `name`, else the project
directory's name normalised like docker compose does (lower case, [a-z0-9_-]).
Every error names the file and the path (errors.ComposeError).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.compose import normalize
from dockyard.compose.errors import ComposeError, where
from dockyard.compose.interpolate import interpolate, project_environment, read_env_file
from dockyard.compose.merge import Tags, merge
from dockyard.compose.model import Project
from dockyard.compose.validate import references, validate

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")
RESOURCES = ("networks", "volumes", "secrets", "configs")
_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass
class Options:
    files: list[str] = field(default_factory=list)
    project_name: str = ""
    project_directory: str = ""
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    environ: dict[str, str] | None = None   # None: os.environ
    workdir: str = ""                       # where to look for files ("": the cwd)
    enabled: list[str] = field(default_factory=list)  # services named on the command line
    warn: Callable[[str], None] | None = None


def normalize_project_name(name: str) -> str:
    return "".join(re.findall(r"[a-z0-9_-]", name.lower())).lstrip("_-")


def check_project_name(name: str, source: str) -> str:
    if not _VALID_NAME.match(name):
        raise ComposeError(f"{source}: invalid project name {name!r}: must consist only of "
                           "lowercase alphanumeric characters, hyphens, and underscores as "
                           "well as start with a letter or number")
    return name


def find_files(start: str) -> list[str]:
    """The default compose file (and its override) in `start` or its nearest parent."""
    d = os.path.abspath(start)
    while True:
        for name in DEFAULT_FILES:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                out = [path]
                for over in OVERRIDE_FILES:
                    if os.path.isfile(os.path.join(d, over)):
                        out.append(os.path.join(d, over))
                        break
                return out
        parent = os.path.dirname(d)
        if parent == d:
            raise ComposeError("no configuration file provided: not found")
        d = parent


# -- YAML with !reset / !override -----------------------------------------------------------

class _Reset:
    pass


class _Override:
    def __init__(self, value: Any) -> None:
        self.value = value


_YAML12 = (  # YAML 1.2's core schema, as docker compose reads files (not PyYAML's 1.1)
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
     "-+0123456789"),
    ("tag:yaml.org,2002:float",
     (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+0123456789."),
)


@functools.cache
def _yaml_loader() -> type:
    """SafeLoader with YAML 1.2 scalars (`yes`, `on`, `22:22` stay strings) and the
    compose tags !reset and !override."""
    import yaml

    # libyaml's parser when there (several times faster; the resolvers and constructors
    # below are Python's either way)
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                               "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for tag, regex, first in _YAML12:
        Loader.add_implicit_resolver(tag, re.compile(regex), list(first))

    def int12(loader: Any, node: Any) -> int:
        text = loader.construct_scalar(node)
        digits = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        if digits.startswith("0o"):
            return sign * int(digits, 0)
        if digits.startswith("0x"):
            return sign * int(digits, 16)
        if len(digits) > 1 and digits[0] == "0" and set(digits) <= set("01234567"):
            return sign * int(digits, 8)  # 0440: octal, as docker compose's YAML reads it
        return int(text)

    def bool12(loader: Any, node: Any) -> bool:
        return loader.construct_scalar(node).lower() == "true"

    Loader.add_constructor("tag:yaml.org,2002:int", int12)
    Loader.add_constructor("tag:yaml.org,2002:bool", bool12)

    def reset(loader: Any, node: Any) -> _Reset:
        return _Reset()

    def override(loader: Any, node: Any) -> _Override:
        if isinstance(node, yaml.MappingNode):
            return _Override(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return _Override(loader.construct_sequence(node, deep=True))
        return _Override(loader.construct_scalar(node))

    Loader.add_constructor("!reset", reset)
    Loader.add_constructor("!override", override)
    return Loader


MAX_VALUES = 1_000_000  # YAML aliases can make a small file expand exponentially


def _strip_tags(doc: Any, path: tuple, tags: Tags, count: list[int] | None = None) -> Any:
    """A plain copy of the loaded document, tags recorded in `tags`; refuses documents
    whose aliases expand to more than MAX_VALUES values ("billion laughs")."""
    count = [0] if count is None else count
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise ComposeError(f"the document expands to more than {MAX_VALUES} values "
                           "(YAML aliases)")
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if not isinstance(k, str):
                k = str(k)
            if isinstance(v, _Reset):
                tags[path + (k,)] = "reset"
                continue
            if isinstance(v, _Override):
                tags[path + (k,)] = "override"
                v = v.value
            out[k] = _strip_tags(v, path + (k,), tags, count)
        return out
    if isinstance(doc, list):
        return [_strip_tags(v, path + (i,), tags, count) for i, v in enumerate(doc)
                if not isinstance(v, _Reset)]
    return doc


PARSE_CACHE_VERSION = "2"  # bump when the YAML loading (resolvers, tags) changes


def _parse_cache_path(text: str) -> str | None:
    """Where the parse of a document (its text) is remembered, as JSON: a compose
    command on an unchanged project then neither imports PyYAML nor parses (~10 ms of
    each command's start-up); like the validation cache (validate.py)."""
    from dockyard.compose.planner import sha256_hex

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = sha256_hex(f"{PARSE_CACHE_VERSION}\0{text}".encode("utf-8", "surrogatepass"))
    return os.path.join(base, "dockyard", "compose-yaml", key + ".json")


def _cached_parse(cache: str | None) -> tuple[Any, Tags] | None:
    if cache is None:
        return None
    import json

    try:
        with open(cache, encoding="utf-8") as f:
            entry = json.load(f)
        return entry["doc"], {tuple(p): tag for p, tag in entry["tags"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember_parse(cache: str | None, doc: Any, tags: Tags) -> None:
    if cache is None:
        return
    import json

    try:
        data = json.dumps({"doc": doc, "tags": [[list(p), t] for p, t in tags.items()]})
    except (TypeError, ValueError):
        return  # a value JSON does not keep (!!binary, !!set): parse every time
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home: parse every time


def read_yaml(path: str) -> tuple[Any, Tags]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise ComposeError(f"{path}: {e.strerror or e}") from None
    cache = _parse_cache_path(text)
    cached = _cached_parse(cache)
    if cached is not None:
        return cached
    import yaml

    try:
        doc = yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ComposeError(f"{path}{at}: invalid YAML: {problem}") from None
    tags: Tags = {}
    try:
        plain = _strip_tags(doc, (), tags)
    except ComposeError as e:
        raise ComposeError(f"{path}: {e}") from None
    _remember_parse(cache, plain, tags)
    return plain, tags


# -- one file -------------------------------------------------------------------------------

@dataclass
class _Loaded:
    doc: dict[str, Any]
    tags: Tags
    sources: dict[str, str]  # service -> the file that defined it


class _Loader:
    def __init__(self, env: dict[str, str], warn: Callable[[str], None] | None) -> None:
        self.env = env
        self.warn = warn
        self.stack: list[str] = []

    def load_file(self, path: str, base: str, env: dict[str, str] | None = None) -> _Loaded:
        env = self.env if env is None else env
        shown = path
        raw, tags = read_yaml(path)
        if raw is None:
            raise ComposeError(f"{shown}: empty compose file")
        if not isinstance(raw, dict):
            raise ComposeError(f"{shown}: top-level object must be a mapping")
        doc = interpolate(raw, env, shown, warn=self.warn)
        if "version" in doc:
            doc.pop("version")
            if self.warn is not None:
                self.warn(f"{shown}: the attribute `version` is obsolete, it will be "
                          "ignored, please remove it to avoid potential confusion")
        validate(doc, shown)
        loaded = _Loaded({}, tags, {})
        for key, value in doc.items():
            if key == "services":
                loaded.doc["services"] = {
                    name: normalize.service(name, svc or {}, base, shown)
                    for name, svc in (value or {}).items()}
                loaded.sources.update({name: shown for name in value or {}})
            elif key in RESOURCES:
                loaded.doc[key] = {k: normalize.resource(key, k, v, base)
                                   for k, v in (value or {}).items()}
            elif key != "include":
                loaded.doc[key] = value
        self._extends(loaded, shown)
        for i, inc in enumerate(doc.get("include") or []):
            self._include(loaded, inc, base, shown, i)
        return loaded

    def _include(self, loaded: _Loaded, inc: Any, base: str, file: str, i: int) -> None:
        spec = {"path": inc} if isinstance(inc, str) else dict(inc)
        paths = normalize.string_or_list(spec.get("path"))
        paths = [normalize._abs(p, base) for p in paths]
        sub_dir = normalize._abs(spec["project_directory"], base) \
            if spec.get("project_directory") else os.path.dirname(paths[0])
        env = dict(self.env)
        env_files = [normalize._abs(p, base) for p in normalize.string_or_list(
            spec.get("env_file"))]
        default_env = os.path.join(sub_dir, ".env")
        for ef in env_files or ([default_env] if os.path.isfile(default_env) else []):
            env = {**read_env_file(ef, env), **env}
        included: dict[str, Any] = {}
        for p in paths:
            if p in self.stack:
                raise ComposeError(f"{where(file, f'include[{i}]')}: include cycle through {p}")
            self.stack.append(p)
            try:
                sub = self.load_file(p, sub_dir, env)
            finally:
                self.stack.pop()
            included = merge(included, sub.doc, (), sub.tags)
            loaded.sources.update({k: v for k, v in sub.sources.items()
                                   if k not in loaded.sources})
        for section in ("services",) + RESOURCES:
            mine = loaded.doc.setdefault(section, {})
            for name, value in (included.get(section) or {}).items():
                if name in mine and mine[name] != value:
                    raise ComposeError(f"{where(file, f'{section}.{name}')}: conflicts with "
                                       f"the imported resource from include[{i}] ({paths[0]})")
                mine[name] = value

    def _extends(self, loaded: _Loaded, file: str) -> None:
        services = loaded.doc.get("services") or {}
        done: set[str] = set()

        def resolve(name: str, chain: tuple[str, ...]) -> None:
            if name in done:
                return
            svc = services[name]
            ext = svc.get("extends")
            if not ext:
                done.add(name)
                return
            path = f"services.{name}.extends"
            target = ext.get("service")
            if ext.get("file") and os.path.abspath(ext["file"]) != os.path.abspath(file):
                other = ext["file"]
                if other in self.stack:
                    raise ComposeError(f"{where(file, path)}: extends cycle through {other}")
                self.stack.append(other)
                try:
                    sub = self.load_file(other, os.path.dirname(other))
                finally:
                    self.stack.pop()
                base_svc = (sub.doc.get("services") or {}).get(target)
                if base_svc is None:
                    raise ComposeError(f"{where(file, path)}: cannot extend service "
                                       f"{target!r}: not found in {other}")
            else:
                if target not in services:
                    raise ComposeError(f"{where(file, path)}: cannot extend service "
                                       f"{target!r}: no such service")
                if target in chain:
                    raise ComposeError(f"{where(file, path)}: extends cycle: "
                                       + " -> ".join(chain + (target,)))
                resolve(target, chain + (target,))
                base_svc = services[target]
            own = {k: v for k, v in svc.items() if k != "extends"}
            merged = merge({"services": {name: base_svc}}, {"services": {name: own}}, (),
                           loaded.tags)["services"][name]
            merged.pop("extends", None)
            services[name] = merged
            done.add(name)

        for name in list(services):
            resolve(name, (name,))


# -- the project ----------------------------------------------------------------------------

def _profiles(opts: Options, env: dict[str, str]) -> list[str]:
    if opts.profiles:
        return [p for item in opts.profiles for p in item.split(",") if p]
    return [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]


def _resolve_environment(project: Project) -> None:
    """env_file contents under `environment`; bare KEYs from the shell environment."""
    for name, svc in project.services.items():
        env: dict[str, str | None] = {}
        for ef in svc.get("env_file") or []:
            if not os.path.isfile(ef["path"]):
                if ef["required"]:
                    at = where(project.sources.get(name, ""), f"services.{name}.env_file")
                    raise ComposeError(f"{at}: env file {ef['path']} not found")
                continue
            env.update(read_env_file(ef["path"], project.environment))
        for key, value in (svc.get("environment") or {}).items():
            env[key] = value if value is not None else project.environment.get(key)
        if env or "environment" in svc:
            svc["environment"] = env
        labels: dict[str, str | None] = {}
        for lf in svc.pop("label_file", None) or []:
            labels.update(read_env_file(lf, {}, lookup_unset=False))
        if labels:
            svc["labels"] = {**labels, **(svc.get("labels") or {})}


def load(opts: Options) -> Project:
    environ = dict(os.environ if opts.environ is None else opts.environ)
    cwd = os.path.abspath(opts.workdir or os.getcwd())
    if opts.files:
        files = [f if f == "-" else os.path.abspath(os.path.join(cwd, f)) for f in opts.files]
    elif environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        files = [os.path.abspath(os.path.join(cwd, f))
                 for f in environ["COMPOSE_FILE"].split(sep) if f]
    else:
        files = find_files(cwd)
    workdir = os.path.abspath(opts.project_directory) if opts.project_directory else \
        (cwd if files[0] == "-" else os.path.dirname(files[0]))
    env = project_environment(workdir, opts.env_files, environ)
    from dockyard.compose.interpolate import _stderr_warning
    loader = _Loader(env, opts.warn or _stderr_warning)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in files:
        loader.stack = [path]
        loaded = loader.load_file(path, workdir)
        merged = merge(merged, loaded.doc, (), loaded.tags)
        for name, src in loaded.sources.items():
            sources.setdefault(name, src)

    if opts.project_name:
        name = check_project_name(opts.project_name, "-p")
    elif env.get("COMPOSE_PROJECT_NAME"):
        name = check_project_name(env["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    elif merged.get("name"):
        name = check_project_name(str(merged["name"]), f"{files[0]}: name")
    else:
        name = normalize_project_name(os.path.basename(workdir))
        if not name:
            raise ComposeError(f"project name {os.path.basename(workdir)!r} is empty once "
                               "normalized: use -p")

    env_files = [os.path.abspath(f) for f in opts.env_files]
    if not env_files and os.path.isfile(os.path.join(workdir, ".env")):
        env_files = [os.path.join(workdir, ".env")]
    project = Project(name=name, working_dir=workdir, config_files=files,
                      environment=env, env_files=env_files, sources=sources)
    for key in RESOURCES:
        setattr(project, key, dict(merged.get(key) or {}))
    project.extensions = {k: v for k, v in merged.items() if k.startswith("x-")}
    services = dict(merged.get("services") or {})
    for sname, svc in services.items():
        if not svc.get("image") and not svc.get("build"):
            raise ComposeError(f"{where(sources.get(sname, ''), f'services.{sname}')}: service "
                               f"\"{sname}\" has neither an image nor a build context "
                               "specified: invalid compose project")
        if not svc.get("network_mode") and not svc.get("networks"):
            svc["networks"] = {"default": None}
    active = _profiles(opts, env)
    project.profiles = active
    for sname, svc in services.items():
        prof = svc.get("profiles") or []
        if prof and not set(prof) & set(active) and "*" not in active \
                and sname not in opts.enabled:
            project.disabled[sname] = svc
        else:
            project.services[sname] = svc
    # the default network exists when a service uses it
    if any("default" in (s.get("networks") or {}) for s in project.services.values()):
        project.networks.setdefault("default", {})
    for key, res in project.networks.items():
        if res.get("external") and not res.get("name"):
            res["name"] = key
        res.setdefault("name", f"{name}_{key}")
    for key, res in project.volumes.items():
        if res.get("external") and not res.get("name"):
            res["name"] = key
        res.setdefault("name", f"{name}_{key}")
    _resolve_environment(project)
    references(project)
    from dockyard.compose.planner import check_cycles
    check_cycles(project)
    return project
