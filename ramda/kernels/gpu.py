"""Fused Triton kernels for one RAMDA or ProxGen step on a group-LASSO tensor (the GPU fast path).

One program handles one input-wise group g end to end, with the group held in registers (RAMDA shown;
ProxGen's first line is its Adam moments, P_g = √(v_g/b₂) + ε, b_g = P_g⊙W_g − (η/b₁)·m_g, and m = 1):

    V_g += s·G_g;  U_g += s·G_g⊙G_g;  P_g = U_g^{1/3} + ε;  b_g = P_g⊙W⁰_g − V_g
    ‖b_g‖ ≤ c  →  W̃_g = 0  (c = αλ√|g|)
    else ρ: Newton on 1/F(ρ) − 1, F(ρ) = ‖b_g/(P_g ρ + c)‖, from ρ₀ = (‖b_g‖ − c)/max P_g, until |F − 1| ≤
        :func:`ramda.newton.tolerance` (:data:`ramda.newton.TRITON_STEPS` steps);  W̃_g = b_g ρ/(P_g ρ + c)
    W_g ← W_g + m·(W̃_g − W_g)   (exactly W̃_g when the momentum m is 1)

so each element of W, G, V, U, W⁰ is read once and W, V, U written once — the memory traffic of AdamW. The
plain-torch path (:mod:`ramda.solver`, ``stop="exact"``) computes the same thing; tests run these kernels on the
CPU under ``TRITON_INTERPRET=1`` and compare the two.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ramda import newton

#: Largest group (entries) a program keeps in registers; larger groups take the plain-torch path.
MAX_GROUP = 16384
_TOL = newton.tolerance(torch.float32)


@functools.cache
def _kernels() -> dict:
    """The kernels, compiled on first use (Triton is imported only when a CUDA step needs it)."""
    from ramda.kernels import _triton

    return {"ramda": _triton.ramda_step, "proxgen": _triton.proxgen_step}


def fused_supported(tensors: list[Tensor]) -> bool:
    """Whether the kernels handle these tensors: float32, 2–4 dims, one memory layout, a group that fits the
    registers of one program."""
    p = tensors[0]
    return (
        p.dtype == torch.float32
        and 2 <= p.dim() <= 4
        and p.numel() > 0
        and p.numel() // p.shape[1] <= MAX_GROUP
        and all(t.dtype == p.dtype and t.shape == p.shape and t.stride() == p.stride() for t in tensors[1:])
    )


def _launch(name: str, tensors: list[Tensor], scalars: tuple, t: float, tail: tuple = ()) -> None:
    """One program per input-wise group; the kernel's scalars are ``scalars``, c = t·√|g|, ``tail``, tol."""
    w = tensors[0]
    shape = list(w.shape) + [1] * (4 - w.dim())
    strides = list(w.stride()) + [0] * (4 - w.dim())
    n_out, n_in, kh, kw = shape
    group = n_out * kh * kw
    block = max(16, 1 << (group - 1).bit_length())
    _kernels()[name][(n_in,)](
        *tensors, n_out, kw, kh * kw, *strides, *scalars, t * math.sqrt(group), *tail, _TOL,
        BLOCK=block, NEWTON=newton.TRITON_STEPS, num_warps=8 if block >= 4096 else 4,
    )  # fmt: skip


def ramda_group_lasso_step(
    w: Tensor, grad: Tensor, v: Tensor, u: Tensor, w0: Tensor, scale: float, eps: float, t: float, mix: float
) -> None:
    """One fused RAMDA step in place on ``w``, ``v``, ``u`` (``t`` = αλ; see the module docstring). The caller
    checks :func:`fused_supported`."""
    _launch("ramda", [w, grad, v, u, w0], (scale, eps), t, (mix,))


def proxgen_group_lasso_step(
    w: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, betas: tuple[float, float], bias2: float,
    step_size: float, eps: float, t: float,
) -> None:  # fmt: skip
    """One fused ProxGen step in place on ``w`` and the Adam moments (``t`` = ηλ, ``bias2`` = 1 − β₂ᵏ):
    m, v updated, P = √(v/b₂) + ε, then the subproblem with V = step_size·m and W⁰ = W, W ← W̃."""
    scalars = (1.0 - betas[0], betas[1], 1.0 - betas[1], math.sqrt(bias2), step_size, eps)
    _launch("proxgen", [w, grad, exp_avg, exp_avg_sq], scalars, t)
