"""End to end through ``train.py``: the tiny Transformer-XL on the WikiText-103 fixture with RAMDA."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ramda.fixtures import make

REPO = Path(__file__).resolve().parents[1]


def test_train_py_lowers_loss_and_zeroes_groups_under_a_large_lambda(tmp_path: Path) -> None:
    data = make("wikitext103", tmp_path / "fx")
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        "task=wikitext103_tiny",
        f"task.data.root={data}",
        f"task.data.cache_dir={tmp_path / 'cache'}",
        "task.max_train_batches=20",
        "task.max_eval_batches=30",
        "optimizer=ramda",
        "optimizer.lr=0.1",
        "optimizer.momentum=1.0",
        "regularizer.lam=3e-4",
        "trainer.epochs=2",
        "trainer.max_steps=0",
        "trainer.eval_every_steps=0",
        "trainer.milestones=[]",
        "trainer.progress=none",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] - 0.2
    for record in lines:
        assert math.isclose(record["perplexity"], math.exp(record["val_loss"]), rel_tol=1e-9)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["task"] == "wikitext103"
    assert summary["metric"] == "perplexity" and summary["higher_is_better"] is False
    assert summary["metric_value"] == lines[-1]["perplexity"]
    assert summary["weighted_group_sparsity"] > 0.3
    # Independently of the runner's report: whole input columns of the Linear weights are exactly zero.
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    linear = [v for k, v in state.items() if k.startswith("layers.") and k.endswith("_net.weight")]
    linear += [
        v for k, v in state.items() if k.startswith("layers.") and ".ff.core." in k and k.endswith("weight")
    ]
    zero = sum(int((w == 0).all(0).sum()) for w in linear)
    total = sum(w.shape[1] for w in linear)
    assert zero / total > 0.3
    assert summary["group_sparsity"] == zero / total


def _tiny_cmd(data: Path, cache: Path, run: Path, *extra: str) -> list[str]:
    """The issue's smoke command, shortened: RAMDA's tiny preset (λ > 0, milestones at steps 20, 30), 10
    batches per epoch so that the run crosses epoch ends (roll, memory carried over)."""
    return [
        sys.executable,
        "train.py",
        "task=wikitext103_tiny",
        "optimizer=ramda",
        f"task.data.root={data}",
        f"task.data.cache_dir={cache}",
        "task.max_train_batches=10",
        "task.max_eval_batches=4",
        "trainer.max_steps=24",
        "trainer.eval_every_steps=8",
        "trainer.milestones=[12,20]",
        "trainer.checkpoint_every_steps=5",
        "trainer.progress=lines",
        "trainer.log_every_steps=1",
        f"hydra.run.dir={run}",
        *extra,
    ]


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in rows]


@pytest.mark.timeout(1500)  # three train.py processes: about 2 min of CPU, far more on a loaded box
def test_step_counted_run_survives_sigkill_mid_epoch_with_its_memory(tmp_path: Path) -> None:
    """Rows every 8 steps; a SIGKILL after step 16 (last checkpoint: step 15, mid-epoch, mid-period) and a
    resume give the uninterrupted run's rows and weights: the Transformer-XL memory, the epoch's roll and
    the step-counted schedules all continue where they were."""
    data = make("wikitext103", tmp_path / "fx")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

    def train_to_end(run_dir: Path) -> None:
        proc = subprocess.run(
            _tiny_cmd(data, tmp_path / "cache", run_dir),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]

    base = tmp_path / "base"
    train_to_end(base)
    rows = _rows(base)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 8), (2, 16), (3, 24)]
    lrs = [r["lr"] for r in rows]
    assert lrs == pytest.approx([5e-3, 5e-4, 5e-5])  # milestones 12, 20: after steps 11 and 19
    assert rows[1]["momentum"] == pytest.approx(1e-2) and rows[2]["momentum"] > 1e-2  # from step 19 on
    cfg = yaml.safe_load((base / "config.yaml").read_text())
    assert cfg["regularizer"]["lam"] == 1.25e-7 and cfg["trainer"]["lr_schedule"] == "stagewise"

    run = tmp_path / "run"
    killed = subprocess.Popen(
        _tiny_cmd(data, tmp_path / "cache", run), cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    assert killed.stdout is not None
    for line in killed.stdout:
        if line.startswith("epoch 2 step 6/"):  # global step 16, after its row; checkpoint of step 15
            killed.send_signal(signal.SIGKILL)
            break
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["global_step"] in (15, 16) and saved["task_ranks"][0]["mems"] is not None
    train_to_end(run)
    assert _rows(run) == rows
    final = [torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True) for d in (base, run)]
    for key, value in final[0]["model"].items():
        assert torch.equal(value, final[1]["model"][key]), key
    for a, b in zip(final[0]["task_ranks"][0]["mems"], final[1]["task_ranks"][0]["mems"]):
        assert torch.equal(a, b)


def test_hf_source_trains_from_a_dataset_saved_to_disk(tmp_path: Path) -> None:
    """task.data.source=hf end to end, offline: the fixture saved with ``datasets``' ``save_to_disk`` gives
    the token files' corpus, and train.py runs on it; a directory that is not such a dataset is one line.
    Then scripts/eval_wikitext103.py recomputes the run's validation perplexity from its checkpoint and
    evaluates the test split with the released protocol."""
    pytest.importorskip("datasets")
    from ramda.fixtures.wikitext103 import make_hf
    from ramda.tasks.wikitext103 import Corpus, DataConfig

    hf = make_hf(tmp_path / "fx")
    files = Corpus.load(
        DataConfig(root=str(tmp_path / "fx" / "wikitext-103"), cache_dir=str(tmp_path / "c1"))
    )
    other = Corpus.load(DataConfig(source="hf", hf_path=str(hf), cache_dir=str(tmp_path / "c2")))
    assert other.itos == files.itos
    assert all(torch.equal(other.splits[s], files.splits[s]) for s in files.splits)
    with pytest.raises(ValueError, match=r"^task.data.hf_path: .* is not a dataset saved with save_to_disk"):
        Corpus.load(DataConfig(source="hf", hf_path=str(tmp_path / "fx"), cache_dir=str(tmp_path / "c2")))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "train.py", "task=wikitext103_tiny", "optimizer=ramda", "task.data.source=hf"]
    cmd += [f"task.data.hf_path={hf}", f"task.data.cache_dir={tmp_path / 'c3'}", "trainer.max_steps=3"]
    cmd += ["trainer.milestones=[]"]
    cmd += ["trainer.eval_every_steps=0", "trainer.progress=none", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 3

    script = [sys.executable, "scripts/eval_wikitext103.py", str(tmp_path / "run"), "--device", "cpu"]
    script += ["--split", "valid", "--tgt-len", "16", "--mem-len", "16", "--clamp-len", "-1"]
    script += ["--no-same-length", "--batch-size", "2"]
    proc = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split("perplexity ")[1].split()[0]) == pytest.approx(
        summary["metric_value"], abs=6e-3
    )
    spec = importlib.util.spec_from_file_location(
        "eval_wikitext103", REPO / "scripts" / "eval_wikitext103.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    test = module.evaluate(tmp_path / "run", "test", 64, 640, 400, True, 16, "cpu")
    assert test["step"] == 3 and math.isfinite(test["perplexity"]) and test["perplexity"] > 1
