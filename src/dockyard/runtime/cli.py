"""`dockyard-runtime`: runc's command line over dockyard.runtime.

Parsing and output only; the work is in runtime.container and runtime.exec.
Errors go to stderr and, with --log, to the log file in the format runc uses
(containerd's shim reads the last error from log.json).
"""

import argparse
import json
import os
import signal
import sys
import time

from dockyard import __version__
from dockyard.runtime.state import DEFAULT_ROOT

COMMANDS = ("create", "start", "run", "state", "kill", "delete", "list", "ps", "exec",
            "pause", "resume", "update", "events", "spec", "features")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard-runtime", allow_abbrev=False,
                                description="An OCI runtime with runc's command line.")
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--log", default="")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default="")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command")

    def container_cmd(name: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, allow_abbrev=False)
        c.add_argument("id")
        return c

    for name in ("create", "run"):
        c = container_cmd(name)
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--console-socket")
        c.add_argument("--pid-file")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
            c.add_argument("--keep", action="store_true")
    for name in ("start", "state", "pause", "resume"):
        container_cmd(name)
    c = container_cmd("kill")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c.add_argument("-a", "--all", action="store_true")
    c = container_cmd("delete")
    c.add_argument("-f", "--force", action="store_true")
    c = sub.add_parser("list", allow_abbrev=False)
    c.add_argument("-f", "--format", default="table", choices=("table", "json"))
    c.add_argument("-q", "--quiet", action="store_true")
    c = container_cmd("ps")
    c.add_argument("-f", "--format", default="table", choices=("table", "json"))
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    c = container_cmd("exec")
    c.add_argument("command", nargs=argparse.REMAINDER)
    c.add_argument("--console-socket")
    c.add_argument("--cwd")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("-u", "--user")
    c.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    c.add_argument("-p", "--process")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--pid-file")
    c.add_argument("--process-label")
    c.add_argument("--apparmor")
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("-c", "--cap", action="append", default=[])
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--cgroup", action="append", default=[])
    c = container_cmd("update")
    c.add_argument("-r", "--resources")
    for flag in ("--memory", "--memory-swap", "--memory-reservation", "--kernel-memory",
                 "--kernel-memory-tcp", "--cpu-shares", "--cpu-quota", "--cpu-period",
                 "--cpu-rt-runtime", "--cpu-rt-period", "--cpuset-cpus", "--cpuset-mems",
                 "--pids-limit", "--blkio-weight", "--l3-cache-schema", "--mem-bw-schema"):
        c.add_argument(flag)
    c = container_cmd("events")
    c.add_argument("--stats", action="store_true")
    c.add_argument("--interval", default="5s")
    c = sub.add_parser("spec", allow_abbrev=False)
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", action="store_true")
    sub.add_parser("features", allow_abbrev=False)
    return p


class Logger:
    def __init__(self, path: str, fmt: str):
        self.path = path
        self.fmt = fmt

    def error(self, msg: str) -> None:
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


def parse_signal(text: str) -> int:
    text = text.upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise ValueError(f"unknown signal {text!r}") from None


def parse_duration(text: str) -> float:
    units = (("ms", 0.001), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = Logger(args.log, args.log_format)
    if args.version:
        print(f"dockyard-runtime version {__version__}\nspec: 1.0.2")
        return 0
    if not args.command:
        build_parser().print_help()
        return 0
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
