"""What a benchmark scenario is: the base class every scenario module instantiates."""

from collections.abc import Mapping
from pathlib import Path

# Extra metrics a side may return from one timed run, e.g. {"peak_rss_mb": 9.8}.
Metrics = Mapping[str, float]


class Skip(Exception):
    """Raised by `setup` (or by a side) when the scenario cannot run here; the message says why."""


class Scenario:
    """One benchmark: the same work done by Dockyard (`ours`) and by a reference implementation.

    Subclass it, set the class attributes, implement `ours` and `reference` (each call is one
    timed run), and expose an instance as `SCENARIO` in a module under bench/scenarios/.

    `ours` and `reference` may return extra metrics (a mapping of name to number, lower is
    better); the harness reports their median, min and max per side. They signal failure by
    raising: the error text is reported and that side gets no more runs. `setup` raises `Skip`
    when the reference (or anything else the scenario needs) is missing.
    """

    name: str = ""
    description: str = ""
    # Human text of the target, e.g. "<= 1.5 now, goal <= 1.0".
    target: str | None = None
    # Numeric threshold of the median time ratio ours/reference that counts as "met".
    target_ratio: float | None = None
    # Seconds to pause before every timed run, so that one run's after-effects in the
    # kernel (e.g. the cgroup lock's fast path switched off for a grace period after a
    # cgroup.procs write) do not speed up or slow down the next run of the other side.
    settle: float = 0.0
    ours_label: str = "dockyard"
    reference_label: str = "reference"
    # Defaults for this scenario when the command line gives no --runs / --warmup: heavy
    # scenarios (pushing and pulling hundreds of MB) keep `make bench` short with fewer.
    runs: int | None = None
    warmup: int | None = None

    def setup(self, workdir: Path) -> None:
        """Prepare inputs in `workdir` (a fresh temporary directory, removed afterwards)."""

    def teardown(self) -> None:
        """Undo what setup and the runs left outside `workdir` (containers, mounts, ...)."""

    # Untimed hooks around every run (warm-up and counted) of one side: `prepare_*` puts the
    # world in the state the timed run must start from (e.g. an empty registry), `check_*`
    # verifies what the run did (e.g. that all bytes were uploaded) and may return extra
    # metrics for that run. Raising in either fails that side, like raising in the run.
    def prepare_ours(self) -> None:
        """Untimed, before each `ours` run."""

    def prepare_reference(self) -> None:
        """Untimed, before each `reference` run."""

    def check_ours(self) -> Metrics | None:
        """Untimed, after each `ours` run."""
        return None

    def check_reference(self) -> Metrics | None:
        """Untimed, after each `reference` run."""
        return None

    def ours(self) -> Metrics | None:
        raise NotImplementedError

    def reference(self) -> Metrics | None:
        raise NotImplementedError
