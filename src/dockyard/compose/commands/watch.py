"""watch: `up` the services (unless --no-up), then apply develop.watch until Ctrl-C."""

from __future__ import annotations

import signal
import threading

from dockyard.cli.runflags import Flag, parse_flags


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def watch(argv: list[str], cctx) -> int:
    from dockyard.compose.up import Converger, UpOptions
    from dockyard.compose.watch import Watcher, mark_build_policy

    p = parse_flags(argv, [Flag("quiet"), Flag("prune", default=True), Flag("no-up")])
    project = cctx.project(enabled=p.args)

    def log(text: str) -> None:
        print(text, flush=True)

    # rules first: a project without develop.watch fails before anything is created
    watcher = Watcher(cctx.backend, project, p.args, log, prune=p["prune"], quiet=p["quiet"])
    # Ctrl-C even when started in the background (SIGINT then comes in ignored)
    old = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not p["no-up"]:
            mark_build_policy(project, p.args)
            Converger(cctx.backend, project, UpOptions(services=p.args)).run()
        watcher.run(threading.Event())
    except KeyboardInterrupt:
        return 130  # like docker compose: the containers keep running
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0
