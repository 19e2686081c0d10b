"""The SLURM path against a real single-node cluster (munged, slurmctld, slurmd on this machine), started by
``scripts/ci/slurm.sh start``. These tests skip, with the script's reason, only if it cannot install or start
the cluster (e.g. not root)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ramda import tables

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


TINY = [
    "trainer.epochs=1",
    "trainer.milestones=[]",
    "trainer.momentum_start_epoch=null",
    "task.max_train_batches=4",
    "task.max_eval_batches=2",
]
# One CPU, 1 GB, no GPU per job: two jobs run side by side on a 2-CPU node.
SMALL_JOBS = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


OPTS = ["--no-figures", "--table", "demo", "--print"]


def submitit_jobs(sweep: Path) -> list[str]:
    """SLURM ids of the jobs a sweep submitted (``<array>_<task>``, or ``<id>`` for a single job), from
    submitit's folders."""
    folder = sweep / ".submitit"
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    tasks = sorted(n for n in names if "_" in n and n.replace("_", "").isdigit())
    return tasks or sorted(n for n in names if n.isdigit())


def cancel(sweep: Path) -> None:
    """scancel whatever this test's sweep left in the queue (nothing, when it passes)."""
    jobs = submitit_jobs(sweep)
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)


def md_row(markdown: str, name: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name} in\n{markdown}")


def test_demo_sweep_on_slurm_then_tables(
    slurm_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """2 optimizers × 2 seeds submitted through hydra/launcher=slurm, run by slurmd, then `ramda.tables`
    shows 2 rows of mean ± std equal to the values computed here from the four summary.json files."""
    runs = tmp_path / "runs"
    sweep = runs / "demo" / "multirun" / "slurm"
    cmd = [sys.executable, "train.py", "-m", "experiment=demo", "optimizer=ramda,proxsgd", "seed=1,2"]
    try:
        proc = subprocess.run(
            [*cmd, *TINY, *SMALL_JOBS, f"hydra.sweep.dir={sweep}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        cancel(sweep)
        raise
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = submitit_jobs(sweep)
    assert len(jobs) == 4 and len({j.split("_")[0] for j in jobs}) == 1  # one job array of 4 tasks
    for job in jobs:
        wait_gone(job, 30)  # the result is written just before the job step exits
        assert job_field(job, "JobState") == "COMPLETED"
    values: dict[str, list[tuple[float, float]]] = {}
    for opt in ("ramda", "proxsgd"):
        for seed in (1, 2):
            s = json.loads((sweep / "digits" / opt / f"seed{seed}" / "summary.json").read_text())
            assert (s["status"], s["table"], s["seed"]) == ("completed", "demo", seed)
            values.setdefault(opt, []).append((s["metric_value"], 100 * s["weighted_group_sparsity"]))
    assert tables.main(["--runs", str(runs), "--out", str(tmp_path / "tables"), *OPTS]) == 0
    markdown = capsys.readouterr().out
    for opt, name in (("ramda", "RAMDA"), ("proxsgd", "ProxSGD")):
        (a1, s1), (a2, s2) = values[opt]
        # mean ± sample std of two numbers: (x+y)/2 ± |x−y|/√2
        acc = f"{(a1 + a2) / 2:.2f} ± {abs(a1 - a2) / 2**0.5:.2f}"
        sparsity = f"{(s1 + s2) / 2:.1f} ± {abs(s1 - s2) / 2**0.5:.1f}"
        row = md_row(markdown, name)
        assert (row[0], row[1], row[-1]) == (acc, sparsity, "2/2")


def wait_epochs(metrics: Path, n: int, sweep_proc: subprocess.Popen, timeout: float = 120) -> str:
    """The text of ``metrics`` once it holds at least ``n`` epoch lines."""
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().count("\n") >= n):
        assert time.monotonic() < deadline, f"{n} epoch(s) not logged within {timeout} s"
        assert sweep_proc.poll() is None, sweep_proc.stdout.read() if sweep_proc.stdout else ""
        time.sleep(0.05)
    return metrics.read_text()


def release(job: str) -> None:
    """Wait until a requeued job is back in the queue, then let it start now: SLURM otherwise holds a
    requeued batch job for about two minutes (Reason=BeginTime), as an operator's `StartTime=now` would."""
    deadline = time.monotonic() + 60
    while job_field(job, "JobState") != "PENDING":
        assert time.monotonic() < deadline, "job not back in the queue within 60 s"
        time.sleep(0.1)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster: None, tmp_path: Path) -> None:
    """One sweep job is interrupted twice while running, and each time resumes from checkpoint.pt:
    1. the time-limit path: SLURM's USR2 (what it sends `signal_delay_s` before the limit); submitit requeues;
    2. the preemption path: `scontrol requeue` (SLURM stops the job with SIGTERM and queues it again).
    The finished run logs every epoch exactly once, and the lines written before each interruption are
    kept byte for byte (they hold the measured wall-clock time_per_epoch, which a restarted run would not
    repeat)."""
    sweep = tmp_path / "runs" / "demo" / "multirun" / "requeue"
    run = sweep / "digits" / "ramda" / "seed1"
    metrics = run / "metrics.jsonl"
    epochs = 6
    cmd = [sys.executable, "train.py", "-m", "experiment=demo", "optimizer=ramda", "seed=1"]
    cmd += [f"trainer.epochs={epochs}", "trainer.milestones=[]", "trainer.momentum_start_epoch=null"]
    cmd += ["task.max_train_batches=10", "task.max_eval_batches=2", *SMALL_JOBS]
    sweep_proc = subprocess.Popen(
        [*cmd, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = wait_epochs(metrics, 1, sweep_proc)
        (job,) = submitit_jobs(sweep)
        assert job_field(job, "JobState") == "RUNNING"
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        release(job)
        second = wait_epochs(metrics, 3, sweep_proc)
        assert job_field(job, "JobState") == "RUNNING" and job_field(job, "Restarts") == "1"
        subprocess.run(["scontrol", "requeue", job], check=True)
        release(job)
        out, _ = sweep_proc.communicate(timeout=180)
    finally:
        if sweep_proc.poll() is None:
            sweep_proc.kill()
            cancel(sweep)
    assert sweep_proc.returncode == 0, out[-3000:]
    wait_gone(job, 30)
    assert job_field(job, "Restarts") == "2" and job_field(job, "JobState") == "COMPLETED"
    final = metrics.read_text()
    assert second.startswith(first) and final.startswith(second)
    assert [json.loads(line)["epoch"] for line in final.splitlines()] == list(range(1, epochs + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("completed", epochs)
    folder = sweep / ".submitit" / job
    log = (folder / f"{job}_0_log.out").read_text() + (folder / f"{job}_0_log.err").read_text()
    assert log.count("Starting with JobEnvironment") == 3, log[-3000:]
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log
