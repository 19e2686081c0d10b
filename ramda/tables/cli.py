"""``make tables``: from run directories (or a W&B project) to the paper's tables and per-epoch curves.

``python -m ramda.tables [--runs results/runs] [--out results/tables] [--figures results/figures]
[--table NAME] [--frontier [TABLE]] [--print] [--strict] [--source local|wandb]
[--wandb-project [ENTITY/]PROJECT]``

Every run is one ``summary.json`` (+ ``metrics.jsonl``) found anywhere under ``--runs``; one that cannot be
read (not UTF-8, not JSON, ``NaN``, truncated, a directory) is a warning naming the file and is skipped
(``--strict``: an error). Runs are grouped by ``table``, task and metric (one table each: a table never mixes
tasks or metrics), then by ``optimizer``; each cell of a table is the mean ± sample standard deviation (ddof = 1,
s = √(Σ (xᵢ − x̄)² / (n − 1))) over the seeds whose run completed. Failed, still-running and missing seeds are
counted and shown in the row's ``Runs`` column, never averaged in. A run's time/epoch is the median of its
epochs after the first (the first holds one-off warm-up such as kernel compilation). Per table it writes ``<table>.md``,
``<table>.tex``, ``<table>.csv`` and the figure ``<table>.png`` (task metric and weighted group sparsity
against epoch, one line per optimizer: the mean over seeds with a mean ± std band). Frontier tables (named
``frontier`` or ``<table>_frontier``: runs at several λ) are drawn as the λ frontier instead
(:mod:`ramda.tables.frontier`): every one with runs, or only ``--frontier TABLE``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ramda.files import atomic_write

from . import frontier as fr
from .aggregate import Generated, Table, build_table, groups, table_names
from .experiments import names as experiment_names
from .plots import plot
from .records import RunRecord, TablesError, load_local, load_wandb
from .render import to_csv, to_latex, to_markdown


def _write(path: Path, text: str) -> None:
    """Write in one step: a reader never sees a half-written table."""
    atomic_write(path, lambda f: f.write(text.encode()), durable=False)


def _inside(out: Path, name: str, suffix: str) -> Path:
    """``out/<name><suffix>``, refusing any name that would land outside ``out``."""
    path = out / f"{name}{suffix}"
    if path.resolve().parent != out.resolve():
        raise TablesError(f"table name {name!r}: would write outside --out {out}")
    return path


#: The files of a table or frontier, by suffix: what renders it.
Formats = dict[str, Callable[[Any], str]]
TABLE_FORMATS: Formats = {".md": to_markdown, ".tex": to_latex, ".csv": to_csv}
FRONTIER_FORMATS: Formats = {".md": fr.to_markdown, ".csv": fr.to_csv}


def _write_outputs(
    item: Generated,
    formats: Formats,
    draw: Callable[[Any, Path], bool],
    out: Path | None,
    figures: Path | None,
) -> None:
    """Write a table or frontier ``item`` as ``<name><suffix>`` under ``out`` in each of ``formats`` and its
    figure ``<name>.png`` under ``figures`` with ``draw`` (``None``: not written); sets ``item.figure``."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for suffix, render in formats.items():
            _write(_inside(out, item.name, suffix), render(item))
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        png = _inside(figures, item.name, ".png")
        item.figure = png if draw(item, png) else None


def generate(
    records: Sequence[RunRecord],
    out: Path | None,
    figures: Path | None,
    table: str | None = None,
) -> list[Table]:
    """Build the tables (one, or every table with runs) and write them under ``out`` / ``figures``
    (``None``: don't write). ``table`` names a table or a ``table`` key of the runs (then every table of its
    runs: one per task, see :func:`~ramda.tables.aggregate.groups`). ``TablesError`` before writing anything
    if there is nothing to tabulate."""
    found = table_names(records)
    if table is not None:
        names = [n for n in found if n == table or groups(records)[n][0].table == table]
        if not names and table in set(experiment_names()):
            names = [table]
        if not names:
            known = sorted(set(experiment_names()) | set(found) | {r.table for r in records})
            raise TablesError(f"--table {table}: no such table; defined or with runs: {', '.join(known)}")
    else:
        names = [n for n in found if not fr.is_frontier(groups(records)[n][0].table)]
        if not names and not any(fr.is_frontier(r.table) for r in records):
            raise TablesError(
                "no runs found (no summary.json); run a sweep first, e.g. python train.py -m experiment=demo"
            )
    tables = [build_table(n, records) for n in names]
    for t in tables:
        _write_outputs(t, TABLE_FORMATS, plot, out, figures)
    return tables


