"""The SLURM path against a real single-node cluster (munged, slurmctld, slurmd on this machine), started by
``scripts/ci/slurm.sh start``. These tests skip, with the script's reason, only if it cannot install or start
the cluster (e.g. not root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ramda import tables
from tests.helpers import markdown_row

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
    wait_gone(job_id, 120)  # a job of an earlier test may still hold the node's CPUs while it completes
    assert job_field(job_id, "JobState") == "COMPLETED"
    assert (tmp_path / "out.txt").read_text().split("\n")[:2] == [f"batch {job_id}", "step"]


TINY = ["trainer.epochs=1", "task.max_train_batches=4", "task.max_eval_batches=2"]
# The demo presets' milestones and momentum start lie beyond these short runs, which validation refuses.
NO_SCHEDULE = ["trainer.milestones=[]", "trainer.momentum_start_epoch=null"]
# The launcher's own resources for a digits run (1 CPU, 4 GB, no GPU): two jobs run side by side on a 2-CPU
# node. The submitter polls squeue every second.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.poll_s=1"]


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
            [*cmd, *TINY, *NO_SCHEDULE, *SLURM, f"hydra.sweep.dir={sweep}"],
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
        row = markdown_row(markdown, name)
        assert (row[0], row[1], row[-1]) == (acc, sparsity, "2/2")


def sweep_cmd(sweep: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "train.py",
        "-m",
        "experiment=demo",
        *SLURM,
        *NO_SCHEDULE,
        *overrides,
        f"hydra.sweep.dir={sweep}",
    ]


def test_impossible_request_is_refused_before_submission(slurm_cluster: None, tmp_path: Path) -> None:
    """A request no node can satisfy (here 1 TB of memory) is refused with one line naming the key, before
    anything is submitted; `scripts/sweep_plan.py` shows the same as a warning."""
    sweep = tmp_path / "sweep"
    overrides = ("optimizer=ramda", *TINY, "hydra.launcher.mem_gb=1000")
    proc = subprocess.run(sweep_cmd(sweep, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: hydra.launcher: no node of partition 'debug' can ever run") and (
        "lower hydra.launcher.mem_gb" in line
    )
    assert not (sweep / ".submitit").exists()
    plan = [sys.executable, "scripts/sweep_plan.py", "experiment=demo", *SLURM, *overrides]
    out = subprocess.run(plan, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    assert "warning: hydra.launcher: no node of partition 'debug'" in out


def test_cancelled_array_makes_the_submitter_exit(slurm_cluster: None, tmp_path: Path) -> None:
    """`scancel` of the whole array (one task running, one pending or running): the submitter names each
    job, its state and its log, and exits 1 within a minute; no sacct noise (no accounting here)."""
    sweep = tmp_path / "sweep"
    cmd = sweep_cmd(sweep, "optimizer=ramda,proxsgd", "trainer.epochs=100", "task.max_eval_batches=1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(submitit_jobs(sweep)) < 2 or "RUNNING" not in {
            job_field(j, "JobState") for j in submitit_jobs(sweep)
        }:
            assert time.monotonic() < deadline and proc.poll() is None, "no job running within 120 s"
            time.sleep(0.2)
        jobs = submitit_jobs(sweep)
        start = time.monotonic()
        subprocess.run(["scancel", jobs[0].split("_")[0]], check=True)
        out, _ = proc.communicate(timeout=60)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            cancel(sweep)
    assert proc.returncode == 1 and elapsed < 60, out[-3000:]
    for job in jobs:
        (line,) = [x for x in out.splitlines() if x.startswith(f"error: job {job} (")]
        assert "ended CANCELLED without a result; log: " in line
        assert str(sweep / ".submitit" / job / f"{job}_0_log.err") in line
    assert "error: 2 of 2 job(s) ended without a result" in out
    assert "Bypassing sacct" not in out and out.count("sacct unavailable") <= 1


def wait_epochs(metrics: Path, n: int, sweep_proc: subprocess.Popen, timeout: float = 180) -> str:
    """The text of ``metrics`` once it holds at least ``n`` epoch lines."""
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().count("\n") >= n):
        assert time.monotonic() < deadline, f"{n} epoch(s) not logged within {timeout} s"
        assert sweep_proc.poll() is None, sweep_proc.stdout.read() if sweep_proc.stdout else ""
        time.sleep(0.05)
    return metrics.read_text()


def wait_restarts(job: str, n: int, timeout: float = 120) -> None:
    """Until job ``job`` runs again after its ``n``-th requeue."""
    deadline = time.monotonic() + timeout
    while not (job_field(job, "Restarts") == str(n) and job_field(job, "JobState") == "RUNNING"):
        assert time.monotonic() < deadline, f"job {job} not running its restart {n} within {timeout} s"
        time.sleep(0.1)


class Releaser(threading.Thread):
    """Lets a requeued job of the sweep start at once: SLURM otherwise holds a requeued batch job for about
    two minutes (Reason=BeginTime), as an operator's `scontrol update StartTime=now` would. Jobs in ``held``
    are left alone."""

    def __init__(self, sweep: Path) -> None:
        super().__init__(daemon=True)
        self.sweep = sweep
        self.held: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for job in set(submitit_jobs(self.sweep)) - self.held:
                out = subprocess.run(
                    ["scontrol", "show", "job", "-o", job], capture_output=True, text=True
                ).stdout
                if "JobState=PENDING" in out and "Reason=BeginTime" in out and job not in self.held:
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)

    def __enter__(self) -> Releaser:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def minutes(runtime: str) -> int:
    """Whole minutes of a SLURM ``RunTime`` (``[D-]HH:MM:SS``), rounded up."""
    days, _, rest = runtime.rpartition("-")
    h, m, s = (int(x) for x in rest.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def check_resumed_run(run: Path, epochs: int, texts: list[str]) -> None:
    """Completed, every epoch logged once, and the lines written before each interruption kept byte for
    byte (they hold the measured time_per_epoch, which a restarted run would not repeat)."""
    final = (run / "metrics.jsonl").read_text()
    for a, b in zip(texts, [*texts[1:], final]):
        assert b.startswith(a)
    assert [json.loads(line)["epoch"] for line in final.splitlines()] == list(range(1, epochs + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("completed", epochs)


def signalled(job: str) -> bool:
    """Whether SIGUSR1 has reached the task of job ``job``'s step 0 (on this node), which the test stopped:
    slurmd continues a stopped step when it signals it; a step still stopped with the signal pending is
    continued here."""
    out = subprocess.run(
        ["scontrol", "listpids", job_field(job, "JobId")], capture_output=True, text=True, check=True
    ).stdout
    pids = [row[0] for row in (r.split() for r in out.splitlines()[1:]) if row[2:4] == ["0", "0"]]
    try:
        text = Path(f"/proc/{pids[0]}/status").read_text()
    except (IndexError, FileNotFoundError):
        return True  # the stopped task has left: the signal reached it and the job was requeued
    status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if status["State"].split()[0] != "T":
        return True
    pending = (int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)) >> (signal.SIGUSR1 - 1) & 1
    if pending:
        subprocess.run(["scancel", "--signal=CONT", job], check=True)
    return bool(pending)


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_stop_signals_requeue_the_jobs_and_they_resume(slurm_cluster: None, tmp_path: Path) -> None:
    """Two sweep jobs, each stopped twice while it trains, each time once it has logged a new epoch.
    Job 0: USR1 to the batch shell (`scancel --signal=USR1 --batch`, forwarded by the batch script), then an
    operator's `scontrol requeue` (SIGTERM). Job 1: the time-limit signal (`--signal=USR1@180`, due at once
    after `scontrol update TimeLimit=<run time + 2 min>`; the run is held with SIGSTOP until the signal has
    reached it, up to 150 s, as slurmctld checks time limits every 30 s; the limit is restored once the job
    is requeued), then USR1 to the job step (`scancel --signal=USR1`). Each time the run saves its
    checkpoint and the job comes back (requeued by itself, except after `scontrol requeue`) and resumes;
    every epoch is logged once, the lines logged before each stop are kept, and the submitter returns 0."""
    sweep = tmp_path / "sweep"
    metrics = [sweep / "digits" / opt / "seed1" / "metrics.jsonl" for opt in ("ramda", "proxsgd")]
    epochs = 10
    cmd = sweep_cmd(sweep, "optimizer=ramda,proxsgd", f"trainer.epochs={epochs}", "task.max_train_batches=10")
    cmd += ["task.max_eval_batches=2", "hydra.launcher.signal_delay_s=180"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    releaser = Releaser(sweep)
    frozen: dict[str, float] = {}  # job -> deadline for the time-limit signal to reach the stopped run

    def scancel(*args: str) -> None:
        subprocess.run(["scancel", *args], check=True)

    def time_limit(job: str) -> None:
        releaser.held.add(job)  # the limit is restored below before the requeued job may start
        limit = minutes(job_field(job, "RunTime")) + 2
        scancel("--signal=STOP", job)
        subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit}"], check=True)
        frozen[job] = time.monotonic() + 150

    stops = [
        [lambda job: scancel("--signal=USR1", "--batch", job),
         lambda job: subprocess.run(["scontrol", "requeue", job], check=True)],
        [time_limit, lambda job: scancel("--signal=USR1", job)],
    ]  # fmt: skip
    texts: list[list[str]] = [[], []]
    base = [0, 0]  # epoch lines when the job was first seen running after its last stop (-1: not yet)
    deadline = time.monotonic() + 600
    try:
        with releaser:
            while any(len(t) < 2 for t in texts) or releaser.held:
                assert time.monotonic() < deadline and proc.poll() is None, f"stuck after stops {texts}"
                time.sleep(0.1)
                jobs = submitit_jobs(sweep)
                for i, job in enumerate(jobs):
                    if job in frozen:
                        assert time.monotonic() < frozen[job], f"no time-limit signal for job {job} in 150 s"
                        if signalled(job):
                            del frozen[job]
                    restarts = job_field(job, "Restarts")
                    if job in releaser.held and restarts == str(len(texts[i])):
                        subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=60"], check=True)
                        releaser.held.discard(job)
                    text = metrics[i].read_text() if metrics[i].exists() else ""
                    running = restarts == str(len(texts[i])) and job_field(job, "JobState") == "RUNNING"
                    if base[i] < 0 and running:
                        base[i] = text.count("\n")
                    if len(texts[i]) < 2 and running and 0 <= base[i] < text.count("\n"):
                        texts[i].append(text)
                        base[i] = -1
                        stops[i][len(texts[i]) - 1](job)
            out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            cancel(sweep)
    assert proc.returncode == 0, out[-3000:]
    for i, job in enumerate(jobs):
        wait_gone(job, 30)
        assert job_field(job, "Restarts") == "2" and job_field(job, "JobState") == "COMPLETED"
        check_resumed_run(metrics[i].parent, epochs, texts[i])
        folder = sweep / ".submitit" / job
        log = (folder / f"{job}_0_log.out").read_text() + (folder / f"{job}_0_log.err").read_text()
        assert log.count("Starting with JobEnvironment") == 3, log[-3000:]
        assert log.count(f"requeued job {job} (requeue") == (1 if i == 0 else 2), log[-3000:]
        assert log.count("stopped by signal 10: checkpoint saved") == (1 if i == 0 else 2), log[-3000:]


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_stop_stops_every_daemon_start_started(slurm_cluster: None) -> None:
    """`slurm.sh stop` ends slurmd, slurmctld and the munged that `start` launched (last test of the module:
    the cluster stays stopped; the next module that needs it starts it again)."""
    state = Path(os.environ.get("RAMDA_SLURM_STATE", "/var/lib/ramda-slurm"))
    pids = {p.stem: int(p.read_text()) for p in state.glob("*.pid")}
    assert {"slurmctld", "slurmd"} <= set(pids) and all(running(p) for p in pids.values()), pids
    subprocess.run(["bash", str(ROOT / "scripts" / "ci" / "slurm.sh"), "stop"], check=True, timeout=120)
    assert not [name for name, pid in pids.items() if running(pid)]
    assert not list(state.glob("*.pid"))
    status = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci" / "slurm.sh"), "status"], capture_output=True
    )
    assert status.returncode == 1
