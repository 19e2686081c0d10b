"""`python -m ramda.tables` on hand-written run directories: every expected number below is computed by hand
(sample std, ddof = 1) or by numpy on fresh random values, never by the code under test."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ramda import tables
from ramda.tables import experiments
from tests.helpers import markdown_rows, write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def vision_runs(tmp_path: Path) -> Path:
    """RAMDA 3/3, RMDA 2 completed + 1 failed, ProxSGD 1 completed + 1 running + 1 missing, ProxGen none,
    MSGD 3/3 (one seed run twice: a failed attempt and a completed rerun)."""
    runs = tmp_path / "runs"
    for seed, (acc, wgs, tpe) in enumerate(
        [(74.0, 0.30, 100.0), (74.2, 0.28, 110.0), (74.4, 0.32, 120.0)], 1
    ):
        write_run(runs, "vision", "ramda", seed, value=acc, wgs=wgs, gs=0.5, us=0.2, tpe=tpe)
    write_run(runs, "vision", "rmda", 1, value=73.0, wgs=0.25, tpe=50.0)
    write_run(runs, "vision", "rmda", 2, value=74.0, wgs=0.27, tpe=52.0)
    write_run(runs, "vision", "rmda", 3, status="failed", value=None, wgs=None, tpe=None, history=[])
    write_run(runs, "vision", "proxsgd", 1, value=73.5, wgs=0.175, tpe=40.0)
    write_run(runs, "vision", "proxsgd", 2, status="running", value=None)
    write_run(runs, "vision", "msgd", 1, value=76.0, wgs=0.0, tpe=30.0)
    write_run(runs, "vision", "msgd", 2, value=76.5, wgs=0.0, tpe=30.0)
    write_run(runs, "vision", "msgd", 3, value=77.0, wgs=0.0, tpe=33.0)
    write_run(runs, "vision", "msgd", 3, status="failed", value=None, name="seed3-first-attempt")
    return runs


def test_markdown_hand_computed(vision_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, figs = tmp_path / "tables", tmp_path / "figures"
    assert (
        tables.main(["--runs", str(vision_runs), "--out", str(out), "--figures", str(figs), "--print"]) == 0
    )
    printed = capsys.readouterr().out
    assert printed.strip() == (out / "vision.md").read_text().strip()
    rows = markdown_rows(printed)
    assert list(rows) == ["RAMDA", "RMDA", "ProxSGD", "ProxGen", "MSGD"]
    # RAMDA: acc 74.0/74.2/74.4 -> 74.2 ± sqrt((0.04+0+0.04)/2)=0.2; sparsity 30/28/32 % -> 30 ± 2;
    # time 100/110/120 -> 110 ± 10 (vision prints whole seconds).
    assert rows["RAMDA"] == [
        "74.20 ± 0.20",
        "74.53 ± 0.10",
        "30.00 ± 2.00",
        "29.19 ± 0.94",
        "110 ± 10",
        "—",
        "3/3",
    ]
    # RMDA: 73.0/74.0 -> 73.5 ± sqrt(0.5)=0.71; 25/27 % -> 26 ± 1.41; 50/52 s -> 51 ± 1.41 -> "51 ± 1".
    assert rows["RMDA"] == [
        "73.50 ± 0.71",
        "74.47 ± 0.08",
        "26.00 ± 1.41",
        "25.20 ± 1.69",
        "51 ± 1",
        "—",
        "⚠ 2/3 seeds, 1 failed",
    ]
    # ProxSGD: one completed seed: its value alone; the running one and the missing one are counted.
    assert rows["ProxSGD"] == [
        "73.50",
        "73.50 ± 0.20",
        "17.50",
        "17.54 ± 1.26",
        "40",
        "—",
        "⚠ 1/3 seeds, 1 running, 1 missing",
    ]
    assert rows["ProxGen"] == ["—", "74.17 ± 0.08", "—", "20.29 ± 0.22", "—", "—", "✗ 0/3 seeds, 3 missing"]
    # MSGD seed 3 has a failed first attempt and a completed rerun: the rerun counts: 76/76.5/77 -> 76.5 ± 0.5
    assert rows["MSGD"] == ["76.50 ± 0.50", "—", "0.00 ± 0.00", "—", "31 ± 2", "—", "3/3"]
    assert "ddof = 1" in printed
    png = (figs / "vision.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_csv_and_latex_hand_computed(vision_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    assert tables.main(["--runs", str(vision_runs), "--out", str(out), "--no-figures"]) == 0
    rows = {r["optimizer"]: r for r in csv.DictReader(io.StringIO((out / "vision.csv").read_text()))}
    assert list(rows) == ["ramda", "rmda", "proxsgd", "proxgen", "msgd"]
    r = rows["ramda"]
    assert float(r["metric_mean"]) == pytest.approx(74.2, abs=1e-12)
    assert float(r["metric_std"]) == pytest.approx(0.2, abs=1e-12)
    assert float(r["sparsity_pct_mean"]) == pytest.approx(30.0, abs=1e-12)
    assert float(r["sparsity_pct_std"]) == pytest.approx(2.0, abs=1e-12)
    assert (
        float(r["group_sparsity_pct_mean"]) == pytest.approx(50.0) and float(r["group_sparsity_pct_std"]) == 0
    )
    assert float(r["unstructured_sparsity_pct_mean"]) == pytest.approx(20.0)
    assert float(r["time_per_epoch_s_mean"]) == 110.0 and float(r["time_per_epoch_s_std"]) == 10.0
    assert (r["paper_metric_mean"], r["paper_metric_std"]) == ("74.53", "0.1")
    assert r["seeds_completed"] == "1;2;3" and r["seeds_failed"] == r["seeds_missing"] == ""
    r = rows["rmda"]
    assert float(r["metric_std"]) == pytest.approx(math.sqrt(0.5), abs=1e-12)
    assert (r["seeds_completed"], r["seeds_failed"]) == ("1;2", "3")
    r = rows["proxsgd"]
    assert r["metric_std"] == "" and (r["seeds_running"], r["seeds_missing"]) == ("2", "3")
    assert rows["proxgen"]["metric_mean"] == "" and rows["proxgen"]["seeds_missing"] == "1;2;3"
    tex = (out / "vision.tex").read_text()
    assert (
        r"RAMDA & 74.20 $\pm$ 0.20 & 74.53 $\pm$ 0.10 & 30.00 $\pm$ 2.00 & 29.19 $\pm$ 0.94 & 110 $\pm$ 10"
        in tex
    )
    assert (
        r"ProxGen & -- & 74.17 $\pm$ 0.08 & -- & 20.29 $\pm$ 0.22 & -- & -- & 0/3 seeds, 3 missing \\" in tex
    )
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 1 and r"(\%)" in tex


def test_random_values_against_numpy(tmp_path: Path) -> None:
    """Fresh random metric/sparsity/time values: the CSV equals numpy's mean and std(ddof=1)."""
    rng = random.Random()
    runs = tmp_path / "runs"
    expected = {}
    for opt in ("ramda", "proxgen"):
        n = rng.randint(2, 5)
        vals = np.array([[rng.uniform(20, 30), rng.uniform(0, 1), rng.uniform(1, 9)] for _ in range(n)])
        for seed, (ppl, wgs, tpe) in enumerate(vals, 1):
            write_run(
                runs,
                "language",
                opt,
                seed,
                task="wikitext103",
                metric="perplexity",
                value=ppl,
                wgs=wgs,
                tpe=tpe,
            )
        expected[opt] = (vals.mean(0), vals.std(0, ddof=1), n)
    out = tmp_path / "out"
    assert tables.main(["--runs", str(runs), "--out", str(out), "--no-figures", "--table", "language"]) == 0
    rows = {r["optimizer"]: r for r in csv.DictReader((out / "language.csv").open())}
    for opt, (mean, std, n) in expected.items():
        got = rows[opt]
        assert float(got["metric_mean"]) == pytest.approx(mean[0], rel=1e-12)
        assert float(got["metric_std"]) == pytest.approx(std[0], rel=1e-9)
        assert float(got["sparsity_pct_mean"]) == pytest.approx(100 * mean[1], rel=1e-12)
        assert float(got["sparsity_pct_std"]) == pytest.approx(100 * std[1], rel=1e-9)
        assert float(got["time_per_epoch_s_std"]) == pytest.approx(std[2], rel=1e-9)
        expected_seeds = ";".join(str(s) for s in range(1, n + 1))
        assert got["seeds_completed"] == expected_seeds
        assert got["seeds_missing"] == ";".join(str(s) for s in range(n + 1, 4))
    # RMDA and ProxSGD are in the language table's definition but have no runs: rows marked, not dropped.
    assert rows["rmda"]["seeds_missing"] == rows["proxsgd"]["seeds_missing"] == "1;2;3"
    md = (out / "language.md").read_text()
    assert "Perplexity ↓" in md


