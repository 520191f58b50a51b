"""`dockyard-runtime`: runc's command line over dockyard.runtime.

Parsing and output only; the work is in runtime.container and runtime.exec.
Errors go to stderr and, with --log, to the log file in the format runc uses
(containerd's shim reads the last error from log.json).
"""

import sys

from dockyard import __version__
from dockyard.runtime import DEFAULT_ROOT
from dockyard.runtime.flags import Command, Flag, UsageError, parse

F = Flag
CREATE_FLAGS = [F("bundle,b", "str", "."), F("console-socket", "str"), F("pid-file", "str"),
                F("no-pivot"), F("no-new-keyring"), F("preserve-fds", "int", 0)]
UPDATE_FLAGS = [F("resources,r", "str")] + [
    F(name, "str") for name in (
        "memory", "memory-swap", "memory-reservation", "kernel-memory", "kernel-memory-tcp",
        "cpu-share", "cpu-quota", "cpu-period", "cpu-rt-runtime", "cpu-rt-period", "cpuset-cpus",
        "cpuset-mems", "pids-limit", "blkio-weight", "l3-cache-schema", "mem-bw-schema")]
GLOBAL_FLAGS = [F("root", "str", DEFAULT_ROOT), F("log", "str", ""), F("log-format", "str", "text"),
                F("debug"), F("systemd-cgroup"), F("rootless", "str", "auto"), F("criu", "str"),
                F("version,v"), F("help,h")]
ID = ["id"]
COMMANDS = {
    "create": Command("create", CREATE_FLAGS, ID),
    "run": Command("run", CREATE_FLAGS + [F("detach,d"), F("keep")], ID),
    "start": Command("start", [], ID),
    "state": Command("state", [], ID),
    "pause": Command("pause", [], ID),
    "resume": Command("resume", [], ID),
    "kill": Command("kill", [F("all,a")], ["id", "signal"], required=1),
    "delete": Command("delete", [F("force,f")], ID),
    "list": Command("list", [F("format,f", "str", "table"), F("quiet,q")], []),
    "ps": Command("ps", [F("format,f", "str", "table")], ID, rest="ps_args"),
    "exec": Command("exec", [
        F("console-socket", "str"), F("cwd", "str"), F("env,e", "list"), F("tty,t"),
        F("user,u", "str"), F("additional-gids,g", "intlist"), F("process,p", "str"),
        F("detach,d"), F("pid-file", "str"), F("process-label", "str"), F("apparmor", "str"),
        F("no-new-privs"), F("cap,c", "list"), F("preserve-fds", "int", 0),
        F("cgroup", "list"), F("ignore-paused")], ID, rest="cmd_args", required=1),
    "update": Command("update", UPDATE_FLAGS, ID),
    "events": Command("events", [F("stats"), F("interval", "str", "5s")], ID),
    "spec": Command("spec", [F("bundle,b", "str", "."), F("rootless")], []),
    "features": Command("features", [], []),
}
USAGE = """usage: dockyard-runtime [global options] command [command options] [arguments...]

An OCI runtime with runc's command line.
commands: """ + ", ".join(COMMANDS) + "\n"


class Logger:
    def __init__(self, path: str, fmt: str):
        self.path = path
        self.fmt = fmt

    def error(self, msg: str) -> None:
        import json
        import time

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.path:
            if self.fmt == "json":
                line = json.dumps({"level": "error", "msg": msg, "time": stamp})
            else:
                line = f'time="{stamp}" level=error msg={json.dumps(msg)}'
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass
        print(f"dockyard-runtime: {msg}", file=sys.stderr)


def parse_duration(text: str) -> float:
    units = (("ms", 0.001), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "create" in argv or "run" in argv:  # first thing: see cgroup_join
        from dockyard.runtime.cgroup_join import prime
        prime()
    try:
        args = parse(argv, GLOBAL_FLAGS, COMMANDS)
    except UsageError as e:
        print(f"dockyard-runtime: {e}\n{USAGE}", file=sys.stderr, end="")
        return 1
    log = Logger(args.log, args.log_format)
    if args.version:
        print(f"dockyard-runtime version {__version__}\nspec: 1.0.2")
        return 0
    if args.help or not args.command:
        print(USAGE, end="")
        return 0
    if args.command == "kill" and args.signal is None:
        args.signal = "SIGTERM"
    from dockyard.errors import DockyardError
    from dockyard.runtime import commands
    try:
        return getattr(commands, "cmd_" + args.command)(args) or 0
    except (DockyardError, OSError, ValueError) as e:
        log.error(str(e) if not isinstance(e, OSError) or e.filename else _oserror(e))
        return 1
    except KeyboardInterrupt:
        return 130


def _oserror(e: OSError) -> str:
    return e.args[1] if len(e.args) > 1 else str(e)


if __name__ == "__main__":
    sys.exit(main())
