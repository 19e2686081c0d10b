"""From run directories (or a W&B project) to the paper's tables and per-epoch curves.

The package in five parts: :mod:`.records` (runs from run directories or W&B), :mod:`.aggregate` (rows of
mean ± std per table and task), :mod:`.render` (Markdown, LaTeX, CSV), :mod:`.plots` (curves) and :mod:`.cli`
(``python -m ramda.tables``, ``make tables``); :mod:`.frontier` draws the λ frontier.
"""

from .aggregate import Cell, Row, Table, build_table, table_names
from .cli import generate, generate_frontiers, main
from .plots import curves, plot
from .records import (
    STATUSES,
    SUMMARY_KEYS,
    RunRecord,
    TablesError,
    load_local,
    load_wandb,
    record_from_summary,
    record_from_wandb,
)
from .render import CSV_FIELDS, to_csv, to_latex, to_markdown

__all__ = [
    "CSV_FIELDS",
    "STATUSES",
    "SUMMARY_KEYS",
    "Cell",
    "Row",
    "RunRecord",
    "Table",
    "TablesError",
    "build_table",
    "curves",
    "generate",
    "generate_frontiers",
    "load_local",
    "load_wandb",
    "main",
    "plot",
    "record_from_summary",
    "record_from_wandb",
    "table_names",
    "to_csv",
    "to_latex",
    "to_markdown",
]
