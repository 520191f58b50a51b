"""up, create, down, start, stop, restart, kill, pause, unpause, rm, scale, wait."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from dockyard.cli.runflags import LIST, VALUE, Flag, FlagError, parse_flags
from dockyard.compose import convert, planner
from dockyard.compose.backend import short_name
from dockyard.compose.errors import ComposeError
from dockyard.compose.up import Converger, UpOptions
from dockyard.errors import DockyardError

CONVERGE_FLAGS = [
    Flag("build"), Flag("no-build"), Flag("force-recreate"), Flag("no-recreate"),
    Flag("remove-orphans"), Flag("scale", LIST), Flag("pull", VALUE, default="policy"),
    Flag("quiet-pull"), Flag("no-deps"), Flag("always-recreate-deps"),
    Flag("renew-anon-volumes", short="V"), Flag("yes", short="y"),
]
UP_FLAGS = CONVERGE_FLAGS + [
    Flag("detach", short="d"), Flag("wait"), Flag("wait-timeout", VALUE, default="0"),
    Flag("abort-on-container-exit"), Flag("abort-on-container-failure"),
    Flag("exit-code-from", VALUE, default=""), Flag("timeout", VALUE, "t", ""),
    Flag("no-start"), Flag("no-color"), Flag("no-log-prefix"), Flag("timestamps"),
    Flag("attach", LIST), Flag("no-attach", LIST), Flag("attach-dependencies"),
    Flag("menu"), Flag("watch", short="w"),
]


def _scale(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, eq, n = item.partition("=")
        if not eq or not n.isdigit():
            raise FlagError(f"invalid --scale value {item!r}: expected SERVICE=NUM")
        out[name] = int(n)
    return out


def _timeout(text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise FlagError(f'invalid argument "{text}" for "-t, --timeout" flag') from None


def _up_options(p, services: list[str], start: bool) -> UpOptions:
    if p["build"] and p["no-build"]:
        raise FlagError("--build and --no-build are incompatible")
    if p["force-recreate"] and p["no-recreate"]:
        raise FlagError("--force-recreate and --no-recreate are incompatible")
    pull = p["pull"]
    return UpOptions(services=services, no_deps=p["no-deps"],
                     force_recreate=p["force-recreate"], no_recreate=p["no-recreate"],
                     remove_orphans=p["remove-orphans"], scale=_scale(p["scale"]),
                     build=p["build"], no_build=p["no-build"],
                     pull="missing" if pull in ("policy", "") else pull, start=start,
                     quiet_pull=True, yes=bool(p.get("yes", False)),
                     timeout=_timeout(p.get("timeout", "") or ""))


def create(argv: list[str], cctx) -> int:
    p = parse_flags(argv, CONVERGE_FLAGS)
    project = cctx.project(enabled=p.args)
    opts = _up_options(p, p.args, start=False)
    Converger(cctx.backend, project, opts).run()
    return 0


def up(argv: list[str], cctx) -> int:
    p = parse_flags(argv, UP_FLAGS)
    project = cctx.project(enabled=p.args)
    opts = _up_options(p, p.args, start=not p["no-start"])
    opts.wait = p["wait"]
    opts.wait_timeout = float(p["wait-timeout"] or 0)
    exit_from = p["exit-code-from"]
    abort = p["abort-on-container-exit"] or p["abort-on-container-failure"] or bool(exit_from)
    if exit_from:
        project.service(exit_from)
    detach = p["detach"] or p["wait"]
    if detach and abort:
        raise FlagError("--abort-on-container-exit and --detach are incompatible")
    if p["watch"]:
        _check_watch(p, project, detach)
    backend = cctx.backend
    conv = Converger(backend, project, opts)
    if detach or p["no-start"]:
        conv.run()
        return 0
    return _attached(cctx, conv, p, abort, exit_from)


def _attached(cctx, conv: Converger, p, abort: bool, exit_from: str) -> int:
    """up without -d: follow the logs; Ctrl-C stops the project like docker compose."""
    from dockyard.compose.logs import Printer, display_name, follow

    backend, project = cctx.backend, conv.project
    before = {c["Id"]: c for c in backend.containers(project.name)}
    import time
    started_at = int(time.time())
    conv.run()
    names = [n for n in project.services if n in conv.done]
    if p["attach"]:
        names = [n for n in names if n in p["attach"]]
    names = [n for n in names if n not in p["no-attach"]
             and (p["attach"] or project.services[n].get("attach", True) is not False)]
    containers = backend.containers(project.name, services=names)
    printer = Printer([display_name(project.name, c) for c in containers],
                      cctx.color and not p["no-color"])
    if p["no-log-prefix"]:
        printer.prefix = lambda name: ""  # type: ignore[method-assign]
    printer.event("Attaching to " + ", ".join(display_name(project.name, c)
                                              for c in containers))
    one_shot = {dep for svc in project.services.values()
                for dep, spec in (svc.get("depends_on") or {}).items()
                if spec.get("condition") == "service_completed_successfully"}
    ended = threading.Event()
    first_exit: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_end(c: dict[str, Any]) -> None:
        try:
            state = backend.inspect(c["Id"])["State"]
        except DockyardError:
            state = {"ExitCode": 0, "Running": False}
        if state.get("Running"):
            return
        printer.event(f"{display_name(project.name, c)} exited with code "
                      f"{state.get('ExitCode', 0)}")
        if (c.get("Labels") or {}).get(convert.SERVICE) in one_shot \
                and state.get("ExitCode", 0) == 0:
            return  # a job others wait for (service_completed_successfully) is done
        with lock:
            c["_exit"] = state.get("ExitCode", 0)
            if not first_exit:
                first_exit.append(c)
        if abort:
            ended.set()

    threads = []
    for c in containers:
        kept = c["Id"] in before and c["Id"] not in conv.created
        t = threading.Thread(target=follow, daemon=True, kwargs={
            "backend": backend, "c": c, "name": display_name(project.name, c),
            "printer": printer, "follow": True, "timestamps": p["timestamps"],
            "since": started_at if kept else None, "on_end": lambda c=c: on_end(c)})
        t.start()
        threads.append(t)

    def all_done() -> None:
        for t in threads:
            t.join()
        ended.set()

    stop_watch = None
    if p["watch"]:  # runs until Ctrl-C, following the containers a rebuild makes
        from dockyard.compose.watch import watch_in_background

        def attach_new(c: dict[str, Any]) -> None:
            threading.Thread(target=follow, daemon=True, kwargs={
                "backend": backend, "c": c, "name": display_name(project.name, c),
                "printer": printer, "follow": True, "timestamps": p["timestamps"],
                "on_end": lambda c=c: on_end(c)}).start()
        stop_watch = watch_in_background(backend, project, p.args, printer, attach_new)
    else:
        threading.Thread(target=all_done, daemon=True).start()
    interrupted = False
    old = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while not ended.wait(0.2):
            pass
    except KeyboardInterrupt:
        interrupted = True
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, old)
    if stop_watch:
        stop_watch()
    if interrupted or abort:
        if abort and not interrupted:
            print("Aborting on container exit...", file=sys.stderr)
        try:
            _stop_project(cctx, project, list(project.services), _timeout(p["timeout"]))
        except KeyboardInterrupt:
            for c in backend.containers(project.name):
                backend.client.post(f"/containers/{c['Id']}/kill")
        if interrupted:
            return 130
    if exit_from:
        for c in backend.containers(project.name, services=[exit_from]):
            return int(backend.inspect(c["Id"])["State"].get("ExitCode") or 0)
    if abort and first_exit:
        return int(first_exit[0].get("_exit") or 0)
    return 0


def _check_watch(p, project, detach: bool) -> None:
    """up --watch: docker compose's flag checks, and a develop section to watch."""
    from dockyard.compose.watch import NO_WATCH_UP, load_rules

    if detach:
        which = "--wait" if p["wait"] else "--detach"
        raise FlagError(f"{which} cannot be combined with --abort-on-container-exit, "
                        "--abort-on-container-failure, --attach, --attach-dependencies or "
                        "--watch")
    if p["no-build"]:
        raise FlagError("--no-build and --watch are incompatible")
    if not load_rules(project, p.args):
        raise ComposeError(NO_WATCH_UP)


