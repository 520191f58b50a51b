"""`dockyard compose`: docker compose's command line. Global flags (-f, -p,
--project-directory, --env-file, --profile) are parsed here; each command is in
dockyard.compose.commands (lifecycle, down, info, interact, images), imported when used.
Everything goes through the Engine API (dockyard.compose.backend).
"""

from __future__ import annotations

import importlib
import sys

from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, parse_flags
from dockyard.compose.errors import ComposeError
from dockyard.errors import DockyardError

# command -> (module under dockyard.compose.commands, function)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("images", "build"), "pull": ("images", "pull"), "push": ("images", "push"),
    "images": ("images", "images"),
    "config": ("info", "config"), "convert": ("info", "config"), "ps": ("info", "ps"),
    "ls": ("info", "ls"), "top": ("info", "top"), "port": ("info", "port"),
    "events": ("info", "events"), "version": ("info", "version"),
    "up": ("lifecycle", "up"), "create": ("lifecycle", "create"),
    "down": ("down", "down"), "start": ("lifecycle", "start"),
    "stop": ("lifecycle", "stop"), "restart": ("lifecycle", "restart"),
    "kill": ("lifecycle", "kill"), "pause": ("lifecycle", "pause"),
    "unpause": ("lifecycle", "unpause"), "rm": ("lifecycle", "rm"),
    "scale": ("lifecycle", "scale"), "wait": ("lifecycle", "wait"),
    "logs": ("interact", "logs"), "exec": ("interact", "exec_"), "run": ("interact", "run"),
    "cp": ("interact", "cp"), "watch": ("watch", "watch"),
}

GLOBAL_FLAGS = [
    Flag("file", LIST, "f"), Flag("project-name", VALUE, "p", ""),
    Flag("project-directory", VALUE, default=""), Flag("env-file", LIST),
    Flag("profile", LIST), Flag("ansi", VALUE, default="auto"),
    Flag("progress", VALUE, default="auto"), Flag("parallel", VALUE, default="-1"),
    Flag("compatibility"), Flag("dry-run"), Flag("all-resources"),
]

USAGE = """Usage:  dockyard compose [OPTIONS] COMMAND

Define and run multi-container applications (the Compose Specification).

Options:
  -f, --file stringArray           Compose configuration files
  -p, --project-name string        Project name
      --project-directory string   Alternate working directory (default: the first file's)
      --env-file stringArray       Alternate environment files
      --profile stringArray        Profiles to enable
      --ansi string                Control when to print ANSI control characters
                                   ("never"|"always"|"auto")
      --dry-run                    Execute command in dry run mode

Commands:
  """ + "\n  ".join(sorted(COMMANDS)) + "\n"


class ComposeContext:
    """The global options, the host, the project (loaded on first use), the backend."""

    def __init__(self, opts, host: str | None) -> None:
        self.opts = opts
        self.host = host
        self._project = None
        self._backend = None

    def load_options(self, enabled: list[str] | None = None):
        from dockyard.compose.loader import Options

        return Options(files=self.opts["file"], project_name=self.opts["project-name"],
                       project_directory=self.opts["project-directory"],
                       env_files=self.opts["env-file"], profiles=self.opts["profile"],
                       enabled=enabled or [])

    def project(self, enabled: list[str] | None = None, required: bool = True):
        """The loaded project. Without `required`, a missing compose file with a -p name
        gives an empty project of that name (down/ps/logs/... work by labels alone)."""
        if self._project is None:
            from dockyard.compose.loader import load

            try:
                self._project = load(self.load_options(enabled))
            except ComposeError as e:
                name = self.opts["project-name"] or _env_project()
                if required or "no configuration file provided" not in str(e) or not name:
                    raise
                import os

                from dockyard.compose.model import Project
                self._project = Project(name=name, working_dir=os.getcwd(), config_files=[])
        return self._project

    @property
    def backend(self):
        if self._backend is None:
            if self.opts.get("dry-run"):  # reads go to the daemon, writes are simulated
                from dockyard.compose.dryrun import DryRunBackend as Backend
            else:
                from dockyard.compose.backend import Backend

            self._backend = Backend(self.host)
        return self._backend

    @property
    def color(self) -> bool:
        ansi = self.opts["ansi"]
        if ansi == "never" or ansi == "auto" and not sys.stdout.isatty():
            return False
        import os
        return not os.environ.get("NO_COLOR")


def _env_project() -> str:
    import os

    return os.environ.get("COMPOSE_PROJECT_NAME", "")


def compose(argv: list[str], ctx) -> int:
    try:
        p = parse_flags(argv, GLOBAL_FLAGS, interspersed=False)
    except FlagError as e:
        if str(e) == "help requested":
            print(USAGE, end="")
            return 0
        print(f"{e}\n{USAGE}", file=sys.stderr, end="")
        return 1
    if not p.args:
        print(USAGE, end="")
        return 0
    verb, rest = p.args[0], p.args[1:]
    if verb not in COMMANDS:
        print(f"unknown docker command: \"compose {verb}\"", file=sys.stderr)
        return 1
    module, func = COMMANDS[verb]
    fn = getattr(importlib.import_module(f"dockyard.compose.commands.{module}"), func)
    if p["dry-run"]:  # a few commands cannot run as usual with nothing created
        from dockyard.compose import dryrun
        fn = dryrun.command(verb, fn)
    cctx = ComposeContext(p.values, getattr(ctx, "host", None))
    try:
        return fn(rest, cctx) or 0
    except FlagError as e:
        if str(e) == "help requested":
            print(f"Usage:  dockyard compose {verb} [OPTIONS]")
            return 0
        print(f"{e}\nSee 'dockyard compose {verb} --help'.", file=sys.stderr)
        return 1
    except ComposeError as e:
        print(str(e), file=sys.stderr)
        return 1
    except DockyardError as e:
        if type(e).__name__ == "CannotConnect":
            print(str(e), file=sys.stderr)
        else:
            print(f"Error response from daemon: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
