"""The λ frontier: the task metric against the FLOPs the slim model keeps, one line per optimizer.

A frontier table (its name ends in ``frontier``: ``experiment=frontier`` on digits, ``<table>_frontier`` for the
paper tasks) holds runs of each optimizer at several λ. Each point is one (optimizer, λ): the mean ± sample std
(ddof = 1) over its completed seeds of the metric, the weighted group sparsity, the FLOPs kept (from
``trainer.export``'s ``slim`` figures) and the CPU speedup. ``python -m ramda.tables --frontier [TABLE]`` writes
``<table>.md`` / ``<table>.csv`` and the picture ``<table>.png`` (error bars: the seed spread on both axes).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .aggregate import Cell, Generated, _adhoc_experiment, _defined, _pick, percent
from .experiments import display_name, order_key
from .plots import save_png
from .records import RunRecord


def is_frontier(name: str) -> bool:
    """Frontier tables are named ``frontier`` or ``<table>_frontier``."""
    return name == "frontier" or name.endswith("_frontier")


@dataclass
class Point:
    """One optimizer at one λ over its seeds (percentages for sparsity and FLOPs kept)."""

    optimizer: str
    lam: float
    completed: list[int]
    other: list[int]
    metric: Cell | None
    sparsity: Cell | None
    flops_kept: Cell | None
    speedup: Cell | None


@dataclass(kw_only=True)
class Frontier(Generated):
    """One generated frontier: a point per (optimizer, λ)."""

    points: list[Point]


def build_frontier(name: str, records: Sequence[RunRecord]) -> Frontier:
    """The frontier of table ``name`` from ``records`` (runs of other tables are ignored)."""
    mine = [r for r in records if r.table == name]
    warnings = []
    base = "demo" if name == "frontier" else name.removesuffix("_frontier")  # digits: the demo's labels
    exp = _defined(base) or _adhoc_experiment(name, mine)
    no_lam = [r.source for r in mine if r.lam is None]
    if no_lam:
        warnings.append(f"{len(no_lam)} run(s) of table '{name}' have no 'lam' in summary.json; left out")
    cells: dict[tuple[str, float], dict[int, list[RunRecord]]] = {}
    for r in mine:
        if r.lam is not None:
            cells.setdefault((r.optimizer, r.lam), {}).setdefault(r.seed, []).append(r)
    points = []
    for (opt, lam), by_seed in sorted(cells.items(), key=lambda kv: (order_key(kv[0][0]), kv[0][1])):
        chosen = {seed: _pick(runs) for seed, runs in by_seed.items()}
        done = [r for _, r in sorted(chosen.items()) if r.status == "completed"]
        no_export = [r.seed for r in done if r.flops_kept is None]
        if no_export:
            warnings.append(f"{opt} λ={lam:g}: seed(s) {no_export} were not exported (trainer.export=true)")
        points.append(
            Point(
                optimizer=opt,
                lam=lam,
                completed=[r.seed for r in done],
                other=sorted(s for s, r in chosen.items() if r.status != "completed"),
                metric=Cell.of([r.metric_value for r in done]),
                sparsity=Cell.of([percent(r.weighted_group_sparsity) for r in done]),
                flops_kept=Cell.of([percent(r.flops_kept) for r in done]),
                speedup=Cell.of([r.speedup for r in done]),
            )
        )
    return Frontier(name=name, experiment=exp, points=points, warnings=warnings)


def _fmt(cell: Cell | None, digits: int, suffix: str = "") -> str:
    if cell is None:
        return "—"
    if cell.n < 2:
        return f"{cell.mean:.{digits}f}{suffix}"
    return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}{suffix}"


def to_markdown(f: Frontier) -> str:
    """One row per (optimizer, λ), in optimizer order then increasing λ."""
    exp = f.experiment
    arrow = "↑" if exp.higher_is_better else "↓"
    lines = [
        f"### λ frontier (`{f.name}`)",
        "",
        f"| Optimizer | λ | {exp.metric_label} {arrow} | Weighted group sparsity (%) | FLOPs kept (%) | "
        "Speedup (CPU) | Seeds |",
        "|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in f.points:
        seeds = ",".join(map(str, p.completed)) or "—"
        if p.other:
            seeds += f" (not completed: {','.join(map(str, p.other))})"
        lines.append(
            f"| {display_name(p.optimizer)} | {p.lam:g} | {_fmt(p.metric, 2)} | {_fmt(p.sparsity, 1)} | "
            f"{_fmt(p.flops_kept, 1)} | {_fmt(p.speedup, 2, '×')} | {seeds} |"
        )
    lines += [
        "",
        "Mean ± sample standard deviation (ddof = 1) over the completed seeds of each (optimizer, λ). FLOPs kept "
        "and speedup: the slim model (trainer.export; the same function with every channel that all its readers "
        "ignore removed) against the trained one, FLOPs of one forward pass and median CPU latency at the "
        "largest batch timed.",
        "",
    ]
    return "\n".join(lines)


CSV_FIELDS = (
    "table",
    "optimizer",
    "lam",
    "seeds_completed",
    "metric",
    "metric_mean",
    "metric_std",
    "sparsity_pct_mean",
    "sparsity_pct_std",
    "flops_kept_pct_mean",
    "flops_kept_pct_std",
    "cpu_speedup_mean",
    "cpu_speedup_std",
)


def to_csv(f: Frontier) -> str:
    def pair(c: Cell | None) -> list[str]:
        if c is None:
            return ["", ""]
        return [repr(c.mean), "" if math.isnan(c.std) else repr(c.std)]

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for p in f.points:
        writer.writerow(
            [
                f.name,
                p.optimizer,
                repr(p.lam),
                ";".join(map(str, p.completed)),
                f.experiment.metric,
                *pair(p.metric),
                *pair(p.sparsity),
                *pair(p.flops_kept),
                *pair(p.speedup),
            ]
        )
    return out.getvalue()


def plot(f: Frontier, path: Path) -> bool:
    """The metric against FLOPs kept (%), one line per optimizer through its λ values (labelled), error bars the
    seed spread (sample std) on both axes. False (nothing written) when no point has both numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[Point]] = {}
    for p in f.points:
        if p.metric is not None and p.flops_kept is not None:
            lines.setdefault(p.optimizer, []).append(p)
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)

    def err(c: Cell) -> float:
        return 0.0 if math.isnan(c.std) else c.std

    for i, (opt, pts) in enumerate(sorted(lines.items(), key=lambda kv: order_key(kv[0]))):
        pts = sorted(pts, key=lambda p: p.lam)
        xs = [p.flops_kept.mean for p in pts]  # type: ignore[union-attr]
        ys = [p.metric.mean for p in pts]  # type: ignore[union-attr]
        ax.errorbar(
            xs,
            ys,
            xerr=[err(p.flops_kept) for p in pts],  # type: ignore[arg-type]
            yerr=[err(p.metric) for p in pts],  # type: ignore[arg-type]
            color=f"C{i}",
            marker="o",
            markersize=4,
            capsize=3,
            linewidth=1.2,
            label=display_name(opt),
        )
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(
                f"{p.lam:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=f"C{i}"
            )
    ax.set_xlabel("FLOPs kept by the slim model (%)")
    ax.set_ylabel(f.experiment.metric_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"λ frontier ({f.name}): mean ± std over seeds; labels: λ", fontsize=10)
    save_png(fig, path)
    return True
