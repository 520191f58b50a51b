"""The main demo (`make demo`): the seed's counter-app on Dockyard, with Compose.

1. starts `dockyard daemon` in the background if none answers on its socket
   (pidfile /run/dockyard/dockyard.pid, log /var/log/dockyard.log);
2. `dockyard image bootstrap`: the offline base images (python:3.11-slim,
   redis:alpine, ...) built from Debian packages, cached after the first time;
3. in examples/counter-app: `dockyard compose up -d --build`, `compose ps`,
   three requests to http://localhost:5001/ (the count goes 1, 2, 3),
   `compose top` and `compose logs`; the app is left running.

The Dockerfile installs Flask and redis-py with apt inside a RUN step, which
needs the Debian mirror reachable from containers on the default bridge. If that
build fails, the demo says so and builds from Dockerfile.offline instead
(FROM dockyard/python-flask, the same packages installed by bootstrap).
COUNTER_DEMO_OFFLINE=1 goes straight to that. DOCKYARD_HOST selects another
daemon (then none is started).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "counter-app")
DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")
SOCK = "/run/dockyard/dockyard.sock"
PIDFILE = "/run/dockyard/dockyard.pid"
LOG = "/var/log/dockyard.log"
DAEMON_ARGS: list[str] = []  # more `dockyard daemon` flags (the daemon.json is /etc/dockyard's)
URL = "http://localhost:5001/"
OFFLINE_FILES = ["-f", "docker-compose.yml", "-f", "docker-compose.offline.yml"]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(*args: str, check: bool = True, quiet: bool = False) -> int:
    print("$ dockyard " + " ".join(args), flush=True)
    out = subprocess.DEVNULL if quiet else None
    code = subprocess.run([DOCKYARD, *args], cwd=APP, stdout=out, stderr=out,
                          check=False).returncode
    if check and code != 0:
        sys.exit(f"counter demo: `dockyard {' '.join(args)}` failed (exit {code})")
    return code


def _pinged(host: str) -> bool:
    from dockyard.client.api import Client
    from dockyard.errors import DockyardError

    try:
        with Client(host, timeout=5) as c:
            c.ping()
        return True
    except DockyardError:
        return False


def _daemon_pid() -> int:
    """The pid in the pidfile if it is a live dockyard daemon; a stale pidfile is removed
    (the daemon refuses to start over a pidfile naming a live process)."""
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().strip() or "0")
    except (OSError, ValueError):
        return 0
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if any(a.endswith(b"dockyard") for a in argv) and b"daemon" in argv:
            return pid
    except OSError:
        pass
    os.unlink(PIDFILE)
    return 0


def _wait_ping(host: str, proc: subprocess.Popen | None, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not _pinged(host):
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def ensure_daemon() -> None:
    """A daemon on DOCKYARD_HOST, or ours on its default socket (started if needed)."""
    host = os.environ.get("DOCKYARD_HOST")
    if host:
        if not _pinged(host):
            sys.exit(f"counter demo: no daemon answers on DOCKYARD_HOST={host}")
        print(f"using the daemon on {host}")
        return
    host = f"unix://{SOCK}"
    if _pinged(host):
        print(f"a dockyard daemon already answers on {SOCK}")
        return
    pid = _daemon_pid()
    if pid:  # starting, or busy: give it the start-up time
        print(f"waiting for the dockyard daemon (pid {pid}) to answer on {SOCK}")
        if not _wait_ping(host, None):
            sys.exit(f"counter demo: dockyard daemon pid {pid} does not answer on {SOCK}; "
                     f"see {LOG}")
        return
    os.makedirs(os.path.dirname(LOG), exist_ok=True)
    print(f"$ dockyard daemon &   (pidfile {PIDFILE}, log {LOG})", flush=True)
    with open(LOG, "ab") as log:
        proc = subprocess.Popen([DOCKYARD, "daemon", "-H", host, "--pidfile", PIDFILE,
                                 *DAEMON_ARGS], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    if not _wait_ping(host, proc):
        with open(LOG, errors="replace") as f:
            tail = "".join(f.readlines()[-20:])
        sys.exit(f"counter demo: the daemon did not start; {LOG} ends with:\n{tail}")
    print(f"daemon pid {proc.pid} listening on {SOCK}")


def wait_for_app(timeout: float = 60) -> None:
    """Until Flask answers (a 404 for /favicon.ico, which does not count a visit)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(URL + "favicon.ico", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # Flask answered
        except OSError as e:
            if time.monotonic() > deadline:
                sys.exit(f"counter demo: {URL} did not answer within {timeout:.0f}s: {e}")
            time.sleep(0.3)


def visits() -> list[int]:
    counts = []
    for _ in range(3):
        print(f"$ curl {URL}", flush=True)
        with urllib.request.urlopen(URL, timeout=15) as resp:
            body = resp.read().decode()
        print(body, end="", flush=True)
        m = re.search(r"(\d+) times", body)
        counts.append(int(m.group(1)) if m else -1)
    return counts


def main() -> None:
    step("the daemon")
    ensure_daemon()

    offline = os.environ.get("COUNTER_DEMO_OFFLINE") == "1"
    step("offline base images (built from Debian packages once, then cached)")
    images = ["busybox", "debian", "python", "redis"] + (["python-flask"] if offline else [])
    run("image", "bootstrap", "--only", *images)

    step("the counter-app (examples/counter-app): Flask + Redis, network counter-net, "
         "volume counter-vol")
    run("compose", "down", "-v", "--remove-orphans", check=False, quiet=True)  # a fresh count
    files: list[str] = OFFLINE_FILES if offline else []
    if run("compose", *files, "up", "-d", "--build", check=offline) != 0:
        print("\nthe build with apt-get inside failed (is the Debian mirror reachable from "
              "containers?):\nbuilding from Dockerfile.offline (FROM dockyard/python-flask) "
              "instead", flush=True)
        run("image", "bootstrap", "--only", "python-flask")
        files = OFFLINE_FILES
        run("compose", *files, "up", "-d", "--build")

    step("compose ps")
    run("compose", *files, "ps")

    step(f"three visits to {URL}")
    wait_for_app()
    counts = visits()
    if counts != [1, 2, 3]:
        sys.exit(f"counter demo: expected the count to go 1, 2, 3; got {counts}")
    print("the count went 1, 2, 3")

    step("compose top")
    run("compose", *files, "top")
    step("compose logs")
    run("compose", *files, "logs", "--no-color")

    step("the app is still running")
    print(f"open {URL}; stop it and remove its network and volume with:\n"
          f"    cd examples/counter-app && ../../.venv/bin/dockyard compose down -v")


if __name__ == "__main__":
    main()
