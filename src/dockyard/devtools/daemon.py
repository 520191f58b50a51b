"""A private `dockyard daemon` for tests, examples and benchmarks.

    d = DockyardDaemon(workdir).start()   # socket, data root, exec root under workdir
    subprocess.run([dockyard, "-H", d.host, "images"])
    problems = d.stop()                   # [] when nothing was left behind

Everything lives under `root`: the socket (d.sock), --data-root (data),
--exec-root (exec), a daemon.json of its own (never /etc/dockyard/daemon.json)
and the log. `stop` checks that no process mentioning `root` and no mount
below it is left, and cleans up whatever was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def dockyard_cli() -> str:
    """The console script of this venv (next to the interpreter, not resolved through links)."""
    return str(Path(sys.executable).parent / "dockyard")


class DockyardDaemon:
    def __init__(self, root: str | os.PathLike, config: dict | None = None) -> None:
        self.root = Path(root)
        self.sock = self.root / "d.sock"
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.config = config or {}
        self.log_path = self.root / "daemon.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "daemon.json"
        from dockyard.devtools.netconfig import private_network_config
        config.write_text(json.dumps({**private_network_config(self.root), **self.config})
                          + "\n")
        argv = [dockyard_cli(), "daemon", "-H", self.host, "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--pidfile", "",
                "--config-file", str(config)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        from dockyard.client.api import Client
        from dockyard.errors import DockyardError

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard daemon exited {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.sock.exists():
                try:
                    with Client(self.host, timeout=5) as c:
                        c.ping()
                    return
                except DockyardError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockyard daemon did not answer within {START_TIMEOUT}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no daemon log)"

    def kill(self) -> None:
        """SIGKILL the daemon (a crash): whatever it was doing stops half-way."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> list[str]:
        """SIGTERM and wait; then remove leftovers. Returns what had been left over."""
        from dockyard.devtools.dockerd_peer import kill_pids, pids_matching, unmount_all

        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"dockyard daemon ignored SIGTERM for {STOP_TIMEOUT:.0f}s")
                self.proc.kill()
                self.proc.wait()
        left = pids_matching(str(self.root))
        if left:
            problems.append(f"processes left after the daemon stopped: {left}")
            kill_pids(left)
        still = unmount_all(str(self.root))
        if still:
            problems.append(f"could not unmount: {still}")
        return problems

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
