"""Step-counted training through ``train.py``: ``trainer.max_steps``, rows every ``trainer.eval_every_steps``,
the cosine learning rate, and evaluation in full precision whatever the training precision."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ramda.tasks import RunEnv, task_module

REPO = Path(__file__).resolve().parents[1]


def test_cosine_steps_rows_and_full_precision_evaluation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", f"hydra.run.dir={run}", "task=digits", "optimizer=proxsgd"]
    cmd += ["trainer.max_steps=6", "trainer.eval_every_steps=3", "trainer.lr_schedule=cosine"]
    cmd += ["trainer.milestones=[]", "trainer.precision=bf16", "trainer.threads=1", "trainer.progress=none"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 3), (1, 6)]  # mid-epoch: steps, not epochs
    lr0 = 0.1  # the digits ProxSGD preset
    assert rows[0]["lr"] == pytest.approx(lr0 * (1 + math.cos(math.pi * 3 / 6)) / 2, rel=1e-12)
    assert rows[1]["lr"] == pytest.approx(0.0, abs=1e-15)  # annealed to 0 over max_steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 6

    # The last row's evaluation is the full-precision one of the saved weights, not a bf16-autocast one.
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    module = task_module("digits")
    task_cfg = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(module.Config), state["config"]["task"])
    )
    torch.set_num_threads(1)
    task = module.TASK(task_cfg, RunEnv(torch.device("cpu"), seed=1))
    model = task.build_model()
    model.load_state_dict(state["model"])
    model.eval()  # as the trainer evaluates
    with torch.no_grad():
        full = task.evaluate(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = task.evaluate(model)
    assert full["val_loss"] == rows[-1]["val_loss"] and full["accuracy"] == rows[-1]["accuracy"]
    assert low["val_loss"] != full["val_loss"]
