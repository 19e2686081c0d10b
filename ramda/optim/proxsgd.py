"""ProxSGD (ICLR'20) with a unit-stepsize prox so that structure appears (docs/math.md#proxsgd)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ramda.optim.base import RegularizedOptimizer


class ProxSGD(RegularizedOptimizer):
    r"""m ← (1 − c)·m + c·g (m = c·g at the first step),   W ← prox_{η λ ψ}(W − η m).

    Args: ``lr`` η, ``momentum`` c ∈ (0, 1] (0.1 by default), ``lam`` default λ.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.1,
        *,
        lam: float = 0.0,
        regularizer: str | None = "group_lasso",
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, lam=lam, regularizer=regularizer))

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        c, lr = group["momentum"], group["lr"]
        bufs = []
        for g, state in zip(grads, states):
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.mul(c)
            else:
                state["momentum_buffer"].mul_(1.0 - c).add_(g, alpha=c)
            bufs.append(state["momentum_buffer"])
        torch._foreach_add_(params, bufs, alpha=-lr)
        reg = self.regularizer_of(group)
        if reg is not None:
            for p in params:
                p.copy_(reg.prox(p, lr * group["lam"]))
