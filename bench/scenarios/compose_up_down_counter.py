"""`compose up -d` then `compose down -v` of the seed's counter-app (examples/counter-app:
Flask + Redis, a network, a volume, a published port) with its images built:
`dockyard compose` against `dockyard daemon` vs Debian's docker-compose against a
private dockerd, in the same run.

Setup, untimed: the offline base images (`dockyard image bootstrap --only python-flask
redis`, from its cache) loaded into both daemons, and web-fe built on each side from
Dockerfile.offline. The bench's override gives web-fe `stop_signal: SIGINT` (Python as
PID 1 ignores SIGTERM, so both sides would otherwise wait out the stop timeout) and a
free host port instead of 5001 (the demo may be running)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.proc import run
from bench.scenario import Metrics, Skip
from bench.scenarios._daemon_peers import DaemonScenario, dockyard_cli
from bench.scenarios.compose_up_down import DOCKER_COMPOSE

APP = Path(__file__).resolve().parents[2] / "examples" / "counter-app"
PROJECT = "counterbench"
FILES = ("docker-compose.yml", "docker-compose.offline.yml", "bench.override.yml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class ComposeUpDownCounter(DaemonScenario):
    name = "compose_up_down_counter"
    description = (
        "`compose up -d` + `compose down -v` of the counter-app (Flask + Redis, network "
        "counter-net, volume counter-vol, a published port), images built beforehand: "
        "`dockyard compose` against `dockyard daemon` vs Debian's docker-compose 1.29 "
        "against a private dockerd 20.10."
    )
    target = "<= 0.25"
    target_ratio = 0.25
    reference_label = "docker-compose"
    runs = 3
    warmup = 1

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path()

    def setup(self, workdir: Path) -> None:
        if not os.access(DOCKER_COMPOSE, os.X_OK):
            raise Skip(f"{DOCKER_COMPOSE} missing (apt-get install docker-compose)")
        if not (APP / "docker-compose.offline.yml").exists():
            raise Skip(f"{APP} has no docker-compose.offline.yml")
        super().setup(workdir)
        self.dir = workdir / "counter-app"
        shutil.copytree(APP, self.dir)
        port = _free_port()
        (self.dir / "bench.override.yml").write_text(
            "services:\n  web-fe:\n    stop_signal: SIGINT\n")
        compose_file = self.dir / "docker-compose.yml"
        text = compose_file.read_text()
        if "published: 5001" not in text:
            raise Skip("examples/counter-app/docker-compose.yml does not publish 5001")
        compose_file.write_text(text.replace("published: 5001", f"published: {port}"))
        for side in ("ours", "reference"):
            host = self.peers.env(side)["DOCKER_HOST"]
            r = subprocess.run([dockyard_cli(), "-H", host, "image", "bootstrap", "--only",
                                "python-flask", "redis", "-q"], capture_output=True,
                               text=True, timeout=1800, check=False)
            if r.returncode != 0:
                raise Skip(f"bootstrap into {side}: {r.stderr.strip()[-300:]}")
            argv, env = self._argv(side, "build")
            r = subprocess.run(argv, env=env, cwd=self.dir, capture_output=True, text=True,
                               timeout=1800, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"building web-fe on {side}: {r.stderr.strip()[-500:]}")

    def _argv(self, side: str, *args: str) -> tuple[list[str], dict[str, str]]:
        env = self.peers.env(side)
        files = [x for f in FILES for x in ("-f", str(self.dir / f))]
        if side == "ours":
            env = {**env, "DOCKYARD_HOST": env["DOCKER_HOST"]}
            return [dockyard_cli(), "compose", *files, "-p", PROJECT, *args], env
        return [DOCKER_COMPOSE, *files, "-p", PROJECT, *args], env

    def run(self, side: str) -> Metrics:
        argv, env = self._argv(side, "up", "-d")
        t0 = time.monotonic()
        up = run(argv, env=env, timeout=180, cwd=str(self.dir))
        t1 = time.monotonic()
        argv, env = self._argv(side, "down", "-v")
        down = run(argv, env=env, timeout=180, cwd=str(self.dir))
        t2 = time.monotonic()
        return {"up_s": t1 - t0, "down_s": t2 - t1,
                "peak_rss_mb": max(up.get("peak_rss_mb", 0), down.get("peak_rss_mb", 0))}

    def check(self, side: str) -> Metrics | None:
        super().check(side)
        nets = self.peers.docker_quiet(side, "network", "ls", "-q", "--filter",
                                       f"name={PROJECT}").stdout.split()
        vols = self.peers.docker_quiet(side, "volume", "ls", "-q", "--filter",
                                       f"name={PROJECT}").stdout.split()
        if nets or vols:
            raise RuntimeError(f"{self.name} left networks {nets} / volumes {vols}")
        return None


SCENARIO = ComposeUpDownCounter()
