"""ProxSGD (ICLR'20) with a unit-stepsize prox so that structure appears (docs/math.md#proxsgd)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ramda.optim import memory
from ramda.optim.base import CPU_KERNELS, RegularizedOptimizer


class ProxSGD(RegularizedOptimizer):
    r"""m ← (1 − c)·m + c·g (m = c·g at the first step),   W ← prox_{η λ ψ}(W − η m).

    Args: ``lr`` η, ``momentum`` c ∈ (0, 1] (0.1 by default), ``lam`` default λ. ``fused``: the one-pass numba
    kernel on the CPU for float32 tensors, group LASSO or unregularised (``None``: where numba is installed;
    ``True``: raise without it; ``False``: the plain-torch path).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.1,
        *,
        lam: float = 0.0,
        regularizer: str | None = "group_lasso",
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, lam=lam, regularizer=regularizer, fused=fused)
        )

    cpu_kind = "PROXSGD"
    fused_kernels = CPU_KERNELS

    def _cpu_scalars(
        self, group: dict[str, Any], state: dict[str, Any], root_size: float
    ) -> tuple[float, ...]:
        """c, η and the threshold ηλ·√|g|."""
        return group["momentum"], group["lr"], group["lr"] * group["lam"] * root_size

    fused_state = ("momentum_buffer",)

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        c, lr = group["momentum"], group["lr"]
        for p, state in zip(params, states):
            if "momentum_buffer" not in state:
                # Zero, so that the first update gives m = c·g exactly on every path.
                state["momentum_buffer"] = memory.zeros_like(p)
        reg = self.regularizer_of(group)
        rest = self._fused_steps(group, reg, params, grads, states)
        if not rest:
            return
        params, grads = [params[i] for i in rest], [grads[i] for i in rest]
        bufs = [states[i]["momentum_buffer"] for i in rest]
        torch._foreach_mul_(bufs, 1.0 - c)
        torch._foreach_add_(bufs, grads, alpha=c)
        torch._foreach_add_(params, bufs, alpha=-lr)
        if reg is not None:
            reg.prox_(params, [lr * group["lam"]] * len(params))
