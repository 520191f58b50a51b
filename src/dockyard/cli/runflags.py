"""docker's command-line syntax: flags (pflag's rules) and the values docker
parses and prints (sizes, durations, CPUs, ulimits, restart policies, devices,
timestamps, ports).

`parse_flags` understands what the docker CLI does: `--flag value`,
`--flag=value`, `-f value`, `-fvalue`, bundled booleans (`-dit`),
`--bool=false`, `--` and, for `run`/`create`, stopping at the first
positional argument (the image): everything after it goes to the container.
The run/create flags and the create body built from them are in cli/run.py.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument

BOOL, VALUE, LIST = "bool", "value", "list"


@dataclass
class Flag:
    name: str
    kind: str = BOOL
    short: str = ""
    default: Any = None


@dataclass
class Parsed:
    values: dict[str, Any]
    args: list[str]
    changed: set[str] = field(default_factory=set)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value


class FlagError(InvalidArgument):
    """Bad command-line usage (docker prints usage and exits 125 for run/create)."""


def _bool(name: str, text: str) -> bool:
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise FlagError(f'invalid argument "{text}" for "--{name}" flag: '
                    f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_flags(argv: list[str], flags: list[Flag], interspersed: bool = True) -> Parsed:
    """Parse docker-style flags; positionals end up in `.args`. With
    `interspersed=False` the first positional ends flag parsing (run's IMAGE)."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, Any] = {
        f.name: [] if f.kind == LIST else bool(f.default) if f.kind == BOOL else f.default
        for f in flags}
    changed: set[str] = set()
    args: list[str] = []

    def put(f: Flag, value: str | None, shown: str) -> None:
        changed.add(f.name)
        if f.kind == BOOL:
            values[f.name] = True if value is None else _bool(f.name, value)
        elif f.kind == LIST:
            values[f.name].append(value)
        else:
            values[f.name] = value

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            f = by_long.get(name)
            if f is None:
                if name == "help":
                    raise FlagError("help requested")
                raise FlagError(f"unknown flag: --{name}")
            if f.kind != BOOL and not eq:
                if i >= len(argv):
                    raise FlagError(f"flag needs an argument: --{name}")
                value, i = argv[i], i + 1
            put(f, value if eq or f.kind != BOOL else None, f"--{name}")
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                c = arg[j]
                f = by_short.get(c)
                if f is None:
                    if c == "h":
                        raise FlagError("help requested")
                    raise FlagError(f"unknown shorthand flag: '{c}' in {arg}")
                if f.kind == BOOL:
                    if arg[j + 1:j + 2] == "=":
                        put(f, arg[j + 2:], f"-{c}")
                        break
                    put(f, None, f"-{c}")
                    j += 1
                    continue
                value = arg[j + 1:]
                if value.startswith("="):
                    value = value[1:]
                elif not value:
                    if i >= len(argv):
                        raise FlagError(f"flag needs an argument: '{c}' in -{c}")
                    value, i = argv[i], i + 1
                put(f, value, f"-{c}")
                break
            continue
        args.append(arg)
        if not interspersed:
            args.extend(argv[i:])
            break
    return Parsed(values, args, changed)

# -- values -------------------------------------------------------------------------------

_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str, flag: str = "") -> int:
    """go-units RAMInBytes: "64m", "1.5g", "512k", "100" -> bytes (binary units)."""
    m = _RAM.match(text)
    if not m:
        num = re.match(r"^\d+(?:\.\d+)?", text)
        why = f"invalid suffix: '{text[num.end():]}'" if num else f"invalid size: '{text}'"
        raise FlagError(f'invalid argument "{text}" for "{flag}" flag: {why}' if flag else why)
    return int(float(m.group(1)) * _MULT[(m.group(2) or "").lower()])


def _int(name: str, text: str) -> int:
    try:
        return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
    except ValueError:
        raise FlagError(f'invalid argument "{text}" for "--{name}" flag: '
                        f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}


