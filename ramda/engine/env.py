"""The process's device and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from ramda.tasks.base import RunEnv


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_env(device: str, seed: int, threads: int = 0) -> RunEnv:
    """A single-process environment on ``device`` (rank 0 of 1); ``threads`` > 0 sets torch's CPU threads."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return RunEnv(device=dev, seed=seed, rank=0, world_size=1)
