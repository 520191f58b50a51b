"""What each instruction does to the image config (pure functions, no I/O).

`StageState` is a stage's running state: its Config (docker's keys), the ARGs
in effect, the shell, whether CMD was set in this stage (ENTRYPOINT resets an
inherited CMD, docker's rule). `apply()` handles every metadata instruction and
returns the canonical instruction text that goes into history and the cache key.
"""

from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass, field

from dockyard.build import expand
from dockyard.build import instructions as ins
from dockyard.build.parser import DockerfileError
from dockyard.errors import DockyardError
from dockyard.linux.signals import parse as parse_signal

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class StageState:
    config: dict
    args: dict[str, str] = field(default_factory=dict)  # ARGs in effect with a value
    declared: set[str] = field(default_factory=set)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    escape: str = "\\"
    author: str = ""

    @classmethod
    def from_image_config(cls, image_config: dict | None, escape: str = "\\") -> StageState:
        cfg = copy.deepcopy(image_config or {})
        st = cls(cfg, escape=escape)
        if not any(e.startswith("PATH=") for e in cfg.get("Env") or []):
            cfg["Env"] = [*(cfg.get("Env") or []), f"PATH={DEFAULT_PATH}"]  # docker's beginStage
        if cfg.get("Shell"):
            st.shell = list(cfg["Shell"])
        return st

    def env(self) -> dict[str, str]:
        """What ${VAR} sees: the ARGs, overridden by ENV."""
        out = dict(self.args)
        for e in self.config.get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out

    def word(self, text: str) -> str:
        return expand.word(text, self.env(), self.escape)

    def words(self, text: str) -> list[str]:
        return expand.words(text, self.env(), self.escape)

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.config.get("Env") or [] if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.config["Env"] = env

    def run_env(self) -> list[str]:
        """The environment of a RUN: Env, plus the build args not overridden by it."""
        env = list(self.config.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in keys]
        return env


def _err(instr: ins.Instruction, message: str) -> DockerfileError:
    return DockerfileError(message, instr.line)


def command(instr: ins.Command, st: StageState) -> list[str]:
    if instr.argv is not None:
        return list(instr.argv)
    text = instr.shell_text
    if instr.heredocs:
        marker = instr.shell_text.strip()
        only = len(instr.heredocs) == 1 and re.fullmatch(r"<<-?['\"]?\w+['\"]?", marker)
        if only:
            h = instr.heredocs[0]
            return [*st.shell, h.content]
        text = instr.shell_text + "\n" + "".join(
            h.content + h.name + "\n" for h in instr.heredocs)
    return [*st.shell, text]