def test_row_order_and_unknown_table(tmp_path: Path) -> None:
    """Rows: RAMDA, RMDA, ProxSGD, ProxGen, the baselines, then other optimizers by name, whatever the
    directory order; a table with no definition still gets a table labelled from its runs."""
    runs = tmp_path / "runs"
    names = ["zeta", "adamw", "proxgen", "msgd", "ramda", "alpha", "rmda", "adam", "proxsgd"]
    random.shuffle(names)
    for opt in names:
        write_run(runs, "mytable", opt, 1, task="digits", metric="accuracy", value=90.0)
    out = tmp_path / "out"
    assert tables.main(["--runs", str(runs), "--out", str(out), "--no-figures"]) == 0
    rows = markdown_rows((out / "mytable.md").read_text())
    assert list(rows) == ["RAMDA", "RMDA", "ProxSGD", "ProxGen", "MSGD", "Adam", "AdamW", "alpha", "zeta"]
    assert all(r[-1] == "1/1" for r in rows.values())
    assert "| Optimizer | accuracy ↑ |" in (out / "mytable.md").read_text()


def test_curves_hand_computed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "demo", "ramda", 1, task="digits", metric="accuracy", history=[
        {"epoch": 1, "accuracy": 80.0, "weighted_group_sparsity": 0.1},
        {"epoch": 2, "accuracy": 90.0, "weighted_group_sparsity": 0.3},
    ])  # fmt: skip
    write_run(runs, "demo", "ramda", 2, task="digits", metric="accuracy", history=[
        {"epoch": 1, "accuracy": 84.0, "weighted_group_sparsity": 0.2},
        {"epoch": 2, "accuracy": 92.0, "weighted_group_sparsity": 0.5},
        {"epoch": 3, "accuracy": 93.0, "weighted_group_sparsity": 0.6},
    ])  # fmt: skip
    write_run(runs, "demo", "ramda", 3, status="failed", task="digits", metric="accuracy", value=None,
              history=[{"epoch": 1, "accuracy": 10.0, "weighted_group_sparsity": 0.9}])  # fmt: skip
    (table,) = tables.generate(tables.load_local(runs), None, None, "demo")
    md = tables.to_markdown(table)
    assert "| Optimizer | Accuracy (%) ↑ | Weighted group sparsity (%) | Time/epoch (s) | Runs |" in md
    assert (
        "(seeds 1, 2, 3)" in md
        and "| RAMDA | 70.00 ± 0.00 | 10.0 ± 0.0 | 10.00 ± 0.00 | ⚠ 2/3 seeds, 1 failed |" in md
    )
    row = table.rows[0]
    epochs, mean, std = tables.curves(row, "accuracy")
    assert epochs == [1, 2, 3] and mean == [82.0, 91.0, 93.0]
    assert std[0] == pytest.approx(math.sqrt(8.0)) and std[1] == pytest.approx(math.sqrt(2.0))
    assert math.isnan(std[2])
    epochs, mean, std = tables.curves(row, "weighted_group_sparsity", 100.0)
    assert mean == pytest.approx([15.0, 40.0, 60.0]) and std[1] == pytest.approx(math.sqrt(200.0))


