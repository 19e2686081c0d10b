"""SLURM sweeps: requests checked against the partition, requeue on preemption, a submitter that returns.

Used by the ``hydra/launcher=slurm`` launcher (``hydra_plugins/ramda_slurm_launcher``) and by
``scripts/sweep_plan.py``; the whole story is in docs/cluster.md.

- :func:`check_request`: before anything is submitted, the job's per-node request (CPUs = tasks_per_node ×
  cpus_per_task, memory, GPUs, time limit) is compared with every node of the partition as ``sinfo`` reports
  it; a request that no node can ever satisfy is refused with one line instead of pending forever.
- :func:`forwarding_script`: the batch script runs the job step in the background and forwards USR1/TERM
  that reach the batch shell (``scancel --signal=USR1 --batch``) to the job step, where the runner saves a
  checkpoint and stops.
- :func:`requeue_self`: called by the job (rank 0) when the runner stopped on such a signal: ``scontrol requeue``
  of its own job, at most ``max_requeues`` times (SLURM counts them in ``SLURM_RESTART_COUNT``); the requeued job
  runs the same overrides in the same run directory and resumes from ``checkpoint.pt``.
- :class:`Waiter`: the submitter polls ``squeue`` (``sacct`` or ``scontrol`` for jobs that left the queue) until
  every job has a result or ended without one, reports the latter with their log path, and returns.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# The runner exits with 128 + signum after saving its checkpoint on one of these (train.py, ramda.engine.signals).
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
PREEMPT_EXIT_CODES = tuple(128 + int(s) for s in PREEMPT_SIGNALS)
# Job states after which a job without a result will not run again (SLURM's squeue/sacct/scontrol names).
ENDED = (
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
)
ENDED += ("TIMEOUT", "REVOKED", "SPECIAL_EXIT")


class ClusterError(RuntimeError):
    """A request the cluster can never run, or SLURM's tools failing: one line naming the key."""


# ------------------------------------------------------------------------------------------ resources
@dataclass(frozen=True)
class Request:
    """What one job of the array asks for, per node (``None``: not requested)."""

    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    gpus_per_node: int | None = None
    timeout_min: int | None = None
    partition: str | None = None

    @staticmethod
    def of(params: Mapping[str, Any]) -> Request:
        """From the launcher's parameters (``hydra.launcher.*``)."""
        return Request(
            nodes=int(params.get("nodes") or 1),
            tasks_per_node=int(params.get("tasks_per_node") or 1),
            cpus_per_task=params.get("cpus_per_task"),
            mem_gb=params.get("mem_gb"),
            gpus_per_node=params.get("gpus_per_node") or None,
            timeout_min=params.get("timeout_min"),
            partition=params.get("partition"),
        )

    @property
    def cpus(self) -> int:
        return self.tasks_per_node * (self.cpus_per_task or 1)

    def describe(self) -> str:
        mem = "default memory" if self.mem_gb is None else f"mem_gb={self.mem_gb:g}"
        return (
            f"nodes={self.nodes} × (tasks_per_node={self.tasks_per_node} × cpus_per_task={self.cpus_per_task or 1}"
            f", {mem}, gpus_per_node={self.gpus_per_node or 0}), timeout_min={self.timeout_min}"
        )


@dataclass(frozen=True)
class NodeGroup:
    """``count`` nodes of one partition with the same CPUs, memory (MB) and GPUs."""

    count: int
    cpus: int
    mem_mb: int
    gpus: int


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    max_time_min: float | None  # None: no limit
    groups: tuple[NodeGroup, ...]


