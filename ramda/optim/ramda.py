"""RAMDA: regularised adaptive momentum dual averaging (docs/math.md#ramda)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ramda.kernels import gpu
from ramda.optim.base import RegularizedOptimizer, add_scaled, dual_averaging_state, mix
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

    def _fused_step(self, group: dict[str, Any], reg: Any, p: Tensor, state: dict, scale: float) -> bool:
        """Run the fused kernel on ``p`` when one applies (see :meth:`_fused_route`); returns whether it ran."""
        tensors = [p, p.grad, state["v"], state["u"], state["w0"]]
        route, views = self._fused_route(group, reg, tensors)
        t, eps, momentum = state["alpha"] * group["lam"], group["eps"], group["momentum"]
        if route.startswith("cpu"):
            from ramda.kernels import cpu  # numba loads only when a CPU kernel runs
        if route == "gpu":
            gpu.ramda_group_lasso_step(*tensors, scale, eps, t, momentum)
        elif route == "cpu_plain":
            cpu.ramda_plain_step(views[1], scale, eps, momentum)
        elif route == "cpu":
            workspace, threads = self._cpu_workspace(), self._cpu_threads()
            iters = cpu.ramda_group_lasso_step(*views, workspace, threads, scale, eps, t, momentum)
            self._record_iters(iters, p.device)
        return bool(route)

    def _eager_step(
        self, group: dict[str, Any], reg: Any, params: list[Tensor], states: list[dict], scales: list[float]
    ) -> None:
        """The plain-torch step: foreach state updates, then the solver per tensor."""
        grads = [p.grad for p in params]
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

    def _group_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        states = [dual_averaging_state(self.state[p], p, ("v", "u")) for p in params]
        scales = []
        for st in states:
            st["step"] += 1
            s = group["lr"] * math.sqrt(st["step"])
            st["alpha"] += s
            scales.append(s)
        reg = self.regularizer_of(group)
        rest = [
            i
            for i, (p, st, s) in enumerate(zip(params, states, scales))
            if not self._fused_step(group, reg, p, st, s)
        ]
        if rest:
            self._eager_step(
                group,
                reg,
                [params[i] for i in rest],
                [states[i] for i in rest],
                [scales[i] for i in rest],
            )
