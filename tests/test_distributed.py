"""Data-parallel training with real ``torchrun`` processes (gloo on the CPU) on the digits task.

Five runs, shared by the tests (module fixture), all RAMDA (lr 1e-2) + group LASSO (λ 1e-5) with a global batch of
64 over 2 epochs of 12 steps, a restart after epoch 1 and the momentum schedule from there:

- ``one``: one process (``python train.py``), the reference;
- ``two``: ``torchrun --nproc_per_node=2`` (32 samples per process), W&B offline, every rank dumping its model
  and optimizer state at the end (``trainer.dump_replicas``);
- ``stopped``: the same 2-process run, SIGTERM sent to rank 1 only, early in epoch 1;
- ``resumed``: the stopped run continued by ``torchrun --nproc_per_node=2`` in its directory;
- ``shrunk``: a copy of the stopped run's directory continued by one process (a checkpoint made by 2 processes
  loaded by 1).

The digits CNN runs with ``task.batchnorm=false``: BatchNorm normalises over each process's share of the batch
(PyTorch's SyncBatchNorm needs CUDA), so only a model without it computes the same function of the global batch
on one process and on two. Every process loads ``tests/fixtures/audit/sitecustomize.py`` (a Python audit hook)
that records, per rank, every file it opens for writing, renames or removes under the run root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "tests" / "fixtures" / "audit"
COMMON = [
    "optimizer=ramda",
    "optimizer.lr=1e-2",
    "regularizer.lam=1e-5",
    "task.batch_size=64",
    "task.batchnorm=false",
    "task.max_train_batches=12",
    "trainer.epochs=2",
    "trainer.milestones=[1]",
    "trainer.momentum_start_epoch=1",
    "trainer.log_every_steps=1",
]
TIMEOUT = 240


def _env(log_dir: Path, watch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(AUDIT), str(ROOT)]),
        RAMDA_AUDIT_LOG=str(log_dir),
        RAMDA_AUDIT_ROOT=str(watch),
        WANDB_SILENT="true",
    )
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS"):
        env.pop(key, None)
    return env


def _start(nproc: int, run_dir: Path, log_dir: Path, watch: Path, extra: list[str]) -> subprocess.Popen[str]:
    log_dir.mkdir(parents=True, exist_ok=True)
    if nproc == 1:
        launcher = [sys.executable, "train.py"]
    else:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
        ]
        launcher.append("train.py")
    return subprocess.Popen(
        [*launcher, *COMMON, *extra, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=_env(log_dir, watch),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def _writes(log_dir: Path, rank: int) -> set[str]:
    """Paths (relative to the watched root) that rank ``rank`` wrote, renamed or removed."""
    log = log_dir / f"rank{rank}.log"
    return set(log.read_text().split("\n")) - {""} if log.exists() else set()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ddp")
    watch = base / "runs"
    dirs = {name: watch / name for name in ("one", "two", "stopped", "shrunk")}
    logs = {name: base / "audit" / name for name in ("one", "two", "stopped", "resumed", "shrunk")}
    out: dict[str, Any] = {"dirs": dirs, "logs": logs, "watch": watch}

    one = _start(1, dirs["one"], logs["one"], watch, [])
    wandb = ["logger=wandb", "logger.mode=offline", "trainer.dump_replicas=true"]
    two = _start(2, dirs["two"], logs["two"], watch, wandb)
    out["one"], out["two"] = _finish(one), _finish(two)

    stopped = _start(2, dirs["stopped"], logs["stopped"], watch, [])
    seen: list[str] = []
    assert stopped.stdout is not None
    for line in stopped.stdout:
        seen.append(line)
        if line.startswith("epoch 1 step 1/"):
            pid = int((logs["stopped"] / "pid1").read_text())
            os.kill(pid, signal.SIGTERM)  # rank 1 only: the ranks must agree to stop
            break
    rc, rest = _finish(stopped)
    out["stopped"] = (rc, "".join(seen) + rest)
    out["stopped_state"] = torch.load(dirs["stopped"] / "checkpoint.pt", weights_only=True)
    shutil.copytree(dirs["stopped"], dirs["shrunk"])

    resumed = _start(2, dirs["stopped"], logs["resumed"], watch, ["trainer.dump_replicas=true"])
    shrunk = _start(1, dirs["shrunk"], logs["shrunk"], watch, [])
    out["resumed"], out["shrunk"] = _finish(resumed), _finish(shrunk)
    return out


def _ok(runs: dict[str, Any], name: str) -> None:
    rc, text = runs[name]
    assert rc == 0, f"{name} exited {rc}:\n{text[-3000:]}"


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def _flat_state(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            out[f"{index}.{key}"] = value
    return out


def test_replicas_identical_across_ranks(runs: dict[str, Any]) -> None:
    """After 24 RAMDA steps the two ranks hold bit-identical parameters and optimizer states (the dual-averaging
    sums V and U, α, W⁰): DDP's gradient all-reduce is all the optimizer needs."""
    _ok(runs, "two")
    run_dir = runs["dirs"]["two"]
    r0 = torch.load(run_dir / "replica_rank0.pt", weights_only=True)
    r1 = torch.load(run_dir / "replica_rank1.pt", weights_only=True)
    assert r0["model"].keys() == r1["model"].keys()
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key
    s0, s1 = _flat_state(r0["optimizer"]), _flat_state(r1["optimizer"])
    assert s0.keys() == s1.keys() and any(k.endswith(".u") for k in s0)
    for key in s0:
        if torch.is_tensor(s0[key]):
            assert torch.equal(s0[key], s1[key]), key
        else:
            assert s0[key] == s1[key], key
    assert all(float(s0[k].abs().sum()) > 0 for k in s0 if k.endswith(".v"))  # the steps did accumulate


