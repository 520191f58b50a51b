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
    warmup: int = 0  # warm-up rounds this scenario ran with

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
                            scenario.target_ratio, warmup=warmup)
    ours = _Side(SideResult(scenario.ours_label), scenario.prepare_ours, scenario.ours,
                 scenario.check_ours)
    reference = _Side(SideResult(scenario.reference_label), scenario.prepare_reference,
                      scenario.reference, scenario.check_reference)
    if self_check:
        ours = _Side(SideResult(f"{scenario.reference_label} (self-check)"),
                     reference.prepare, reference.run, reference.check)
    sides = [ours, reference]
    result.ours, result.reference = ours.result, reference.result
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
            for side in sides:
                if side.result.error is None and side.result.skipped is None:
                    if scenario.settle:
                        time.sleep(scenario.settle)
                    _one_run(side, counted)
            if all(s.result.error or s.result.skipped for s in sides):
                break
            log(_progress(i, warmup, runs, sides))
        if reference.result.skipped:
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


@dataclass
class _Side:
    result: SideResult
    prepare: Callable[[], None]
    run: Callable[[], Metrics | None]
    check: Callable[[], Metrics | None]


def _one_run(side: _Side, counted: bool) -> None:
    """prepare (untimed), run (timed), check (untimed); any of them raising fails the side."""
    result = side.result
    step = "prepare"
    try:
        side.prepare()
        step = ""
        start = time.perf_counter()
        extra = dict(side.run() or {})
        elapsed = time.perf_counter() - start
        step = "check"
        extra.update(side.check() or {})
    except Skip as e:
        result.skipped = str(e) or "skipped"
        return
    except Exception as e:  # noqa: BLE001 - a failing side is a result, not a crash
        text = str(e) if isinstance(e, CommandFailed) else f"{type(e).__name__}: {e}"
        result.error = f"{step}: {text}" if step else text
        return
    if not counted:
        return
    # a scenario that times the work itself (inside a container, say) reports it as
    # "seconds"; its start-up around that work is then not counted
    result.seconds.append(float(extra.pop("seconds", elapsed)))
    for name, value in extra.items():
        result.extra.setdefault(name, []).append(float(value))


def _progress(i: int, warmup: int, runs: int, sides: list[_Side]) -> str:
    what = f"warm-up {i + 1}/{warmup}" if i < warmup else f"run {i - warmup + 1}/{runs}"
    parts = []
    for side in sides:
        r = side.result
        if r.error:
            parts.append(f"{r.label}: failed")
        elif r.skipped:
            parts.append(f"{r.label}: skipped")
        elif i >= warmup and r.seconds:
            parts.append(f"{r.label}: {r.seconds[-1] * 1000:.1f} ms")
        else:
            parts.append(f"{r.label}: ok")
    return f"  {what}  " + "  ".join(parts)
