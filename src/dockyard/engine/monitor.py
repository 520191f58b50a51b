"""The container monitor: one single-threaded process per data root.

It is the parent of every container init (a child subreaper), so the daemon
never forks containers and containers outlive the daemon. For a start it runs
`dockyard-runtime create` then `start` (as asynchronous children, never
blocking the loop), owns the container's stdio (pipes, or the pty master it
receives over a console socket), writes the logs, reaps the init, reads the
cgroup's OOM kill counter, runs `dockyard-runtime delete`, writes
<data-root>/containers/<id>/exit.json atomically and tells its subscribers.

Control socket <exec-root>/monitor.sock, one JSON object per line:
  {"op":"ping"}                       -> {"ok":true,"pid":N}
  {"op":"start", "id", "bundle", "token", "tty", "stdin", "log": {...},
   "exit_file"}                       -> {"ok":true,"pid":N} once started
  {"op":"list"}                       -> {"ok":true,"containers":{id:{"pid","token"}}}
  {"op":"subscribe"}                  -> {"ok":true}, then {"event":"exit",...} lines
  {"op":"attach", "id", "stdin", "stdin_once"} -> {"ok":true}, then a stream
                                         (engine/attach.py: frames both ways)
  {"op":"resize", "id", "h", "w"}     -> {"ok":true} (a TTY's window size)
  {"op":"shutdown"}                   -> exits (containers are left running)

Extension points for attach: Running.stdin (the write end of the container's
stdin, or the pty master) and Running.sinks (callables fed every output chunk).

Run as `python -m dockyard.engine.monitor --exec-root E --runtime R`; it keeps
its imports to the standard library's basics (its memory is per host, not per
container, but it is measured).
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable

from dockyard.engine import runtime_fork
from dockyard.engine.attach import Attachment, attach_op
from dockyard.engine.exec import exec_op, exec_reaped
from dockyard.engine.logfile import LineSplitter, open_writer, rfc3339_nano
from dockyard.engine.monitor_util import (
    _oom_killed,
    _readable,
    _rmtree,
    _runtime_error,
    _suppress,
    stdio_pipes,
    write_json_atomic,
)

DRAIN_TIMEOUT = 2.0


class Running:
    """One container the monitor looks after."""

    def __init__(self, req: dict):
        self.id: str = req["id"]
        self.token: str = req.get("token", "")
        self.tty = bool(req.get("tty"))
        self.exit_file: str = req["exit_file"]
        self.cgroup: str = req.get("cgroup") or f"/dockyard/{self.id}"
        log = req.get("log") or {}
        self.writer = open_writer(log.get("driver", "json-file"), log.get("path", ""),
                                  log.get("opts") or {})
        self.pid = 0
        self.status: int | None = None  # the init's wait status once reaped
        self.started = False  # `start` finished
        self.streams: dict[int, tuple[str, LineSplitter]] = {}
        self.stdin = -1  # write end of the container's stdin (or the pty master)
        self.sinks: list[Callable[[str, bytes], None]] = []
        self.attachments: list[Attachment] = []
        self.finishing = False
        self.drain_armed = False

    def output(self, stream: str, data: bytes) -> None:
        for sink in list(self.sinks):
            sink(stream, data)


class Monitor:
    def __init__(self, exec_root: str, runtime: str):
        self.exec_root = exec_root
        self.runtime = runtime
        self.runtime_root = os.path.join(exec_root, "runtime")
        self.work = os.path.join(exec_root, "monitor")
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, Callable[[int], None]] = {}  # runtime helper pids
        self.inits: dict[int, Running] = {}
        self.running: dict[str, Running] = {}
        self.subscribers: list[socket.socket] = []
        self.pending_attach: dict[str, list[Attachment]] = {}  # attached before the start
        self.bufs: dict[socket.socket, bytes] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.stop = False
        self._in_process: bool | None = None

    # -- plumbing -------------------------------------------------------------------

    def serve(self) -> None:
        from dockyard.linux import libc

        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.runtime_root, exist_ok=True)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop", True))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(rfd, selectors.EVENT_READ, ("signal", None))
        path = os.path.join(self.exec_root, "monitor.sock")
        with _suppress(FileNotFoundError):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(64)
        srv.setblocking(False)
        self.sel.register(srv, selectors.EVENT_READ, ("accept", srv))
        self._reap()
        while not self.stop:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            for key, mask in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "signal":
                    with _suppress(BlockingIOError):
                        while os.read(rfd, 512):
                            pass
                    self._reap()
                elif kind == "accept":
                    self._accept(obj)
                elif kind == "client":
                    self._client(obj)
                elif kind == "output":
                    self._output(key.fd, obj)
                elif kind == "console":
                    self._console(obj[0], obj[1])
                elif kind == "attach":
                    obj.ready(mask)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()
        srv.close()
        with _suppress(FileNotFoundError):
            os.unlink(path)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self._seq, fn))

    def _spawn(self, args: list[str], done: Callable[[int], None],
               stdio: tuple[int, int, int] | None = None) -> None:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fds = stdio or (null, null, null)
        argv = ["--root", self.runtime_root, *args]
        try:
            if self.in_process:
                pid = runtime_fork.fork_runtime(argv, fds)
            else:
                actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
                pid = os.posix_spawn(self.runtime, [self.runtime, *argv], os.environ,
                                     file_actions=actions, setsigdef=(
                                         signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM))
        finally:
            os.close(null)
        self.children[pid] = done

    @property
    def in_process(self) -> bool:
        """Whether runtime commands run in a fork of this process (engine/runtime_fork.py):
        only for our own runtime, imported on first use so an idle monitor stays small."""
        if self._in_process is None:
            self._in_process = (not os.environ.get("DOCKYARD_MONITOR_EXEC_RUNTIME")
                                and runtime_fork.is_our_launcher(self.runtime))
            if self._in_process:
                runtime_fork.preload()
        return self._in_process

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.pop(pid)(status)
            elif pid in self.inits:
                r = self.inits.pop(pid)
                r.status = status
                self._maybe_finish(r)
            else:  # an exec's process (engine/exec.py) or an orphan re-parented to us
                exec_reaped(self, pid, status)

    # -- control connections ------------------------------------------------------------

    def _accept(self, srv: socket.socket) -> None:
        try:
            conn, _ = srv.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.bufs[conn] = b""
        self.sel.register(conn, selectors.EVENT_READ, ("client", conn))

    def _client(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        self.bufs[conn] += data
        while conn in self.bufs and b"\n" in self.bufs[conn]:
            line, self.bufs[conn] = self.bufs[conn].split(b"\n", 1)
            try:
                req = json.loads(line)
                self._request(conn, req)
            except Exception as e:  # noqa: BLE001 - one bad request must not kill us
                self._send(conn, {"ok": False, "error": f"{type(e).__name__}: {e}"})

    def _drop(self, conn: socket.socket) -> None:
        with _suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        self.bufs.pop(conn, None)
        conn.close()

    def _send(self, conn: socket.socket, msg: dict) -> None:
        data = (json.dumps(msg) + "\n").encode()
        try:
            conn.setblocking(True)
            conn.settimeout(5)
            conn.sendall(data)
            conn.setblocking(False)
        except OSError:
            self._drop(conn)

    def _request(self, conn: socket.socket, req: dict) -> None:
        op = req.get("op")
        if op == "ping":
            self._send(conn, {"ok": True, "pid": os.getpid()})
        elif op == "list":
            self._send(conn, {"ok": True, "containers": {
                r.id: {"pid": r.pid, "token": r.token} for r in self.running.values()}})
        elif op == "subscribe":
            self.subscribers.append(conn)
            self._send(conn, {"ok": True})
        elif op == "start":
            self._start(conn, req)
        elif op in ("attach", "resize"):
            attach_op(self, conn, req)
        elif op in ("exec", "exec_state", "exec_resize"):
            exec_op(self, conn, req)
        elif op == "shutdown":
            self.stop = True
            self._send(conn, {"ok": True})
        else:
            self._send(conn, {"ok": False, "error": f"unknown op {op!r}"})

    def _notify(self, event: dict) -> None:
        for conn in list(self.subscribers):
            self._send(conn, event)

    # -- starting -------------------------------------------------------------------------

    def _start(self, conn: socket.socket, req: dict) -> None:
        cid = req["id"]
        if cid in self.running:
            self._send(conn, {"ok": False, "error": f"container {cid} is already running"})
            return
        r = Running(req)
        self.running[cid] = r
        for att in self.pending_attach.pop(cid, []):
            r.attachments.append(att)
            att.bind(r)
        work = os.path.join(self.work, cid[:32])
        os.makedirs(work, exist_ok=True)
        pid_file = os.path.join(work, "init.pid")
        log_file = os.path.join(work, "runtime.log")
        with _suppress(FileNotFoundError):
            os.unlink(log_file)
        args = ["--log", log_file, "--log-format", "json", "create", "--bundle", req["bundle"],
                "--pid-file", pid_file]
        if self.in_process:
            runtime_fork.precompile_seccomp(req["bundle"])
        close_after: list[int] = []
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        close_after.append(null)
        console = None
        if r.tty:
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock_path = os.path.join(work, "console.sock")
            if len(sock_path) > 100:  # sun_path is 108 bytes
                import tempfile
                sock_path = os.path.join(tempfile.mkdtemp(prefix="dockyard-console-"), "sock")
            with _suppress(FileNotFoundError):
                os.unlink(sock_path)
            console.bind(sock_path)
            console.listen(1)
            console.setblocking(False)
            self.sel.register(console, selectors.EVENT_READ, ("console", (r, console)))
            args += ["--console-socket", sock_path]
            stdio = (null, null, null)
            args.append(cid)
        else:
            stdio, out_r, err_r, stdin_w = stdio_pipes(null, bool(req.get("stdin")),
                                                       close_after)
            if stdin_w is not None:
                r.stdin = stdin_w
            for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                r.streams[fd] = (name, LineSplitter())
                self.sel.register(fd, selectors.EVENT_READ, ("output", r))
            args.append(cid)

        def fail(message: str) -> None:
            self._send(conn, {"ok": False, "error": message})
            if console is not None:
                with _suppress(KeyError, ValueError):
                    self.sel.unregister(console)
                console.close()
            self._close_streams(r)
            for att in list(r.attachments):
                att.finish()
            self.running.pop(cid, None)
            self.inits.pop(r.pid, None)
            if r.pid:
                self._spawn(["delete", "--force", cid], lambda _s: None)

        def created(status: int) -> None:
            if console is not None:
                self._console(r, console)  # a connection still in the backlog
                with _suppress(KeyError, ValueError):
                    self.sel.unregister(console)
                console.close()
            if status != 0:
                fail(_runtime_error(log_file) or f"runtime create failed (status {status})")
                return
            try:
                with open(pid_file) as f:
                    r.pid = int(f.read().strip())
            except (OSError, ValueError) as e:
                fail(f"cannot read the init's pid: {e}")
                return
            self.inits[r.pid] = r
            self._spawn(["--log", log_file, "--log-format", "json", "start", cid], started)

        def started(status: int) -> None:
            if status != 0:
                fail(_runtime_error(log_file) or f"runtime start failed (status {status})")
                return
            r.started = True
            self._send(conn, {"ok": True, "pid": r.pid, "started_at": rfc3339_nano()})
            self._maybe_finish(r)

        try:
            self._spawn(args, created, stdio)
        except OSError as e:
            fail(f"cannot run {self.runtime}: {e.strerror}")
        finally:
            for fd in close_after:
                os.close(fd)

    def _console(self, r: Running, console: socket.socket) -> None:
        try:
            conn, _ = console.accept()
        except BlockingIOError:
            return
        try:
            conn.setblocking(True)
            conn.settimeout(10)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        finally:
            conn.close()
        if fds:
            master = fds[0]
            os.set_blocking(master, False)
            r.stdin = os.dup(master)  # writes go to the same pty; closed separately
            r.streams[master] = ("stdout", LineSplitter())
            self.sel.register(master, selectors.EVENT_READ, ("output", r))

    # -- output ---------------------------------------------------------------------------

    def _output(self, fd: int, r: Running) -> None:
        name, splitter = r.streams[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: the pty's last slave was closed
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            for piece in splitter.flush():
                self._record(r, name, piece)
            self.sel.unregister(fd)
            os.close(fd)
            del r.streams[fd]
            self._maybe_finish(r)
            return
        r.output(name, data)
        for piece in splitter.feed(data):
            self._record(r, name, piece)

    def _record(self, r: Running, stream: str, piece: bytes) -> None:
        try:
            r.writer.write(stream, piece)
        except OSError as e:
            print(f"monitor: log write for {r.id[:12]}: {e}", file=sys.stderr)

    def _close_streams(self, r: Running) -> None:
        for fd, (name, splitter) in list(r.streams.items()):
            for piece in splitter.flush():
                self._record(r, name, piece)
            with _suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            os.close(fd)
        r.streams.clear()
        if r.stdin >= 0:
            os.close(r.stdin)
            r.stdin = -1

    # -- exit -----------------------------------------------------------------------------

    def _maybe_finish(self, r: Running) -> None:
        """Once the init is reaped and `start` answered: drain the output, then finish."""
        if r.status is None or not r.started or r.finishing:
            return
        if r.streams:
            if not r.drain_armed:
                r.drain_armed = True
                self._later(DRAIN_TIMEOUT, lambda: self._finish(r))
            return
        self._finish(r)

    def _finish(self, r: Running) -> None:
        if r.finishing:
            return
        r.finishing = True
        # drain what is readable now, then stop reading
        for fd in list(r.streams):
            with _suppress(OSError):
                while fd in r.streams:
                    self._output(fd, r)
                    if fd in r.streams and not _readable(fd):
                        break
        self._close_streams(r)
        for att in list(r.attachments):
            att.finish()
        r.writer.close()
        oom = _oom_killed(r.cgroup)
        code = os.waitstatus_to_exitcode(r.status or 0)
        if code < 0:
            code = 128 - code
        finished = rfc3339_nano()

        def deleted(_status: int) -> None:
            record = {"id": r.id, "token": r.token, "pid": r.pid, "exit_code": code,
                      "oom_killed": oom, "finished_at": finished}
            try:
                write_json_atomic(r.exit_file, record)
            except OSError as e:
                print(f"monitor: cannot write {r.exit_file}: {e}", file=sys.stderr)
            self.running.pop(r.id, None)
            _rmtree(os.path.join(self.work, r.id[:32]))
            self._notify({"event": "exit", **record})

        self._spawn(["delete", "--force", r.id], deleted)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = dict(zip(argv[::2], argv[1::2]))
    exec_root = opts["--exec-root"]
    os.makedirs(exec_root, exist_ok=True)
    lock = os.open(os.path.join(exec_root, "monitor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another monitor serves this exec root
    pid_path = os.path.join(exec_root, "monitor.pid")
    with open(pid_path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_path + ".tmp", pid_path)
    try:
        Monitor(exec_root, opts["--runtime"]).serve()
    finally:
        with _suppress(FileNotFoundError):
            os.unlink(pid_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
