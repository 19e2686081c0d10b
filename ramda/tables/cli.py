"""``make tables``: from run directories (or a W&B project) to the paper's tables and per-epoch curves.

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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import names as experiment_names

from .aggregate import Table, build_table, table_names
from .plots import plot
from .records import RunRecord, TablesError, load_local, load_wandb
from .render import to_csv, to_latex, to_markdown


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader never sees a half-written table."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
