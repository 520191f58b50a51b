"""Stages of a Dockerfile: the meta ARGs before the first FROM, each stage's
instructions, the dependency graph (FROM <stage>, COPY --from, RUN --mount from=)
and which stages a target needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.build import expand
from dockyard.build import instructions as ins
from dockyard.build.parser import Dockerfile, DockerfileError
from dockyard.image import formats

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def platform_args() -> dict[str, str]:
    os_, arch, variant = formats.host_platform()
    plat = f"{os_}/{arch}" + (f"/{variant}" if variant else "")
    out = {}
    for prefix in ("TARGET", "BUILD"):
        out.update({f"{prefix}PLATFORM": plat, f"{prefix}OS": os_, f"{prefix}ARCH": arch,
                    f"{prefix}VARIANT": variant or ""})
    return out


def host_platform_string() -> str:
    os_, arch, variant = formats.host_platform()
    return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


def check_platform(value: str) -> None:
    """Only this machine's platform can be built for: anything else is an error (never
    silently ignored). `value` may be a comma-separated list (the API's platform)."""
    host = formats.host_platform()
    for one in value.split(","):
        one = one.strip()
        if not one:
            continue
        parts = one.lower().split("/")
        ok = 1 <= len(parts) <= 3
        if ok:
            os_ = parts[0]
            arch = parts[1] if len(parts) > 1 else host[1]
            wanted = formats.normalize_platform(os_, arch, parts[2] if len(parts) > 2
                                                else None)
            ok = wanted[:2] == host[:2] and (len(parts) < 3 or wanted[2] == host[2])
        if not ok:
            raise DockerfileError(f"dockyard builds for {host_platform_string()} only: "
                                  f"platform {one!r} is not supported")


@dataclass
class Stage:
    index: int
    name: str
    base: str  # the FROM argument, expanded with the meta args
    from_: ins.From
    steps: list[ins.Instruction] = field(default_factory=list)
    deps: set[int] = field(default_factory=set)
    base_stage: int | None = None  # FROM <an earlier stage>


@dataclass
class Plan:
    meta_args: dict[str, str | None]  # ARG before FROM (values after --build-arg)
    meta_steps: list[ins.Arg]
    stages: list[Stage]
    target: int
    needed: list[int]  # stage indexes to build, in order
    total_steps: int  # "Step N/M": instructions of stages up to the target (FROMs too)
    consumed: set[str]


def plan(df: Dockerfile, build_args: dict[str, str | None], target: str = "") -> Plan:
    meta: dict[str, str | None] = {}
    meta_steps: list[ins.Arg] = []
    stages: list[Stage] = []
    consumed: set[str] = set()
    escape = df.escape
    env_meta: dict[str, str] = dict(platform_args())
    for node in df.nodes:
        instr = ins.build(node, escape)
        if not stages:
            if isinstance(instr, ins.Arg):
                for name, default in instr.args:
                    if name in build_args and build_args[name] is not None:
                        value: str | None = build_args[name]
                        consumed.add(name)
                    else:
                        value = expand.word(default, env_meta, escape) \
                            if default is not None else None
                    meta[name] = value
                    if value is not None:
                        env_meta[name] = value
                meta_steps.append(instr)
                continue
            if not isinstance(instr, ins.From):
                raise DockerfileError("no build stage in current context", node.line,
                                      df.filename)
        if isinstance(instr, ins.From):
            base = expand.word(instr.image, env_meta, escape)
            if not base:
                raise DockerfileError("base name (" + instr.image + ") should not be blank",
                                      node.line, df.filename)
            if instr.flags.get("platform"):
                wanted = expand.word(instr.flags["platform"], env_meta, escape)
                try:
                    check_platform(wanted)
                except DockerfileError as e:
                    raise DockerfileError(e.message, node.line, df.filename) from None
            st = Stage(len(stages), instr.stage_name, base, instr)
            for prev in stages:
                if prev.name and prev.name == base.lower():
                    st.base_stage = prev.index
                    st.deps.add(prev.index)
            if instr.stage_name and any(s.name == instr.stage_name for s in stages):
                raise DockerfileError(f"duplicate name {instr.stage_name!r}", node.line,
                                      df.filename)
            stages.append(st)
            continue
        stages[-1].steps.append(instr)
        _deps(stages, stages[-1], instr)
    if not stages:
        raise DockerfileError("no build stage in current context", 0, df.filename)
    if target:
        found = [s for s in stages if s.name == target.lower()]
        if not found:
            raise DockerfileError(f"failed to reach build target {target} in Dockerfile", 0,
                                  df.filename)
        tgt = found[0].index
    else:
        tgt = len(stages) - 1
    needed: set[int] = set()
    todo = [tgt]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        todo += list(stages[i].deps)
    total = len(meta_steps) + sum(1 + len(s.steps) for s in stages[:tgt + 1])
    return Plan(meta, meta_steps, stages, tgt, sorted(needed), total, consumed)


def _ref(stages: list[Stage], value: str) -> int | None:
    if value.isdigit():
        i = int(value)
        return i if i < len(stages) else None
    for s in stages:
        if s.name and s.name == value.lower():
            return s.index
    return None


def _deps(stages: list[Stage], st: Stage, instr: ins.Instruction) -> None:
    refs: list[str] = []
    if isinstance(instr, ins.CopyLike) and instr.flags.get("from"):
        refs.append(instr.flags["from"])
    if isinstance(instr, ins.Command) and instr.node.cmd == "run":
        for spec in instr.flags.get("mount", []):
            for part in spec.split(","):
                key, _, value = part.partition("=")
                if key.strip() == "from" and value:
                    refs.append(value)
    for ref in refs:
        i = _ref(stages[:st.index], ref)
        if i is not None:
            st.deps.add(i)
        elif _ref(stages, ref) is not None and ref.lower() == st.name:
            raise DockerfileError(f"circular dependency: stage {ref} copies from itself",
                                  instr.line)


def stage_ref(stages: list[Stage], current: int, value: str) -> int | None:
    """The earlier stage a --from value names, None for an image reference."""
    return _ref(stages[:current], value)
