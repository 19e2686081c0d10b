"""Fused Triton kernels for one RAMDA or ProxGen step on a group-LASSO tensor (the GPU fast path).

One program handles a tile of consecutive input-wise groups end to end (rows × groups × kernel entries, loads
coalesced along the contiguous dimension; see :mod:`ramda.kernels._triton`), held in registers. Per group g
(RAMDA shown; ProxGen's first line is its Adam moments, P_g = √(v_g/b₂) + ε, b_g = P_g⊙W_g − (η/b₁)·m_g, m = 1):

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
from ramda.kernels import same_layout

#: Largest tile (entries, padded to powers of two) a program keeps in registers; a tensor whose single group
#: needs more takes the plain-torch path.
MAX_TILE = 16384
#: Consecutive floats a tile reads from each contiguous run, where the group size allows: one 32-byte sector.
SECTOR = 8
_TOL = newton.tolerance(torch.float32)


@functools.cache
def _kernels() -> dict:
    """The kernels, compiled on first use (Triton is imported only when a CUDA step needs it)."""
    from ramda.kernels import _triton

    return {"ramda": _triton.ramda_step, "proxgen": _triton.proxgen_step}


def fused_supported(tensors: list[Tensor]) -> bool:
    """Whether the kernels handle these tensors: float32, 2–4 dims, one memory layout, a group that fits the
    registers of one program (:func:`_tile` of one group ≤ :data:`MAX_TILE`)."""
    p = tensors[0]
    return (
        p.dtype == torch.float32
        and 2 <= p.dim() <= 4
        and p.numel() > 0
        and _pow2(p.shape[0]) * _pow2(p.numel() // (p.shape[0] * p.shape[1])) <= MAX_TILE
        and all(t.dtype == p.dtype and same_layout(t, p) for t in tensors[1:])
    )


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _tile(n_out: int, n_in: int, k: int, s1: int) -> tuple[int, int, int]:
    """(ROWS, G, KB): the tile of G consecutive groups, G grown (in powers of two, within :data:`MAX_TILE` and
    n_in) until a contiguous run holds :data:`SECTOR` floats: G·K of them when the kernel entries are contiguous
    (s1 = K), G when the groups are (channels-last, s1 = 1)."""
    rows, kb = _pow2(n_out), _pow2(k)
    run = k if s1 == k else 1
    g = 1
    while g * run < SECTOR and g < n_in and rows * 2 * g * kb <= MAX_TILE:
        g *= 2
    return rows, g, kb


def _launch(name: str, tensors: list[Tensor], scalars: tuple, t: float, tail: tuple = ()) -> None:
    """One program per tile of groups; the kernel's scalars are ``scalars``, c = t·√|g|, ``tail``, tol."""
    w = tensors[0]
    shape = list(w.shape) + [1] * (4 - w.dim())
    strides = list(w.stride()) + [0] * (4 - w.dim())
    n_out, n_in, kh, kw = shape
    k = kh * kw
    rows, g, kb = _tile(n_out, n_in, k, strides[1])
    _kernels()[name][(-(-n_in // g),)](
        *tensors, n_out, n_in, kw, k, *strides, *scalars, t * math.sqrt(n_out * k), *tail, _TOL,
        ROWS=rows, G=g, KB=kb, NEWTON=newton.TRITON_STEPS, num_warps=8 if rows * g * kb >= 4096 else 4,
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