def test_two_processes_match_one_process(runs: dict[str, Any]) -> None:
    """Global batch 64 as 2 × 32 equals 64 on one process up to float32 summation order."""
    _ok(runs, "one")
    _ok(runs, "two")
    one, two = _final(runs["dirs"]["one"]), _final(runs["dirs"]["two"])
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    m1, m2 = _metrics(runs["dirs"]["one"]), _metrics(runs["dirs"]["two"])
    assert [r["epoch"] for r in m1] == [r["epoch"] for r in m2] == [1, 2]
    for a, b in zip(m1, m2):
        assert b["step"] == a["step"] == 12 * a["epoch"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
        assert abs(b["accuracy"] - a["accuracy"]) <= 100 / 360 + 1e-9  # at most one validation image apart
        assert b["accuracy"] > 15 * a["epoch"]  # it learns (chance: 10 %)
        # the solver's per-tensor iteration counts (a tolerance test) may differ by one here and there
        assert b["solver_iters"] == pytest.approx(a["solver_iters"], abs=0.5)
        assert b["time_per_epoch"] > 0


def test_only_rank0_writes(runs: dict[str, Any]) -> None:
    """Rank 1 writes nothing but its debug replica; rank 0 writes the run's files; one W&B run."""
    _ok(runs, "two")
    logs = runs["logs"]["two"]
    rank0, rank1 = _writes(logs, 0), _writes(logs, 1)
    assert "two/replica_rank1.pt" in rank1
    assert all(Path(p).name.startswith((".replica_rank1.pt.", "replica_rank1.pt")) for p in rank1), rank1
    names = {Path(p).name for p in rank0}
    assert {"checkpoint.pt", "metrics.jsonl", "summary.json", "config.yaml", "replica_rank0.pt"} <= names
    run_dir = runs["dirs"]["two"]
    assert len(_metrics(run_dir)) == 2  # appended once per epoch, not once per rank
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert sorted(p.name for p in runs["watch"].iterdir()) == ["one", "shrunk", "stopped", "two"]


def test_signal_on_one_rank_stops_all_and_resumes(runs: dict[str, Any]) -> None:
    """SIGTERM to rank 1 alone: both ranks stop at the same step, rank 0 saves a mid-run checkpoint; a new
    2-process run in that directory resumes it and ends bit-identical to the uninterrupted 2-process run."""
    rc, text = runs["stopped"]
    assert rc != 0 and "stopped by signal 15" in text, text[-3000:]
    state = runs["stopped_state"]
    assert 0 < state["global_step"] < 24
    assert len(state["rng_ranks"]) == 2
    assert _writes(runs["logs"]["stopped"], 1) == set()
    _ok(runs, "resumed")
    assert f"resuming {runs['dirs']['stopped']}" in runs["resumed"][1]
    two, resumed = _final(runs["dirs"]["two"]), _final(runs["dirs"]["stopped"])
    for key in two:
        assert torch.equal(two[key], resumed[key]), key
    m2, mr = _metrics(runs["dirs"]["two"]), _metrics(runs["dirs"]["stopped"])
    for a, b in zip(m2, mr, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-12)
        for key in ("accuracy", "val_loss", "weighted_group_sparsity", "step", "lr", "momentum"):
            assert b[key] == a[key], key
    r0 = torch.load(runs["dirs"]["stopped"] / "replica_rank0.pt", weights_only=True)
    r1 = torch.load(runs["dirs"]["stopped"] / "replica_rank1.pt", weights_only=True)
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key


def test_two_process_checkpoint_resumes_on_one_process(runs: dict[str, Any]) -> None:
    """The mid-run checkpoint of 2 processes (model saved without DDP's ``module.`` prefix) continued by one
    process ends where the one-process run ends (to float32 tolerance)."""
    _ok(runs, "shrunk")
    state = runs["stopped_state"]
    assert not any(k.startswith("module.") for k in state["model"])
    one, shrunk = _final(runs["dirs"]["one"]), _final(runs["dirs"]["shrunk"])
    for key in one:
        torch.testing.assert_close(shrunk[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    m1, ms = _metrics(runs["dirs"]["one"]), _metrics(runs["dirs"]["shrunk"])
    assert [r["train_loss"] for r in ms] == pytest.approx([r["train_loss"] for r in m1], rel=1e-4)


def test_indivisible_global_batch_is_an_error() -> None:
    """The per-process batch is derived from the global one; a global batch the processes cannot share is a
    ``ValueError`` naming the key (``train.py`` prints it as one ``error: task=digits: ...`` line, exit 2)."""
    from ramda.tasks.base import RunEnv
    from ramda.tasks.digits import TASK, Config

    assert TASK(Config(batch_size=64), RunEnv(torch.device("cpu"), rank=1, world_size=2)).batch == 32
    with pytest.raises(
        ValueError, match=r"task.batch_size=63 is not divisible by the number of processes \(2\)"
    ):
        TASK(Config(batch_size=63), RunEnv(torch.device("cpu"), rank=0, world_size=2))


def test_local_gpu_per_process_and_per_task_binding() -> None:
    """A process uses GPU LOCAL_RANK; an srun task bound by SLURM to its own GPU (it sees fewer GPUs than its
    local rank) uses its first one; torchrun with more processes than GPUs is one error naming LOCAL_RANK."""
    from ramda.engine.distributed import local_gpu
    from ramda.engine.errors import ConfigError

    for srun in (False, True):
        assert [local_gpu(r, 8, srun) for r in range(8)] == list(range(8))
    assert [local_gpu(r, 1, srun=True) for r in range(4)] == [0, 0, 0, 0]
    assert local_gpu(5, 2, srun=True) == 0
    with pytest.raises(ConfigError, match=r"LOCAL_RANK.*2 but this node has 2 CUDA devices"):
        local_gpu(2, 2, srun=False)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK.*1 but this node has 0 CUDA devices"):
        local_gpu(1, 0, srun=True)


def test_launcher_env_from_torchrun_and_slurm() -> None:
    """Which variables make a process one rank of several: torchrun's, or those of an ``srun`` step of several
    tasks; a batch script's shell (``SLURM_NTASKS`` but no step) and one-process launches stay single."""
    from ramda.engine.distributed import launcher_env

    torchrun = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "n1",
        "MASTER_PORT": "29500",
    }
    assert launcher_env(torchrun) == torchrun
    assert launcher_env({**torchrun, "WORLD_SIZE": "1", "RANK": "0"}) == {}
    assert launcher_env({"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7"}) == {}
    step = {
        "SLURM_STEP_NUM_TASKS": "16",
        "SLURM_PROCID": "9",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "123456",
        "MASTER_ADDR": "gpu-a01",
    }
    assert launcher_env(step) == {
        "RANK": "9",
        "WORLD_SIZE": "16",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu-a01",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }
    assert launcher_env({**step, "SLURM_STEP_NUM_TASKS": "1"}) == {}
