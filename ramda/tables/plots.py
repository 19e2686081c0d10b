"""Plots: per-epoch curves of a table's rows (mean ± std over seeds)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ramda.files import atomic_write

from .aggregate import Row, Table
from .experiments import display_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def curves(row: Row, key: str, scale: float = 1.0) -> tuple[list[float], list[float], list[float]]:
    """Per epoch over the row's completed runs: (epochs, mean, sample std) of ``history[key] · scale``;
    std is ``nan`` at epochs with a single value."""
    values: dict[float, list[float]] = {}
    for r in row.records:
        if r.status != "completed":
            continue
        for h in r.history:
            v = h.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                values.setdefault(h["epoch"], []).append(float(v) * scale)
    epochs = sorted(values)
    means = [statistics.fmean(values[e]) for e in epochs]
    stds = [statistics.stdev(values[e]) if len(values[e]) > 1 else math.nan for e in epochs]
    return epochs, means, stds


def plot(table: Table, path: Path) -> bool:
    """Two panels (task metric, weighted group sparsity in %) against epoch; one line per optimizer with a
    mean ± std band over its completed seeds. Returns False (and writes nothing) if no run has curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    exp = table.experiment
    panels = [
        (exp.metric, 1.0, exp.metric_label),
        ("weighted_group_sparsity", 100.0, "Weighted group sparsity (%)"),
    ]
    data = [[(row, curves(row, key, scale)) for row in table.rows] for key, scale, _ in panels]
    if not any(c[0] for panel in data for _, c in panel):
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, (_, _, label), panel in zip(axes, panels, data):
        for i, (row, (epochs, mean, std)) in enumerate(panel):
            if not epochs:
                continue
            color = f"C{i}"
            ax.plot(
                epochs, mean, color=color, label=f"{display_name(row.optimizer)} (n={len(row.completed)})"
            )
            lo = [m - s if not math.isnan(s) else m for m, s in zip(mean, std)]
            hi = [m + s if not math.isnan(s) else m for m, s in zip(mean, std)]
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{exp.title}: mean ± std over seeds")
    save_png(fig, path)
    return True


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG in one step (a reader never sees part of one), then close it."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), durable=False)
    finally:
        plt.close(fig)
