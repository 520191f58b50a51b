"""`dockyard`: docker's verbs. Each verb's module is imported only when used,
so `dockyard --version` or `dockyard images` do not pay for the others.

Every command function takes (argv: list[str], ctx: Context) and returns an
exit status; errors derived from DockyardError print like docker's
("Error response from daemon: ..." for engine errors) and exit 1.
"""

import os
import sys

from dockyard import __version__

# verb -> (module, function); aliases point at the same functions as docker's do
COMMANDS: dict[str, tuple[str, str]] = {
    "image": ("dockyard.cli.image", "image"),
    "images": ("dockyard.cli.image", "ls"),
    "pull": ("dockyard.cli.image", "pull"),
    "push": ("dockyard.cli.image", "push"),
    "tag": ("dockyard.cli.image", "tag"),
    "rmi": ("dockyard.cli.image", "rm"),
    "history": ("dockyard.cli.image", "history"),
    "save": ("dockyard.cli.image", "save"),
    "load": ("dockyard.cli.image", "load"),
    "import": ("dockyard.cli.image", "import_"),
    "login": ("dockyard.cli.login", "login"),
    "logout": ("dockyard.cli.login", "logout"),
    "registry": ("dockyard.cli.registry", "registry"),
    "daemon": ("dockyard.daemon.main", "daemon"),
    "version": ("dockyard.cli.system", "version"),
    "info": ("dockyard.cli.system", "info"),
    "events": ("dockyard.cli.events", "events"),
    "run": ("dockyard.cli.run", "run"),
    "create": ("dockyard.cli.run", "create"),
    "start": ("dockyard.cli.run", "start"),
    "exec": ("dockyard.cli.tty", "exec_"),
    "attach": ("dockyard.cli.tty", "attach"),
    "container": ("dockyard.cli.container", "container"),
    "ps": ("dockyard.cli.container", "ps"),
    "logs": ("dockyard.cli.tty", "logs"),
    "stop": ("dockyard.cli.container", "stop"),
    "kill": ("dockyard.cli.container", "kill"),
    "restart": ("dockyard.cli.container", "restart"),
    "rm": ("dockyard.cli.container", "rm"),
    "wait": ("dockyard.cli.container", "wait"),
    "pause": ("dockyard.cli.container", "pause"),
    "unpause": ("dockyard.cli.container", "unpause"),
    "rename": ("dockyard.cli.container", "rename"),
    "top": ("dockyard.cli.container", "top"),
    "inspect": ("dockyard.cli.container", "inspect"),
    "stats": ("dockyard.cli.container", "stats"),
    "update": ("dockyard.cli.container", "update"),
    "port": ("dockyard.cli.container", "port"),
    "diff": ("dockyard.cli.container", "diff"),
    "export": ("dockyard.cli.container", "export"),
    "commit": ("dockyard.cli.container", "commit"),
    "build": ("dockyard.cli.build", "build"),
    "builder": ("dockyard.cli.build", "builder"),
    "cp": ("dockyard.cli.cp", "cp"),
    "volume": ("dockyard.cli.volume", "volume"),
    "system": ("dockyard.cli.system", "system"),
    "compose": ("dockyard.cli.compose", "compose"),
    "network": ("dockyard.cli.network", "network"),
}

USAGE = """Usage:  dockyard [OPTIONS] COMMAND

A Docker-compatible container engine.

Options:
      --data-root string   Engine state directory (default "/var/lib/dockyard",
                           env DOCKYARD_DATA_ROOT)
      --config string      Location of client config files (default "~/.docker")
  -H, --host string        Daemon socket to connect to (default
                           "unix:///run/dockyard/dockyard.sock", env DOCKYARD_HOST)
  -v, --version            Print version information and quit

Commands:
  """ + "\n  ".join(sorted(COMMANDS)) + "\n"


class Context:
    """What every command may need: where state and client config live."""

    def __init__(self, data_root: str, config_dir: str, host: str | None = None):
        self.data_root = data_root
        self.config_dir = config_dir
        self.host = host  # None: the client's default (DOCKYARD_HOST, then the socket)


def _global_options(argv: list[str]) -> tuple[dict, list[str]]:
    opts = {"data_root": os.environ.get("DOCKYARD_DATA_ROOT", "/var/lib/dockyard"),
            "config": os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")),
            "host": os.environ.get("DOCKYARD_HOST") or None}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--data-root", "--config"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"flag needs an argument: {name}")
                value = argv[i]
            opts[name[2:].replace("-", "_")] = value
        elif name in ("-H", "--host"):  # -H x, -H=x, --host x, --host=x
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"flag needs an argument: {name}")
                value = argv[i]
            opts["host"] = value
        elif arg.startswith("-H"):  # -Hunix:///path
            opts["host"] = arg[2:]
        elif name in ("-v", "--version"):
            opts["version"] = True
        elif name in ("-h", "--help"):
            opts["help"] = True
        else:
            raise SystemExit(f"unknown flag: {name}\nSee 'dockyard --help'.")
        i += 1
    return opts, argv[i:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts, rest = _global_options(argv)
    if opts.get("version"):
        print(f"Dockyard version {__version__}")
        return 0
    if opts.get("help") or not rest:
        print(USAGE, end="")
        return 0
    verb, args = rest[0], rest[1:]
    if verb not in COMMANDS:
        print(f"dockyard: '{verb}' is not a dockyard command.\nSee 'dockyard --help'",
              file=sys.stderr)
        return 1
    module_name, func_name = COMMANDS[verb]
    import importlib

    from dockyard.errors import DockyardError
    func = getattr(importlib.import_module(module_name), func_name)
    ctx = Context(opts["data_root"], opts["config"], opts["host"])
    try:
        return func(args, ctx) or 0
    except DockyardError as e:
        # a daemon that cannot be reached is not an error response from it
        prefix = "" if type(e).__name__ == "CannotConnect" else "Error response from daemon: "
        print(f"{prefix}{e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
