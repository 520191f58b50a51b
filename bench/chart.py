"""The PNG bar chart of the median ratios (matplotlib, Agg backend)."""

import os
from pathlib import Path

from bench.runner import ScenarioResult


def bar_chart(results: list[ScenarioResult], path: Path, *, title: str) -> None:
    """Draw one bar per scenario; failed/skipped scenarios get a labelled empty slot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    ratios = [r.ratio() for r in results]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(results) + 2), 4.0))
    heights = [x if x is not None else 0.0 for x in ratios]
    colors = []
    for r, x in zip(results, ratios):
        if x is None:
            colors.append("lightgray")
        elif r.target_ratio is not None and x > r.target_ratio:
            colors.append("tab:red")
        else:
            colors.append("tab:green")
    positions = range(len(results))
    ax.bar(positions, heights, color=colors, width=0.6)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="parity (1.0)")
    top = max([1.2, *heights])
    for i, (r, x) in enumerate(zip(results, ratios)):
        if r.target_ratio is not None:
            ax.hlines(r.target_ratio, i - 0.35, i + 0.35, colors="tab:orange", linewidth=2)
            top = max(top, r.target_ratio * 1.1)
        label = f"{x:.2f}" if x is not None else r.status
        ax.text(i, (x or 0.0) + 0.02 * top, label, ha="center", va="bottom", fontsize=9)
    if any(r.target_ratio is not None for r in results):
        ax.plot([], [], color="tab:orange", linewidth=2, label="target")
    ax.set_xticks(list(positions), names, rotation=20 if len(names) > 4 else 0, ha="center")
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("median time ratio dockyard / reference")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
