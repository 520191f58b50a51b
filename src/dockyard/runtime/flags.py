"""A small command-line parser with runc's (Go flag package) rules.

-flag and --flag are the same; values as `--flag v` or `--flag=v`; flag parsing
stops at the first positional argument (so `exec <id> sh -c ...` needs no `--`).
Not argparse: importing argparse costs more than a whole `dockyard-runtime state`.
"""

from types import SimpleNamespace


class UsageError(ValueError):
    pass


class Flag:
    __slots__ = ("default", "dest", "kind", "names")

    def __init__(self, names: str, kind: str = "bool", default=None):
        self.names = names.split(",")
        self.dest = self.names[0].replace("-", "_")
        self.kind = kind  # bool | str | int | list | intlist
        if default is None:
            default = {"bool": False, "list": [], "intlist": []}.get(kind)
        self.default = default

    def convert(self, value: str):
        if self.kind in ("int", "intlist"):
            try:
                return int(value)
            except ValueError:
                raise UsageError(f"invalid value {value!r} for flag -{self.names[0]}") from None
        if self.kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for -{self.names[0]}")
            return value.lower() in ("true", "1")
        return value


class Command:
    def __init__(self, name: str, flags: list[Flag], positional: list[str],
                 rest: str | None = None, required: int | None = None):
        self.name = name
        self.flags = flags
        self.positional = positional  # names of positional arguments
        self.rest = rest  # name of a trailing list of arguments, if any
        self.required = len(positional) if required is None else required

    def parse(self, args: list[str], ns: SimpleNamespace) -> list[str]:
        """Fill `ns` with this command's flags; returns the positional arguments."""
        by_name = {n: f for f in self.flags for n in f.names}
        for f in self.flags:
            setattr(ns, f.dest, list(f.default) if isinstance(f.default, list) else f.default)
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            name, eq, value = arg.lstrip("-").partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise UsageError(f"flag provided but not defined: -{name}")
            if flag.kind == "bool":
                setattr(ns, flag.dest, flag.convert(value) if eq else True)
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise UsageError(f"flag needs an argument: -{name}")
                    value = args[i]
                if flag.kind in ("list", "intlist"):
                    getattr(ns, flag.dest).append(flag.convert(value))
                else:
                    setattr(ns, flag.dest, flag.convert(value))
            i += 1
        rest = args[i:]
        if len(rest) < self.required:
            missing = self.positional[len(rest)]
            raise UsageError(f'"{self.name}" requires the argument <{missing}>')
        for j, pname in enumerate(self.positional):
            setattr(ns, pname, rest[j] if j < len(rest) else None)
        extra = rest[len(self.positional):]
        if self.rest:
            setattr(ns, self.rest, extra)
        elif extra:
            raise UsageError(f'"{self.name}": unexpected arguments: {" ".join(extra)}')
        return rest


def parse(argv: list[str], global_flags: list[Flag], commands: dict[str, Command]
          ) -> SimpleNamespace:
    ns = SimpleNamespace()
    top = Command("", global_flags, ["command"], rest="args", required=0)
    top.parse(argv, ns)
    if ns.command is None:
        return ns
    cmd = commands.get(ns.command)
    if cmd is None:
        raise UsageError(f"no such command: {ns.command}")
    cmd.parse(ns.args, ns)
    return ns
