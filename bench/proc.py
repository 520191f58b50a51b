"""Running one command for a timed run: error text on failure, peak RSS of its process tree."""

import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence

from bench.scenario import Metrics

TAIL_LINES = 6


class CommandFailed(Exception):
    """A benchmarked command exited non-zero, was killed, or could not be started."""


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
        timeout: float = 60.0) -> Metrics:
    """Run `argv` with stdin and stdout on /dev/null; raise CommandFailed unless it exits 0.

    Returns {"peak_rss_mb": ...}: the largest resident set of the command and of the
    descendants it waited for (from wait4's rusage).
    """
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    env=dict(env) if env is not None else None, cwd=cwd,
                                    start_new_session=True)
        except OSError as e:
            raise CommandFailed(f"cannot start {argv[0]}: {e}") from e
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise CommandFailed(_describe(argv, proc.returncode, err.read(), timeout))
    return {"peak_rss_mb": usage.ru_maxrss / 1024}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _describe(argv: Sequence[str], code: int, stderr: bytes, timeout: float) -> str:
    name = os.path.basename(argv[0])
    if code == -signal.SIGKILL:
        head = f"{name} killed (timeout {timeout:g}s?)"
    elif code < 0:
        head = f"{name} killed by signal {-code}"
    else:
        head = f"{name} exited {code}"
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return head
    return head + ": " + " | ".join(ln.strip() for ln in lines[-TAIL_LINES:])