def gres_gpus(gres: str) -> int:
    """GPUs per node in a ``sinfo %G`` string: ``gpu:8``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``, ``(null)``."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        parts = re.sub(r"\(.*\)", "", item).split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def time_minutes(text: str) -> float | None:
    """Minutes in a SLURM time limit (``infinite``, ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``)."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, rest = text.rpartition("-")
    fields = [int(x) for x in rest.split(":")]
    if days:
        fields += [0] * (3 - len(fields))
        h, m, s = fields
    elif len(fields) == 3:
        h, m, s = fields
    elif len(fields) == 2:
        h, (m, s) = 0, fields
    else:
        h, m, s = 0, fields[0], 0
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def read_partitions(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> dict[str, Partition]:
    """Every partition with its node groups, from ``sinfo``; ``ClusterError`` if ``sinfo`` is unavailable."""
    try:
        proc = run(
            ["sinfo", "--noheader", "--format=%P|%c|%m|%G|%l|%D"], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise ClusterError(
            "sinfo not found: the SLURM client tools are not installed on this machine"
        ) from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ClusterError(f"sinfo failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    found: dict[str, Partition] = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, cpus, mem, gres, limit, count = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        group = NodeGroup(int(count), int(cpus.rstrip("+")), int(mem.rstrip("+")), gres_gpus(gres))
        old = found.get(name)
        groups = (old.groups if old else ()) + (group,)
        found[name] = Partition(name, default or bool(old and old.default), time_minutes(limit), groups)
    return found


def check_request(request: Request, partitions: Mapping[str, Partition]) -> str | None:
    """Why no node of the request's partition can ever run the job (one line naming the keys), or ``None``."""
    if request.partition is None:
        defaults = [p for p in partitions.values() if p.default]
        if not defaults:
            return "hydra.launcher.partition: the cluster has no default partition; set one of " + ", ".join(
                sorted(partitions)
            )
        part = defaults[0]
    elif request.partition not in partitions:
        valid = ", ".join(sorted(partitions)) or "none"
        return f"hydra.launcher.partition={request.partition}: no such partition (valid: {valid})"
    else:
        part = partitions[request.partition]
    where = f"partition '{part.name}'"
    if (
        request.timeout_min is not None
        and part.max_time_min is not None
        and request.timeout_min > part.max_time_min
    ):
        return (
            f"hydra.launcher.timeout_min={request.timeout_min}: {where} allows at most {part.max_time_min:g} "
            "minutes per job; lower it (a longer run is requeued and resumes)"
        )
    mem_mb = None if request.mem_gb is None else request.mem_gb * 1024
    fit = [
        g
        for g in part.groups
        if g.cpus >= request.cpus
        and (mem_mb is None or g.mem_mb >= mem_mb)
        and g.gpus >= (request.gpus_per_node or 0)
    ]
    if sum(g.count for g in fit) >= request.nodes:
        return None
    biggest = max(part.groups, key=lambda g: (g.gpus, g.cpus, g.mem_mb))
    if fit:
        why = f"only {sum(g.count for g in fit)} node(s) of {where} fit one node's share; lower hydra.launcher.nodes"
    else:
        keys = []
        if all(g.cpus < request.cpus for g in part.groups):
            keys.append("cpus_per_task (× tasks_per_node)")
        if mem_mb is not None and all(g.mem_mb < mem_mb for g in part.groups):
            keys.append("mem_gb")
        if all(g.gpus < (request.gpus_per_node or 0) for g in part.groups):
            keys.append("gpus_per_node (null on a CPU-only cluster)")
        lower = ", ".join(f"hydra.launcher.{k}" for k in keys) or "the request"
        why = f"lower {lower} or choose another hydra.launcher.partition"
    return (
        f"hydra.launcher: no node of {where} can ever run a job of {request.describe()} (largest node: "
        f"{biggest.cpus} CPUs, {biggest.mem_mb / 1024:.1f} GB, {biggest.gpus} GPUs); {why}"
    )


# -------------------------------------------------------------------------------------- batch script
FORWARD = """\
# Run the step in the background so that USR1/TERM sent to this batch shell (scancel --signal=USR1 --batch)
# reach the run at once; the run saves its checkpoint and the job requeues itself (ramda.cluster).
_ramda_job=${{SLURM_ARRAY_JOB_ID:+${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}}}  # an array task: not the array
_ramda_forward() {{ scancel --signal="$1" "${{_ramda_job:-$SLURM_JOB_ID}}" 2>/dev/null || true; }}
trap '_ramda_forward USR1' USR1
trap '_ramda_forward TERM' TERM
{command} &
_ramda_step=$!
while :; do
    wait "$_ramda_step"
    _ramda_rc=$?
    kill -0 "$_ramda_step" 2>/dev/null || break
done
exit "$_ramda_rc"
"""


def forwarding_script(text: str) -> str:
    """submitit's batch script with its ``srun`` line run in the background under the traps of :data:`FORWARD`."""
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if line.startswith("srun ")]
    if len(idx) != 1:
        raise ClusterError("submitit's batch script has no single srun line; cannot forward signals")
    (i,) = idx
    return "\n".join([*lines[:i], FORWARD.format(command=lines[i]).rstrip("\n"), *lines[i + 1 :]])


# ------------------------------------------------------------------------------------------- requeue
def own_job_id(env: Mapping[str, str] = os.environ) -> str | None:
    """This job's id as ``scontrol`` takes it (``<array>_<task>`` for an array task), or ``None`` outside SLURM."""
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def job_state(job: str) -> str:
    """``JobState`` of ``scontrol show job`` (``UNKNOWN`` when SLURM no longer knows the job)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=60)
    match = re.search(r"\bJobState=(\S+)", proc.stdout)
    return match.group(1) if match else "UNKNOWN"


def requeue_self(
    max_requeues: int,
    out: TextIO = sys.stderr,
    env: Mapping[str, str] = os.environ,
    sweep_dir: str = "<sweep dir>",
) -> bool:
    """Requeue this job (after the runner saved its checkpoint on a stop signal), unless it was requeued
    ``max_requeues`` times already, or SLURM is requeuing it anyway (preemption, ``scontrol requeue``).
    Only the job's first process acts. Returns whether this call requeued the job."""
    job = own_job_id(env)
    if job is None or env.get("SLURM_PROCID", "0") != "0":
        return False
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    if restarts >= max_requeues:
        print(
            f"not requeuing job {job}: requeued {restarts} time(s) already (hydra.launcher.max_requeues="
            f"{max_requeues}); the same sweep command with hydra.sweep.dir={sweep_dir} resumes it",
            file=out,
            flush=True,
        )
        return False
    state = job_state(job)
    if state != "RUNNING":  # requeued or cancelled from outside: SLURM does (or does not) bring it back
        print(f"job {job} is {state}: not requeuing it from inside", file=out, flush=True)
        return False
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        print(f"scontrol requeue {job} failed: {proc.stderr.strip()}", file=out, flush=True)
        return False
    print(f"requeued job {job} (requeue {restarts + 1} of at most {max_requeues})", file=out, flush=True)
    return True


# ---------------------------------------------------------------------------------------------- wait
@dataclass
class Tracked:
    """One submitted job: its submitit handle, a label for messages, and where its log is."""

    job: Any  # submitit.slurm.slurm.SlurmJob
    label: str
    done: bool = False
    failed: str | None = None
    gone_since: float | None = None


class Waiter:
    """Polls SLURM every ``poll_s`` seconds until every job has a result (submitit's result file) or ended
    without one. Job states come from ``squeue`` while jobs are queued, then from ``sacct`` (or, without
    accounting, ``scontrol``; said once). A job that ended without a result is reported at once with its
    state and log; :meth:`wait` returns the number of such jobs."""

    def __init__(self, poll_s: float = 10.0, grace_s: float = 20.0, out: TextIO = sys.stderr) -> None:
        self.poll_s = poll_s
        self.grace_s = grace_s  # how long a job may be gone from the queue before its result file shows up
        self.out = out
        self.sacct = shutil.which("sacct") is not None
        self._said_sacct = False

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def queued(self, array_ids: Sequence[str]) -> dict[str, str]:
        """State of every queued job (array tasks as ``<array>_<task>``)."""
        cmd = ["squeue", "--noheader", "--array", "--format=%i|%T", f"--jobs={','.join(array_ids)}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        states = {}
        for line in proc.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            if job:
                states[job] = state
        return states

    def final_state(self, job: str) -> str:
        """A job's state once it left the queue: ``sacct`` if accounting works, else ``scontrol``."""
        if self.sacct:
            cmd = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=State", f"--jobs={job}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.split()[0]
            if proc.returncode != 0:
                self.sacct = False
                if not self._said_sacct:
                    reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
                    self._say(f"note: sacct unavailable ({reason}); job states from squeue and scontrol")
                    self._said_sacct = True
        return job_state(job)

    @staticmethod
    def has_result(job: Any) -> bool:
        tasks = getattr(job, "_sub_jobs", None) or [job]
        return all(t.paths.result_pickle.exists() for t in tasks)

    def wait(self, tracked: Sequence[Tracked]) -> int:
        arrays = sorted({t.job.job_id.split("_")[0] for t in tracked})
        last = ""
        while True:
            pending = [t for t in tracked if not t.done]
            if not pending:
                break
            queued = self.queued(arrays)
            now = time.monotonic()
            for t in pending:
                if self.has_result(t.job):
                    t.done = True
                    continue
                if t.job.job_id in queued:
                    t.gone_since = None
                    continue
                t.gone_since = t.gone_since or now
                state = self.final_state(t.job.job_id).split()[0].rstrip("+")
                forgotten = state == "UNKNOWN" and now - t.gone_since >= self.grace_s  # purged by SLURM
                if state not in ENDED and not forgotten:
                    continue  # requeued (pending again) or between squeue and scontrol
                if state == "COMPLETED" and now - t.gone_since < self.grace_s:
                    continue  # the result file may not be visible yet on a network file system
                t.done = True
                t.failed = state
                log = t.job.paths.stderr
                tail = _last_line(log)
                self._say(
                    f"error: job {t.job.job_id} ({t.label}) ended {state} without a result; log: {log}"
                    + (f" (last line: {tail})" if tail else "")
                )
            counts: dict[str, int] = {}
            for t in tracked:
                key = (
                    "failed" if t.failed else "done" if t.done else queued.get(t.job.job_id, "ending").lower()
                )
                counts[key] = counts.get(key, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            if summary != last:
                self._say(f"jobs: {summary}")
                last = summary
            if any(not t.done for t in tracked):
                time.sleep(self.poll_s)
        return sum(1 for t in tracked if t.failed)


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (``""`` if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def scancel_hint(tracked: Sequence[Tracked]) -> str:
    """The command that cancels what a sweep left running."""
    return "scancel " + " ".join(
        shlex.quote(j) for j in sorted({t.job.job_id.split("_")[0] for t in tracked})
    )
