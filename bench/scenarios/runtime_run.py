"""`dockyard-runtime run` vs `runc run`: a busybox bundle running `true`, foreground."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.proc import CommandFailed, run
from bench.scenario import Metrics, Scenario, Skip

RUNC = "/usr/sbin/runc"


def dockyard_runtime() -> str:
    """The console script of this venv (next to the interpreter, not resolved through links)."""
    return str(Path(sys.executable).parent / "dockyard-runtime")


class RuntimeRun(Scenario):
    name = "runtime_run"
    description = (
        "Create, start, wait and delete one container: `run --bundle B ID` of a busybox bundle "
        "whose process is `true` (terminal false, read-only root), each runtime with its own "
        "--root state dir and a fresh container id per run. Reference: Debian's runc."
    )
    target = "<= 1.5 now, goal <= 1.0"
    target_ratio = 1.5
    # A write to cgroup.procs waits for an RCU grace period unless another one happened
    # within about the last grace period: back to back, each run would ride on the previous
    # run's (the other side's) write. Isolated runs measure one container start as it is.
    settle = 0.1
    ours_label = "dockyard-runtime"
    reference_label = "runc"

    def __init__(self) -> None:
        self.bundle = ""
        self.state_ours = ""
        self.state_ref = ""
        self.ours_bin = dockyard_runtime()
        self._ids = itertools.count(1)

    def setup(self, workdir: Path) -> None:
        if not os.path.exists(RUNC):
            raise Skip(f"runc not found at {RUNC} (apt-get install runc)")
        if os.geteuid() != 0:
            raise Skip("needs root (runc and dockyard-runtime run containers)")
        from dockyard.devtools.busybox import make_rootfs

        bundle = workdir / "bundle"
        bundle.mkdir()
        make_rootfs(str(bundle / "rootfs"))
        subprocess.run([RUNC, "spec", "--bundle", str(bundle)], check=True,
                       capture_output=True)
        config_path = bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["true"]
        config["root"] = {"path": "rootfs", "readonly": True}
        config_path.write_text(json.dumps(config, indent=2))
        self.bundle = str(bundle)
        self.state_ours = str(workdir / "state-dockyard")
        self.state_ref = str(workdir / "state-runc")
        os.makedirs(self.state_ours)
        os.makedirs(self.state_ref)

    def _run(self, binary: str, state: str, side: str) -> Metrics:
        cid = f"bench-{os.getpid()}-{side}-{next(self._ids)}"
        return run([binary, "--root", state, "run", "--bundle", self.bundle, cid], timeout=30)

    def ours(self) -> Metrics:
        if not os.access(self.ours_bin, os.X_OK):
            raise CommandFailed(f"{self.ours_bin} not found (bash scripts/setup.sh)")
        return self._run(self.ours_bin, self.state_ours, "ours")

    def reference(self) -> Metrics:
        return self._run(RUNC, self.state_ref, "ref")

    def teardown(self) -> None:
        """Force-delete whatever a failed or killed run left in either state dir."""
        for binary, state in ((self.ours_bin, self.state_ours), (RUNC, self.state_ref)):
            if not state or not os.path.isdir(state) or not os.listdir(state):
                continue
            for cid in os.listdir(state):
                try:
                    subprocess.run([binary, "--root", state, "delete", "--force", cid],
                                   check=False, capture_output=True, timeout=15)
                except (OSError, subprocess.SubprocessError):
                    pass




SCENARIO = RuntimeRun()
