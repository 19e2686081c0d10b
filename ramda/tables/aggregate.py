"""Aggregation: the runs of one table grouped by optimizer and seed into rows of mean ± sample std."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .experiments import Experiment, PaperRow, order_key
from .experiments import get as get_experiment
from .experiments import names as experiment_names
from .records import RunRecord


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
    flops_kept: Cell | None = None
    speedup: Cell | None = None

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


@dataclass(kw_only=True)
class Generated:
    """One table or frontier as the CLI writes it: its name, the definition whose labels it shows, warnings,
    and its figure once drawn."""

    name: str
    experiment: Experiment
    warnings: list[str]
    figure: Path | None = None


@dataclass(kw_only=True)
class Table(Generated):
    """One generated table: one row per optimizer."""

    rows: list[Row]


def _adhoc_experiment(name: str, records: Sequence[RunRecord]) -> Experiment:
    """A definition for a table with no entry in ``experiments``: labels from its runs (one task, one
    metric: see :func:`groups`)."""
    hib = next((r.higher_is_better for r in records if r.higher_is_better is not None), True)
    metric = records[0].metric if records else "metric"
    return Experiment(
        name=name,
        title=name,
        task=records[0].task if records else "",
        optimizers=tuple(sorted({r.optimizer for r in records}, key=order_key)),
        seeds=(),
        metric=metric,
        metric_label=metric,
        higher_is_better=bool(hib),
        metric_digits=3,
        sparsity_digits=1,
        time_digits=2,
    )


def _defined(name: str) -> Experiment | None:
    try:
        return get_experiment(name)
    except KeyError:
        return None


def groups(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """The runs of each table to build: one table per (``table``, task, metric), so that no table mixes
    tasks or metrics. A group keeps its ``table`` name when it is that table's defined task and metric, or
    when an undefined table has runs of one task and metric only; otherwise it is ``<table>-<task>`` (and
    ``-<metric>`` when that task's runs report several metrics). Defined tables first, in their order."""
    by_key: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        by_key.setdefault((r.table, r.task, r.metric), []).append(r)
    named: dict[str, list[RunRecord]] = {}
    for table, task, metric in sorted(by_key):
        exp = _defined(table)
        keys = [k for k in by_key if k[0] == table]
        if (exp is not None and (task, metric) == (exp.task, exp.metric)) or (exp is None and len(keys) == 1):
            name = table
        elif sum(k[1] == task for k in keys) == 1:
            name = f"{table}-{task}"
        else:
            name = f"{table}-{task}-{re.sub(r'[^A-Za-z0-9_.+-]', '_', metric)}"
        named.setdefault(name, []).extend(by_key[(table, task, metric)])
    order = {n: i for i, n in enumerate(experiment_names())}
    return dict(sorted(named.items(), key=lambda kv: (order.get(kv[1][0].table, len(order)), kv[0])))


def percent(v: float | None) -> float | None:
    """A fraction as a percentage (``None`` stays ``None``)."""
    return None if v is None else 100.0 * v


def _pick(runs: Sequence[RunRecord]) -> RunRecord:
    """Of several runs of one (table, optimizer, seed): a completed one over a running one over a failed one,
    then the newest."""
    rank = {"completed": 2, "running": 1, "failed": 0}
    return max(runs, key=lambda r: (rank[r.status], r.order))


def build_table(name: str, records: Sequence[RunRecord]) -> Table:
    """The table ``name`` (a name of :func:`groups`, or a defined table without runs) from ``records``."""
    mine = groups(records).get(name, [])
    exp = _defined(name) or _adhoc_experiment(name, mine)
    warnings = []
    if mine and mine[0].table != name:
        defined = _defined(mine[0].table)
        what = f"defined for task '{defined.task}'" if defined else "has runs of several tasks or metrics"
        warnings.append(
            f"table '{mine[0].table}' {what}: its {len(mine)} run(s) of task '{mine[0].task}' "
            f"({mine[0].metric}) are in a table of their own, '{name}'"
        )
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
        rows.append(
            Row(
                optimizer=opt,
                completed=[r.seed for r in done],
                failed=[s for s in seeds if s in chosen_runs and chosen_runs[s].status == "failed"],
                running=[s for s in seeds if s in chosen_runs and chosen_runs[s].status == "running"],
                missing=[s for s in seeds if s not in chosen_runs],
                metric=Cell.of([r.metric_value for r in done]),
                sparsity=Cell.of([percent(r.weighted_group_sparsity) for r in done]),
                group_sparsity=Cell.of([percent(r.group_sparsity) for r in done]),
                unstructured_sparsity=Cell.of([percent(r.unstructured_sparsity) for r in done]),
                time_per_epoch=Cell.of([r.time_per_epoch for r in done]),
                paper=exp.paper.get(opt),
                records=[chosen_runs[s] for s in seeds if s in chosen_runs],
                flops_kept=Cell.of([percent(r.flops_kept) for r in done]),
                speedup=Cell.of([r.speedup for r in done]),
            )
        )
    return Table(name=name, experiment=exp, rows=rows, warnings=warnings)


def table_names(records: Sequence[RunRecord]) -> list[str]:
    """Tables that have runs (see :func:`groups`): the defined ones in their order, then the others by name."""
    return list(groups(records))
