"""The results as text: the console summary and bench/results.md."""

import datetime
import os
import platform
from pathlib import Path

from bench.runner import ScenarioResult, SideResult, Summary


def machine_info() -> dict[str, str]:
    info = {
        "nproc": str(os.cpu_count() or "?"),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    cpu = _cpu_model()
    if cpu:
        info["cpu"] = cpu
    mem = _mem_total()
    if mem:
        info["memory"] = mem
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_total() -> str | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ms(s: Summary | None) -> str:
    if s is None:
        return "—"
    return f"{s.median * 1000:.1f} ({s.min * 1000:.1f}–{s.max * 1000:.1f})"


def _num(s: Summary | None) -> str:
    if s is None:
        return "—"
    return f"{s.median:.1f} ({s.min:.1f}–{s.max:.1f})"


def _side_cell(side: SideResult | None) -> str:
    if side is None:
        return "—"
    if side.skipped:
        return "skipped"
    if side.error:
        return "**failed**"
    return _ms(side.time())


def _code(text: str) -> str:
    return text.replace("`", "'")


def _ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"


def table(results: list[ScenarioResult]) -> list[str]:
    lines = [
        ("| scenario | dockyard ms: median (min–max) | reference ms: median (min–max) "
         "| ratio (median) | target | status |"),
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {_side_cell(r.ours)} | {_side_cell(r.reference)} "
                     f"| {_ratio(r.ratio())} | {r.target or '—'} | {r.status} |")
    return lines


def details(r: ScenarioResult) -> list[str]:
    lines = [f"### {r.name}", ""]
    if r.description:
        lines += [r.description, ""]
    sides = [s for s in (r.ours, r.reference) if s is not None]
    if sides and not r.skipped:
        lines.append("sides: " + ", ".join(
            f"{s.label} ({len(s.seconds)} counted runs)" for s in sides)
            + f"; {r.warmup} warm-up round(s)")
        lines.append("")
    if r.skipped:
        lines += [f"Skipped: {r.skipped}", ""]
    if r.error:
        lines += [f"Error: `{_code(r.error)}`", ""]
    for s in sides:
        if s.error:
            lines += [f"{s.label} failed: `{_code(s.error)}`", ""]
        elif s.skipped and not r.skipped:
            lines += [f"{s.label} skipped: {s.skipped}", ""]
    names = r.metric_names()
    if names and r.ours and r.reference:
        lines += ["| metric | dockyard: median (min–max) | reference: median (min–max) | ratio |",
                  "|---|---|---|---|"]
        for name in names:
            lines.append(f"| {name} | {_num(r.ours.metric(name))} "
                         f"| {_num(r.reference.metric(name))} | {_ratio(r.ratio(name))} |")
        lines.append("")
    return lines


def markdown(results: list[ScenarioResult], *, runs: int, warmup: int, self_check: bool,
             chart: str | None, per_scenario: bool = False) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = "# Dockyard benchmarks" + (" — SELF-CHECK (reference vs reference)"
                                       if self_check else "")
    lines = [title, "", f"- date: {now}"]
    lines += [f"- {k}: {v}" for k, v in machine_info().items()]
    lines += [
        (f"- method: {warmup} warm-up round(s), then {runs} counted rounds"
         + (" unless a scenario sets its own (counts in Details)" if per_scenario else "")
         + "; each round runs dockyard then the reference (interleaved). Ratio = median "
         "dockyard / median reference; lower is better."),
        "",
        *table(results),
        "",
    ]
    if chart:
        lines += [f"![median ratio dockyard/reference]({chart})", ""]
    lines += ["## Details", ""]
    for r in results:
        lines += details(r)
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
