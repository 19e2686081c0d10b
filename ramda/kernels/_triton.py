"""The Triton kernels behind :mod:`ramda.kernels.gpu` (imported only when a CUDA step needs them: Triton resolves
the helpers a kernel calls among this module's globals)."""

import triton
import triton.language as tl


@triton.jit
def group_offsets(n_out, kw, K, s0, s1, s2, s3, BLOCK: tl.constexpr):
    """Offsets and mask of the entries of group j = program id (a tensor viewed as [n_out, n_in, kh, kw])."""
    e = tl.arange(0, BLOCK)
    k = e % K
    off = (e // K) * s0 + tl.program_id(0) * s1 + (k // kw) * s2 + (k % kw) * s3
    return off, e < n_out * K


@triton.jit
def solve_and_write(W, off, mask, p, nb, c, mix, tol, NEWTON: tl.constexpr):
    """Zero test, Newton on 1/F − 1 for ρ, then W ← W + mix·(W̃ − W) (nb = −b, zero outside ``mask``)."""
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


@triton.jit
def ramda_step(
    W, G, V, U, W0,
    n_out, kw, K, s0, s1, s2, s3,
    scale, eps, c, mix, tol,
    BLOCK: tl.constexpr, NEWTON: tl.constexpr,
):  # fmt: skip
    off, mask = group_offsets(n_out, kw, K, s0, s1, s2, s3, BLOCK)
    g = tl.load(G + off, mask=mask, other=0.0)
    v = tl.load(V + off, mask=mask, other=0.0) + scale * g
    u = tl.load(U + off, mask=mask, other=0.0) + scale * g * g
    tl.store(V + off, v, mask=mask)
    tl.store(U + off, u, mask=mask)
    p = tl.where(u > 0, tl.exp(tl.log(u) / 3.0), 0.0) + eps
    nb = tl.where(mask, v - p * tl.load(W0 + off, mask=mask, other=0.0), 0.0)
    solve_and_write(W, off, mask, p, nb, c, mix, tol, NEWTON)


@triton.jit
def proxgen_step(
    W, G, M, S,
    n_out, kw, K, s0, s1, s2, s3,
    one_minus_beta1, beta2, one_minus_beta2, bias2_sqrt, step_size, eps, c, tol,
    BLOCK: tl.constexpr, NEWTON: tl.constexpr,
):  # fmt: skip
    off, mask = group_offsets(n_out, kw, K, s0, s1, s2, s3, BLOCK)
    g = tl.load(G + off, mask=mask, other=0.0)
    m = tl.load(M + off, mask=mask, other=0.0)
    m = m + one_minus_beta1 * (g - m)
    sq = tl.load(S + off, mask=mask, other=0.0) * beta2 + one_minus_beta2 * (g * g)
    tl.store(M + off, m, mask=mask)
    tl.store(S + off, sq, mask=mask)
    p = tl.sqrt(sq) / bias2_sqrt + eps
    nb = tl.where(mask, m * step_size - p * tl.load(W + off, mask=mask, other=0.0), 0.0)
    solve_and_write(W, off, mask, p, nb, c, 1.0, tol, NEWTON)
