"""`ramda.cluster` without a cluster: SLURM's formats (time limits, GRES), the resource check against
partitions as `sinfo` reports them, the batch script's signal forwarding (checked by bash itself) and the
requeue limit. The same code against a real SLURM cluster: tests/test_slurm.py."""

from __future__ import annotations

import io
import subprocess

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from ramda.cluster import (
    NodeGroup,
    Partition,
    Request,
    check_request,
    forwarding_script,
    gres_gpus,
    read_partitions,
    requeue_self,
    time_minutes,
)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:30", 30.5), ("2:00:00", 120),
     ("1-00:00:00", 1440), ("2-12", 3600), ("1-01:30", 1530)],
)  # fmt: skip
def test_time_limits(text: str, minutes: float | None) -> None:
    assert time_minutes(text) == minutes


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("(null)", 0),
        ("gpu:8", 8),
        ("gpu:a100:4(S:0-1)", 4),
        ("gpu:a100:2,gpu:v100:1", 3),
        ("shard:8,gpu:2", 2),
    ],
)
def test_gres_gpus(gres: str, gpus: int) -> None:
    assert gres_gpus(gres) == gpus


CPU = Partition("debug", True, None, (NodeGroup(1, 2, 21694, 0),))
GPU = Partition("gpu", False, 2880.0, (NodeGroup(3, 64, 512000, 8), NodeGroup(1, 32, 256000, 4)))
PARTS = {"debug": CPU, "gpu": GPU}


def test_requests_that_fit() -> None:
    assert check_request(Request(cpus_per_task=1, mem_gb=4, timeout_min=60), PARTS) is None
    assert check_request(Request(cpus_per_task=2, mem_gb=21), PARTS) is None  # 21 GB = 21504 MB ≤ 21694 MB
    gpu = Request(nodes=3, tasks_per_node=8, cpus_per_task=8, mem_gb=64, gpus_per_node=8, partition="gpu")
    assert check_request(gpu, PARTS) is None
    assert check_request(Request(nodes=4, gpus_per_node=4, timeout_min=2880, partition="gpu"), PARTS) is None


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request(cpus_per_task=8, mem_gb=64, gpus_per_node=1),
         "no node of partition 'debug' can ever run a job of nodes=1 × (tasks_per_node=1 × cpus_per_task=8, "
         "mem_gb=64, gpus_per_node=1), timeout_min=None (largest node: 2 CPUs, 21.2 GB, 0 GPUs); lower "
         "hydra.launcher.cpus_per_task (× tasks_per_node), hydra.launcher.mem_gb, hydra.launcher.gpus_per_node"),
        (Request(tasks_per_node=2, cpus_per_task=2), "lower hydra.launcher.cpus_per_task (× tasks_per_node) or"),
        (Request(mem_gb=22), "lower hydra.launcher.mem_gb or choose another hydra.launcher.partition"),
        (Request(nodes=4, gpus_per_node=8, partition="gpu"), "only 3 node(s) of partition 'gpu' fit"),
        (Request(partition="big"), "hydra.launcher.partition=big: no such partition (valid: debug, gpu)"),
        (Request(timeout_min=4320, partition="gpu"),
         "hydra.launcher.timeout_min=4320: partition 'gpu' allows at most 2880 minutes per job"),
    ],
)  # fmt: skip
def test_requests_that_never_run(request_: Request, message: str) -> None:
    problem = check_request(request_, PARTS)
    assert problem is not None and message in problem and "\n" not in problem


def test_no_default_partition() -> None:
    assert "the cluster has no default partition; set one of gpu" in check_request(Request(), {"gpu": GPU})


def test_read_partitions_from_sinfo_lines() -> None:
    lines = "debug*|2|21694|(null)|infinite|1\ngpu|64|512000|gpu:a100:8(S:0-1)|2-00:00:00|3\ngpu|32|256000|gpu:4|2-00:00:00|1\n"

    def sinfo(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert cmd == ["sinfo", "--noheader", "--format=%P|%c|%m|%G|%l|%D"]
        return subprocess.CompletedProcess(cmd, 0, lines, "")

    assert read_partitions(sinfo) == PARTS


def test_forwarding_script_is_valid_bash() -> None:
    """submitit's own script with its srun line moved into the background under USR1/TERM traps."""
    text = _make_sbatch_string(command="python -u -m submitit.core._submit /x", folder="/x/%j", map_count=2)
    script = forwarding_script(text)
    lines = script.splitlines()
    (srun,) = [line for line in lines if line.startswith("srun ")]
    assert srun.endswith("python -u -m submitit.core._submit /x &")
    assert "trap '_ramda_forward USR1' USR1" in lines and "trap '_ramda_forward TERM' TERM" in lines
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        line for line in text.splitlines() if line.startswith("#SBATCH")
    ]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_requeue_limit() -> None:
    out = io.StringIO()
    assert not requeue_self(3, out, env={})  # not in SLURM: nothing to do
    env = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_RESTART_COUNT": "3"}
    assert not requeue_self(3, out, env=env)
    assert out.getvalue().startswith(
        "not requeuing job 7: requeued 3 time(s) already (hydra.launcher.max_requeues=3)"
    )
    assert not requeue_self(
        3, out, env={**env, "SLURM_PROCID": "1", "SLURM_RESTART_COUNT": "0"}
    )  # not rank 0
