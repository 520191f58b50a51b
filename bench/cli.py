"""`python -m bench [--runs N] [--warmup N] [--only NAME ...]`: run, report, always exit 0."""

import argparse
from pathlib import Path

from bench import report
from bench.discover import Broken, discover
from bench.runner import ScenarioResult, run_scenario

BENCH_DIR = Path(__file__).resolve().parent
RUNS = 10
WARMUP = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Dockyard vs reference implementations, side by side.")
    p.add_argument("--runs", type=_positive, help=f"counted runs per side (default {RUNS}, "
                   "or the scenario's own default)")
    p.add_argument("--warmup", type=_non_negative, help=f"warm-up runs per side, not counted "
                   f"(default {WARMUP}, or the scenario's own default)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--out", type=Path, help="directory for results.md and results.png "
                   "(default bench/, or bench/work/self-check/ with --self-check)")
    # Harness check: the reference on both sides, so ratios must come out near 1.0.
    p.add_argument("--self-check", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def _non_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = discover()
    if args.list:
        for s in found:
            text = f"BROKEN: {s.error}" if isinstance(s, Broken) else s.description
            print(f"{s.name:24} {text.split(': ', 1)[0] if len(text) > 70 else text}")
        return 0
    if args.only:
        unknown = sorted(set(args.only) - {s.name for s in found})
        if unknown:
            print(f"unknown scenario(s): {', '.join(unknown)}; "
                  f"known: {', '.join(s.name for s in found)}")
            return 2
        found = [s for s in found if s.name in args.only]
    out = args.out or (BENCH_DIR / "work" / "self-check" if args.self_check else BENCH_DIR)
    out.mkdir(parents=True, exist_ok=True)

    results: list[ScenarioResult] = []
    for s in found:
        print(f"== {s.name}")
        if isinstance(s, Broken):
            print(f"  {s.error}")
            results.append(ScenarioResult(s.name, error=s.error))
            continue
        runs = args.runs or s.runs or RUNS
        warmup = args.warmup if args.warmup is not None else (
            s.warmup if s.warmup is not None else WARMUP)
        results.append(run_scenario(s, runs=runs, warmup=warmup, self_check=args.self_check))

    chart: str | None = "results.png"
    title = "Dockyard / reference (median time ratio)"
    if args.self_check:
        title = "SELF-CHECK: reference / reference"
    try:
        from bench.chart import bar_chart

        bar_chart(results, out / "results.png", title=title)
    except Exception as e:  # noqa: BLE001 - a missing chart never fails the benchmarks
        print(f"warning: no chart ({type(e).__name__}: {e}); install the `bench` extra")
        chart = None
    text = report.markdown(results, runs=args.runs or RUNS,
                           warmup=args.warmup if args.warmup is not None else WARMUP,
                           per_scenario=args.runs is None or args.warmup is None,
                           self_check=args.self_check, chart=chart)
    report.write(out / "results.md", text)

    print()
    print("\n".join(report.table(results)))
    for r in results:
        for line in _problems(r):
            print(line)
    print(f"\nwrote {out / 'results.md'}" + (f" and {out / chart}" if chart else ""))
    return 0


def _problems(r: ScenarioResult) -> list[str]:
    lines = []
    if r.skipped:
        lines.append(f"{r.name}: skipped: {r.skipped}")
    if r.error:
        lines.append(f"{r.name}: {r.error}")
    for side in (r.ours, r.reference):
        if side is not None and side.error:
            lines.append(f"{r.name}: {side.label} failed: {side.error}")
    return lines
