"""`compose up -d` then `compose down -v` of a small two-service busybox project (a
network, a named volume, depends_on), `dockyard compose` against `dockyard daemon` vs
Debian's docker-compose against a private dockerd, in the same run. Both halves are
timed separately as extra metrics (up_s, down_s)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from bench.proc import run
from bench.scenario import Metrics, Skip
from bench.scenarios._daemon_peers import IMAGE, DaemonScenario, dockyard_cli

DOCKER_COMPOSE = "/usr/bin/docker-compose"

PROJECT = f"""
services:
  db:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes:
      - data:/data
  web:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    depends_on: [db]
    environment:
      GREETING: hello
volumes:
  data: {{}}
"""


class ComposeUpDown(DaemonScenario):
    name = "compose_up_down"
    description = (
        "`compose up -d` + `compose down -v` of a two-service busybox project (default "
        "network, a named volume, depends_on): `dockyard compose` against `dockyard daemon` "
        "vs Debian's docker-compose 1.29 against a private dockerd 20.10."
    )
    target = "<= 0.25"
    target_ratio = 0.25
    reference_label = "docker-compose"
    runs = 5
    warmup = 1

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.dir = Path()

    def setup(self, workdir: Path) -> None:
        if not os.access(DOCKER_COMPOSE, os.X_OK):
            raise Skip(f"{DOCKER_COMPOSE} missing (apt-get install docker-compose)")
        super().setup(workdir)
        self.dir = workdir / "project"
        self.dir.mkdir()
        (self.dir / "compose.yaml").write_text(PROJECT)

    def _argv(self, side: str, project: str, *args: str) -> tuple[list[str], dict[str, str]]:
        env = self.peers.env(side)
        if side == "ours":
            env = {**env, "DOCKYARD_HOST": env["DOCKER_HOST"]}
            return [dockyard_cli(), "compose", "-p", project, *args], env
        return [DOCKER_COMPOSE, "-f", str(self.dir / "compose.yaml"), "-p", project,
                *args], env

    def run(self, side: str) -> Metrics:
        project = f"bench{os.getpid()}{side[0]}{next(self._ids)}"
        argv, env = self._argv(side, project, "up", "-d")
        t0 = time.monotonic()
        up = run(argv, env=env, timeout=120, cwd=str(self.dir))
        t1 = time.monotonic()
        argv, env = self._argv(side, project, "down", "-v", "-t", "1")
        down = run(argv, env=env, timeout=120, cwd=str(self.dir))
        t2 = time.monotonic()
        return {"up_s": t1 - t0, "down_s": t2 - t1,
                "peak_rss_mb": max(up.get("peak_rss_mb", 0), down.get("peak_rss_mb", 0))}

    def check(self, side: str) -> Metrics | None:
        super().check(side)
        nets = self.peers.docker_quiet(side, "network", "ls", "-q", "--filter",
                                       "name=bench").stdout.split()
        vols = self.peers.docker_quiet(side, "volume", "ls", "-q").stdout.split()
        if nets or vols:
            raise RuntimeError(f"{self.name} left networks {nets} / volumes {vols}")
        return None


SCENARIO = ComposeUpDown()