def _reverse_levels(project, names: list[str]) -> list[list[str]]:
    known = [n for n in names if n in project.services]
    levels = planner.levels(project, known) if known else []
    levels = [[n for n in lvl if n in known] for lvl in levels]
    extra = [n for n in names if n not in project.services]
    return ([extra] if extra else []) + list(reversed(levels))


def _parallel(items: list[Any], fn) -> list[str]:
    errors: list[str] = []

    def run(item: Any) -> None:
        try:
            fn(item)
        except DockyardError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _by_service(containers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        out.setdefault((c.get("Labels") or {}).get(convert.SERVICE, ""), []).append(c)
    return out


def _stop_project(cctx, project, services: list[str], timeout: int | None,
                  containers: list[dict[str, Any]] | None = None) -> None:
    b = cctx.backend
    cons = containers if containers is not None else b.containers(
        project.name, services=services or None)
    groups = _by_service(cons)
    for level in _reverse_levels(project, list(groups)):
        todo = [c for n in level for c in groups.get(n, []) if c.get("State") in (
            "running", "paused", "restarting")]

        def stop(c: dict[str, Any]) -> None:
            b.status(f" Container {short_name(c)}  Stopping")
            b.stop(c["Id"], timeout)
            b.status(f" Container {short_name(c)}  Stopped")

        errors = _parallel(todo, stop)
        if errors:
            raise ComposeError(errors[0])


def _services_containers(cctx, services: list[str], all: bool = True,
                         index: int | None = None):
    project = cctx.project(required=False)
    for s in services:
        if project.config_files:
            project.service(s)
    cons = cctx.backend.containers(project.name, all=all, services=services or None)
    if index:
        cons = [c for c in cons if planner.number(c) == index]
    return project, cons


def _simple(argv: list[str], cctx, verb: str, action, flags=None, states=None) -> int:
    p = parse_flags(argv, flags or [])
    project, cons = _services_containers(cctx, p.args)
    if states:
        cons = [c for c in cons if c.get("State") in states]
    b = cctx.backend
    ing = {"start": "Starting", "pause": "Pausing", "unpause": "Unpausing",
           "kill": "Killing", "restart": "Restarting"}[verb]
    ed = {"start": "Started", "pause": "Paused", "unpause": "Unpaused",
          "kill": "Killed", "restart": "Restarted"}[verb]

    def one(c: dict[str, Any]) -> None:
        b.status(f" Container {short_name(c)}  {ing}")
        action(b, c, p)
        b.status(f" Container {short_name(c)}  {ed}")

    if verb in ("start", "restart") and project.services:
        groups = _by_service(cons)
        known = [n for n in groups if n in project.services]
        order = planner.levels(project, known) if known else []
        errors: list[str] = []
        for level in order:
            errors += _parallel([c for n in level if n in groups for c in groups[n]], one)
        errors += _parallel([c for n, cs in groups.items() if n not in project.services
                             for c in cs], one)
    else:
        errors = _parallel(cons, one)
    if errors:
        raise ComposeError(errors[0])
    return 0


def start(argv: list[str], cctx) -> int:
    project, cons = _services_containers(cctx, parse_flags(argv, []).args)
    if not cons and project.services:
        raise ComposeError("service(s) have no container to start: run `compose up`")
    return _simple(argv, cctx, "start", lambda b, c, p: b.start(c["Id"]),
                   states=("created", "exited"))


def stop(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("timeout", VALUE, "t", "")])
    project, cons = _services_containers(cctx, p.args)
    _stop_project(cctx, project, p.args, _timeout(p["timeout"]), cons)
    return 0


