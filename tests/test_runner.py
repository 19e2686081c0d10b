"""``train.py`` end to end: real subprocesses, real Hydra composition, real checkpoints, signals and W&B offline.

Every run uses the digits task with a few batches per epoch so that the whole file stays well under a minute
of training on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import read_metrics, train_cmd, without_time

ROOT = Path(__file__).resolve().parents[1]
# A short RAMDA run whose momentum reaches 1 (restart after epoch 1), so the weights really become group-sparse.
SMALL = [
    "task=digits",
    "optimizer=ramda",
    "optimizer.lr=0.01",
    "optimizer.momentum=0.3",
    "regularizer.lam=0.01",
    "trainer.epochs=3",
    "trainer.milestones=[1]",
    "trainer.momentum_start_epoch=1",
    "task.max_train_batches=8",
    "trainer.threads=1",
    "trainer.progress=lines",
    "trainer.log_every_steps=1",
    "seed=5",
]
# One epoch: no milestone or momentum schedule start can fall inside it.
ONE_EPOCH = ["trainer.epochs=1", "trainer.milestones=[]", "trainer.momentum_start_epoch=null"]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc: W&B has no API key and must go offline by itself
    return env


def run_train(
    tmp_path: Path, run_dir: Path, *overrides: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_cmd(run_dir, *overrides),
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted SMALL run: the reference for determinism and resume."""
    tmp = tmp_path_factory.mktemp("baseline")
    run_dir = tmp / "run"
    proc = run_train(tmp, run_dir, *SMALL)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def naive_weighted_group_sparsity(state: dict[str, torch.Tensor]) -> float:
    """docs/math.md#sparsity-metrics from the saved weights: conv/linear weights (dim ≥ 2, not biases), groups along input axis 1."""
    zero = total = 0
    for name, w in state.items():
        if not name.endswith("weight") or w.dim() < 2:
            continue
        for c in range(w.shape[1]):
            group = w[:, c]
            total += group.numel()
            zero += group.numel() if bool((group == 0).all()) else 0
    return zero / total


