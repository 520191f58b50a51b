"""`dockyard compose watch` and `up --watch` end to end against a private daemon:
files written, changed and deleted under a trigger path reach the container (and
ignored ones do not), sync+exec runs its command, initial_sync, sync+restart
restarts, rebuild recreates the container from the new image, and Ctrl-C ends
the watcher cleanly.

The daemon and helpers are test_compose.py's (one daemon for this module).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_compose import (  # noqa: F401 - fixtures used by name
    LOOP,
    Compose,
    _project,
    compose,
    daemon,
    needs_networks,
    workdir,
)


class Watching:
    """A `dockyard compose ...` left running (its output in files, read as it grows)."""

    def __init__(self, compose: Compose, project: Path, *args: str) -> None:
        self.out_path, self.err_path = project / "watch.out", project / "watch.err"
        self.out, self.err = open(self.out_path, "wb"), open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "compose",
                                      *args], cwd=project, env=compose.env,
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err)

    def text(self) -> str:
        return self.out_path.read_text(errors="replace")

    def logs(self) -> str:
        return f"stdout:\n{self.text()}\nstderr:\n{self.err_path.read_text(errors='replace')}"

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never came\n{self.logs()}")
            time.sleep(0.1)

    def interrupt(self) -> int:
        """Ctrl-C: the exit code (the watcher must end by itself)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def eventually(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def in_container(compose: Compose, project: Path, service: str, script: str) -> str:
    r = compose(project, "exec", "-T", service, "sh", "-c", script, check=False)
    return r.stdout if r.returncode == 0 else f"<exit {r.returncode}: {r.stderr.strip()}>"


SYNC = f"""
services:
  web:
    image: busybox:dyk
    command: ["sh", "-c", "{LOOP}"]
    develop:
      watch:
        - path: ./src
          action: sync
          target: /app
          ignore: ["*.tmp", "cache/"]
        - path: ./conf
          action: sync+exec
          target: /etc/app
          exec:
            command: ["sh", "-c", "cat /etc/app/app.conf; cp /etc/app/app.conf /tmp/applied"]
        - path: ./seed
          action: sync
          target: /seed
          initial_sync: true
"""


def test_watch_sync(compose: Compose, workdir: Path) -> None:
    needs_networks(compose)
    p = _project(workdir, "wsync", SYNC)
    for d in ("src", "conf", "seed"):
        (p / d).mkdir()
    (p / "src" / "before.txt").write_text("made before the watch")
    (p / "seed" / "s.txt").write_text("seeded")
    w = Watching(compose, p, "watch")

    def sh(script: str) -> str:
        return in_container(compose, p, "web", script)

    try:
        w.wait_for("Watch enabled")
        assert sh("cat /seed/s.txt") == "seeded"  # initial_sync: newer than the image
        assert "<exit" in sh("cat /app/before.txt")  # plain sync: only what changes

        (p / "src" / "a.txt").write_text("one")
        eventually(lambda: sh("cat /app/a.txt") == "one", "a new file to be synced")
        w.wait_for('Syncing service "web" after 1 changes were detected')
        (p / "src" / "a.txt").write_text("two")
        eventually(lambda: sh("cat /app/a.txt") == "two", "a change to be synced")

        # ignored: the trigger's patterns and compose's defaults; then a marker file
        (p / "src" / "cache").mkdir()
        (p / "src" / "cache" / "c.txt").write_text("x")
        (p / "src" / "skip.tmp").write_text("x")
        (p / "src" / "a.txt~").write_text("x")
        (p / "src" / ".git").mkdir()
        (p / "src" / ".git" / "HEAD").write_text("x")
        (p / "src" / "deep" / "er").mkdir(parents=True)
        (p / "src" / "deep" / "er" / "f.txt").write_text("deep")
        eventually(lambda: sh("cat /app/deep/er/f.txt") == "deep", "a new directory")
        assert sh("ls -A /app") == "a.txt\ndeep\n"

        (p / "src" / "a.txt").unlink()
        eventually(lambda: sh("ls -A /app") == "deep\n", "a deleted file to go")

        (p / "conf" / "app.conf").write_text("level=debug\n")
        eventually(lambda: sh("cat /tmp/applied") == "level=debug\n", "sync+exec's command")
        w.wait_for("level=debug")  # the command's output is the watcher's
    finally:
        code = w.interrupt()
    try:
        assert code == 130, w.logs()
        assert "Traceback" not in w.logs()
        # like docker compose: the containers stay up after the watcher
        assert [c["State"] for c in compose.containers("wsync")] == ["running"]
    finally:
        compose(p, "down", "-t", "0")


def _started_at(compose: Compose, project: str) -> tuple[str, str]:
    (c,) = compose.containers(project)
    info = compose.api("GET", f"/containers/{c['Id']}/json")[1]
    return c["Id"], info["State"]["StartedAt"]  # type: ignore[index]


def test_up_watch_restart_and_rebuild(compose: Compose, workdir: Path) -> None:
    needs_networks(compose)
    if compose.api("POST", "/build")[0] == 404:
        pytest.skip("needs POST /build (issue 7)")
    p = _project(workdir, "wbuild", f"""
services:
  app:
    build: .
    command: ["sh", "-c", "echo version $$(cat /ver); {LOOP}"]
    develop:
      watch:
        - path: ./ver
          action: rebuild
        - path: ./src
          action: sync+restart
          target: /src
""")
    (p / "Dockerfile").write_text("FROM busybox:dyk\nCOPY ver /ver\n")
    (p / "ver").write_text("v1\n")
    (p / "src").mkdir()
    w = Watching(compose, p, "up", "--watch", "--no-color")
    try:
        w.wait_for("⦿ Watch enabled")
        w.wait_for("app-1  | version v1")
        cid, started = _started_at(compose, "wbuild")
        image = compose.containers("wbuild")[0]["ImageID"]

        (p / "src" / "x").write_text("hi")
        w.wait_for('⦿ service(s) ["app"] restarted')
        assert _started_at(compose, "wbuild")[0] == cid
        assert _started_at(compose, "wbuild")[1] != started
        assert in_container(compose, p, "app", "cat /src/x") == "hi"

        (p / "ver").write_text("v2\n")
        w.wait_for('⦿ Rebuilding service(s) ["app"] after changes were detected...')
        w.wait_for('⦿ service(s) ["app"] successfully built')
        w.wait_for("app-1  | version v2")  # the new container's logs are followed
        new = compose.containers("wbuild")
        assert len(new) == 1 and new[0]["Id"] != cid and new[0]["ImageID"] != image
        assert in_container(compose, p, "app", "cat /ver") == "v2\n"
        # --prune (the default): the image the rebuild left untagged is gone
        assert compose.api("GET", f"/images/{image}/json")[0] == 404
    finally:
        code = w.interrupt()
    try:
        assert code == 130, w.logs()
        assert "⦿ Watch disabled" in w.text()
        # up's Ctrl-C stops the project, as without --watch
        assert [c["State"] for c in compose.containers("wbuild")] == ["exited"]
    finally:
        compose(p, "down", "-t", "0", "--rmi", "local")


def test_watch_no_up(compose: Compose, workdir: Path) -> None:
    p = _project(workdir, "wnoup", """
services:
  web:
    image: busybox:dyk
    develop:
      watch:
        - {path: ./src, action: sync, target: /app}
""")
    (p / "src").mkdir()
    w = Watching(compose, p, "watch", "--no-up", "--quiet", "--prune=false")
    try:
        w.wait_for("Watch enabled")
        (p / "src" / "a").write_text("x")
        w.wait_for('Syncing service "web" after 1 changes were detected')
        assert compose.containers("wnoup") == []  # nothing was created
    finally:
        assert w.interrupt() == 130, w.logs()


def test_watch_errors(compose: Compose, workdir: Path) -> None:
    p = _project(workdir, "wnone", "services:\n  a:\n    image: busybox:dyk\n")
    r = compose(p, "watch", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("none of the selected services is configured for watch, "
                                "consider setting a 'develop' section")
    r = compose(p, "up", "--watch", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("none of the selected services is configured for watch, "
                                "see https://docs.docker.com/compose/how-tos/file-watch/")
    r = compose(p, "up", "-d", "--watch", check=False)
    assert r.returncode == 1 and "--detach cannot be combined with" in r.stderr
    bad = _project(workdir, "wbad", """
services:
  a:
    image: busybox:dyk
    develop:
      watch: [{path: ., action: rebuild}]
""")
    r = compose(bad, "watch", check=False)
    assert r.returncode == 1
    assert "can't watch service \"a\" with action rebuild without a build context" in r.stderr
    assert compose.containers("wnone") == [] and compose.containers("wbad") == []
