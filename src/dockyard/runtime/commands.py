"""One function per `dockyard-runtime` command: arguments in, output out."""

import os
import sys
import time

from dockyard.linux import signals as sg
from dockyard.linux.signals import parse as parse_signal
from dockyard.runtime import container as ct
from dockyard.runtime import jsonio
from dockyard.runtime.cli import parse_duration

FORWARDED = (sg.SIGTERM, sg.SIGINT, sg.SIGHUP, sg.SIGQUIT, sg.SIGUSR1, sg.SIGUSR2)


def _dump(obj) -> None:
    import json

    print(json.dumps(obj, indent=2))


def cmd_create(args) -> int:
    ct.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
              console_socket=args.console_socket, no_pivot=args.no_pivot,
              preserve_fds=args.preserve_fds, systemd_cgroup=args.systemd_cgroup)
    return 0


def cmd_start(args) -> int:
    ct.start(args.root, args.id)
    return 0


def cmd_run(args) -> int:
    if args.detach:
        ct.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
                  console_socket=args.console_socket, no_pivot=args.no_pivot,
                  preserve_fds=args.preserve_fds, systemd_cgroup=args.systemd_cgroup)
        ct.start(args.root, args.id)
        return 0
    # Foreground: the init is our grandchild; as a subreaper (create sets it) we can wait.
    ours = master = None
    theirs = -1
    if args.console_socket is None and _wants_terminal(args.bundle):
        from dockyard.runtime import tty
        ours, theirs = tty.console_pair()
    try:
        state = ct.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
                          console_socket=args.console_socket, no_pivot=args.no_pivot,
                          preserve_fds=args.preserve_fds, systemd_cgroup=args.systemd_cgroup,
                          console_fd=theirs, subreaper=True)
        if theirs >= 0:
            os.close(theirs)
        if ours is not None:
            from dockyard.runtime import tty
            master = tty.receive_master(ours)
        pid = state.pid
        _forward_signals(pid)
        ct.start(args.root, args.id)
        if master is not None:
            from dockyard.runtime import tty
            status = tty.relay(master, pid)
        else:
            status = _wait(pid)
    finally:
        if not args.keep:
            try:
                ct.delete(args.root, args.id, force=True)
            except Exception as e:  # noqa: BLE001 - the exit status matters more
                print(f"dockyard-runtime: warning: delete after run: {e}", file=sys.stderr)
    return _exit_code(status)


def _wants_terminal(bundle: str) -> bool:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return bool((jsonio.load(f).get("process") or {}).get("terminal"))
    except (OSError, ValueError):
        return False


def _forward_signals(pid: int) -> None:
    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in FORWARDED:
        sg.set_handler(sig, forward)


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255 << 8


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def cmd_state(args) -> int:
    _dump(ct.state_of(args.root, args.id))
    return 0


def cmd_kill(args) -> int:
    ct.kill(args.root, args.id, parse_signal(args.signal), all_processes=args.all)
    return 0


def cmd_delete(args) -> int:
    ct.delete(args.root, args.id, force=args.force)
    return 0


def cmd_pause(args) -> int:
    ct.pause(args.root, args.id)
    return 0


def cmd_resume(args) -> int:
    ct.resume(args.root, args.id)
    return 0


def cmd_list(args) -> int:
    import json

    states = ct.list_all(args.root)
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                  s.get("owner") or "root") for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_ps(args) -> int:
    import json

    pids = ct.pids(args.root, args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = lines[0].split()
    col = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0


def cmd_exec(args) -> int:
    from dockyard.linux import libc
    from dockyard.runtime import exec as ex
    process = _exec_process(args)
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    console_fd, ours = -1, None
    if process.get("terminal"):
        from dockyard.runtime import tty
        if args.console_socket:
            import socket
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(args.console_socket)
            console_fd = sock.detach()
        else:
            ours, console_fd = tty.console_pair()
    try:
        pid = ex.exec_process(args.root, args.id, process, console_fd=console_fd,
                              preserve_fds=args.preserve_fds)
    finally:
        if console_fd >= 0:
            os.close(console_fd)
    if args.pid_file:
        ct._write_pid_file(args.pid_file, pid)
    if args.detach:
        return 0
    _forward_signals(pid)
    if ours is not None:
        from dockyard.runtime import tty
        return _exit_code(tty.relay(tty.receive_master(ours), pid))
    return _exit_code(_wait(pid))


def _exec_process(args) -> dict:
    import json

    """The process to exec: --process JSON, or the container's process with overrides."""
    if args.process:
        with open(args.process) as f:
            return json.load(f)
    command = [a for a in args.cmd_args if a != "--"] if args.cmd_args else []
    if not command:
        raise ValueError("exec: no command given (use --process or give the arguments)")
    from dockyard.runtime.state import ContainerState
    base = dict(ContainerState.load(args.root, args.id).config().get("process") or {})
    process = {**base, "args": command, "terminal": bool(args.tty)}
    if args.cwd:
        process["cwd"] = args.cwd
    if args.env:
        env = [e for e in base.get("env") or [] if e.split("=")[0] not in
               {x.split("=")[0] for x in args.env}]
        process["env"] = env + args.env
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.cap:
        caps = dict(process.get("capabilities") or {})
        for key in ("bounding", "effective", "permitted"):
            caps[key] = sorted(set(caps.get(key) or []) | set(args.cap))
        process["capabilities"] = caps
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    return process


def cmd_update(args) -> int:
    import json

    if args.resources:
        if args.resources == "-":
            resources = json.load(sys.stdin)
        else:
            with open(args.resources) as f:
                resources = json.load(f)
    else:
        resources = _resources_from_flags(args)
    ct.update(args.root, args.id, resources)
    return 0


def _size(text: str) -> int:
    text = text.strip().lower()
    for suffix, scale in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * scale)
    return int(text)


def _resources_from_flags(args) -> dict:
    res: dict = {}
    mem = {k: _size(v) for k, v in (("limit", args.memory), ("swap", args.memory_swap),
                                    ("reservation", args.memory_reservation)) if v}
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    for key, value in (("shares", args.cpu_share), ("quota", args.cpu_quota),
                       ("period", args.cpu_period), ("realtimeRuntime", args.cpu_rt_runtime),
                       ("realtimePeriod", args.cpu_rt_period)):
        if value:
            cpu[key] = int(value)
    if args.cpuset_cpus:
        cpu["cpus"] = args.cpuset_cpus
    if args.cpuset_mems:
        cpu["mems"] = args.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    if args.pids_limit:
        res["pids"] = {"limit": int(args.pids_limit)}
    if args.blkio_weight:
        res["blockIO"] = {"weight": int(args.blkio_weight)}
    return res


def cmd_events(args) -> int:
    import json

    if args.stats:
        print(json.dumps({"type": "stats", "id": args.id, "data": ct.stats(args.root, args.id)}))
        return 0
    interval = parse_duration(args.interval)
    ooms = ct.oom_count(args.root, args.id)
    while ct.state_of(args.root, args.id)["status"] != "stopped":
        now = ct.oom_count(args.root, args.id)
        if now > ooms:
            print(json.dumps({"type": "oom", "id": args.id}), flush=True)
            ooms = now
        print(json.dumps({"type": "stats", "id": args.id,
                          "data": ct.stats(args.root, args.id)}), flush=True)
        time.sleep(interval)
    return 0


def cmd_spec(args) -> int:
    import json

    from dockyard.runtime.defaults import default_spec
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise ValueError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(rootless=args.rootless), f, indent="\t")
    return 0


def cmd_features(args) -> int:
    from dockyard.runtime.defaults import features
    _dump(features())
    return 0
