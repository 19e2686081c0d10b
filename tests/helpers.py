"""Helpers shared by several test files (the shared fixtures are in conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The measured times of a run's records: the only figures that differ between two runs of one config.
TIME_KEYS = ("time_per_epoch", "time_total")


def train_cmd(run_dir: Path | str, *overrides: str) -> list[str]:
    """``python train.py`` with the run directory ``run_dir`` and ``overrides``."""
    return [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` less its :data:`TIME_KEYS`."""
    return {k: v for k, v in record.items() if k not in TIME_KEYS}


def imagenet_smoke(root: Path, init_cache: Path) -> list[str]:
    """``train.py`` overrides for the ImageNet task on the fixture at ``root``: one step of 8 images per epoch at
    32 px on one CPU thread in fp32, the initial weights cached in ``init_cache``."""
    return [
        f"task.data.root={root}",
        f"task.init_cache={init_cache}",
        "task.batch_size=8",
        "task.num_workers=1",
        "task.max_train_batches=1",
        "task.data.train_crop=32",
        "task.data.val_resize=40",
        "task.data.val_crop=32",
        "trainer.device=cpu",
        "trainer.precision=fp32",
        "trainer.threads=1",
    ]


def write_run(
    root: Path,
    table: str,
    optimizer: str,
    seed: int,
    *,
    status: str = "completed",
    task: str = "imagenet",
    metric: str = "top1",
    value: float | None = 70.0,
    wgs: float | None = 0.1,
    gs: float | None = 0.2,
    us: float | None = 0.05,
    tpe: float | None = 10.0,
    history: list[dict] | None = None,
    name: str | None = None,
    lam: float | None = None,
    slim: dict[str, Any] | None = None,
) -> Path:
    """A run directory exactly as the runner writes it (summary.json + metrics.jsonl): ``root/table/optimizer/
    [lam<λ>/]seed<seed>`` (or ``name``). ``lam``: a run of a λ sweep (group LASSO at λ); ``slim``: the export's
    figures (``trainer.export``). ``history`` defaults to one epoch with the metric and sparsity."""
    d = root / table / optimizer / ("" if lam is None else f"lam{lam}") / (name or f"seed{seed}")
    d.mkdir(parents=True)
    history = (
        history if history is not None else [{"epoch": 1, metric: value, "weighted_group_sparsity": wgs}]
    )
    (d / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    summary: dict[str, Any] = {
        "status": status,
        "table": table,
        "task": task,
        "optimizer": optimizer,
        "seed": seed,
        "metric": metric,
        "metric_value": value,
        "higher_is_better": metric not in ("perplexity", "val_loss"),
        "weighted_group_sparsity": wgs,
        "group_sparsity": gs,
        "unstructured_sparsity": us,
        "time_per_epoch": tpe,
        "epochs_completed": len(history),
        "final": {metric: value},
    }
    if lam is not None:
        summary |= {"regularizer": "group_lasso", "lam": lam}
    if slim is not None:
        summary["slim"] = slim
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def markdown_rows(markdown: str) -> dict[str, list[str]]:
    """The body rows of the Markdown table(s) in ``markdown``: the first cell → the other cells (stripped); of
    rows with the same first cell, the first."""
    rows: dict[str, list[str]] = {}
    for line in markdown.splitlines():
        line = line.strip()
        if line.startswith("| ") and not line.startswith("| Optimizer "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def markdown_row(markdown: str, name: str) -> list[str]:
    """The cells after ``name`` of its row in ``markdown``; an ``AssertionError`` showing ``markdown`` if none."""
    rows = markdown_rows(markdown)
    assert name in rows, f"no row {name} in\n{markdown}"
    return rows[name]
