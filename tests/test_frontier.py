"""Tables with the export figures: the "FLOPs kept" / "Speedup" columns, and the λ frontier (table and PNG)
from run directories in the format the trainer writes."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest
import yaml

from ramda.tables import load_local
from ramda.tables.cli import main
from ramda.tables.frontier import build_frontier
from tests.helpers import write_run

ROOT = Path(__file__).resolve().parents[1]


def write_frontier_run(
    root: Path,
    table: str,
    optimizer: str,
    seed: int,
    lam: float,
    accuracy: float,
    flops_kept: float | None,
    status: str = "completed",
) -> None:
    """A digits run at ``lam`` whose export kept ``flops_kept`` of the FLOPs (``None``: not exported)."""
    slim = None
    if flops_kept is not None:
        slim = {
            "params_kept": flops_kept,
            "flops_kept": flops_kept,
            "bytes_kept": flops_kept,
            "speedup": {"batch1": 1.1, "batch32": 1.0 / flops_kept},
            "device": "cpu",
            "channels_removed": 3,
            "max_abs_diff": 1e-7,
        }
    write_run(
        root, table, optimizer, seed, lam=lam, status=status, task="digits", metric="accuracy",
        value=accuracy if status == "completed" else None, wgs=1.0 - (flops_kept or 1.0), gs=0.1, us=0.1,
        tpe=0.5, slim=slim,
    )  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for opt, base in (("ramda", 97.0), ("proxsgd", 95.0)):
        for lam, kept in ((0.0, 1.0), (0.01, 0.5)):
            for seed in (1, 2):
                write_frontier_run(
                    root, "frontier", opt, seed, lam, base - 10 * lam * seed, kept - 0.01 * seed
                )
    write_frontier_run(root, "frontier", "ramda", 3, 0.01, 0.0, None, status="failed")
    write_frontier_run(root, "demo", "ramda", 1, 3e-3, 96.5, 0.6)
    write_frontier_run(root, "demo", "rmda", 1, 1e-2, 96.0, None)
    return root


def test_frontier_points_are_per_optimizer_and_lambda(runs: Path) -> None:
    f = build_frontier("frontier", load_local(runs))
    assert [(p.optimizer, p.lam) for p in f.points] == [
        ("ramda", 0.0),
        ("ramda", 0.01),
        ("proxsgd", 0.0),
        ("proxsgd", 0.01),
    ]
    p = f.points[1]
    assert p.completed == [1, 2] and p.other == [3]
    assert p.metric is not None and p.metric.mean == pytest.approx(statistics.fmean([96.9, 96.8]))
    assert p.metric.std == pytest.approx(statistics.stdev([96.9, 96.8]))
    assert p.flops_kept is not None and p.flops_kept.mean == pytest.approx(
        100 * statistics.fmean([0.49, 0.48])
    )
    assert p.speedup is not None and p.speedup.mean == pytest.approx(statistics.fmean([1 / 0.49, 1 / 0.48]))


def test_frontier_cli_writes_table_and_png(runs: Path, tmp_path: Path, capsys) -> None:
    out, figs = tmp_path / "tables", tmp_path / "figures"
    argv = ["--runs", str(runs), "--out", str(out), "--figures", str(figs), "--frontier", "--print"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "### λ frontier (`frontier`)" in printed and "| RAMDA | 0.01 | 96.85 ± 0.07 |" in printed
    assert "(not completed: 3)" in printed
    assert (figs / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO((out / "frontier.csv").read_text())))
    assert [(r["optimizer"], float(r["lam"])) for r in rows][:2] == [("ramda", 0.0), ("ramda", 0.01)]
    assert float(rows[1]["flops_kept_pct_mean"]) == pytest.approx(48.5)
    assert not (out / "demo.md").exists()  # --frontier draws only the frontier


def test_regular_tables_show_export_columns_and_leave_frontiers_to_their_own_view(
    runs: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "tables"
    assert main(["--runs", str(runs), "--out", str(out), "--no-figures", "--print"]) == 0
    printed = capsys.readouterr().out
    demo = (out / "demo.md").read_text()
    assert "| FLOPs kept (%) | Speedup (CPU) |" in demo
    assert "| RAMDA | 96.50 | 40.0 | 60.0 | 1.67× |" in demo
    assert "| RMDA | 96.00 | 0.0 | — | — |" in demo  # a run without an export
    assert "\\times" in (out / "demo.tex").read_text()
    assert (out / "frontier.md").exists() and "### λ frontier" in printed  # not averaged over λ as a table
    header = (out / "demo.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["flops_kept_pct_mean", "flops_kept_pct_std", "cpu_speedup_mean", "cpu_speedup_std"]


def test_tables_without_exports_keep_their_columns(tmp_path: Path) -> None:
    write_frontier_run(tmp_path / "runs", "demo", "ramda", 1, 3e-3, 96.5, None)
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t"), "--no-figures"]) == 0
    assert "FLOPs kept" not in (tmp_path / "t" / "demo.md").read_text()


def test_frontier_bad_table(runs: Path, tmp_path: Path, capsys) -> None:
    assert main(["--runs", str(runs), "--out", str(tmp_path / "t"), "--frontier", "demo"]) == 2
    assert "--frontier demo: not a frontier table" in capsys.readouterr().err
    assert main(["--runs", str(runs), "--out", str(tmp_path / "t"), "--frontier", "vision_frontier"]) == 2
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("name", ["frontier", "vision_frontier", "language_frontier", "speech_frontier"])
def test_frontier_experiments_sweep_every_structured_optimizer(name: str) -> None:
    conf = yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())
    params = conf["hydra"]["sweeper"]["params"]
    assert conf["table"] == name and conf["trainer"]["export"] is True
    assert str(params["optimizer"]).split(",") == ["ramda", "rmda", "proxsgd", "proxgen"]
    assert str(params["seed"]).split(",") == ["1", "2", "3"]
    if name == "frontier":
        lams = [float(v) for v in str(params["regularizer.lam"]).split(",")]
        # none to heavy (measured: docs/export.md)
        assert len(lams) >= 6 and lams[0] == 0.0 and max(lams) >= 2e-2
    else:
        scales = [float(v) for v in str(params["regularizer.scale"]).split(",")]
        assert scales == [0.25, 0.5, 1.0, 2.0, 4.0]  # ×¼ … ×4 around the paper's λ
