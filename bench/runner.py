"""Running a scenario: warm-up, then counted runs with the two sides interleaved (A B A B ...)."""

import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import CommandFailed
from bench.scenario import Metrics, Scenario, Skip


@dataclass
class Summary:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> "Summary":
        return cls(statistics.median(values), min(values), max(values))


@dataclass
class SideResult:
    label: str
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None and bool(self.seconds)

    def time(self) -> Summary | None:
        return Summary.of(self.seconds) if self.ok else None

    def metric(self, name: str) -> Summary | None:
        values = self.extra.get(name)
        return Summary.of(values) if self.ok and values else None


@dataclass
class ScenarioResult:
    name: str
    description: str = ""
    target: str | None = None
    target_ratio: float | None = None
    ours: SideResult | None = None
    reference: SideResult | None = None
    skipped: str | None = None
    error: str | None = None

    def ratio(self, metric: str | None = None) -> float | None:
        """Median of ours / median of reference, for the time or for an extra metric."""
        if self.ours is None or self.reference is None:
            return None
        a = self.ours.time() if metric is None else self.ours.metric(metric)
        b = self.reference.time() if metric is None else self.reference.metric(metric)
        if a is None or b is None or b.median <= 0:
            return None
        return a.median / b.median

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error or not (self.ours and self.ours.ok) or not (self.reference
                                                                  and self.reference.ok):
            return "failed"
        ratio = self.ratio()
        if self.target_ratio is None or ratio is None:
            return "ok"
        return "met" if ratio <= self.target_ratio else "missed"

    def metric_names(self) -> list[str]:
        names: set[str] = set()
        for side in (self.ours, self.reference):
            if side is not None:
                names.update(side.extra)
        return sorted(names)


def run_scenario(scenario: Scenario, *, runs: int, warmup: int, self_check: bool = False,
                 log: Callable[[str], None] = print) -> ScenarioResult:
    """Set up, run warm-up + counted rounds (ours then reference each round), tear down."""
    result = ScenarioResult(scenario.name, scenario.description, scenario.target,
                            scenario.target_ratio)
    ours_fn, ours_label = scenario.ours, scenario.ours_label
    if self_check:
        ours_fn, ours_label = scenario.reference, f"{scenario.reference_label} (self-check)"
    sides = [(SideResult(ours_label), ours_fn),
             (SideResult(scenario.reference_label), scenario.reference)]
    result.ours, result.reference = sides[0][0], sides[1][0]
    workdir = Path(tempfile.mkdtemp(prefix=f"dockyard-bench-{scenario.name}-"))
    try:
        try:
            scenario.setup(workdir)
        except Skip as e:
            result.skipped = str(e) or "skipped by setup"
            log(f"  skipped: {result.skipped}")
            return result
        for i in range(warmup + runs):
            counted = i >= warmup
            for side, fn in sides:
                if side.error is None and side.skipped is None:
                    if scenario.settle:
                        time.sleep(scenario.settle)
                    _one_run(side, fn, counted)
            if all(s.error or s.skipped for s, _ in sides):
                break
            log(_progress(i, warmup, runs, sides))
        if result.reference.skipped:
            result.skipped = f"reference: {result.reference.skipped}"
    except Exception as e:  # noqa: BLE001 - report it, run the other scenarios
        result.error = f"setup failed: {type(e).__name__}: {e}"
        log(traceback.format_exc().rstrip())
    finally:
        try:
            scenario.teardown()
        except Exception as e:  # noqa: BLE001
            log(f"  warning: teardown failed: {type(e).__name__}: {e}")
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _one_run(side: SideResult, fn: Callable[[], Metrics | None], counted: bool) -> None:
    start = time.perf_counter()
    try:
        extra = fn()
    except Skip as e:
        side.skipped = str(e) or "skipped"
        return
    except Exception as e:  # noqa: BLE001 - a failing side is a result, not a crash
        side.error = str(e) if isinstance(e, CommandFailed) else f"{type(e).__name__}: {e}"
        return
    elapsed = time.perf_counter() - start
    if not counted:
        return
    side.seconds.append(elapsed)
    for name, value in (extra or {}).items():
        side.extra.setdefault(name, []).append(float(value))


def _progress(i: int, warmup: int, runs: int, sides: list) -> str:
    what = f"warm-up {i + 1}/{warmup}" if i < warmup else f"run {i - warmup + 1}/{runs}"
    parts = []
    for side, _ in sides:
        if side.error:
            parts.append(f"{side.label}: failed")
        elif side.skipped:
            parts.append(f"{side.label}: skipped")
        elif i >= warmup and side.seconds:
            parts.append(f"{side.label}: {side.seconds[-1] * 1000:.1f} ms")
        else:
            parts.append(f"{side.label}: ok")
    return f"  {what}  " + "  ".join(parts)
