"""ProxGen (NeurIPS'21) with AdamW as the base method, solved by the inexact solver (docs/math.md#proxgen)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ramda.kernels import gpu
from ramda.optim import memory
from ramda.optim.base import CPU_KERNELS, FusedKernel, RegularizedOptimizer
from ramda.solver import solve


class ProxGen(RegularizedOptimizer):
    r"""Adam moments m, v; b1 = 1 − β₁ᵏ, b2 = 1 − β₂ᵏ; D = √(v/b2) + ε;

        W ← argmin_Z ⟨(η/b1)·m, Z⟩ + ½⟨Z − W, D⊙(Z − W)⟩ + η λ ψ(Z)

    (plain Adam where λ = 0). ``weight_decay`` is AdamW's decoupled decay, applied first (0 by default).
    ``stop``/``max_iters``/``rtol``/``tol`` as for :class:`ramda.optim.RAMDA`. ``fused``: the fused kernels of
    :mod:`ramda.kernels` for float32 group-LASSO tensors with the exact solver (Triton on CUDA, numba on the CPU)
    and, on the CPU, for unregularised ones; ``None`` uses them where Triton / numba is installed, ``True`` also
    raises when the needed one is missing, ``False`` always takes the plain-torch path.
    """

    uses_solver = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        lam: float = 0.0,
        regularizer: str | None = "group_lasso",
        stop: str | None = None,
        max_iters: int = 100,
        rtol: float = 1e-8,
        tol: float = 1e-6,
        fused: bool | None = None,
    ) -> None:
        betas = tuple(betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two values in [0, 1), got {betas}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lam=lam, regularizer=regularizer,
            stop=stop, max_iters=max_iters, rtol=rtol, tol=tol, fused=fused,
        )  # fmt: skip
        super().__init__(params, defaults)

    @staticmethod
    def _kernel_scalars(group: dict[str, Any], state: dict[str, Any]) -> tuple[float, float, float, float]:
        """The fused kernels' scalars at step k: b₂ = 1 − β₂ᵏ, η/(1 − β₁ᵏ), ε, ηλ."""
        lr, (beta1, beta2), k = group["lr"], group["betas"], state["step"]
        return 1.0 - beta2**k, lr / (1.0 - beta1**k), group["eps"], lr * group["lam"]

    def _gpu_group_lasso(self, group: dict[str, Any], state: dict[str, Any], tensors: list[Tensor]) -> None:
        gpu.proxgen_group_lasso_step(*tensors, group["betas"], *self._kernel_scalars(group, state))

    def _cpu_scalars(
        self, group: dict[str, Any], state: dict[str, Any], root_size: float
    ) -> tuple[float, ...]:
        """β₁, β₂, √b₂, η/(1 − β₁ᵏ), ε and the threshold ηλ·√|g|."""
        bias2, step_size, eps, t = self._kernel_scalars(group, state)
        return *group["betas"], math.sqrt(bias2), step_size, eps, t * root_size

    cpu_kind = "PROXGEN"
    fused_kernels: ClassVar[dict[tuple[str, str], FusedKernel]] = {
        ("cuda", "group_lasso"): _gpu_group_lasso,
        **CPU_KERNELS,
    }
    fused_state = ("exp_avg", "exp_avg_sq")

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        for p, state in zip(params, states):
            if not state:
                state["step"] = 0
                state["exp_avg"] = memory.zeros_like(p)
                state["exp_avg_sq"] = memory.zeros_like(p)
            state["step"] += 1
        reg = self.regularizer_of(group)
        rest = self._fused_steps(group, reg, params, grads, states)
        if not rest:
            return
        params, grads, states = [params[i] for i in rest], [grads[i] for i in rest], [states[i] for i in rest]
        # k is per tensor: a tensor that missed a gradient for some steps is behind the others of its group.
        ks = [st["step"] for st in states]
        step_sizes = [lr / (1.0 - beta1**k) for k in ks]
        m = [st["exp_avg"] for st in states]
        v = [st["exp_avg_sq"] for st in states]
        torch._foreach_lerp_(m, grads, 1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**k) for k in ks])
        torch._foreach_add_(denom, eps)
        if reg is None:
            torch._foreach_addcdiv_(params, m, denom, [-s for s in step_sizes])
            return
        stop = self.stop_of(group, reg)
        for p, m_i, d_i, step_size in zip(params, m, denom, step_sizes):
            w = p.detach()
            z, iters = solve(
                reg, w, w, m_i.mul(step_size), d_i, lr * group["lam"], stop=stop,
                max_iters=group["max_iters"], rtol=group["rtol"], tol=group["tol"],
            )  # fmt: skip
            self._record_iters(iters, p.device)
            p.copy_(z)