def generate_frontiers(
    records: Sequence[RunRecord], out: Path | None, figures: Path | None, table: str | None = None
) -> list[fr.Frontier]:
    """The λ frontiers (``table``, or every frontier table with runs), written as ``<name>.md`` /
    ``<name>.csv`` under ``out`` and ``<name>.png`` under ``figures`` (``None``: don't write)."""
    if table is not None:
        if not fr.is_frontier(table):
            raise TablesError(
                f"--frontier {table}: not a frontier table (valid: frontier or <table>_frontier)"
            )
        if not any(r.table == table for r in records):
            raise TablesError(
                f"--frontier {table}: no runs of that table (run: python train.py -m experiment={table})"
            )
        names = [table]
    else:
        names = sorted({r.table for r in records if fr.is_frontier(r.table)})
    frontiers = [fr.build_frontier(n, records) for n in names]
    for f in frontiers:
        _write_outputs(f, FRONTIER_FORMATS, fr.plot, out, figures)
    return frontiers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ramda.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=Path, default=Path("results/runs"), help="runs directory (local source)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/tables"), help="where .md/.tex/.csv go")
    parser.add_argument("--figures", type=Path, default=Path("results/figures"), help="where .png curves go")
    parser.add_argument("--table", help="only this table (default: every table that has runs)")
    parser.add_argument(
        "--frontier",
        nargs="?",
        const="frontier",
        metavar="TABLE",
        help="only the λ frontier of TABLE (default: frontier): accuracy against FLOPs kept, PNG and table",
    )
    parser.add_argument("--print", action="store_true", help="print the Markdown table(s) to stdout")
    parser.add_argument("--source", choices=("local", "wandb"), default="local")
    parser.add_argument("--wandb-project", help="[entity/]project to read with --source wandb")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG curves")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a run directory that cannot be read is an error (default: a warning, and the run is skipped)",
    )
    args = parser.parse_args(argv)
    problems: list[str] | None = None if args.strict else []
    try:
        if args.source == "wandb":
            if not args.wandb_project:
                raise TablesError("--source wandb needs --wandb-project [ENTITY/]PROJECT")
            records = load_wandb(args.wandb_project, args.frontier or args.table, problems)
            if args.table and not records:  # a per-task table name (e.g. adhoc-digits) is no runs' `table`
                records = load_wandb(args.wandb_project, None, problems)
        else:
            records = load_local(args.runs, problems)
        for p in problems or []:
            print(f"warning: {p}", file=sys.stderr)
        figures = None if args.no_figures else args.figures
        tables: list[Table] = []
        if args.frontier is None and (args.table is None or not fr.is_frontier(args.table)):
            tables = generate(records, args.out, figures, args.table)
        frontiers = []
        if args.frontier is not None or args.table is None or fr.is_frontier(args.table):
            frontiers = generate_frontiers(records, args.out, figures, args.frontier or args.table)
    except TablesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = [(t, TABLE_FORMATS) for t in tables] + [(f, FRONTIER_FORMATS) for f in frontiers]
    for item, formats in shown:
        for w in item.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if args.print:
            print(formats[".md"](item))
    for item, formats in shown:
        figure = f", {item.figure}" if item.figure else ""
        suffixes = ",".join(suffix.lstrip(".") for suffix in formats)
        print(f"wrote {args.out / item.name}.{{{suffixes}}}{figure}", file=sys.stderr)
    return 0
