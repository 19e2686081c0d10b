"""Data-parallel training with PyTorch's own stack: ``torch.distributed`` process groups and
``DistributedDataParallel``.

A process learns its place from the launcher's environment:

- ``torchrun`` (one node or many): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- ``srun`` with one task per GPU (no torchrun): ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``, the
  master being the first host of ``scontrol show hostnames $SLURM_STEP_NODELIST`` and the port
  ``MASTER_PORT`` or 20000 + job id mod 20000;
- neither: one process, no process group.

The backend is NCCL on CUDA and gloo on the CPU. Every rank computes the same thing on its shard of the global
batch; DDP averages the gradients before ``optimizer.step()``, so the optimizer (RAMDA's dual-averaging sums,
its preconditioner, the inexact solver) runs on identical inputs on every rank and the replicas stay identical
with no communication beyond DDP's. Only rank 0 writes files.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ramda.engine.env import make_env, resolve_device, set_threads
from ramda.engine.errors import ConfigError
from ramda.tasks.base import RunEnv

TIMEOUT = timedelta(minutes=30)


def launcher_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``torchrun``-style variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
    of this process, or ``{}`` for a single process. Under ``srun`` without torchrun they are derived from
    SLURM's variables (a step of more than one task)."""
    env = dict(os.environ if environ is None else environ)
    if _from_torchrun(env):
        keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        out = {k: env[k] for k in keys if k in env}
        out.setdefault("LOCAL_RANK", "0")
        return out if int(out["WORLD_SIZE"]) > 1 else {}
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if tasks <= 1 or "SLURM_PROCID" not in env:
        return {}
    master = env.get("MASTER_ADDR") or _first_slurm_host(
        env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
    )
    port = env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": str(tasks),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": master,
        "MASTER_PORT": port,
    }


def _from_torchrun(env: Mapping[str, str]) -> bool:
    """Whether the ranks come from torchrun-style variables (else, if any, from SLURM's)."""
    return "RANK" in env and "WORLD_SIZE" in env


def _first_slurm_host(nodelist: str) -> str:
    """The first host name of a SLURM node list (``node[01-04]`` → ``node01``), via ``scontrol``."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(
            "SLURM_STEP_NODELIST",
            f"cannot expand '{nodelist}' with scontrol ({err})",
            "set MASTER_ADDR to the first node's host name, or launch with torchrun",
        ) from err
    if not out:
        raise ConfigError("SLURM_STEP_NODELIST", f"'{nodelist}' names no host", "set MASTER_ADDR")
    return out[0]


def local_gpu(local: int, count: int, srun: bool) -> int:
    """The GPU index of the process of local rank ``local`` that sees ``count`` GPUs: ``local``, one GPU per process.
    Under ``srun`` without torchrun (``srun``), a task that sees fewer GPUs than its local rank was bound to its
    own GPUs by SLURM (``--gpus-per-task``, ``--gpu-bind``, a site's default binding): it takes the first of them.
    Two ranks that do share one GPU are refused by NCCL when the process group starts (a duplicate GPU)."""
    if local < count:
        return local
    if srun and count > 0:
        return 0
    raise ConfigError(
        "LOCAL_RANK",
        f"{local} but this node has {count} CUDA devices",
        "valid: at most one process per GPU (torchrun --nproc_per_node <= the GPU count)",
    )


def setup(device: str, seed: int, threads: int = 0) -> RunEnv:
    """This process's :class:`RunEnv`; joins the process group when a launcher started several processes.

    Distributed on CUDA, process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK`` (:func:`local_gpu`; ``trainer.device``
    must be ``auto`` or ``cuda``); on the CPU every process uses the CPU.
    """
    env = launcher_env()
    if not env:
        return make_env(device, seed, threads)
    set_threads(threads)
    rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    dev = resolve_device(device)
    if dev.type == "cuda":
        if device not in ("auto", "cuda"):
            raise ConfigError(
                "trainer.device",
                f"'{device}' pins every process to one GPU",
                "valid with several processes: auto or cuda (process LOCAL_RANK uses cuda:LOCAL_RANK)",
            )
        dev = torch.device(
            "cuda", local_gpu(local, torch.cuda.device_count(), srun=not _from_torchrun(os.environ))
        )
        torch.cuda.set_device(dev)
    os.environ.update(env)
    if not dist.is_initialized():  # once per process: the jobs of a multirun share it
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world,
            timeout=TIMEOUT,
            device_id=dev if dev.type == "cuda" else None,
        )
        atexit.register(dist.destroy_process_group)
    return RunEnv(device=dev, seed=seed, rank=rank, world_size=world)


def close(env: RunEnv, wait: bool = True) -> None:
    """The end of a run: a barrier when ``wait`` (every rank got here), so that no rank is still writing when
    another exits and the launcher stops the rest. The process group itself lives until the process exits
    (re-creating it on torchrun's store hangs), so the jobs of a multirun reuse it."""
    if wait and env.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce(values: Sequence[float], op: str, env: RunEnv) -> list[float]:
    """Element-wise ``sum`` or ``max`` of ``values`` over the ranks (float64; the identity for one process)."""
    if not env.distributed:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def agree(nonfinite: bool, signum: int | None, env: RunEnv) -> tuple[bool, int | None]:
    """Whether any rank saw a non-finite loss and the signal any rank received (the largest number), in one
    all-reduce, so that every rank stops at the same step."""
    if not env.distributed:
        return nonfinite, signum
    bad, sig = all_reduce([float(nonfinite), float(signum or 0)], "max", env)
    return bad > 0, int(sig) or None


def all_gather(obj: Any, env: RunEnv) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def rank0_run_dir(run_dir: Path, env: RunEnv) -> Path:
    """Rank 0's run directory, for every rank. Each rank's Hydra resolves ``${now:...}`` itself and may land a
    second apart; a rank whose own (still empty) directory differs removes it."""
    if not env.distributed:
        return run_dir
    box = [str(run_dir)]
    dist.broadcast_object_list(box, src=0)
    chosen = Path(box[0])
    if chosen.resolve() != run_dir.resolve() and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return chosen


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream after model construction (rank 0 keeps ``seed``, so a
    one-process run is unchanged); distinct ranks draw distinct dropout masks and augmentations."""
    return seed if rank == 0 else (seed + 1_000_003 * rank) % 2**32


def wrap(model: nn.Module, env: RunEnv, sync_batchnorm: bool = False) -> nn.Module:
    """``model`` as DDP trains it (the model itself for one process). ``sync_batchnorm`` computes BatchNorm
    statistics over the global batch (CUDA only, as PyTorch's SyncBatchNorm); the parameters and their order
    are unchanged, so the optimizer built on ``model`` stays valid and checkpoints stay portable."""
    if not env.distributed:
        return model
    if sync_batchnorm:
        if env.device.type != "cuda":
            raise ConfigError(
                "trainer.sync_batchnorm",
                "PyTorch's SyncBatchNorm runs only on CUDA devices",
                "valid on the CPU: false (each process normalises over its share of the batch)",
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # converts children in place, keeps the root
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
