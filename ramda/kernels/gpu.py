"""A fused Triton kernel for one RAMDA step on a group-LASSO tensor (the GPU fast path).

One program handles one input-wise group g end to end, with the group held in registers:

    V_g += s·G_g;  U_g += s·G_g⊙G_g;  P_g = U_g^{1/3} + ε;  b_g = P_g⊙W⁰_g − V_g
    ‖b_g‖ ≤ c  →  W̃_g = 0  (c = αλ√|g|)
    else ρ: Newton on 1/F(ρ) − 1, F(ρ) = ‖b_g/(P_g ρ + c)‖, from ρ₀ = (‖b_g‖ − c)/max P_g, until |F − 1| ≤ 64 ulps
        (at most NEWTON_STEPS);  W̃_g = b_g ρ/(P_g ρ + c)
    W_g ← W_g + m·(W̃_g − W_g)   (exactly W̃_g when the momentum m is 1)

so each element of W, G, V, U, W⁰ is read once and W, V, U written once — the memory traffic of AdamW. The
plain-torch path (:mod:`ramda.solver`, ``stop="exact"``) computes the same thing; tests run this kernel on the CPU
under ``TRITON_INTERPRET=1`` and compare the two.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

#: Largest group (entries) a program keeps in registers; larger groups take the plain-torch path.
MAX_GROUP = 16384
NEWTON_STEPS = 10
#: |F − 1| at which a group stops moving: 64 float32 ulps, as the plain-torch solver.
NEWTON_TOL = 64 * torch.finfo(torch.float32).eps


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def ramda_group_lasso_step(
        W, G, V, U, W0,
        n_out, kw, K, s0, s1, s2, s3,
        scale, eps, c, mix, tol,
        BLOCK: tl.constexpr, NEWTON: tl.constexpr,
    ):  # fmt: skip
        j = tl.program_id(0)
        e = tl.arange(0, BLOCK)
        mask = e < n_out * K
        o = e // K
        k = e % K
        off = o * s0 + j * s1 + (k // kw) * s2 + (k % kw) * s3
        g = tl.load(G + off, mask=mask, other=0.0)
        v = tl.load(V + off, mask=mask, other=0.0) + scale * g
        u = tl.load(U + off, mask=mask, other=0.0) + scale * g * g
        tl.store(V + off, v, mask=mask)
        tl.store(U + off, u, mask=mask)
        p = tl.where(u > 0, tl.exp(tl.log(u) / 3.0), 0.0) + eps
        nb = tl.where(mask, v - p * tl.load(W0 + off, mask=mask, other=0.0), 0.0)
        bn = tl.sqrt(tl.sum(nb * nb))
        pmax = tl.max(tl.where(mask, p, 0.0))
        nonzero = bn > c
        rho = tl.maximum(bn - c, 0.0) / pmax
        for _ in tl.static_range(NEWTON):
            d = p * rho + c
            r = nb / d
            f = tl.sqrt(tl.sum(r * r))
            s3 = tl.sum(r * r * p / d)
            moving = nonzero & (tl.abs(f - 1.0) > tol)
            rho = tl.where(moving, tl.maximum(rho + f * f * (f - 1.0) / tl.where(moving, s3, 1.0), 0.0), rho)
        z = tl.where(nonzero, -(nb * rho) / (p * rho + c), 0.0)
        w = tl.load(W + off, mask=mask, other=0.0)
        w = tl.where(mix == 1.0, z, w + mix * (z - w))
        tl.store(W + off, w, mask=mask)

    return ramda_group_lasso_step


def fused_supported(p: Tensor) -> bool:
    """Whether :func:`ramda_group_lasso_step` handles this tensor (float32, 2–4 dims, group fits registers)."""
    return p.dtype == torch.float32 and 2 <= p.dim() <= 4 and p.numel() // p.shape[1] <= MAX_GROUP


def ramda_group_lasso_step(
    w: Tensor, grad: Tensor, v: Tensor, u: Tensor, w0: Tensor, scale: float, eps: float, t: float, mix: float
) -> None:
    """One fused RAMDA step in place on ``w``, ``v``, ``u`` (``t`` = αλ; see the module docstring)."""
    shape = list(w.shape) + [1] * (4 - w.dim())
    strides = list(w.stride()) + [0] * (4 - w.dim())
    tensors = [w, grad, v, u, w0]
    if any(x.stride() != w.stride() for x in tensors):
        raise ValueError("fused RAMDA step needs the weight, gradient and state in one memory layout")
    n_out, n_in, kh, kw = shape
    group = n_out * kh * kw
    block = max(16, 1 << (group - 1).bit_length())
    _kernel()[(n_in,)](
        w, grad, v, u, w0,
        n_out, kw, kh * kw, *strides,
        scale, eps, t * math.sqrt(group), mix, NEWTON_TOL,
        BLOCK=block, NEWTON=NEWTON_STEPS, num_warps=8 if block >= 4096 else 4,
    )  # fmt: skip
