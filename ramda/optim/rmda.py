"""RMDA: regularised modernised dual averaging (ICLR'22), the non-adaptive predecessor of RAMDA (docs/math.md#rmda)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from torch import Tensor

from ramda.optim.base import PLAIN, FusedKernel, RegularizedOptimizer, add_scaled, dual_averaging_state, mix


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

    def _cpu_step(self, group: dict[str, Any], states: list[dict], data: Any, grouped: bool) -> None:
        from ramda.kernels import cpu

        tensors, shapes = data
        scalars = []
        for state, shape in zip(states, shapes):
            beta = math.sqrt(state["step"])
            c = state["alpha"] / beta * group["lam"] * math.sqrt(cpu.group_size(shape))
            scalars.append((group["lr"] * beta, 1.0 / beta, c, group["momentum"]))
        cpu.run(cpu.RMDA, tensors, shapes, grouped, scalars, self._cpu_workspace(), self._cpu_threads())

    fused_kernels: ClassVar[dict[tuple[str, str], FusedKernel]] = {
        ("cpu", "group_lasso"): RegularizedOptimizer._cpu_group_lasso,
        ("cpu", PLAIN): RegularizedOptimizer._cpu_plain,
    }
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
        add_scaled([st["v"] for st in states], grads, scales)
        targets = []
        for st, beta in zip(states, betas):
            y = st["w0"].sub(st["v"], alpha=1.0 / beta)
            targets.append(y if reg is None else reg.prox(y, st["alpha"] / beta * group["lam"]))
        mix(params, targets, group["momentum"])
