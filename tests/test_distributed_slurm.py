"""Both SLURM launch paths against a real single-node cluster (munged, slurmctld, slurmd on this machine, started
by ``scripts/ci/slurm.sh start`` where that script exists): ``sbatch scripts/slurm_torchrun.sh`` (one torchrun per
node, c10d rendezvous on the first node) and the Hydra launcher ``hydra/launcher=slurm_ddp`` (submitit, one SLURM
task per process: the rank from ``SLURM_PROCID``, the master from ``scontrol show hostnames``). Skipped when no
cluster can be reached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "task.max_train_batches=3",
    "task.max_eval_batches=1",
    "trainer.epochs=1",
    "trainer.milestones=[]",
    "trainer.momentum_start_epoch=null",
    "trainer.dump_replicas=true",
]


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    script = ROOT / "scripts" / "ci" / "slurm.sh"
    if script.exists():
        proc = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            pytest.skip(f"cannot start a SLURM cluster here: {lines[-1] if lines else proc.returncode}")
    if shutil.which("sinfo") is None:
        pytest.skip("no SLURM client (sinfo) on this machine")
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if states.returncode != 0 or not {"idle", "mix"} & set(states.stdout.split()):
        pytest.skip(f"no idle SLURM node: {states.stdout.strip() or states.stderr.strip()}")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", NPROC_PER_NODE="2", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _check(run_dir: Path, log: str) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", log
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    r0 = torch.load(run_dir / "replica_rank0.pt", weights_only=True)["model"]
    r1 = torch.load(run_dir / "replica_rank1.pt", weights_only=True)["model"]
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key


def test_sbatch_torchrun_and_submitit_tasks(slurm_cluster: None, tmp_path: Path) -> None:
    """Two 2-process runs, one per launch path; each completes with identical replicas on its two ranks."""
    batch_dir, sweep_dir = tmp_path / "sbatch", tmp_path / "sweep"
    batch = subprocess.Popen(
        [
            "sbatch",
            "--wait",
            "--nodes=1",
            "--time=10",
            f"--output={tmp_path}/slurm-%j.out",
            f"--chdir={ROOT}",
            str(ROOT / "scripts" / "slurm_torchrun.sh"),
            *TINY,
            f"hydra.run.dir={batch_dir}",
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    launcher = [
        "hydra/launcher=slurm_ddp",
        "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10",
    ]
    step = subprocess.run(
        [sys.executable, "train.py", "-m", *launcher, *TINY, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out, _ = batch.communicate(timeout=300)
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert batch.returncode == 0, out + logs
    assert step.returncode == 0, step.stdout + step.stderr
    _check(batch_dir, logs)
    _check(sweep_dir / "digits" / "ramda" / "seed1", step.stdout + step.stderr)
