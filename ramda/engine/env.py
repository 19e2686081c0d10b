"""The process's device and seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ramda.tasks.base import RunEnv


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU; ``cuda`` without an index is the
    current CUDA device (``torch.cuda.set_device`` and the kernels need the index)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> int:
    """Fix the process's CPU thread counts once, before the first step: torch's and numba's (the fused CPU
    kernels') both become ``threads`` (> 0) or torch's default (0); returns torch's count.

    numba's thread pool is started first: its OpenMP layer resets the OpenMP thread count that torch shares
    when it starts, which would otherwise change torch's count at the first fused step."""
    n = threads if threads > 0 else torch.get_num_threads()
    with contextlib.suppress(ImportError):
        import numba

        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(n)
    return n


def make_env(device: str, seed: int, threads: int = 0) -> RunEnv:
    """A single-process environment on ``device`` (rank 0 of 1) with the CPU thread counts of :func:`set_threads`."""
    set_threads(threads)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return RunEnv(device=dev, seed=seed, rank=0, world_size=1)