def _ports(words: list[str], instr: ins.Instruction) -> list[str]:
    out = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise _err(instr, f"invalid proto: {proto}")
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", port)
        if not m:
            raise _err(instr, f"invalid containerPort: {port}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi > 65535:
            raise _err(instr, f"invalid port range: {port}")
        out += [f"{p}/{proto}" for p in range(lo, hi + 1)]
    return out


def _healthcheck(instr: ins.Healthcheck) -> dict:
    if instr.test is None:
        return {"Test": ["NONE"]}
    hc: dict = {"Test": instr.test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in instr.flags:
            try:
                value = ins.parse_duration(instr.flags[flag], flag)
            except DockerfileError as e:
                raise _err(instr, e.message) from None
            if value and value < 1_000_000:
                raise _err(instr, f"Interval {flag!r} cannot be less than 1ms")
            if value:
                hc[key] = value
    if "retries" in instr.flags:
        try:
            retries = int(instr.flags["retries"])
        except ValueError:
            raise _err(instr, f"invalid retries value: {instr.flags['retries']}") from None
        if retries < 0:
            raise _err(instr, "--retries cannot be negative")
        if retries:
            hc["Retries"] = retries
    return hc


def apply(instr: ins.Instruction, st: StageState) -> str:
    """Apply a metadata instruction to `st`; returns its canonical text (expanded)."""
    name = instr.node.cmd
    cfg = st.config
    if isinstance(instr, ins.Pairs):
        pairs = []
        for key, value in instr.pairs:
            k, v = st.word(key), st.word(value)
            if not k:
                raise _err(instr, f"{name.upper()} names can not be blank")
            pairs.append((k, v))
            if name == "env":
                st.set_env(k, v)
            else:
                cfg["Labels"] = {**(cfg.get("Labels") or {}), k: v}
        return f"{name.upper()} " + " ".join(f"{k}={_quote(v)}" for k, v in pairs)
    if isinstance(instr, ins.Command):
        argv = command(instr, st)
        if name == "cmd":
            cfg["Cmd"] = argv
            st.cmd_set = True
        else:
            cfg["Entrypoint"] = argv
            if not st.cmd_set:
                cfg["Cmd"] = None
        return f"{name.upper()} {_json(argv)}"
    if isinstance(instr, ins.Healthcheck):
        cfg["Healthcheck"] = _healthcheck(instr)
        return f"HEALTHCHECK {_json(cfg['Healthcheck'])}"
    if isinstance(instr, ins.OnBuild):
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), instr.expression]
        return f"ONBUILD {instr.expression}"
    assert isinstance(instr, ins.Words), name
    if name == "shell":
        if not instr.words:
            raise _err(instr, "SHELL requires at least one argument")
        st.shell = list(instr.words)
        cfg["Shell"] = list(instr.words)
        return f"SHELL {_json(instr.words)}"
    if name == "maintainer":
        st.author = st.word(instr.words[0])
        return f"MAINTAINER {st.author}"
    if name == "expose":
        ports = _ports([st.word(w) for w in instr.words], instr)
        cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{p: {} for p in ports}}
        return "EXPOSE " + " ".join(ports)
    if name == "volume":
        paths = [st.word(w) if not instr.is_json else expand.word_keep_quotes(w, st.env())
                 for w in instr.words]
        for p in paths:
            if not p.strip():
                raise _err(instr, "VOLUME specified can not be an empty string")
        cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
        return f"VOLUME {_json(paths)}"
    if name == "user":
        cfg["User"] = st.word(instr.words[0])
        return f"USER {cfg['User']}"
    if name == "workdir":
        path = st.word(instr.words[0])
        if not path:
            raise _err(instr, "WORKDIR requires exactly one argument")
        if not path.startswith("/"):
            path = posixpath.join(cfg.get("WorkingDir") or "/", path)
        cfg["WorkingDir"] = posixpath.normpath(path)
        return f"WORKDIR {cfg['WorkingDir']}"
    if name == "stopsignal":
        sig = st.word(instr.words[0])
        try:
            parse_signal(sig)
        except (ValueError, KeyError, DockyardError):
            raise _err(instr, f"Invalid signal: {sig}") from None
        cfg["StopSignal"] = sig
        return f"STOPSIGNAL {sig}"
    raise _err(instr, f"unsupported instruction {name.upper()}")


def apply_arg(instr: ins.Arg, st: StageState, build_args: dict[str, str | None],
              meta: dict[str, str | None], consumed: set[str]) -> str:
    texts = []
    for name, default in instr.args:
        st.declared.add(name)
        if name in build_args and build_args[name] is not None:
            value: str | None = build_args[name]
            consumed.add(name)
        elif default is not None:
            value = st.word(default)
        else:
            value = meta.get(name)
            if value is None and name in _platform():
                value = _platform()[name]
        if value is not None:
            st.args[name] = value
        texts.append(name if default is None else f"{name}={default}")
    return "ARG " + " ".join(texts)


def _platform() -> dict[str, str]:
    from dockyard.build.stages import platform_args
    return platform_args()


def _quote(v: str) -> str:
    return v if v and not re.search(r"[\s\"'\\$]", v) else '"' + v.replace("\\", "\\\\") \
        .replace('"', '\\"') + '"'


def _json(value) -> str:
    import json
    return json.dumps(value)
