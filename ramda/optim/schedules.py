"""The schedules of docs/math.md#schedules, as ordinary scheduler objects with ``state_dict``/``load_state_dict``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch.optim import Optimizer

from ramda.optim.base import RegularizedOptimizer


class StageWiseLR:
    """Stage-wise learning rate: call :meth:`step` once at the end of every epoch; after epoch ``m`` of
    ``milestones`` completes, lr ← γ·lr. For optimizers with ``restart`` (RMDA, RAMDA) a milestone is also a
    dual-averaging restart (W⁰ ← W; V, U, α, k ← 0) with ε ← γ·ε for RAMDA."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.milestones = sorted(int(m) for m in milestones)
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive epoch numbers, got {self.milestones}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.gamma = gamma
        self.epoch = 0

    def step(self) -> None:
        self.epoch += 1
        hits = self.milestones.count(self.epoch)
        for _ in range(hits):
            for group in self.optimizer.param_groups:
                group["lr"] *= self.gamma
            if isinstance(self.optimizer, RegularizedOptimizer):
                self.optimizer.restart(eps_scale=self.gamma)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "milestones": list(self.milestones), "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.milestones = list(state["milestones"])
        self.gamma = state["gamma"]


class MomentumSchedule:
    """RMDA/RAMDA momentum schedule: once the (0-based) epoch reaches ``start_epoch`` — the last milestone —
    every optimizer step j = 2, 3, … after that point sets c ← min(c₀√j, 1), c₀ the group's initial momentum.
    Call :meth:`step` with the current epoch after every optimizer step."""

    def __init__(self, optimizer: Optimizer, start_epoch: int) -> None:
        self.optimizer = optimizer
        self.start_epoch = int(start_epoch)
        self.base = [group["momentum"] for group in optimizer.param_groups]
        self.count = 1

    def step(self, epoch: int) -> None:
        if epoch < self.start_epoch:
            return
        self.count += 1
        for group, c0 in zip(self.optimizer.param_groups, self.base):
            group["momentum"] = min(c0 * math.sqrt(self.count), 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"start_epoch": self.start_epoch, "base": list(self.base), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_epoch = state["start_epoch"]
        self.base = list(state["base"])
        self.count = state["count"]