def duration_ns(name: str, text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "500ms", "-2s") in nanoseconds."""
    body, sign = text, 1
    if body[:1] in "+-":
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION.match(body, pos)
        if not m:
            raise FlagError(f'invalid argument "{text}" for "--{name}" flag: '
                            f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if not body:
        raise FlagError(f'invalid argument "{text}" for "--{name}" flag: '
                        f'time: invalid duration "{text}"')
    return sign * round(total)


def nano_cpus(text: str) -> int:
    try:
        from fractions import Fraction

        value = Fraction(text) * 10**9
    except (ValueError, ZeroDivisionError):
        raise FlagError(f'invalid argument "{text}" for "--cpus" flag: '
                        f'failed to parse {text} as a rational number') from None
    if value.denominator != 1:
        raise FlagError(f'invalid argument "{text}" for "--cpus" flag: value is too precise')
    return int(value)


ULIMIT_NAMES = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}


def parse_ulimit(text: str) -> dict[str, Any]:
    name, eq, limits = text.partition("=")
    if not eq:
        raise FlagError(f'invalid argument "{text}" for "--ulimit" flag: '
                        f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise FlagError(f'invalid argument "{text}" for "--ulimit" flag: '
                        f"invalid ulimit type: {name}")
    soft_text, colon, hard_text = limits.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if colon else soft
    except ValueError:
        raise FlagError(f'invalid argument "{text}" for "--ulimit" flag: '
                        f"invalid ulimit argument: {text}") from None
    if soft > hard:
        raise FlagError(f'invalid argument "{text}" for "--ulimit" flag: ulimit soft limit '
                        f"must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_restart(text: str) -> dict[str, Any]:
    if not text:
        return {"Name": "", "MaximumRetryCount": 0}
    name, colon, count = text.partition(":")
    if colon and not name:
        raise FlagError("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count:
        try:
            retries = int(count)
        except ValueError:
            raise FlagError("invalid restart policy format: maximum retry count must be "
                            "an integer") from None
    return {"Name": name, "MaximumRetryCount": retries}


_DEVICE_MODE = re.compile(r"^[rwm]{1,3}$")


def parse_device(text: str) -> dict[str, str]:
    parts = text.split(":")
    src, dst, perms = "", "", "rwm"
    if len(parts) > 3 or not parts[0]:
        raise FlagError(f"invalid device specification: {text}")
    src = parts[0]
    if len(parts) == 3:
        dst, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if _DEVICE_MODE.match(parts[1]):
            perms = parts[1]
        else:
            dst = parts[1]
    if len(parts) == 3 and not _DEVICE_MODE.match(perms):
        raise FlagError(f"invalid device mode: {perms}")
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": perms}


def parse_weight_device(text: str) -> dict[str, Any]:
    """--blkio-weight-device /dev/sda:300 (docker: a weight of 10..1000, or 0)."""
    path, sep, weight = text.rpartition(":")
    if not sep or not path.startswith("/dev/"):
        raise FlagError(f"bad format: {text}")
    if not weight.isdigit() or not (int(weight) == 0 or 10 <= int(weight) <= 1000):
        raise FlagError(f"invalid weight for device: {text}")
    return {"Path": path, "Weight": int(weight)}


def parse_throttle_device(text: str, iops: bool = False) -> dict[str, Any]:
    """--device-read-bps /dev/sda:1mb, --device-write-iops /dev/sda:100."""
    path, sep, rate = text.rpartition(":")
    if not sep:
        raise FlagError(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise FlagError(f"bad format for device path: {text}")
    try:
        value = int(rate) if iops else ram_in_bytes(rate)
    except (FlagError, ValueError):
        value = -1
    if value < 0:
        unit = "" if iops else "[<unit>]"
        hint = "" if iops else " Unit is optional and can be kb, mb, or gb"
        raise FlagError(f"invalid rate for device: {text}. The correct format is "
                        f"<device-path>:<number>{unit}. Number must be a positive "
                        f"integer.{hint}") from None
    return {"Path": path, "Rate": value}


def parse_security_opts(opts: list[str]) -> list[str]:
    out = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq and key != "no-new-privileges":
            key, eq, value = opt.partition(":")
        if (not eq or not value) and key != "no-new-privileges":
            raise FlagError(f'Invalid --security-opt: "{opt}"')
        if key == "seccomp" and value not in ("unconfined", "builtin"):
            try:
                with open(value, "rb") as f:
                    profile = json.loads(f.read())
            except OSError as e:
                raise FlagError(f"opening seccomp profile ({value}) failed: "
                                f"open {value}: {e.strerror}") from None
            except ValueError as e:
                raise FlagError(f"compacting json for seccomp profile ({value}) failed: "
                                f"{e}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(opt)
    return out


def normalize_caps(caps: list[str]) -> list[str]:
    seen: list[str] = []
    for cap in caps:
        cap = cap.strip().upper()
        if cap != "ALL" and not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        if cap not in seen:
            seen.append(cap)
    return ["ALL"] if "ALL" in seen else sorted(seen)


def effective_caps(add: list[str], drop: list[str]) -> tuple[list[str] | None,
                                                               list[str] | None]:
    cap_add, cap_drop = normalize_caps(add), normalize_caps(drop)
    cap_drop = [c for c in cap_drop if c not in cap_add]
    return cap_add or None, cap_drop or None


def read_kv_file(path: str, env_lookup: bool) -> list[str]:
    """docker's --env-file / --label-file: KEY=VALUE lines, `#` comments; a bare
    KEY takes its value from our environment (env files) or is skipped if unset."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise FlagError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = key.lstrip()
        if not key:
            raise FlagError(f"no variable name on line '{line}'")
        if any(c.isspace() for c in key):
            raise FlagError(f"variable '{key}' contains whitespaces")
        if eq:
            lines.append(f"{key}={value}")
        elif env_lookup:
            if key in os.environ:
                lines.append(f"{key}={os.environ[key]}")
        else:
            lines.append(key)
    return lines


