"""End to end through ``train.py``: the tiny Transformer-XL on the WikiText-103 fixture with RAMDA."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

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


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from ramda.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_presets_are_picked_for_wikitext103_and_labelled_as_ours() -> None:
    from omegaconf import OmegaConf

    for name in ("ramda", "rmda", "proxsgd", "proxgen", "adam"):
        path = REPO / "configs" / "preset" / "wikitext103" / f"{name}.yaml"
        assert "Not" in path.read_text() or "NOT" in path.read_text()  # never passed off as the paper's
        preset = OmegaConf.load(path)
        cfg = _compose(["task=wikitext103", f"optimizer={name}"])
        assert cfg.optimizer.name == name and cfg.optimizer.lr == preset.optimizer.lr
        assert cfg.regularizer.lam == preset.regularizer.lam
        assert cfg.trainer.epochs == preset.trainer.epochs
        assert (
            cfg.task.n_layer == 16 and cfg.task.d_model == 410 and cfg.task.cutoffs == [20000, 40000, 200000]
        )
        assert cfg.task.batch_size == 60 and cfg.task.tgt_len == cfg.task.mem_len == 150


def test_language_experiments_compose() -> None:
    cfg = _compose(["experiment=language"])
    assert cfg.table == "language" and cfg.task.name == "wikitext103"
    params = cfg.hydra.sweeper.params
    assert params.optimizer == "ramda,rmda,proxsgd,proxgen" and params.seed == "1,2,3"
    sweep = _compose(["experiment=language_sweep"])
    assert sweep.table == "language_sweep" and sweep.task.name == "wikitext103"
    assert len(sweep.hydra.sweeper.params["optimizer.lr"].split(",")) == 3
    assert len(sweep.hydra.sweeper.params["regularizer.lam"].split(",")) == 3
    lr, lam = sweep.optimizer.lr, sweep.regularizer.lam  # each grid point gets its own run directory
    assert sweep.hydra.sweep.subdir == f"wikitext103/ramda/lr{lr}_lam{lam}/seed1"
