"""Health checks: docker's HEALTHCHECK probes for running containers.

The probe of a container whose Config.Healthcheck has a test runs as an exec in
it (the monitor runs it, engine/exec.py; output read over an attach stream).
Its result goes into State.Health (status, failing streak, the last five
results), saved in the store; a status change is a `health_status: <status>`
event. One scheduler thread keeps a heap of due probes for every container
and hands them to a small pool (a slow probe does not delay the others).

Docker's rules: first probe one interval after the start (StartInterval while
in the start period and still starting); a failure inside the start period does
not count; `Retries` failures in a row make it unhealthy, one success healthy;
a probe past its timeout is killed and counts as exit -1. A stopped container
is left "unhealthy" (docker's compatibility rule).
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from dockyard.engine.attach import parse_frames
from dockyard.engine.events import exec_action
from dockyard.engine.model import now as rfc3339_now
from dockyard.engine.model import parse_time
from dockyard.errors import DockyardError, InvalidArgument, NotFound

log = logging.getLogger("dockyard.health")

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1ms, docker's minimum for every duration
MAX_LOG = 5
MAX_OUTPUT = 4096
WORKERS = 4  # probes run at once (daemon threads: a probe in flight never holds up exit)
_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


# -- the configuration ------------------------------------------------------------------------

@dataclass
class HealthConfig:
    argv: list[str]  # what the probe runs
    interval: float  # seconds
    timeout: float
    retries: int
    start_period: float
    start_interval: float
    timeout_ns: int  # for docker's message ("exceeded timeout (30s)")


def check_config(hc: Any) -> None:
    """docker's 400s for a bad Healthcheck at create."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid JSON: Healthcheck must be an object")
    test = hc.get("Test")
    if test is not None and not (isinstance(test, list) and
                                 all(isinstance(t, str) for t in test)):
        raise InvalidArgument("invalid JSON: Healthcheck.Test must be a list of strings")
    for key in _DURATIONS:
        value = hc.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"invalid JSON: Healthcheck.{key} must be an integer")
        if value != 0 and value < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidArgument("invalid JSON: Healthcheck.Retries must be an integer")
    if retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


def merge_config(user: dict | None, image: dict | None) -> dict | None:
    """docker's merge: the image's Healthcheck fills what the create's leaves unset
    (an empty Test, zero durations and retries)."""
    if not user:
        return copy.deepcopy(image) if image else None
    out = copy.deepcopy(user)
    if image:
        if not out.get("Test"):
            out["Test"] = list(image.get("Test") or []) or out.get("Test")
        for key in (*_DURATIONS, "Retries"):
            if not out.get(key) and image.get(key):
                out[key] = image[key]
    return out


def apply_merge(merged: dict, user: dict, image: dict) -> None:
    """Put docker's field-by-field Healthcheck merge into a merged Config."""
    hc = merge_config(user.get("Healthcheck"), image.get("Healthcheck"))
    if hc is None:
        merged.pop("Healthcheck", None)
    else:
        merged["Healthcheck"] = hc


def parse_config(hc: dict | None, shell: list[str] | None = None) -> HealthConfig | None:
    """The probe a Config.Healthcheck asks for, or None (no test, NONE, unknown kind)."""
    if not hc or not hc.get("Test"):
        return None
    test = list(hc["Test"])
    if test[0] == "CMD" and len(test) > 1:
        argv = test[1:]
    elif test[0] == "CMD-SHELL" and len(test) > 1:
        argv = list(shell or ["/bin/sh", "-c"]) + test[1:]
    else:  # NONE, or a kind docker ignores too
        return None

    def ns(key: str, default: int) -> int:
        return int(hc.get(key) or 0) or default

    timeout_ns = ns("Timeout", DEFAULT_TIMEOUT)
    return HealthConfig(argv=argv, interval=ns("Interval", DEFAULT_INTERVAL) / SECOND,
                        timeout=timeout_ns / SECOND,
                        retries=int(hc.get("Retries") or 0) or DEFAULT_RETRIES,
                        start_period=ns("StartPeriod", 0) / SECOND,
                        start_interval=ns("StartInterval", DEFAULT_START_INTERVAL) / SECOND,
                        timeout_ns=timeout_ns)


