"""RMDA: regularised modernised dual averaging (ICLR'22), the non-adaptive predecessor of RAMDA (docs/math.md#rmda)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ramda.optim.base import (
    CPU_KERNELS,
    RegularizedOptimizer,
    add_scaled,
    dual_averaging_state,
    mix,
    scaled_sum,
)


class RMDA(RegularizedOptimizer):
    r"""Per tensor, with k the step, β = √k, s = η β, α ← α + s, V ← V + s·g:

        W̃ = prox_{(α/β) λ ψ}(W⁰ − V/β),     W ← (1 − c)·W + c·W̃.

    The prox is exact: no solver. Args: ``lr`` η, ``momentum`` c ∈ (0, 1], ``lam`` default λ. ``fused``: the
    one-pass numba kernel on the CPU for float32 tensors, group LASSO or unregularised (``None``: where numba is
    installed; ``True``: raise without it; ``False``: the plain-torch path).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        momentum: float = 0.1,
        *,
        lam: float = 0.0,
        regularizer: str | None = "group_lasso",
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, lam=lam, regularizer=regularizer, fused=fused)
        )

    cpu_kind = "RMDA"
    fused_kernels = CPU_KERNELS

    def _cpu_scalars(
        self, group: dict[str, Any], state: dict[str, Any], root_size: float
    ) -> tuple[float, ...]:
        """For a tensor whose k and α are already advanced: s = η β, 1/β, the threshold (α/β) λ·√|g|, c."""
        beta = math.sqrt(state["step"])
        return (
            group["lr"] * beta,
            1.0 / beta,
            state["alpha"] / beta * group["lam"] * root_size,
            group["momentum"],
        )

    fused_state = ("v", "w0")

    def restart(self, eps_scale: float = 1.0) -> None:
        """Dual-averaging restart (docs/math.md#restarts): W⁰ ← W; V, α, k ← 0 (``eps_scale`` is accepted for symmetry)."""
        self._restart_dual_averaging(("v",))

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        scales, betas = [], []
        for p, st in zip(params, states):
            dual_averaging_state(st, p, ("v",))
            st["step"] += 1
            beta = math.sqrt(st["step"])
            st["alpha"] += group["lr"] * beta
            scales.append(group["lr"] * beta)
            betas.append(beta)
        reg = self.regularizer_of(group)
        rest = self._fused_steps(group, reg, params, grads, states)
        if not rest:
            return
        params, grads = [params[i] for i in rest], [grads[i] for i in rest]
        states, scales, betas = [states[i] for i in rest], [scales[i] for i in rest], [betas[i] for i in rest]
        vs = [st["v"] for st in states]
        add_scaled(vs, grads, scales)
        targets = scaled_sum([st["w0"] for st in states], vs, [-1.0 / beta for beta in betas])
        if reg is not None:
            reg.prox_(targets, [st["alpha"] / beta * group["lam"] for st, beta in zip(states, betas)])
        mix(params, targets, group["momentum"])
