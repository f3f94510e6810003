"""``python -m qbreaker bench --plot PATH.png``: the comparison, drawn.

Needs matplotlib (``pip install "qbreaker[plot]"``); ``_bench`` checks for it
before the run starts. The Agg backend draws to a file with no display.
"""

from __future__ import annotations

from typing import Any

__all__ = ("plot",)

# One colour per family, the same in every panel.
COLOURS = {
    "floor": "#9e9e9e",
    "qbreaker-c": "#1b7837",
    "qbreaker-py": "#7fbf7b",
    "pybreaker": "#c2a5cf",
    "circuitbreaker": "#762a83",
    "purgatory": "#e08214",
    "aiobreaker": "#2166ac",
}


def plot(data: dict[str, Any], path: str) -> None:
    """Overhead per operation, per scenario (log scale), then threads and memory."""
    # Through importlib: matplotlib is optional, and mypy must not need it.
    import importlib

    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    scenarios = data["scenarios"]
    panels = len(scenarios) + 2
    cols = 2
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    meta = data["meta"]
    fig.suptitle(
        f"qbreaker {meta['qbreaker']} bench, {meta['date']}: {meta['cpu']}, "
        f"Python {meta['python']}. Overhead over the reference, ns per "
        f"operation (min of repeats); log scale",
        fontsize=10,
    )

    for ax, (group, scenario) in zip(flat, scenarios.items()):
        subjects = [
            (name, s)
            for name, s in scenario["subjects"].items()
            if s["family"] != "bare" and s["overhead"] is not None
        ]
        subjects.sort(key=lambda kv: kv[1]["overhead"])
        names = [name for name, _ in subjects]
        values = [max(s["overhead"], 0.1) for _, s in subjects]
        colours = [COLOURS.get(s["family"], "#444444") for _, s in subjects]
        ax.barh(names, values, color=colours)
        ax.set_xscale("log")
        # From 1 ns, so bar lengths compare across panels.
        ax.set_xlim(left=1)
        ax.set_title(f"{group}: {scenario['title']}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=7)
        for y, v in enumerate(values):
            ax.text(
                v, y, f" {v:,.0f}" if v >= 100 else f" {v:.1f}", va="center", fontsize=6
            )

    ax = flat[len(scenarios)]
    bars: list[tuple[str, float, str]] = []
    for name, t in data["threads"].items():
        bars.append((f"GIL: {name}", t["scaling"], t["family"]))
    for name, t in data["native_threads"].items():
        if t["threads"] > 1:
            bars.append((f"nogil: {name}", t["scaling"], "qbreaker-c"))
    ax.barh(
        [b[0] for b in bars],
        [b[1] for b in bars],
        color=[COLOURS.get(b[2], "#444444") for b in bars],
    )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_title(
        "threads: throughput with 2 threads / with 1 (GIL: Python threads)", fontsize=9
    )
    ax.tick_params(axis="y", labelsize=7)

    ax = flat[len(scenarios) + 1]
    mem = data["memory"]
    labels, values, colours = [], [], []
    for family, m in mem.items():
        labels.append(family)
        values.append(m["bytes_per_breaker"])
        colours.append(COLOURS.get(family, "#444444"))
        if "bytes_per_breaker_in_group" in m:
            labels.append(f"{family} in a BreakerGroup")
            values.append(m["bytes_per_breaker_in_group"])
            colours.append(COLOURS.get(family, "#444444"))
    ax.barh(labels, values, color=colours)
    ax.axvline(256, color="black", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlim(left=50)
    ax.set_title("memory: bytes per breaker (name excluded); target 256", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=6)

    for ax in flat[panels:]:
        ax.set_visible(False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