def test_truncated_metrics_line_is_ignored(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    d = write_run(runs, "demo", "ramda", 1, task="digits", metric="accuracy", history=[
        {"epoch": 1, "accuracy": 80.0}, {"epoch": 2, "accuracy": 85.0},
    ])  # fmt: skip
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "accu')
    (rec,) = tables.load_local(runs)
    assert [h["epoch"] for h in rec.history] == [1, 2]
    (d / "metrics.jsonl").write_text('{"epoch": 1}\n{oops\n{"epoch": 2}\n')
    with pytest.raises(tables.TablesError, match=r"metrics.jsonl:2: not valid JSON"):
        tables.load_local(runs)
    warnings: list[str] = []
    (rec,) = tables.load_local(runs, warnings)
    assert [h["epoch"] for h in rec.history] == [1]
    assert warnings == [f"{d / 'metrics.jsonl'}:2: not valid JSON (Expecting property name enclosed in double "
                        "quotes); the epochs from there on are left out"]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("seed"), r"summary.json.*missing key\(s\) seed \(required: status, table"),
        (lambda s: s.update(status="done"), r"'status' is 'done'; valid: completed, failed, running"),
        (lambda s: s.update(seed="1"), r"'seed' must be an integer"),
        (lambda s: s.update(metric_value="74"), r"'metric_value' must be a number or null"),
        (lambda s: s.update(metric_value=None), r"a completed run needs a numeric 'metric_value'"),
    ],
)
def test_bad_summary_is_one_clear_line(
    tmp_path: Path, edit, message: str, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "vision", "ramda", 1)
    bad = write_run(runs, "vision", "ramda", 2) / "summary.json"
    summary = json.loads(bad.read_text())
    edit(summary)
    bad.write_text(json.dumps(summary))
    out = tmp_path / "out"
    argv = ["--runs", str(runs), "--out", str(out), "--figures", str(tmp_path / "figs")]
    assert tables.main([*argv, "--strict"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and str(bad) in lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() and not (tmp_path / "figs").exists()
    # Without --strict: the same line as a warning, and the table from the other run.
    assert tables.main([*argv, "--no-figures"]) == 0
    warning = capsys.readouterr().err.strip().splitlines()[0]
    assert warning.startswith(f"warning: {bad}: ") and warning.endswith("; run skipped")
    assert re.search(message, warning), warning
    assert markdown_rows((out / "vision.md").read_text())["RAMDA"][-1] == "⚠ 1/3 seeds, 2 missing"


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes().replace(b'"ramda"', b'"ram\xffda"')), "not valid UTF-8 (byte"),
        (lambda p: p.write_text(p.read_text().replace('"metric_value": 70.0', '"metric_value": NaN')),
         "not valid JSON (NaN is not a JSON number)"),
        (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
        (lambda p: p.write_text(p.read_text()[:40]), "not valid JSON (Unterminated string"),
        (lambda p: p.write_text(p.read_text().replace('"table": "vision"', '"table": "../../x"')),
         "'table' is '../../x'; it names files under --out, so it must be a plain name"),
    ],
)  # fmt: skip
def test_unreadable_summary_is_a_warning_naming_it(
    tmp_path: Path, corrupt, message: str, capsys: pytest.CaptureFixture
) -> None:
    """Invalid UTF-8, a NaN literal, a directory named summary.json, a truncated file, a table name that is a
    path: one warning naming the file, the rest of the table built; with --strict, one error line and
    nothing written. Nothing is ever written outside --out."""
    runs = tmp_path / "runs"
    write_run(runs, "vision", "ramda", 1, value=74.0)
    write_run(runs, "vision", "ramda", 3, value=75.0)
    bad = write_run(runs, "vision", "ramda", 2) / "summary.json"
    corrupt(bad)
    out = tmp_path / "a" / "b" / "out"
    argv = ["--runs", str(runs), "--out", str(out), "--no-figures"]
    assert tables.main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and message in err[0], err
    assert not out.exists()
    assert tables.main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"warning: {bad}: ") and message in err[0], err
    assert markdown_rows((out / "vision.md").read_text())["RAMDA"][:1] == ["74.50 ± 0.71"]
    assert sorted(p.name for p in out.iterdir()) == ["vision.csv", "vision.md", "vision.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "runs"]


def test_one_table_per_task_and_metric(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Runs of the default `adhoc` table from four tasks give four tables, each of one task and metric; runs of
    another task in a defined table get a table of their own, with a warning."""
    runs = tmp_path / "runs"
    write_run(runs, "adhoc", "ramda", 1, task="digits", metric="accuracy", value=98.0)
    write_run(runs, "adhoc", "rmda", 1, task="imagenet", metric="top1", value=75.0)
    write_run(runs, "adhoc", "ramda", 2, task="ljspeech", metric="val_loss", value=0.44)
    write_run(runs, "adhoc", "ramda", 3, task="wikitext103", metric="perplexity", value=25.0)
    write_run(runs, "vision", "ramda", 1, value=74.0)
    write_run(runs, "vision", "ramda", 2, task="digits", metric="accuracy", value=97.0)
    out = tmp_path / "out"
    assert tables.main(["--runs", str(runs), "--out", str(out), "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: table 'vision' defined for task 'imagenet': its 1 run(s) of task 'digits' (accuracy) are in "
        "a table of their own, 'vision-digits'" in err
    )
    names = sorted(p.stem for p in out.glob("*.md"))
    assert names == [
        "adhoc-digits",
        "adhoc-imagenet",
        "adhoc-ljspeech",
        "adhoc-wikitext103",
        "vision",
        "vision-digits",
    ]
    for name, header, value in [
        ("adhoc-digits", "accuracy ↑", "98.000"),
        ("adhoc-imagenet", "top1 ↑", "75.000"),
        ("adhoc-ljspeech", "val_loss ↓", "0.440"),
        ("adhoc-wikitext103", "perplexity ↓", "25.000"),
        ("vision-digits", "accuracy ↑", "97.000"),
    ]:
        md = (out / f"{name}.md").read_text()
        assert f"| Optimizer | {header} |" in md
        (row,) = markdown_rows(md).values()
        assert row[0] == value
    assert markdown_rows((out / "vision.md").read_text())["RAMDA"][0] == "74.00"
    assert (
        tables.main(["--runs", str(runs), "--out", str(tmp_path / "o2"), "--no-figures", "--table", "adhoc"])
        == 0
    )
    assert len(list((tmp_path / "o2").glob("*.md"))) == 4


def test_time_per_epoch_leaves_out_the_first_epoch(tmp_path: Path) -> None:
    """A run's time/epoch is the median of its epochs after the first (36 s of kernel compilation in epoch 1
    does not count); a one-epoch run keeps its only epoch; the caption says so."""
    runs = tmp_path / "runs"
    times = [36.0, 2.0, 3.0, 2.5, 9.0]
    history = [{"epoch": e, "accuracy": 90.0, "time_per_epoch": t} for e, t in enumerate(times, 1)]
    write_run(
        runs, "demo", "ramda", 1, task="digits", metric="accuracy", value=90.0, tpe=10.5, history=history
    )
    write_run(runs, "demo", "rmda", 1, task="digits", metric="accuracy", value=90.0, tpe=7.0,
              history=[{"epoch": 1, "accuracy": 90.0, "time_per_epoch": 7.0}])  # fmt: skip
    (table,) = tables.generate(tables.load_local(runs), None, None, "demo")
    by_opt = {r.optimizer: r for r in table.rows}
    assert by_opt["ramda"].time_per_epoch.mean == 2.75  # median of 2, 3, 2.5, 9
    assert by_opt["rmda"].time_per_epoch.mean == 7.0
    assert (
        "its first epoch (one-off warm-up: kernel compilation, torch.compile) left out"
        in tables.to_markdown(table)
    )


def test_command_line(vision_runs: Path, tmp_path: Path) -> None:
    """`python -m ramda.tables` as `make tables` calls it: exit 0, the Markdown on stdout, files written; and
    exit 2 with one line on stderr for a bad --runs."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ramda.tables", "--runs", str(vision_runs), "--out", str(out), "--print"]
    proc = subprocess.run([*cmd, "--no-figures"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (out / "vision.md").read_text().strip()
    assert (out / "vision.tex").exists() and (out / "vision.csv").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "ramda.tables", "--runs", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a directory" in proc.stderr


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    assert tables.main(["--runs", str(runs)]) == 2
    assert "not a directory" in capsys.readouterr().err
    runs.mkdir()
    assert tables.main(["--runs", str(runs), "--out", str(tmp_path / "o")]) == 2
    assert "no runs found" in capsys.readouterr().err
    write_run(runs, "vision", "ramda", 1)
    (runs / "vision" / "ramda" / "seed1" / "summary.json").write_text("{not json")
    assert tables.main(["--runs", str(runs), "--out", str(tmp_path / "o")]) == 2
    assert "summary.json: not valid JSON" in capsys.readouterr().err
    write_run(runs, "vision", "ramda", 2)
    (runs / "vision" / "ramda" / "seed1" / "summary.json").unlink()
    assert tables.main(["--runs", str(runs), "--out", str(tmp_path / "o"), "--table", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--table nope: no such table; defined or with runs: demo, language, speech, vision" in err
    assert tables.main(["--source", "wandb"]) == 2
    assert "--source wandb needs --wandb-project" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_defined_table_without_runs_lists_missing_rows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "vision", "ramda", 1)
    out = tmp_path / "out"
    assert tables.main(["--runs", str(runs), "--out", str(out), "--no-figures", "--table", "speech"]) == 0
    rows = markdown_rows((out / "speech.md").read_text())
    assert list(rows) == ["RAMDA", "RMDA", "ProxSGD", "ProxGen"]
    assert rows["RAMDA"] == ["—", "0.44 ± 0.01", "—", "52.9 ± 1.6", "—", "443 ± 1", "✗ 0/3 seeds, 3 missing"]
    assert not (out / "vision.md").exists()


def test_wandb_records_give_the_same_table(vision_runs: Path) -> None:
    """The W&B conversion (run config/summary/state/history as the public API returns them) yields the same
    table as the run directories. Fetching from wandb.Api() itself needs network and is not tested here."""
    local = tables.load_local(vision_runs)
    converted = []
    for rec in local:
        d = Path(rec.source)
        config = {"table": rec.table, "seed": rec.seed, "optimizer": {"name": rec.optimizer, "lr": 0.1},
                  "task": {"name": rec.task}}  # fmt: skip
        history = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        history += [{"_step": 5, "train_loss_step": 0.1}]
        state = {"completed": "finished", "failed": "crashed", "running": "running"}[rec.status]
        if rec.optimizer == "ramda":
            # A run that logged per-epoch rows only: everything is derived from config, state and history.
            summary = {}
            history = [
                {
                    "epoch": 1,
                    "top1": rec.metric_value,
                    "weighted_group_sparsity": rec.weighted_group_sparsity,
                    "group_sparsity": rec.group_sparsity,
                    "unstructured_sparsity": rec.unstructured_sparsity,
                    "time_per_epoch": rec.time_per_epoch,
                }
            ]
        else:
            summary = json.loads((d / "summary.json").read_text())
        converted.append(tables.record_from_wandb(config, summary, state, history, f"wandb:{d.name}"))
        converted[-1].order = rec.order
    (a,) = tables.generate(local, None, None, "vision")
    (b,) = tables.generate(converted, None, None, "vision")
    assert tables.to_markdown(a) == tables.to_markdown(b)
    assert tables.to_csv(a) == tables.to_csv(b)


def test_wandb_without_credentials_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """With no W&B login (as here: no network, no key) the real wandb.Api() refuses; one line, exit 2."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "out"
    assert tables.main(["--source", "wandb", "--wandb-project", "me/ramda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --wandb-project me/ramda: ") and "API key" in err[0]
    assert not out.exists()


def test_wandb_state_mapping() -> None:
    config = {"table": "demo", "seed": 2, "optimizer.name": "rmda", "task": {"name": "digits"}}
    rows = [
        {"epoch": 1, "accuracy": 50.0, "time_per_epoch": 2.0},
        {"epoch": 2, "accuracy": 60.0, "time_per_epoch": 4.0},
    ]
    rec = tables.record_from_wandb(config, {}, "finished", rows, "w")
    assert (rec.status, rec.optimizer, rec.seed, rec.metric, rec.metric_value) == (
        "completed",
        "rmda",
        2,
        "accuracy",
        60.0,
    )
    assert rec.time_per_epoch == 4.0 and rec.epochs_completed == 2  # epoch 1 (warm-up) left out
    assert tables.record_from_wandb(config, {}, "crashed", rows, "w").status == "failed"
    assert tables.record_from_wandb(config, {}, "running", rows, "w").status == "running"
    assert tables.record_from_wandb(config, {}, "finished", [], "w").status == "failed"


def test_experiment_definitions() -> None:
    assert experiments.names() == ["demo", "vision", "language", "speech"]
    for name in experiments.names():
        exp = experiments.get(name)
        assert exp.name == name and exp.seeds == ((1,) if name == "demo" else (1, 2, 3))
        assert list(exp.optimizers) == sorted(exp.optimizers, key=experiments.order_key)
        assert set(exp.paper) <= set(exp.optimizers)
        assert exp.overrides("ramda", 2) == [f"experiment={name}", "optimizer=ramda", "seed=2"]
    assert set(experiments.get("vision").paper) == {"ramda", "rmda", "proxsgd", "proxgen"}
    assert not experiments.get("demo").paper
    with pytest.raises(KeyError, match="unknown table 'x'; defined tables: demo, vision, language, speech"):
        experiments.get("x")
