"""From run directories (or a W&B project) to the paper's tables and per-epoch curves.

``python -m ramda.tables [--runs results/runs] [--out results/tables] [--figures results/figures]
[--table NAME] [--print] [--source local|wandb] [--wandb-project [ENTITY/]PROJECT]``

Every run is one ``summary.json`` (+ ``metrics.jsonl``) found anywhere under ``--runs``. Runs are grouped by
``table`` and ``optimizer``; each cell of a table is the mean ± sample standard deviation (ddof = 1,
s = √(Σ (xᵢ − x̄)² / (n − 1))) over the seeds whose run completed. Failed, still-running and missing seeds are
counted and shown in the row's ``Runs`` column, never averaged in. Per table it writes ``<table>.md``,
``<table>.tex``, ``<table>.csv`` and the figure ``<table>.png`` (task metric and weighted group sparsity
against epoch, one line per optimizer: the mean over seeds with a mean ± std band).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import Experiment, PaperRow, Stat, display_name, order_key
from experiments import get as get_experiment
from experiments import names as experiment_names

STATUSES = ("completed", "failed", "running")
SUMMARY_KEYS = ("status", "table", "task", "optimizer", "seed", "metric")


class TablesError(ValueError):
    """Bad input to ``make tables``: the message names the path or key and what would be valid."""


@dataclass
class RunRecord:
    """One run, whatever its source. Sparsities are fractions, ``time_per_epoch`` is seconds; ``history``
    holds the per-epoch records (``metrics.jsonl`` lines) in epoch order."""

    source: str
    status: str
    table: str
    task: str
    optimizer: str
    seed: int
    metric: str
    metric_value: float | None = None
    higher_is_better: bool | None = None
    weighted_group_sparsity: float | None = None
    group_sparsity: float | None = None
    unstructured_sparsity: float | None = None
    time_per_epoch: float | None = None
    epochs_completed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    order: float = 0.0


def _number(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TablesError(f"{where}: '{key}' must be a number or null, got {value!r}")
    return float(value)


def record_from_summary(
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    source: str,
    order: float = 0.0,
    where: str | None = None,
) -> RunRecord:
    """A :class:`RunRecord` from a ``summary.json`` dict; ``TablesError`` naming ``where`` (default:
    ``source``) and the key if a required key is missing or has the wrong type."""
    loc = where or source
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise TablesError(f"{loc}: missing key(s) {', '.join(missing)} (required: {', '.join(SUMMARY_KEYS)})")
    status = summary["status"]
    if status not in STATUSES:
        raise TablesError(f"{loc}: 'status' is {status!r}; valid: {', '.join(STATUSES)}")
    seed = summary["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TablesError(f"{loc}: 'seed' must be an integer, got {seed!r}")
    for key in ("table", "task", "optimizer", "metric"):
        if not isinstance(summary[key], str) or not summary[key]:
            raise TablesError(f"{loc}: '{key}' must be a non-empty string, got {summary[key]!r}")
    hib = summary.get("higher_is_better")
    if hib is not None and not isinstance(hib, bool):
        raise TablesError(f"{loc}: 'higher_is_better' must be true or false, got {hib!r}")
    epochs = summary.get("epochs_completed", len(history))
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise TablesError(f"{loc}: 'epochs_completed' must be an integer, got {epochs!r}")
    metric_value = _number(summary.get("metric_value"), loc, "metric_value")
    if status == "completed" and metric_value is None:
        raise TablesError(f"{loc}: a completed run needs a numeric 'metric_value'")
    return RunRecord(
        source=source,
        status=status,
        table=summary["table"],
        task=summary["task"],
        optimizer=summary["optimizer"],
        seed=seed,
        metric=summary["metric"],
        metric_value=metric_value,
        higher_is_better=hib,
        weighted_group_sparsity=_number(
            summary.get("weighted_group_sparsity"), loc, "weighted_group_sparsity"
        ),
        group_sparsity=_number(summary.get("group_sparsity"), loc, "group_sparsity"),
        unstructured_sparsity=_number(summary.get("unstructured_sparsity"), loc, "unstructured_sparsity"),
        time_per_epoch=_number(summary.get("time_per_epoch"), loc, "time_per_epoch"),
        epochs_completed=epochs,
        history=sorted((dict(h) for h in history if "epoch" in h), key=lambda h: h["epoch"]),
        order=order,
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path``; a truncated last line (a run killed mid-write) is ignored."""
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise TablesError(f"{path}:{i + 1}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise TablesError(f"{path}:{i + 1}: each line must be a JSON object")
        rows.append(row)
    return rows


def load_local(runs: Path) -> list[RunRecord]:
    """Every run under ``runs``: each directory holding a ``summary.json`` (searched recursively)."""
    if not runs.is_dir():
        raise TablesError(f"--runs {runs}: not a directory (expected the runs directory, e.g. results/runs)")
    records = []
    for path in sorted(runs.rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise TablesError(f"{path}: not valid JSON ({e.msg})") from None
        if not isinstance(summary, dict):
            raise TablesError(f"{path}: must hold a JSON object")
        history = _read_jsonl(path.parent / "metrics.jsonl")
        records.append(
            record_from_summary(summary, history, str(path.parent), path.stat().st_mtime, where=str(path))
        )
    return records


WANDB_STATES = {"finished": "completed", "running": "running", "crashed": "failed", "failed": "failed"}


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """``config['a']['b']`` for ``'a.b'``, also accepting W&B's flattened ``config['a.b']``."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def record_from_wandb(
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    state: str,
    history: Iterable[Mapping[str, Any]],
    source: str,
) -> RunRecord:
    """A :class:`RunRecord` from a W&B run's ``config`` (the resolved run config), ``summary``, ``state``
    and logged rows. Rows with an ``epoch`` key are the per-epoch records; step-level rows are ignored. The
    summary fields of ``summary.json`` are used where the run logged them, else derived: status from the run
    state (finished → completed, crashed/failed → failed, running → running), the metric's final value from
    the last epoch row, time/epoch as the mean of the rows' ``time_per_epoch``."""
    epochs = [dict(h) for h in history if h.get("epoch") is not None]
    epochs.sort(key=lambda h: h["epoch"])
    table = summary.get("table") or _get(config, "table")
    merged: dict[str, Any] = {
        "table": table,
        "task": summary.get("task") or _get(config, "task.name"),
        "optimizer": summary.get("optimizer") or _get(config, "optimizer.name"),
        "seed": summary.get("seed", _get(config, "seed")),
        "status": summary.get("status") or WANDB_STATES.get(state, "failed"),
    }
    metric = summary.get("metric")
    if metric is None and isinstance(table, str):
        try:
            metric = get_experiment(table).metric
        except KeyError:
            metric = None
    merged["metric"] = metric
    last = epochs[-1] if epochs else {}
    for key in ("weighted_group_sparsity", "group_sparsity", "unstructured_sparsity"):
        merged[key] = summary.get(key, last.get(key))
    merged["metric_value"] = summary.get("metric_value", last.get(metric) if metric else None)
    times = [h["time_per_epoch"] for h in epochs if isinstance(h.get("time_per_epoch"), int | float)]
    merged["time_per_epoch"] = summary.get("time_per_epoch", statistics.fmean(times) if times else None)
    merged["epochs_completed"] = summary.get("epochs_completed", len(epochs))
    if "higher_is_better" in summary:
        merged["higher_is_better"] = summary["higher_is_better"]
    if merged["status"] == "completed" and merged["metric_value"] is None:
        merged["status"] = "failed"
    return record_from_summary(merged, epochs, source)


def load_wandb(project: str, table: str | None = None) -> list[RunRecord]:
    """Every run of W&B project ``[entity/]project`` through the public API (needs network and a login),
    optionally only those whose config has ``table``."""
    import wandb

    filters = {"config.table": table} if table else None
    records = []
    try:
        api = wandb.Api()
        for i, run in enumerate(api.runs(project, filters=filters, order="+created_at")):  # oldest first
            history = [row for row in run.scan_history() if row.get("epoch") is not None]
            records.append(
                record_from_wandb(dict(run.config), dict(run.summary), run.state, history, run.url)
            )
            records[-1].order = float(i)
    except (wandb.errors.Error, ValueError, OSError) as err:
        if isinstance(err, TablesError):
            raise
        raise TablesError(f"--wandb-project {project}: {str(err).strip().splitlines()[0]}") from None
    return records


@dataclass(frozen=True)
class Cell:
    """Mean and sample std (ddof = 1; ``nan`` if n < 2) of the values of one quantity over completed seeds."""

    mean: float
    std: float
    n: int

    @staticmethod
    def of(values: Sequence[float | None]) -> Cell | None:
        xs = [v for v in values if v is not None]
        if not xs:
            return None
        return Cell(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else math.nan, len(xs))


@dataclass
class Row:
    """One optimizer of one table. The seed lists partition the expected ∪ observed seeds."""

    optimizer: str
    completed: list[int]
    failed: list[int]
    running: list[int]
    missing: list[int]
    metric: Cell | None
    sparsity: Cell | None
    group_sparsity: Cell | None
    unstructured_sparsity: Cell | None
    time_per_epoch: Cell | None
    paper: PaperRow | None
    records: list[RunRecord]

    @property
    def n_seeds(self) -> int:
        return len(self.completed) + len(self.failed) + len(self.running) + len(self.missing)

    def runs_note(self) -> str:
        """``3/3`` for a complete row, else e.g. ``2/3 seeds, 1 failed``."""
        done = f"{len(self.completed)}/{self.n_seeds}"
        extra = [
            f"{len(seeds)} {word}"
            for seeds, word in ((self.failed, "failed"), (self.running, "running"), (self.missing, "missing"))
            if seeds
        ]
        return done if not extra else f"{done} seeds, " + ", ".join(extra)


@dataclass
class Table:
    """One generated table: its definition, one row per optimizer, warnings, and the figure once drawn."""

    name: str
    experiment: Experiment
    rows: list[Row]
    warnings: list[str]
    figure: Path | None = None


def _adhoc_experiment(name: str, records: Sequence[RunRecord]) -> Experiment:
    """A definition for a table with no entry in ``experiments``: labels from the runs themselves."""
    metrics = sorted({r.metric for r in records})
    hib = next((r.higher_is_better for r in records if r.higher_is_better is not None), True)
    return Experiment(
        name=name,
        title=name,
        task=",".join(sorted({r.task for r in records})),
        optimizers=tuple(sorted({r.optimizer for r in records}, key=order_key)),
        seeds=(),
        metric=metrics[0] if metrics else "metric",
        metric_label=metrics[0] if len(metrics) == 1 else "metric",
        higher_is_better=bool(hib),
        metric_digits=3,
        sparsity_digits=1,
        time_digits=2,
    )


def _pick(runs: Sequence[RunRecord]) -> RunRecord:
    """Of several runs of one (table, optimizer, seed): a completed one over a running one over a failed one,
    then the newest."""
    rank = {"completed": 2, "running": 1, "failed": 0}
    return max(runs, key=lambda r: (rank[r.status], r.order))


def build_table(name: str, records: Sequence[RunRecord]) -> Table:
    """The table ``name`` from the runs of that table (others in ``records`` are ignored)."""
    mine = [r for r in records if r.table == name]
    try:
        exp = get_experiment(name)
    except KeyError:
        exp = _adhoc_experiment(name, mine)
    warnings = []
    tasks = sorted({r.task for r in mine})
    if tasks and tasks != [exp.task]:
        warnings.append(f"table '{name}' is defined for task '{exp.task}' but has runs of task(s) {tasks}")
    other_metric = sorted({r.metric for r in mine if r.metric != exp.metric})
    if other_metric:
        warnings.append(f"table '{name}' reports '{exp.metric}' but some runs report {other_metric}")
    optimizers = sorted(set(exp.optimizers) | {r.optimizer for r in mine}, key=order_key)
    rows = []
    for opt in optimizers:
        runs = [r for r in mine if r.optimizer == opt]
        by_seed: dict[int, list[RunRecord]] = {}
        for r in runs:
            by_seed.setdefault(r.seed, []).append(r)
        for seed, dup in sorted(by_seed.items()):
            if len(dup) > 1:
                chosen = _pick(dup)
                warnings.append(
                    f"{len(dup)} runs of {opt} seed {seed} in table '{name}'; using {chosen.source} "
                    f"({chosen.status})"
                )
        chosen_runs = {seed: _pick(dup) for seed, dup in by_seed.items()}
        seeds = sorted(set(exp.seeds) | set(chosen_runs))
        done = [chosen_runs[s] for s in seeds if s in chosen_runs and chosen_runs[s].status == "completed"]

        def pct(v: float | None) -> float | None:
            return None if v is None else 100.0 * v

        rows.append(
            Row(
                optimizer=opt,
                completed=[r.seed for r in done],
                failed=[s for s in seeds if s in chosen_runs and chosen_runs[s].status == "failed"],
                running=[s for s in seeds if s in chosen_runs and chosen_runs[s].status == "running"],
                missing=[s for s in seeds if s not in chosen_runs],
                metric=Cell.of([r.metric_value for r in done]),
                sparsity=Cell.of([pct(r.weighted_group_sparsity) for r in done]),
                group_sparsity=Cell.of([pct(r.group_sparsity) for r in done]),
                unstructured_sparsity=Cell.of([pct(r.unstructured_sparsity) for r in done]),
                time_per_epoch=Cell.of([r.time_per_epoch for r in done]),
                paper=exp.paper.get(opt),
                records=[chosen_runs[s] for s in seeds if s in chosen_runs],
            )
        )
    return Table(name=name, experiment=exp, rows=rows, warnings=warnings)


def _fmt(cell: Cell | Stat | None, digits: int, pm: str = " ± ") -> str:
    if cell is None:
        return "—"
    if isinstance(cell, Cell) and cell.n < 2:
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f}{pm}{cell.std:.{digits}f}"


def _columns(table: Table) -> list[tuple[str, str]]:
    """(header, key) pairs of the printed table; the ``paper`` columns only for a table with paper numbers."""
    exp = table.experiment
    arrow = "↑" if exp.higher_is_better else "↓"
    cols = [
        ("Optimizer", "optimizer"),
        (f"{exp.metric_label} {arrow}", "metric"),
        ("paper", "paper_metric"),
        ("Weighted group sparsity (%)", "sparsity"),
        ("paper", "paper_sparsity"),
        ("Time/epoch (s)", "time"),
        ("paper", "paper_time"),
        ("Runs", "runs"),
    ]
    return cols if exp.paper else [c for c in cols if not c[1].startswith("paper")]


def _cells(table: Table, row: Row, pm: str = " ± ", dash: str = "—") -> dict[str, str]:
    exp = table.experiment
    paper = row.paper

    def ours(cell: Cell | None, digits: int) -> str:
        return dash if cell is None else _fmt(cell, digits, pm)

    def theirs(stat: Stat | None, digits: int) -> str:
        return dash if stat is None else _fmt(stat, digits, pm)

    return {
        "optimizer": display_name(row.optimizer),
        "metric": ours(row.metric, exp.metric_digits),
        "paper_metric": theirs(paper.metric if paper else None, exp.metric_digits),
        "sparsity": ours(row.sparsity, exp.sparsity_digits),
        "paper_sparsity": theirs(paper.sparsity if paper else None, exp.sparsity_digits),
        "time": ours(row.time_per_epoch, exp.time_digits),
        "paper_time": theirs(paper.time_per_epoch if paper else None, exp.time_digits),
        "runs": row.runs_note(),
    }


def _footnote(table: Table) -> str:
    exp = table.experiment
    seeds = sorted({s for r in table.rows for s in r.completed + r.failed + r.running + r.missing})
    text = (
        f"Mean ± sample standard deviation (ddof = 1) over the seeds whose run completed "
        f"(seeds {', '.join(map(str, seeds))}); "
        f"a single completed seed shows its value alone. Runs: completed/expected seeds; failed, running and "
        f"missing seeds are not averaged. Sparsity: weighted group sparsity of the final model."
    )
    return text + (f" {exp.notes}" if exp.notes else "")


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown, with a title line and the footnote on how numbers are computed."""
    cols = _columns(table)
    lines = [f"### {table.experiment.title} (`{table.name}`)", ""]
    lines.append("| " + " | ".join(h for h, _ in cols) + " |")
    lines.append("|" + "|".join(":---" if k == "optimizer" else "---:" for _, k in cols) + "|")
    for row in table.rows:
        cells = _cells(table, row)
        if row.completed and len(row.completed) < row.n_seeds:
            cells["runs"] = f"⚠ {cells['runs']}"
        elif not row.completed:
            cells["runs"] = f"✗ {cells['runs']}"
        lines.append("| " + " | ".join(cells[k] for _, k in cols) + " |")
    lines += ["", _footnote(table), ""]
    return "\n".join(lines)


_LATEX_ESCAPES = {
    "%": r"\%",
    "&": r"\&",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """The table as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), ready for ``\\input``."""
    cols = _columns(table)
    lines = [
        f"% {table.experiment.title} ({table.name}); generated by python -m ramda.tables",
        f"% {_footnote(table)}",
        r"\begin{tabular}{l" + "r" * (len(cols) - 2) + "l}",
        r"\toprule",
        " & ".join(_tex(h) for h, _ in cols) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = _cells(table, row, pm=r" $\pm$ ", dash="--")
        lines.append(
            " & ".join(cells[k] if k not in ("optimizer", "runs") else _tex(cells[k]) for _, k in cols)
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


CSV_FIELDS = (
    "table",
    "optimizer",
    "seeds_completed",
    "seeds_failed",
    "seeds_running",
    "seeds_missing",
    "metric",
    "higher_is_better",
    "metric_mean",
    "metric_std",
    "paper_metric_mean",
    "paper_metric_std",
    "sparsity_pct_mean",
    "sparsity_pct_std",
    "paper_sparsity_pct_mean",
    "paper_sparsity_pct_std",
    "group_sparsity_pct_mean",
    "group_sparsity_pct_std",
    "unstructured_sparsity_pct_mean",
    "unstructured_sparsity_pct_std",
    "time_per_epoch_s_mean",
    "time_per_epoch_s_std",
    "paper_time_per_epoch_s_mean",
    "paper_time_per_epoch_s_std",
)


def to_csv(table: Table) -> str:
    """One line per optimizer, full precision; seeds as ``1;2;3``; empty where undefined (std with n < 2)."""

    def num(x: float | None) -> str:
        return "" if x is None or math.isnan(x) else repr(float(x))

    def pair(c: Cell | Stat | None) -> tuple[str, str]:
        return ("", "") if c is None else (num(c.mean), num(c.std))

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    exp = table.experiment
    for row in table.rows:
        p = row.paper
        writer.writerow(
            [
                table.name,
                row.optimizer,
                ";".join(map(str, row.completed)),
                ";".join(map(str, row.failed)),
                ";".join(map(str, row.running)),
                ";".join(map(str, row.missing)),
                exp.metric,
                str(exp.higher_is_better).lower(),
                *pair(row.metric),
                *pair(p.metric if p else None),
                *pair(row.sparsity),
                *pair(p.sparsity if p else None),
                *pair(row.group_sparsity),
                *pair(row.unstructured_sparsity),
                *pair(row.time_per_epoch),
                *pair(p.time_per_epoch if p else None),
            ]
        )
    return out.getvalue()


def curves(row: Row, key: str, scale: float = 1.0) -> tuple[list[float], list[float], list[float]]:
    """Per epoch over the row's completed runs: (epochs, mean, sample std) of ``history[key] · scale``;
    std is ``nan`` at epochs with a single value."""
    values: dict[float, list[float]] = {}
    for r in row.records:
        if r.status != "completed":
            continue
        for h in r.history:
            v = h.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
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
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader never sees a half-written table."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def table_names(records: Sequence[RunRecord]) -> list[str]:
    """Tables that have runs: the defined ones in their order, then the others by name."""
    found = {r.table for r in records}
    defined = [n for n in experiment_names() if n in found]
    return defined + sorted(found - set(defined))


def generate(
    records: Sequence[RunRecord],
    out: Path | None,
    figures: Path | None,
    table: str | None = None,
) -> list[Table]:
    """Build the tables (one, or every table with runs) and write them under ``out`` / ``figures``
    (``None``: don't write). ``TablesError`` before writing anything if there is nothing to tabulate."""
    if table is not None:
        if table not in set(experiment_names()) | {r.table for r in records}:
            known = sorted(set(experiment_names()) | {r.table for r in records})
            raise TablesError(f"--table {table}: no such table; defined or with runs: {', '.join(known)}")
        names = [table]
    else:
        names = table_names(records)
        if not names:
            raise TablesError(
                "no runs found (no summary.json); run a sweep first, e.g. python train.py -m experiment=demo"
            )
    tables = [build_table(n, records) for n in names]
    for t in tables:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            _write(out / f"{t.name}.md", to_markdown(t))
            _write(out / f"{t.name}.tex", to_latex(t))
            _write(out / f"{t.name}.csv", to_csv(t))
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
            t.figure = figures / f"{t.name}.png" if plot(t, figures / f"{t.name}.png") else None
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ramda.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=Path, default=Path("results/runs"), help="runs directory (local source)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/tables"), help="where .md/.tex/.csv go")
    parser.add_argument("--figures", type=Path, default=Path("results/figures"), help="where .png curves go")
    parser.add_argument("--table", help="only this table (default: every table that has runs)")
    parser.add_argument("--print", action="store_true", help="print the Markdown table(s) to stdout")
    parser.add_argument("--source", choices=("local", "wandb"), default="local")
    parser.add_argument("--wandb-project", help="[entity/]project to read with --source wandb")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG curves")
    args = parser.parse_args(argv)
    try:
        if args.source == "wandb":
            if not args.wandb_project:
                raise TablesError("--source wandb needs --wandb-project [ENTITY/]PROJECT")
            records = load_wandb(args.wandb_project, args.table)
        else:
            records = load_local(args.runs)
        tables = generate(records, args.out, None if args.no_figures else args.figures, args.table)
    except TablesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for t in tables:
        for w in t.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if args.print:
            print(to_markdown(t))
    for t in tables:
        figure = f", {t.figure}" if t.figure else ""
        print(f"wrote {args.out / t.name}.{{md,tex,csv}}{figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
