"""RAMDA: regularised adaptive momentum dual averaging (docs/math.md#ramda)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ramda.kernels import gpu
from ramda.optim.base import (
    CPU_KERNELS,
    FusedKernel,
    RegularizedOptimizer,
    add_scaled,
    dual_averaging_state,
    mix,
)
from ramda.solver import solve


class RAMDA(RegularizedOptimizer):
    r"""Per tensor, with k the step, s = η√k, α ← α + s, V ← V + s·g, U ← U + s·g⊙g, P = U^{1/3} + ε:

        W̃ ≈ argmin_Z ⟨V, Z⟩ + ½⟨Z − W⁰, P⊙(Z − W⁰)⟩ + α λ ψ(Z),     W ← (1 − c)·W + c·W̃.

    With λ = 0, W̃ = W⁰ − V/P exactly. ``stop`` picks the subproblem solver (:mod:`ramda.solver`); ``None`` is
    the most accurate fast mode for the regulariser (``exact`` for group LASSO, L1 and binary). The paper's
    configs use ``stop="objective"``, which reproduces the authors' released optimizer.

    Args:
        params: parameters or param groups (see :func:`ramda.structure.param_groups`); groups may set ``lam``
            and ``regularizer``.
        lr: η.  momentum: c ∈ (0, 1].  eps: ε added to the cube root.  lam: default λ.
        stop, max_iters, rtol, tol: solver options (docs/math.md#stop-rules).
        fused: the fused steps of :mod:`ramda.kernels` for float32 tensors: on CUDA, one Triton kernel per
            group-LASSO tensor with the exact solver; on the CPU, a numba kernel for those and for unregularised
            tensors. ``None`` (default) uses them where Triton / numba is installed, ``True`` also raises when
            the needed one is missing, ``False`` always takes the plain-torch path. Tensors a kernel does not
            handle (other regularisers or stopping rules, other dtypes or memory layouts) take the plain-torch
            path either way.
    """

    uses_solver = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        momentum: float = 1e-2,
        eps: float = 1e-6,
        *,
        lam: float = 0.0,
        regularizer: str | None = "group_lasso",
        stop: str | None = None,
        max_iters: int = 100,
        rtol: float = 1e-8,
        tol: float = 1e-6,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, eps=eps, lam=lam, regularizer=regularizer,
            stop=stop, max_iters=max_iters, rtol=rtol, tol=tol, fused=fused,
        )  # fmt: skip
        super().__init__(params, defaults)

    @staticmethod
    def _kernel_scalars(group: dict[str, Any], state: dict[str, Any]) -> tuple[float, float, float, float]:
        """The fused kernels' scalars for a tensor whose k and α are already advanced: s = η√k, ε, αλ, c."""
        scale = group["lr"] * math.sqrt(state["step"])
        return scale, group["eps"], state["alpha"] * group["lam"], group["momentum"]

    def _gpu_group_lasso(self, group: dict[str, Any], state: dict[str, Any], tensors: list[Tensor]) -> None:
        gpu.ramda_group_lasso_step(*tensors, *self._kernel_scalars(group, state))

    def _cpu_scalars(
        self, group: dict[str, Any], state: dict[str, Any], root_size: float
    ) -> tuple[float, ...]:
        """s, ε, the threshold αλ·√|g|, c."""
        scale, eps, t, momentum = self._kernel_scalars(group, state)
        return scale, eps, t * root_size, momentum

    cpu_kind = "RAMDA"
    fused_kernels: ClassVar[dict[tuple[str, str], FusedKernel]] = {
        ("cuda", "group_lasso"): _gpu_group_lasso,
        **CPU_KERNELS,
    }
    fused_state = ("v", "u", "w0")

    def _eager_step(
        self,
        group: dict[str, Any],
        reg: Any,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict],
        scales: list[float],
    ) -> None:
        """The plain-torch step: foreach state updates, then the solver per tensor."""
        v = [st["v"] for st in states]
        u = [st["u"] for st in states]
        add_scaled(v, grads, scales)
        add_scaled(u, grads, scales, grads)
        # U^{1/3} as exp(log(U)/3): about twice as fast as pow on the CPU, and exp(-inf) = 0 where U = 0.
        precond = torch._foreach_log(u)
        torch._foreach_div_(precond, 3.0)
        torch._foreach_exp_(precond)
        torch._foreach_add_(precond, group["eps"])
        if reg is None:
            targets = torch._foreach_addcdiv([st["w0"] for st in states], v, precond, value=-1.0)
        else:
            stop = self.stop_of(group, reg)
            targets = []
            for p, st, pc in zip(params, states, precond):
                z, iters = solve(
                    reg, p, st["w0"], st["v"], pc, st["alpha"] * group["lam"], stop=stop,
                    max_iters=group["max_iters"], rtol=group["rtol"], tol=group["tol"],
                )  # fmt: skip
                self._record_iters(iters, p.device)
                targets.append(z)
        mix(params, targets, group["momentum"])

    def restart(self, eps_scale: float = 1.0) -> None:
        """Dual-averaging restart (docs/math.md#restarts): W⁰ ← W; V, U, α, k ← 0; ε ← eps_scale·ε."""
        for group in self.param_groups:
            group["eps"] *= eps_scale
        self._restart_dual_averaging(("v", "u"))

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        scales = []
        for p, st in zip(params, states):
            dual_averaging_state(st, p, ("v", "u"))
            st["step"] += 1
            s = group["lr"] * math.sqrt(st["step"])
            st["alpha"] += s
            scales.append(s)
        reg = self.regularizer_of(group)
        rest = self._fused_steps(group, reg, params, grads, states)
        if rest:
            self._eager_step(
                group,
                reg,
                [params[i] for i in rest],
                [grads[i] for i in rest],
                [states[i] for i in rest],
                [scales[i] for i in rest],
            )
