"""The engine's side of the monitor: start it on demand, send requests, subscribe.

The monitor is started with subprocess in a new session (setsid) so that it
belongs to no daemon: it and its containers outlive the daemon process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.errors import SystemError_

START_TIMEOUT = 10.0


def default_runtime() -> str:
    beside = Path(sys.executable).parent / "dockyard-runtime"
    if beside.exists():
        return str(beside)
    import shutil
    return shutil.which("dockyard-runtime") or str(beside)


class MonitorClient:
    def __init__(self, exec_root: str, runtime: str | None = None):
        self.exec_root = exec_root
        self.runtime = runtime or default_runtime()
        self.socket_path = os.path.join(exec_root, "monitor.sock")
        self._sub_thread: threading.Thread | None = None
        self._closed = False
        self._sub_conn: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def pid(self) -> int:
        try:
            with open(os.path.join(self.exec_root, "monitor.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def alive(self) -> bool:
        try:
            return bool(self.request({"op": "ping"}, timeout=2).get("ok"))
        except (OSError, SystemError_):
            return False

    def ensure(self) -> int:
        """Connect to the monitor of this exec root, starting it if needed; its pid."""
        if self.alive():
            return self.pid()
        os.makedirs(self.exec_root, exist_ok=True)
        with open(os.path.join(self.exec_root, "monitor.log"), "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "dockyard.engine.monitor", "--exec-root", self.exec_root,
                 "--runtime", self.runtime],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                close_fds=True, cwd="/")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.alive():
                return self.pid()
            time.sleep(0.02)
        raise SystemError_(f"the container monitor did not start (see {self.exec_root}"
                           "/monitor.log)")

    def shutdown(self) -> None:
        """Stop the monitor (containers it runs are orphaned: stop them first)."""
        self._closed = True
        pid = self.pid()
        try:
            self.request({"op": "shutdown"}, timeout=5)
        except (OSError, SystemError_):
            pass
        if self._sub_conn is not None:
            try:
                self._sub_conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while pid and time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)

    def close(self) -> None:
        """Stop listening for events (the monitor keeps running)."""
        self._closed = True
        if self._sub_conn is not None:
            try:
                self._sub_conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- requests ------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        return sock

    def request(self, req: dict, timeout: float | None = 60) -> dict:
        sock = self._connect(timeout)
        try:
            sock.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemError_("the container monitor closed the connection")
                buf += chunk
            return json.loads(buf.split(b"\n", 1)[0])
        finally:
            sock.close()

    def start(self, **req) -> tuple[int, str]:
        """Create and start a container; (the init's pid, when it started). Raises SystemError_ with the
        runtime's message on failure."""
        answer = self.request({"op": "start", **req}, timeout=120)
        if not answer.get("ok"):
            raise SystemError_(answer.get("error") or "start failed")
        return int(answer["pid"]), answer.get("started_at") or ""

    def running(self) -> dict[str, dict]:
        answer = self.request({"op": "list"}, timeout=10)
        return answer.get("containers") or {}

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, on_event: Callable[[dict], None],
                  on_reconnect: Callable[[], None] | None = None) -> None:
        """Call on_event(event) from a background thread for every monitor event. If the
        monitor goes away, it is started again and on_reconnect() is called."""
        ready = threading.Event()

        def loop() -> None:
            first = True
            while not self._closed:
                try:
                    if not first:
                        self.ensure()
                    sock = self._connect(None)
                    sock.sendall(b'{"op": "subscribe"}\n')
                    self._sub_conn = sock
                    f = sock.makefile("rb")
                    f.readline()  # {"ok": true}
                    ready.set()
                    if not first and on_reconnect is not None:
                        on_reconnect()
                    first = False
                    for line in f:
                        if line.strip():
                            _dispatch(on_event, json.loads(line))
                except (OSError, ValueError, SystemError_):
                    pass
                finally:
                    ready.set()
                if not self._closed:
                    first = False
                    time.sleep(0.2)

        self._sub_thread = threading.Thread(target=loop, name="monitor-events", daemon=True)
        self._sub_thread.start()
        ready.wait(10)


def _dispatch(on_event: Callable[[dict], None], event: dict) -> None:
    try:
        on_event(event)
    except Exception:  # noqa: BLE001 - keep listening; the error is a bug to see
        import traceback
        traceback.print_exc()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False
