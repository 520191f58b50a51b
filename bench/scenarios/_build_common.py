"""What the builder scenarios share: `DOCKER_BUILDKIT=0 docker build` (the legacy builder's
API) from the same official docker CLI against `dockyard daemon` and a private dockerd
20.10, with contexts made once in setup. Not a scenario (leading underscore)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.scenario import Metrics
from bench.scenarios._daemon_peers import IMAGE, DaemonScenario

RUN_STEPS = "FROM " + IMAGE + "\n" + "".join(f"RUN echo step {i} > /step{i}\n"
                                             for i in range(10))
COPY_FILES = 10_000
COPY_BYTES = 40 << 20


def run_context(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(RUN_STEPS)
    return root


def copy_context(root: Path) -> Path:
    """10,000 files of random bytes, 40 MB in all, in 100 directories."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(f"FROM {IMAGE}\nCOPY . /ctx/\n")
    size = COPY_BYTES // COPY_FILES
    for d in range(100):
        sub = root / f"d{d:02d}"
        sub.mkdir(exist_ok=True)
        for f in range(COPY_FILES // 100):
            (sub / f"f{f:03d}.bin").write_bytes(os.urandom(size))
    return root


class BuildScenario(DaemonScenario):
    runs = 5
    warmup = 1
    no_cache = False
    kind = "run"  # run | copy

    def setup(self, workdir: Path) -> None:
        super().setup(workdir)
        make = run_context if self.kind == "run" else copy_context
        self.context = make(workdir / f"ctx-{self.kind}")
        if not self.no_cache:  # fill both caches once, untimed
            for side in ("ours", "reference"):
                self.build(side)

    def build(self, side: str) -> Metrics:
        env_args = ["--no-cache"] if self.no_cache else []
        env = self.peers.env(side)
        env["DOCKER_BUILDKIT"] = "0"
        from bench.proc import run

        run([self.peers.cli, "build", "-q", *env_args, str(self.context)], env=env,
            timeout=600)
        return {}

    def run(self, side: str) -> Metrics:
        return self.build(side)
