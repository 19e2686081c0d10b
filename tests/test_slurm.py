"""The SLURM path against a real single-node cluster (munged, slurmctld, slurmd on this machine), started by
``scripts/ci/slurm.sh start``. These tests skip, with the script's reason, only if it cannot install or start
the cluster (e.g. not root)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci" / "slurm.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        pytest.skip(f"cannot start a SLURM cluster here: {reason}")


def wait_gone(job_id: str, timeout: float) -> None:
    """Poll ``squeue`` until job ``job_id`` (every task, for an array) has left the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.2)
    raise TimeoutError(f"SLURM job {job_id} still queued after {timeout} s")


def job_field(job_id: str, key: str) -> str:
    """A field of ``scontrol show job`` (finished jobs stay visible for MinJobAge = 600 s)."""
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    for token in out.split():
        if token.startswith(f"{key}="):
            return token.split("=", 1)[1]
    raise KeyError(f"{key} not in `scontrol show job {job_id}`")


def test_cluster_runs_a_batch_job(slurm_cluster: None, tmp_path: Path) -> None:
    """sbatch → slurmctld schedules on the node → slurmd runs the script and an srun step."""
    script = tmp_path / "job.sh"
    script.write_text(
        f"#!/bin/bash\n#SBATCH --output={tmp_path}/out.txt\necho batch $SLURM_JOB_ID\nsrun echo step\n"
    )
    job_id = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.strip()
    wait_gone(job_id, 30)
    assert job_field(job_id, "JobState") == "COMPLETED"
    assert (tmp_path / "out.txt").read_text().split("\n")[:2] == [f"batch {job_id}", "step"]
