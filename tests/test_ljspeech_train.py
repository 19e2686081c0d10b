"""``train.py task=ljspeech``: the paper's presets compose, and a reduced Tacotron2 trains into group zeros."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from ramda.config import register_configs
from ramda.fixtures import ljspeech as fixture

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "symbol_embedding_dim": 32,
    "encoder_embedding_dim": 32,
    "encoder_n_convolution": 1,
    "decoder_rnn_dim": 64,
    "attention_rnn_dim": 64,
    "attention_hidden_dim": 16,
    "attention_location_n_filter": 4,
    "attention_location_kernel_size": 7,
    "prenet_dim": 32,
    "postnet_n_convolution": 2,
    "postnet_embedding_dim": 32,
}
# docs/math.md#the-papers-settings: (lr, λ, momentum) per optimizer for LJSpeech / Tacotron2.
PAPER = {
    "ramda": (2.5e-3, 6e-7, 1e-2),
    "rmda": (2.5, 1e-6, 1e-2),
    "proxsgd": (1.0, 2.5e-6, 0.1),
    "proxgen": (1e-3, 8e-7, None),
    "adam": (1e-3, 0.0, None),
}


@pytest.mark.parametrize("optimizer", sorted(PAPER))
def test_presets_compose_to_the_papers_settings(optimizer: str):
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["task=ljspeech", f"optimizer={optimizer}", "seed=2"])
    lr, lam, momentum = PAPER[optimizer]
    assert cfg.optimizer.name == optimizer and cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.regularizer.lam == pytest.approx(lam)
    assert cfg.regularizer.name == ("none" if optimizer == "adam" else "group_lasso")
    if momentum is not None:
        assert cfg.optimizer.momentum == pytest.approx(momentum)
    if optimizer in ("ramda", "proxgen"):
        assert (cfg.optimizer.stop, cfg.optimizer.rtol, cfg.optimizer.max_iters) == ("objective", 1e-8, 100)
    if optimizer == "adam":
        assert cfg.optimizer.weight_decay == pytest.approx(1e-6)
    assert list(cfg.trainer.milestones) == [300, 600] and cfg.trainer.gamma == pytest.approx(0.1)
    assert cfg.trainer.epochs == 1000 and cfg.trainer.precision == "fp32" and cfg.task.mask_padding is False
    assert (cfg.task.name, cfg.task.batch_size, cfg.task.grad_clip) == ("ljspeech", 64, 1.0)
    assert cfg.task.audio.sample_rate == 22050 and cfg.task.audio.f_max == 8000


def test_speech_experiment_is_the_papers_grid():
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=speech"], return_hydra_config=True)
    assert cfg.table == "speech" and cfg.task.name == "ljspeech"
    params = cfg.hydra.sweeper.params
    assert set(params.optimizer.split(",")) == {"ramda", "rmda", "proxsgd", "proxgen"}
    assert [int(s) for s in str(params.seed).split(",")] == [1, 2, 3]


def test_train_py_trains_a_reduced_tacotron2_into_group_zeros(tmp_path: Path):
    data = fixture.make(tmp_path / "data")
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", "task=ljspeech", "optimizer=ramda", "table=speech"]
    cmd += [f"task.data.root={data}", f"task.data.filelists={data.parent / 'filelists'}"]
    cmd += ["task.batch_size=4", "task.num_workers=0", "trainer.epochs=2", "trainer.milestones=[]"]
    cmd += ["trainer.device=cpu"]
    cmd += [
        "trainer.precision=fp32",
        "optimizer.momentum=1.0",
        "regularizer.lam=0.01",
        f"hydra.run.dir={run}",
    ]
    cmd += [f"task.model.{k}={v}" for k, v in SMALL.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert (summary["table"], summary["task"], summary["optimizer"]) == ("speech", "ljspeech", "ramda")
    assert summary["metric"] == "val_loss" and summary["higher_is_better"] is False
    assert summary["metric_value"] == summary["final"]["val_loss"] > 0
    assert 0.05 < summary["weighted_group_sparsity"] < 0.95  # λ large enough to zero groups in 6 steps
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(r["time_per_epoch"] > 0 and {"val_mel_loss", "val_gate_loss"} <= set(r) for r in lines)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == pytest.approx(2.5e-3)  # the preset, under the command line
    assert config["trainer"]["gamma"] == pytest.approx(0.1) and config["task"]["grad_clip"] == 1.0