def restart(argv: list[str], cctx) -> int:
    flags = [Flag("timeout", VALUE, "t", ""), Flag("no-deps")]
    return _simple(argv, cctx, "restart", lambda b, c, p: b.client.post(
        f"/containers/{c['Id']}/restart", params={"t": _timeout(p["timeout"])}), flags)


def kill(argv: list[str], cctx) -> int:
    flags = [Flag("signal", VALUE, "s", "SIGKILL"), Flag("remove-orphans")]
    return _simple(argv, cctx, "kill", lambda b, c, p: b.client.post(
        f"/containers/{c['Id']}/kill", params={"signal": p["signal"]}), flags,
        states=("running", "paused", "restarting"))


def pause(argv: list[str], cctx) -> int:
    return _simple(argv, cctx, "pause", lambda b, c, p: b.client.post(
        f"/containers/{c['Id']}/pause"), states=("running",))


def unpause(argv: list[str], cctx) -> int:
    return _simple(argv, cctx, "unpause", lambda b, c, p: b.client.post(
        f"/containers/{c['Id']}/unpause"), states=("paused",))


def rm(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("force", short="f"), Flag("stop", short="s"),
                           Flag("volumes", short="v"), Flag("all", short="a")])
    project, cons = _services_containers(cctx, p.args)
    b = cctx.backend
    if p["stop"]:
        _stop_project(cctx, project, p.args, None, cons)
        cons = cctx.backend.containers(project.name, services=p.args or None)
    stopped = [c for c in cons if c.get("State") not in ("running", "paused", "restarting")]
    if not stopped:
        print("No stopped containers", file=sys.stderr)
        return 0
    if not p["force"]:
        names = ", ".join(short_name(c) for c in stopped)
        if not sys.stdin.isatty():
            raise ComposeError(f"going to remove {names}: use -f to confirm without a "
                               "terminal")
        answer = input(f"Going to remove {names}\n? Are you sure? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0

    def remove(c: dict[str, Any]) -> None:
        b.status(f" Container {short_name(c)}  Removing")
        b.remove(c["Id"], force=False, volumes=p["volumes"])
        b.status(f" Container {short_name(c)}  Removed")

    errors = _parallel(stopped, remove)
    if errors:
        raise ComposeError(errors[0])
    return 0


def scale(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("no-deps")])
    wanted = _scale(p.args)
    if not wanted:
        raise FlagError("requires at least 1 argument: SERVICE=NUM")
    project = cctx.project(enabled=list(wanted))
    opts = UpOptions(services=list(wanted), no_deps=p["no-deps"], no_recreate=True,
                     scale=wanted)
    Converger(cctx.backend, project, opts).run()
    return 0


def wait(argv: list[str], cctx) -> int:
    p = parse_flags(argv, [Flag("down-project")])
    if not p.args:
        raise FlagError("requires at least 1 argument: SERVICE")
    _, cons = _services_containers(cctx, p.args)
    codes: list[int] = []
    done = threading.Event()

    def one(c: dict[str, Any]) -> None:
        from dockyard.client.api import Client

        with Client(cctx.host) as client:
            code = int((client.post(f"/containers/{c['Id']}/wait") or {}).get(
                "StatusCode") or 0)
        codes.append(code)
        print(code, flush=True)
        done.set()

    for c in cons:
        threading.Thread(target=one, args=(c,), daemon=True).start()
    if not cons:
        return 0
    done.wait()
    if p["down-project"]:
        from dockyard.compose.commands.down import down
        down([], cctx)
    return codes[0]
