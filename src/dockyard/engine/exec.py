"""Exec: extra processes in a running container (`docker exec`).

The monitor side. The daemon sends the monitor's control socket
  {"op": "exec", "id": EXEC_ID, "container": CID, "process": {...OCI process},
   "tty": bool, "stdin": bool, "attach": bool}
and the monitor runs `dockyard-runtime exec --process F --detach --pid-file P
[--console-socket S] CID` with itself as the subreaper parent, so the process
becomes its child once the runtime exits. It owns the process's stdio (pipes, or
the pty master received over the console socket) like a container's, but logs
nothing. It answers {"ok": true, "pid": N} once started, or {"ok": false,
"error", "exit_code"}; with "attach" the connection then becomes an attach
stream (engine/attach.py, stdin closed at the client's EOF) that ends once the
process has exited and its output is drained.
  {"op": "exec_state", "id"}        -> {"ok": true, "running", "pid", "exit_code"}
  {"op": "exec_resize", "id", "h", "w"} -> {"ok": true}
When an exec ends, the monitor's subscribers get {"event": "exec_exit", "id",
"container", "exit_code"} (the daemon's exec_die event).

The daemon side (the exec instances, the HTTP endpoints) is api/exec.py.

Only the standard library at import time: the monitor process imports this module.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
from collections import OrderedDict
from typing import Any

from dockyard.engine.attach import Attachment, resize

DRAIN_TIMEOUT = 2.0
KEEP_FINISHED = 256  # finished execs the monitor remembers (for exec_state)
KEEP_ORPHANS = 64


# -- the monitor side ---------------------------------------------------------------------

class ExecProc:
    """One exec process in the monitor; duck-types Running for an Attachment."""

    def __init__(self, req: dict):
        self.id: str = req["id"]
        self.container: str = req["container"]
        self.tty = bool(req.get("tty"))
        self.pid = 0
        self.status: int | None = None
        self.exit_code: int | None = None
        self.started = False
        self.finishing = False
        self.drain_armed = False
        self.stdin = -1
        self.readers: dict[int, _Reader] = {}
        self.sinks: list[Any] = []
        self.attachments: list[Attachment] = []
        self.backlog: list[tuple[str, bytes]] | None = [] if req.get("attach") else None

    def output(self, stream: str, data: bytes) -> None:
        if self.backlog is not None:
            self.backlog.append((stream, data))
            return
        for sink in list(self.sinks):
            sink(stream, data)


class _Table:
    def __init__(self) -> None:
        self.execs: OrderedDict[str, ExecProc] = OrderedDict()
        self.by_pid: dict[int, ExecProc] = {}
        self.orphans: OrderedDict[int, int] = OrderedDict()  # reaped before we knew the pid


def _table(mon: Any) -> _Table:
    table = getattr(mon, "exec_table", None)
    if table is None:
        table = mon.exec_table = _Table()
    return table


class _Reader:
    """An output fd of an exec process, driven by the monitor's selector ("attach" kind)."""

    def __init__(self, mon: Any, proc: ExecProc, fd: int, name: str):
        self.mon, self.proc, self.fd, self.name = mon, proc, fd, name
        os.set_blocking(fd, False)
        proc.readers[fd] = self
        mon.sel.register(fd, selectors.EVENT_READ, ("attach", self))

    def ready(self, _mask: int) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: the pty's last slave was closed
            if e.errno != errno.EIO:
                raise
            data = b""
        if data:
            self.proc.output(self.name, data)
            return
        self.close()
        _maybe_finish(self.mon, self.proc)

    def close(self) -> None:
        if self.proc.readers.pop(self.fd, None) is None:
            return
        try:
            self.mon.sel.unregister(self.fd)
        except (KeyError, ValueError):
            pass
        os.close(self.fd)


class _Console:
    """The console socket: takes the pty master the runtime sends."""

    def __init__(self, mon: Any, proc: ExecProc, path: str):
        self.mon, self.proc, self.path = mon, proc, path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.setblocking(False)
        mon.sel.register(self.sock, selectors.EVENT_READ, ("attach", self))

    def ready(self, _mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, OSError):
            return
        try:
            conn.setblocking(True)
            conn.settimeout(10)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        except OSError:
            fds = []
        finally:
            conn.close()
        if fds:
            master = fds[0]
            self.proc.stdin = os.dup(master)
            os.set_blocking(self.proc.stdin, False)
            _Reader(self.mon, self.proc, master, "stdout")

    def close(self) -> None:
        try:
            self.mon.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
            if os.path.basename(os.path.dirname(self.path)).startswith("dockyard-console-"):
                os.rmdir(os.path.dirname(self.path))
        except OSError:
            pass


def exec_op(mon: Any, conn: socket.socket, req: dict) -> None:
    """The monitor's "exec", "exec_state" and "exec_resize" requests."""
    table = _table(mon)
    op = req.get("op")
    proc = table.execs.get(req.get("id", ""))
    if op == "exec_state":
        if proc is None:
            mon._send(conn, {"ok": False, "error": "no such exec"})
        else:
            mon._send(conn, {"ok": True, "running": proc.exit_code is None, "pid": proc.pid,
                             "exit_code": proc.exit_code})
    elif op == "exec_resize":
        if proc is not None and proc.tty and proc.stdin >= 0:
            resize(proc.stdin, int(req.get("h") or 0), int(req.get("w") or 0))
        mon._send(conn, {"ok": True})
    elif proc is not None:
        mon._send(conn, {"ok": False, "error": f"exec {proc.id} was started already"})
    else:
        _start(mon, conn, req)