def timestamp(value: str, now: float | None = None) -> str:
    """docker's GetTimestamp: a duration ago, an RFC 3339 (ish) time, or unix seconds."""
    from datetime import datetime

    if value != "0":
        try:
            return str(int((now or time.time()) - duration_ns("since", value) / 1e9))
        except FlagError:
            pass
    try:
        text = value.replace("z", "Z")
        t = datetime.fromisoformat(text)
        if t.tzinfo is None:
            t = t.astimezone()
        return f"{int(t.timestamp())}.{t.microsecond * 1000:09d}"
    except ValueError:
        if "-" in value:
            raise SystemExit(f'invalid value for "since/until": {value!r}') from None
        try:
            float(value)
        except ValueError:
            raise SystemExit(f'failed to parse value as time or duration: "{value}"') from None
        return value


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def display_ports(ports: list[dict[str, Any]]) -> str:
    """docker's DisplayablePorts: consecutive ports grouped, host mappings last."""
    def key(p):
        return (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                p.get("Type", ""))

    groups: dict[str, list[int]] = {}
    result: list[str] = []
    mappings: list[str] = []

    def form(k: str, first: int, last: int) -> str:
        ip, _, kind = k.rpartition("/") if "/" in k else ("", "", k)
        group = str(first) if first == last else f"{first}-{last}"
        if ip:
            group = f"{ip}:{group}->{group}"
        return f"{group}/{kind}"

    for p in sorted(ports or [], key=key):
        current, kind, ip = p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", "")
        k = kind
        if ip:
            if p.get("PublicPort") != current:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{p.get('PublicPort')}->{current}/{kind}")
                continue
            k = f"{ip}/{kind}"
        g = groups.get(k)
        if g is None:
            groups[k] = [current, current]
        elif current == g[1] + 1:
            g[1] = current
        else:
            result.append(form(k, g[0], g[1]))
            groups[k] = [current, current]
    result += [form(k, g[0], g[1]) for k, g in groups.items()]
    return ", ".join(result + mappings)


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, "%.4g"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{units[i]}"


def split_reference(image: str) -> tuple[str, str]:
    """("busybox", "latest") for "busybox"; digests go in the tag slot like docker's."""
    name, at, digest = image.partition("@")
    if at:
        return name, digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def tagged(image: str) -> str:
    name, tag = split_reference(image)
    return f"{name}@{tag}" if "@" in image else f"{name}:{tag}"


HEALTH_DURATIONS = (("interval", "Interval"), ("timeout", "Timeout"),
                    ("start-period", "StartPeriod"), ("start-interval", "StartInterval"))


def parse_health(v: dict[str, Any]) -> dict[str, Any] | None:
    """Config.Healthcheck from --health-* / --no-healthcheck (docker's checks); None when
    no flag was given (the image's HEALTHCHECK applies). `v`: the parsed flag values."""
    durations = {key: duration_ns(f"health-{flag}", v.get(f"health-{flag}") or "0s")
                 for flag, key in HEALTH_DURATIONS}
    retries = _int("health-retries", v["health-retries"])
    if v["no-healthcheck"]:
        if v["health-cmd"] or retries or any(durations.values()):
            raise FlagError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not (v["health-cmd"] or retries or any(durations.values())):
        return None
    for flag, key in HEALTH_DURATIONS:
        if durations[key] < 0:
            raise FlagError(f"--health-{flag} cannot be negative")
    if retries < 0:
        raise FlagError("--health-retries cannot be negative")
    test = ["CMD-SHELL", v["health-cmd"]] if v["health-cmd"] else None
    return {"Test": test, **durations, "Retries": retries}