def go_duration(ns: int) -> str:
    """Go's time.Duration.String() for the common cases: 30s, 1.5s, 200ms, 1m30s, 2h0m0s."""
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size or unit == "ns":
                return _trim(ns / size) + unit
    secs = ns / SECOND
    hours, rest = divmod(secs, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{int(hours)}h{int(minutes)}m{_trim(secs)}s"
    if minutes:
        return f"{int(minutes)}m{_trim(secs)}s"
    return f"{_trim(secs)}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


# -- the state machine (pure: unit-tested) ----------------------------------------------------

def starting() -> dict:
    return {"Status": "starting", "FailingStreak": 0, "Log": []}


def record(health: dict | None, result: dict, retries: int, in_start_period: bool) -> dict:
    """State.Health after one probe `result` ({Start, End, ExitCode, Output})."""
    h = copy.deepcopy(health) if health else starting()
    h["Log"] = (list(h.get("Log") or []) + [result])[-MAX_LOG:]
    if result["ExitCode"] == 0:
        h["FailingStreak"] = 0
        h["Status"] = "healthy"
    elif not (h.get("Status") == "starting" and in_start_period):
        h["FailingStreak"] = int(h.get("FailingStreak") or 0) + 1
        if h["FailingStreak"] >= retries:
            h["Status"] = "unhealthy"
    return h


def next_delay(cfg: HealthConfig, since_start: float, status: str) -> float:
    """docker's timer: StartInterval while in the start period and still starting."""
    if since_start < cfg.start_period and status == "starting":
        return cfg.start_interval
    return cfg.interval


def limit_output(data: bytes) -> str:
    text = data[:MAX_OUTPUT].decode("utf-8", "replace")
    return text + "..." if len(data) > MAX_OUTPUT else text


# -- running probes ------------------------------------------------------------------------------

def probe_process(c: Any, argv: list[str]) -> dict:
    """The container's own process settings (user, env, cwd, capabilities) with the probe's
    command, like an exec's."""
    with open(os.path.join(c.path, "config.json")) as f:
        process = dict(json.load(f).get("process") or {})
    process.pop("consoleSize", None)
    process["args"] = list(argv)
    process["terminal"] = False
    return process


def run_probe(monitor_socket: str, cid: str, exec_id: str, process: dict,
              timeout: float) -> tuple[str | None, bytes, bool]:
    """Run one probe through the monitor: (why it could not start, or None; its output;
    whether it was killed for taking longer than `timeout`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    deadline = time.monotonic() + timeout
    try:
        sock.settimeout(10)
        sock.connect(monitor_socket)
        sock.sendall((json.dumps({"op": "exec", "id": exec_id, "container": cid,
                                  "process": process, "tty": False, "stdin": False,
                                  "attach": True}) + "\n").encode())
        f = sock.makefile("rb", buffering=0)
        answer = json.loads(f.readline() or b"{}")
        if not answer.get("ok"):
            return answer.get("error") or "the probe did not start", b"", False
        out = bytearray()
        buf = bytearray()
        timed_out = _read_stream(sock, buf, out, deadline)
        if timed_out:
            _kill(int(answer.get("pid") or 0))
            _read_stream(sock, buf, out, time.monotonic() + 2)  # let it die, keep output
        return None, bytes(out), timed_out
    finally:
        sock.close()


def _read_stream(sock: socket.socket, buf: bytearray, out: bytearray, deadline: float) -> bool:
    """Read multiplexed frames until EOF (False) or the deadline (True)."""
    def take(_kind: int, data: bytes) -> None:
        if len(out) <= MAX_OUTPUT:
            out.extend(data)

    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        buf.extend(chunk)
        parse_frames(buf, take)


def _kill(pid: int) -> None:
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class HealthChecker:
    """The probes of one engine: a heap of (due, seq, container id, generation)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._gen: dict[str, int] = {}  # the containers being watched
        self._closed = False
        self._jobs: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)
        self._thread.start()

    # -- watching ----------------------------------------------------------------------------

    def watching(self, cid: str) -> bool:
        with self._cond:
            return cid in self._gen

    def watch(self, c: Any) -> bool:
        """Start probing `c` (just started): health "starting". The caller saves `c`."""
        cfg = parse_config(c.config.get("Healthcheck"), c.config.get("Shell"))
        if cfg is None:
            self.unwatch(c.id)
            return False
        health = dict(c.state.Health or starting())
        health.update(Status="starting", FailingStreak=0)
        health.setdefault("Log", [])
        c.state.Health = health
        since_start = max(0.0, time.time() - parse_time(c.state.StartedAt))
        with self._cond:
            gen = self._gen[c.id] = next(self._seq)  # unique: stale heap entries never match
            self._push(time.monotonic() + next_delay(cfg, since_start, "starting"), c.id, gen)
        return True

    def unwatch(self, cid: str) -> None:
        with self._cond:
            self._gen.pop(cid, None)

    def stopped(self, c: Any) -> None:
        """`c` stopped: no more probes; docker leaves it "unhealthy". The caller saves."""
        self.unwatch(c.id)
        if c.state.Health:
            c.state.Health = {**c.state.Health, "Status": "unhealthy"}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._gen.clear()
            self._cond.notify_all()
            for _ in self._workers:
                self._jobs.put(None)

    # -- the scheduler ---------------------------------------------------------------------

    def _push(self, due: float, cid: str, gen: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), cid, gen))
        self._cond.notify_all()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, cid, gen = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if self._gen.get(cid) == gen:
                    if len(self._workers) < WORKERS:
                        self._start_worker()
                    self._jobs.put((cid, gen))

    def _start_worker(self) -> None:
        """Workers start with the first probes (an engine without health checks has
        none)."""
        t = threading.Thread(target=self._work, name="health-probe", daemon=True)
        self._workers.append(t)
        t.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._probe(*job)
            except Exception:  # a bug: say so, keep probing the others
                log.exception("health check of %s failed", job[0][:12])

    def _probe(self, cid: str, gen: int) -> None:
        try:
            c = self.engine.get(cid)
        except NotFound:
            self.unwatch(cid)
            return
        cfg = parse_config(c.config.get("Healthcheck"), c.config.get("Shell"))
        if cfg is None or not c.state.Running or self._gen.get(cid) != gen:
            return
        result = self._run(c, cfg)
        since_start = parse_time(result["Start"]) - parse_time(c.state.StartedAt)
        status = self._save(cid, gen, result, cfg, since_start < cfg.start_period)
        if status is not None:
            with self._cond:
                if self._gen.get(cid) == gen:
                    delay = next_delay(cfg, time.time() - parse_time(c.state.StartedAt),
                                       status)
                    self._push(time.monotonic() + delay, cid, gen)

    def _run(self, c: Any, cfg: HealthConfig) -> dict:
        """One probe's result; a probe that cannot run counts as exit -1 with the reason,
        as docker's does."""
        start = rfc3339_now()

        def result(code: int, output: str) -> dict:
            return {"Start": start, "End": rfc3339_now(), "ExitCode": code, "Output": output}

        if c.state.Paused:  # an exec would freeze with it
            return result(-1, f"Container {c.id} is paused, unpause the container before exec")
        exec_id = secrets.token_hex(32)
        self.engine.emit(c, exec_action("exec_create", cfg.argv), execID=exec_id)
        self.engine.emit(c, exec_action("exec_start", cfg.argv), execID=exec_id)
        try:
            error, output, timed_out = run_probe(self.engine.monitor.socket_path, c.id,
                                                 exec_id, probe_process(c, cfg.argv),
                                                 cfg.timeout)
            if error is not None:
                return result(-1, error)
            if timed_out:
                text = f"Health check exceeded timeout ({go_duration(cfg.timeout_ns)})"
                shown = limit_output(output)
                return result(-1, f"{text}: {shown}" if shown else text)
            return result(self._exit_code(exec_id), limit_output(output))
        except (OSError, ValueError, DockyardError) as e:
            return result(-1, f"health check of container {c.id} failed: {e}")

    def _exit_code(self, exec_id: str) -> int:
        for _ in range(50):  # the monitor has it once the stream ended; be patient
            answer = self.engine.monitor.request({"op": "exec_state", "id": exec_id},
                                                 timeout=10)
            if not answer.get("ok"):
                return -1
            if answer.get("exit_code") is not None:
                return int(answer["exit_code"])
            time.sleep(0.01)
        return -1

    def _save(self, cid: str, gen: int, result: dict, cfg: HealthConfig,
              in_start_period: bool) -> str | None:
        """Record `result` if the container still runs this watch; its new status."""
        engine = self.engine
        with engine._cond:
            if self._closed:  # the engine (and its store) is going away
                return None
            try:
                c = engine.get(cid)
            except NotFound:
                return None
            if self._gen.get(cid) != gen or not c.state.Running:
                return None
            old = (c.state.Health or {}).get("Status")
            c.state.Health = record(c.state.Health, result, cfg.retries, in_start_period)
            engine._save(c)
            status = c.state.Health["Status"]
        if status != old:
            engine.emit(c, "health_status: " + status)
        return status