def _start(mon: Any, conn: socket.socket, req: dict) -> None:
    from dockyard.engine.monitor_util import _rmtree, _runtime_error, stdio_pipes

    table = _table(mon)
    cid = req["container"]
    container = mon.running.get(cid)
    if container is None or container.finishing or not container.started:
        mon._send(conn, {"ok": False, "error": f"Container {cid} is not running",
                         "exit_code": 126})
        return
    proc = ExecProc(req)
    table.execs[proc.id] = proc
    rest = b""
    if req.get("attach"):  # the connection is ours until the answer, then a stream
        try:
            mon.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        rest = mon.bufs.pop(conn, b"")
    work = os.path.join(mon.work, "exec-" + proc.id[:32])
    os.makedirs(work, exist_ok=True)
    process_file, pid_file = os.path.join(work, "process.json"), os.path.join(work, "pid")
    log_file = os.path.join(work, "runtime.log")
    with open(process_file, "w") as f:
        json.dump({**req["process"], "terminal": proc.tty}, f)
    args = ["--log", log_file, "--log-format", "json", "exec", "--process", process_file,
            "--detach", "--pid-file", pid_file]
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    close_after = [null]
    console: _Console | None = None
    stdio = (null, null, null)
    if proc.tty:
        sock_path = os.path.join(work, "console.sock")
        if len(sock_path) > 100:  # sun_path is 108 bytes
            import tempfile
            sock_path = os.path.join(tempfile.mkdtemp(prefix="dockyard-console-"), "sock")
        console = _Console(mon, proc, sock_path)
        args += ["--console-socket", sock_path]
    else:
        stdio, out_r, err_r, stdin_w = stdio_pipes(null, bool(req.get("stdin")), close_after)
        if stdin_w is not None:
            os.set_blocking(stdin_w, False)
            proc.stdin = stdin_w
        _Reader(mon, proc, out_r, "stdout")
        _Reader(mon, proc, err_r, "stderr")
    args.append(cid)

    def fail(message: str) -> None:
        low = message.lower()
        proc.exit_code = 127 if ("not found" in low or "no such file" in low) else 126
        if console is not None:
            console.close()
        _close(proc)
        mon._send(conn, {"ok": False, "error": message, "exit_code": proc.exit_code})
        if req.get("attach"):
            conn.close()
        _rmtree(work)
        _prune(table)

    def done(status: int) -> None:
        if console is not None:
            console.ready(selectors.EVENT_READ)  # a connection still in the backlog
            console.close()
        if status != 0:
            fail("OCI runtime exec failed: " + (_runtime_error(log_file)
                                                or f"runtime exec failed (status {status})"))
            return
        try:
            with open(pid_file) as f:
                proc.pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            fail(f"cannot read the exec's pid: {e}")
            return
        _rmtree(work)
        proc.started = True
        if proc.pid in table.orphans:
            proc.status = table.orphans.pop(proc.pid)
        else:
            table.by_pid[proc.pid] = proc
        mon._send(conn, {"ok": True, "pid": proc.pid})
        if req.get("attach") and conn.fileno() >= 0:
            att = Attachment(mon, conn, proc.id, {"stdin": bool(req.get("stdin")),
                                                  "stdin_once": True}, rest)
            proc.attachments.append(att)
            att.bind(proc)
            backlog, proc.backlog = proc.backlog or [], None
            for stream, data in backlog:
                att.sink(stream, data)
        proc.backlog = None
        _maybe_finish(mon, proc)

    try:
        mon._spawn(args, done, stdio)
    except OSError as e:
        fail(f"cannot run {mon.runtime}: {e.strerror}")
    finally:
        for fd in close_after:
            os.close(fd)


def exec_reaped(mon: Any, pid: int, status: int) -> None:
    """A child the monitor reaped that is neither a runtime helper nor an init."""
    table = _table(mon)
    proc = table.by_pid.pop(pid, None)
    if proc is None:  # an orphan, or an exec whose runtime has not answered yet
        table.orphans[pid] = status
        while len(table.orphans) > KEEP_ORPHANS:
            table.orphans.popitem(last=False)
        return
    proc.status = status
    _maybe_finish(mon, proc)


def _maybe_finish(mon: Any, proc: ExecProc) -> None:
    if proc.status is None or not proc.started or proc.finishing:
        return
    if proc.readers:
        if not proc.drain_armed:
            proc.drain_armed = True
            mon._later(DRAIN_TIMEOUT, lambda: _finish(mon, proc))
        return
    _finish(mon, proc)


def _finish(mon: Any, proc: ExecProc) -> None:
    if proc.finishing:
        return
    proc.finishing = True
    from dockyard.engine.monitor_util import _readable

    for fd, reader in list(proc.readers.items()):
        try:
            while fd in proc.readers and _readable(fd):
                reader.ready(selectors.EVENT_READ)
        except OSError:
            pass
    code = os.waitstatus_to_exitcode(proc.status or 0)
    proc.exit_code = 128 - code if code < 0 else code
    # the daemon's exec_die event, sent before the attach stream ends
    mon._notify({"event": "exec_exit", "id": proc.id, "container": proc.container,
                 "exit_code": proc.exit_code})
    _close(proc)
    _prune(_table(mon))


def _close(proc: ExecProc) -> None:
    for reader in list(proc.readers.values()):
        reader.close()
    if proc.stdin >= 0:
        os.close(proc.stdin)
        proc.stdin = -1
    for att in list(proc.attachments):
        att.finish()


def _prune(table: _Table) -> None:
    finished = [k for k, p in table.execs.items() if p.exit_code is not None]
    for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
        del table.execs[key]