def test_outputs_of_a_run(baseline: Path):
    files = {p.name for p in baseline.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    history = read_metrics(baseline)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    keys = {
        "epoch",
        "train_loss",
        "accuracy",
        "val_loss",
        "weighted_group_sparsity",
        "group_sparsity",
        "unstructured_sparsity",
        "lr",
        "momentum",
        "time_per_epoch",
        "solver_iters",
    }
    assert all(keys <= set(r) for r in history)
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.001, 0.001])  # milestone 1, gamma 0.1
    assert history[-1]["momentum"] == 1.0  # c = min(c0 sqrt(j), 1) after the last milestone
    assert all(r["solver_iters"] >= 0 for r in history)

    summary = json.loads((baseline / "summary.json").read_text())
    last = history[-1]
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert (summary["task"], summary["optimizer"], summary["seed"], summary["table"]) == (
        "digits",
        "ramda",
        5,
        "adhoc",
    )
    assert summary["metric"] == "accuracy" and summary["higher_is_better"] is True
    assert summary["metric_value"] == last["accuracy"]
    for key in ("weighted_group_sparsity", "group_sparsity", "unstructured_sparsity"):
        assert summary[key] == last[key]
    assert summary["time_per_epoch"] == pytest.approx(sum(r["time_per_epoch"] for r in history) / 3)

    state = torch.load(baseline / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and state["step_in_epoch"] == 0 and state["global_step"] == 24
    # The reported sparsity is that of the saved weights (independent recount), and it is real.
    assert summary["weighted_group_sparsity"] == pytest.approx(naive_weighted_group_sparsity(state["model"]))
    assert summary["weighted_group_sparsity"] > 0.05

    from omegaconf import OmegaConf

    config = OmegaConf.load(baseline / "config.yaml")
    assert config.optimizer.lr == 0.01 and config.regularizer.lam == 0.01 and config.trainer.epochs == 3


def test_same_seed_gives_identical_metrics(baseline: Path, tmp_path: Path):
    proc = run_train(tmp_path, tmp_path / "again", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert [without_time(r) for r in read_metrics(tmp_path / "again")] == [
        without_time(r) for r in read_metrics(baseline)
    ]
    other = run_train(tmp_path, tmp_path / "seed6", *SMALL, "seed=6", *ONE_EPOCH, "task.max_train_batches=2")
    assert other.returncode == 0, other.stderr
    assert read_metrics(tmp_path / "seed6")[0]["train_loss"] != read_metrics(baseline)[0]["train_loss"]


def interrupt(tmp_path: Path, run_dir: Path, sig: int, after: str, *extra: str) -> tuple[int, str]:
    """Start SMALL, send ``sig`` once a line starting with ``after`` is printed; (exit status, stderr)."""
    proc = subprocess.Popen(
        train_cmd(run_dir, *SMALL, *extra),
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(after):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def assert_same_run(resumed: Path, baseline: Path) -> None:
    assert [without_time(r) for r in read_metrics(resumed)] == [
        without_time(r) for r in read_metrics(baseline)
    ]
    a = json.loads((resumed / "summary.json").read_text())
    b = json.loads((baseline / "summary.json").read_text())
    assert without_time(a) == without_time(b)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(baseline: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    code, _ = interrupt(
        tmp_path, run_dir, signal.SIGKILL, "epoch 2 step 5/", "trainer.checkpoint_every_steps=3"
    )
    assert code == -signal.SIGKILL
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (
        saved["global_step"] < 24
        and json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    )
    proc = run_train(tmp_path, run_dir, *SMALL, "trainer.checkpoint_every_steps=3")
    assert proc.returncode == 0, proc.stderr
    assert f"step {saved['step_in_epoch']} (global step {saved['global_step']})" in proc.stdout
    assert_same_run(run_dir, baseline)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_a_checkpoint(baseline: Path, tmp_path: Path, sig: int):
    run_dir = tmp_path / "run"
    code, err = interrupt(tmp_path, run_dir, sig, "epoch 2 step 4/")
    assert code == 128 + sig
    assert f"stopped by signal {int(sig)}: checkpoint saved" in err
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1 and 4 <= saved["step_in_epoch"] < 8  # mid-epoch: saved on the signal
    if sig == signal.SIGTERM:
        proc = run_train(tmp_path, run_dir, *SMALL)
        assert proc.returncode == 0, proc.stderr
        assert_same_run(run_dir, baseline)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run_train(
        tmp_path,
        run_dir,
        "optimizer=msgd",
        "optimizer.lr=1e6",
        "trainer.epochs=2",
        "trainer.milestones=[]",
        "trainer.checkpoint_every_steps=1",
        "task.max_train_batches=8",
        "trainer.threads=1",
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    # A BatchNorm running variance overflows first: the weights are checked before every checkpoint.
    assert len(lines) == 1 and lines[0].startswith("error: model.") and "non-finite weight" in lines[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite weight" in summary["error"]
    failing_step = int(lines[0].split("(global step ")[1].split(")")[0])
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["global_step"] == failing_step - 1  # the last step whose weights are all finite
    assert all(bool(torch.isfinite(v).all()) for v in saved["model"].values() if v.is_floating_point())


def test_bad_input_is_one_line_and_leaves_runs_untouched(baseline: Path, tmp_path: Path):
    before = snapshot(baseline)
    cases = {
        "task=nope": "error: task: unknown value 'nope'; valid: digits",
        "optimizer.lr=-0.5": "error: optimizer.lr: -0.5 is out of range",
        f"task.data.root={tmp_path / 'missing'}": "error: task.data.root: directory",
    }
    for override, expected in cases.items():
        proc = run_train(tmp_path, baseline, *SMALL, override)
        assert proc.returncode == 2, (override, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), (override, proc.stderr)
    assert snapshot(baseline) == before


def test_corrupt_checkpoint_is_reported_and_kept(baseline: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = (baseline / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    before = snapshot(run_dir)
    proc = run_train(tmp_path, run_dir, *SMALL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {run_dir / 'checkpoint.pt'}: not a readable checkpoint"
    )
    assert snapshot(run_dir) == before


def test_resume_refuses_a_checkpoint_of_other_settings(baseline: Path, tmp_path: Path):
    before = snapshot(baseline)
    proc = run_train(tmp_path, baseline, *SMALL, "optimizer.lr=0.02")
    assert proc.returncode == 2
    assert "holds a run with different settings (optimizer.lr: 0.01 != 0.02)" in proc.stderr
    assert snapshot(baseline) == before


def wandb_records(run_file: Path) -> list:
    """Decode a W&B transaction log (.wandb): a 7-byte header, then 32 KiB blocks of records (checksum u32,
    length u16, type u8: 1 full, 2 first, 3 middle, 4 last) whose payloads are ``wandb_internal.Record``."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, payloads, partial = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind == 2:
            partial = chunk
        elif kind == 3:
            partial += chunk
        elif kind == 4:
            payloads.append(partial + chunk)
    records = []
    for payload in payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def test_wandb_logger_runs_offline_without_a_key(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run_train(
        tmp_path, run_dir, *SMALL, "logger=wandb", "trainer.epochs=2", "task.max_train_batches=3"
    )
    assert proc.returncode == 0, proc.stderr
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    config = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.HasField("run")
        for item in r.run.config.update
    }
    assert config["optimizer"]["lr"] == 0.01 and config["regularizer"]["lam"] == 0.01 and config["seed"] == 5
    history = []
    for r in records:
        if r.HasField("history"):
            history.append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            )
    metrics = read_metrics(run_dir)
    assert len(history) == len(metrics) == 2
    for logged, line in zip(history, metrics):
        assert logged["_step"] == line["epoch"]
        for key in ("accuracy", "train_loss", "weighted_group_sparsity", "lr"):
            assert math.isclose(logged[key], line[key], rel_tol=1e-12), key
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["wandb_id"] and run_file.name == f"run-{saved['wandb_id']}.wandb"


def test_demo_experiment_runs_the_four_structured_optimizers(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            "experiment=demo",
            f"hydra.sweep.dir={sweep}",
            *ONE_EPOCH,
            "task.max_train_batches=2",
            "trainer.threads=1",
            "trainer.progress=none",
        ],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    summaries = {
        p.parent.parent.name: json.loads(p.read_text()) for p in sweep.glob("digits/*/seed1/summary.json")
    }
    assert sorted(summaries) == ["proxgen", "proxsgd", "ramda", "rmda"]
    for name, s in summaries.items():
        assert (
            s["status"] == "completed" and s["table"] == "demo" and s["optimizer"] == name and s["seed"] == 1
        )
        assert s["lam"] > 0  # the digits presets were applied
