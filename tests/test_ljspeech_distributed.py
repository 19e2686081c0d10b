"""LJSpeech task under torchrun (2 CPU processes, gloo): sharded training batches, all-reduced validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ramda.fixtures import ljspeech as fixture

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from ramda.tasks import RunEnv, task_module
    from ramda.tasks.ljspeech import Config, DataConfig, ModelConfig, tacotron2_losses

    root, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    small = ModelConfig(symbol_embedding_dim=16, encoder_embedding_dim=16, encoder_n_convolution=1,
        decoder_rnn_dim=32, attention_rnn_dim=32, attention_hidden_dim=8, attention_location_n_filter=2,
        attention_location_kernel_size=3, prenet_dim=16, postnet_n_convolution=1, postnet_embedding_dim=16)
    data = DataConfig(root=root + "/LJSpeech-1.1", filelists=root + "/filelists")
    cfg = Config(batch_size=4, eval_batch_size=2, num_workers=0, data=data, model=small)
    env = RunEnv(torch.device("cpu"), seed=3, rank=rank, world_size=world)
    task = task_module("ljspeech").TASK(cfg, env)
    torch.manual_seed(0)
    model = task.build_model()
    train = list(task.train_sampler)
    n_batches = task.num_train_batches()
    shapes = [list(b.tokens.shape) for b in task.train_batches(0)]
    result = task.evaluate(model)
    # the rank-local sums the all-reduce must combine, computed again here
    local = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(env.seed + rank)
        model.eval()
        for batch in task._val_batches():
            mel, gate = tacotron2_losses(model, batch)
            local += torch.tensor([mel.item(), gate.item(), 1.0], dtype=torch.float64)
    locals_ = [None] * world
    dist.all_gather_object(locals_, local.tolist())
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"train": train, "n_batches": n_batches, "shapes": shapes, "result": result,
                   "locals": locals_}, f)
    dist.destroy_process_group()
    """
)


def test_torchrun_shards_batches_and_all_reduces_validation(tmp_path: Path):
    fixture.make(tmp_path / "data")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), str(tmp_path / "data"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    n_train = fixture.CLIPS["train"]
    shards = [set(r["train"]) for r in ranks]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(n_train))
    assert all(r["n_batches"] == n_train // 2 // 2 for r in ranks)  # per-process batch 4 / 2 processes
    assert all(s[0] == 2 for r in ranks for s in r["shapes"])
    results = [r["result"] for r in ranks]
    assert results[0] == results[1]
    mel, gate, n = (sum(col) for col in zip(*ranks[0]["locals"]))
    assert results[0]["val_loss"] == pytest.approx((mel + gate) / n, rel=1e-9)
    # the two processes saw different clips with different dropout, so the reduction mixed two numbers
    a, b = ranks[0]["locals"]
    assert (a[0] + a[1]) / a[2] != (b[0] + b[1]) / b[2]
