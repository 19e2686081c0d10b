"""The local multirun path end to end: `train.py -m experiment=demo ...` runs a small grid with Hydra's
basic launcher, then `python -m ramda.tables` turns the run directories into the demo table. The expected
table cells are computed here from the runs' summary.json files with numpy (mean, std with ddof=1)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ramda import tables
from tests.helpers import markdown_row

ROOT = Path(__file__).resolve().parents[1]
OPTS = ["--table", "demo", "--print"]
TINY = [
    "trainer.epochs=1",
    "trainer.milestones=[]",
    "trainer.momentum_start_epoch=null",
    "task.max_train_batches=4",
    "task.max_eval_batches=2",
    "trainer.export=false",  # the export and its table columns are tests/test_export.py's
]


def expected_cell(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def test_local_multirun_then_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    sweep = runs / "demo" / "multirun" / "local"
    cmd = [sys.executable, "train.py", "-m", "experiment=demo", "optimizer=ramda,proxsgd", "seed=1,2", *TINY]
    proc = subprocess.run(
        [*cmd, f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = {}
    for opt in ("ramda", "proxsgd"):
        for seed in (1, 2):
            run = sweep / "digits" / opt / f"seed{seed}"
            s = json.loads((run / "summary.json").read_text())
            assert (s["status"], s["table"], s["optimizer"], s["seed"]) == ("completed", "demo", opt, seed)
            epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
            assert epochs == [1] and s["epochs_completed"] == 1
            summaries[opt, seed] = s
    out, figs = tmp_path / "tables", tmp_path / "figures"
    assert tables.main(["--runs", str(runs), "--out", str(out), "--figures", str(figs), *OPTS]) == 0
    md = capsys.readouterr().out
    # The demo has no paper numbers, so no "paper" columns.
    assert "| Optimizer | Accuracy (%) ↑ | Weighted group sparsity (%) | Time/epoch (s) | Runs |" in md
    for opt, name in (("ramda", "RAMDA"), ("proxsgd", "ProxSGD")):
        s1, s2 = summaries[opt, 1], summaries[opt, 2]
        row = markdown_row(md, name)
        assert row[0] == expected_cell([s1["metric_value"], s2["metric_value"]], 2)
        sparsity = [100 * s1["weighted_group_sparsity"], 100 * s2["weighted_group_sparsity"]]
        assert row[1] == expected_cell(sparsity, 1)
        assert row[2] == expected_cell([s1["time_per_epoch"], s2["time_per_epoch"]], 2)
        assert row[-1] == "2/2"
    # The demo grid's other optimizers have no runs here: listed and marked, not dropped.
    assert markdown_row(md, "RMDA")[-1] == markdown_row(md, "ProxGen")[-1] == "✗ 0/1 seeds, 1 missing"
    rows = {r["optimizer"]: r for r in csv.DictReader((out / "demo.csv").open())}
    acc = [summaries["ramda", s]["metric_value"] for s in (1, 2)]
    assert abs(float(rows["ramda"]["metric_mean"]) - np.mean(acc)) < 1e-9
    assert abs(float(rows["ramda"]["metric_std"]) - np.std(acc, ddof=1)) < 1e-9
    assert (figs / "demo.png").read_bytes()[:4] == b"\x89PNG"
