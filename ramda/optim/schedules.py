"""The stage-wise learning rate and the RMDA/RAMDA momentum schedule, timed as the authors' released
scheduler (``Core/scheduler.py``, class ``multistep_param_scheduler``), as ordinary scheduler objects with
``state_dict``/``load_state_dict`` (docs/math.md#schedules).

Both count *ticks*: an epoch (0-based epoch index) or, for step-counted runs, an optimizer step. For a step the
tick is the number of optimizer steps taken so far, the current one included (1, 2, …): the value the
released ``train.py`` of Transformer-XL passes to the scheduler. The released rules, given the tick t:

- after tick t, when t + 1 is a milestone: lr ← γ·lr (and for RMDA/RAMDA a dual-averaging restart);
- at every optimizer step of a tick t with t + 1 ≥ the last milestone: j ← j + 1, c ← min(c₀√j, 1), with j
  starting at 1 and never reset.

So with epochs the momentum rises during the epoch *before* the last restart (milestone 120: epoch 119,
0-based), and with steps a milestone m takes effect after step m − 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch.optim import Optimizer

from ramda.optim.base import RegularizedOptimizer


class StageWiseLR:
    """Stage-wise learning rate: call :meth:`step` at the end of every tick; after tick t with t + 1 in
    ``milestones``, lr ← γ·lr. For optimizers with ``restart`` (RMDA, RAMDA) a milestone is also a
    dual-averaging restart (W⁰ ← W; V, U, α, k ← 0) with ε ← γ·ε for RAMDA. ``step()`` without a tick takes
    the tick after the previous one (0 first): one call per epoch."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.milestones = sorted(int(m) for m in milestones)
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive tick counts, got {self.milestones}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.gamma = gamma
        self.ticks = 0  # ticks ended so far: the next tick without an argument

    def step(self, tick: int | None = None) -> None:
        tick = self.ticks if tick is None else int(tick)
        self.ticks = tick + 1
        for _ in range(self.milestones.count(tick + 1)):
            for group in self.optimizer.param_groups:
                group["lr"] *= self.gamma
            if isinstance(self.optimizer, RegularizedOptimizer):
                self.optimizer.restart(eps_scale=self.gamma)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "milestones": list(self.milestones), "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ticks = state["ticks"]
        self.milestones = list(state["milestones"])
        self.gamma = state["gamma"]


class MomentumSchedule:
    """RMDA/RAMDA momentum schedule: call :meth:`step` with the current tick after every optimizer step; from
    tick ``start_epoch`` on (an epoch, or a step count for step-counted runs), each call sets j ← j + 1 (j starts
    at 1, never reset) and c ← min(c₀√j, 1), c₀ the group's initial momentum. ``start_epoch`` defaults to the
    last milestone − 1 (the released rule t + 1 ≥ the last milestone), or 0 without milestones."""

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int] = (), start_epoch: int | None = None
    ) -> None:
        self.optimizer = optimizer
        marks = sorted(int(m) for m in milestones)
        if start_epoch is None:
            start_epoch = marks[-1] - 1 if marks else 0
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be a tick >= 0, got {start_epoch}")
        self.start = int(start_epoch)
        self.base = [group["momentum"] for group in optimizer.param_groups]
        self.count = 1

    def step(self, tick: int) -> None:
        if tick < self.start:
            return
        self.count += 1
        for group, c0 in zip(self.optimizer.param_groups, self.base):
            group["momentum"] = min(c0 * math.sqrt(self.count), 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start, "base": list(self.base), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start = state["start"]
        self.base = list(state["base"])
        self.count = state["count"]
