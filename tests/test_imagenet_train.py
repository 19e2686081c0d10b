"""``train.py task=imagenet``: the paper's presets, the missing-data error, and a real ResNet50 run on the
fixture (one step per epoch at 32 px) that sparsifies under a large λ with RAMDA and resumes from its
checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ramda.config import register_configs
from ramda.fixtures import imagenet as fixture
from tests.helpers import imagenet_smoke

REPO = Path(__file__).resolve().parents[1]

# docs/math.md#the-papers-settings, ImageNet / ResNet50: (lr, momentum or betas, λ, extra optimizer settings).
PAPER = {
    "msgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "lam": 0.0},
    "proxsgd": {"lr": 0.1, "momentum": 0.1, "lam": 1.25e-5},
    "proxgen": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "lam": 1.3e-7, "stop": "objective"},
    "rmda": {"lr": 1.0, "momentum": 0.1, "lam": 1.35e-5},
    "ramda": {"lr": 1e-2, "momentum": 1e-2, "eps": 1e-6, "lam": 4e-7, "stop": "objective"},
}


@pytest.mark.parametrize("optimizer", sorted(PAPER))
def test_presets_hold_the_paper_settings(optimizer: str) -> None:
    """The values themselves: tests/test_released_presets.py. Here: the command line wins over the preset,
    and the table's runs get the preset."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["task=imagenet", f"optimizer={optimizer}"])
        override = compose("train", overrides=["task=imagenet", f"optimizer={optimizer}", "trainer.epochs=3"])
        table = compose("train", overrides=["experiment=vision", f"optimizer={optimizer}"])
    assert cfg.regularizer.lam == PAPER[optimizer]["lam"] and cfg.trainer.epochs == 160
    assert override.trainer.epochs == 3
    assert table.table == "vision" and table.task.name == "imagenet"
    assert (
        table.optimizer == cfg.optimizer
        and table.regularizer == cfg.regularizer
        and table.trainer == cfg.trainer
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture.make(tmp_path_factory.mktemp("data"))


def train(*overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", "task=imagenet", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_directory_without_imagenet_layout_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    run_dir = tmp_path / "run"
    proc = train(f"task.data.root={tmp_path / 'data'}", f"hydra.run.dir={run_dir}", "trainer.device=cpu")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    data = tmp_path / "data"
    assert (
        f"task.data.root: {data} is not an ImageNet directory; "
        f"expected {data}/train/<wnid>/*.JPEG and {data}/val/<wnid>/*.JPEG"
    ) in lines[0]
    assert not run_dir.exists()


def test_resnet50_sparsifies_under_a_large_lambda_and_resumes(root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = [
        "optimizer=ramda",
        "seed=3",
        *imagenet_smoke(root, tmp_path / "init"),
        f"hydra.run.dir={run_dir}",
        "trainer.milestones=[]",
        "optimizer.stop=null",  # the exact group-LASSO solver: the paper's `objective` rule is slow on a CPU
        "optimizer.momentum=1.0",  # c = 1: the weights are the subproblem's solutions, zeros included
        "regularizer.lam=10.0",
    ]
    first = train(*common, "trainer.epochs=1")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "init" / "resnet50-c6-seed3.pt").is_file()
    epoch1 = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(epoch1) == 1 and epoch1[0]["step"] == 1
    assert 0.0 < epoch1[0]["weighted_group_sparsity"] <= 1.0 and epoch1[0]["group_sparsity"] > 0.0
    assert {"top1", "top5", "val_loss", "time_per_epoch", "train_loss"} <= set(epoch1[0])

    second = train(*common, "trainer.epochs=2")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout + second.stderr
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[0] == epoch1[0]
    assert metrics[1]["step"] == 2 and metrics[1]["weighted_group_sparsity"] > 0.0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["task"], summary["metric"], summary["epochs_completed"]) == (
        "completed",
        "imagenet",
        "top1",
        2,
    )
    assert summary["metric_value"] == metrics[1]["top1"] and summary["higher_is_better"] is True
