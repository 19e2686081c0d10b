"""The Triton kernels behind :mod:`ramda.kernels.gpu` (imported only when a CUDA step needs them: Triton resolves
the helpers a kernel calls among this module's globals).

A program owns G consecutive input-wise groups as one ``[ROWS, G, KB]`` tile (rows × groups × the kernel
entries of a group, padded to powers of two): along G and KB the addresses are consecutive in memory (contiguous
weights: a row's G·K entries are one run; channels-last ones: the G groups are one run), so a warp's loads are
coalesced instead of striding down a column of the weight."""

import triton
import triton.language as tl


@triton.jit
def tile_offsets(n_out, n_in, kw, K, s0, s1, s2, s3, ROWS: tl.constexpr, G: tl.constexpr, KB: tl.constexpr):
    """Offsets and mask of the tile of groups G·pid … G·pid + G − 1 (a tensor viewed as [n_out, n_in, kh, kw])."""
    o = tl.arange(0, ROWS)[:, None, None]
    j = tl.program_id(0) * G + tl.arange(0, G)[None, :, None]
    k = tl.arange(0, KB)[None, None, :]
    off = o * s0 + j * s1 + (k // kw) * s2 + (k % kw) * s3
    return off, (o < n_out) & (j < n_in) & (k < K)


@triton.jit
def group_sum(x):
    """Σ over each group of a [ROWS, G, KB] tile: a [G] vector."""
    return tl.sum(tl.sum(x, axis=2), axis=0)


@triton.jit
def solve_and_write(W, off, mask, p, nb, c, mix, tol, NEWTON: tl.constexpr):
    """Zero test, Newton on 1/F − 1 for each group's ρ, then W ← W + mix·(W̃ − W) (nb = −b, zero outside
    ``mask``)."""
    bn = tl.sqrt(group_sum(nb * nb))
    pmax = tl.max(tl.max(tl.where(mask, p, 0.0), axis=2), axis=0)
    nonzero = bn > c
    rho = tl.where(nonzero, (bn - c) / tl.where(nonzero, pmax, 1.0), 0.0)
    for _ in tl.static_range(NEWTON):
        d = p * rho[None, :, None] + c
        r = nb / d
        f = tl.sqrt(group_sum(r * r))
        s3 = group_sum(r * r * p / d)
        moving = nonzero & (tl.abs(f - 1.0) > tol)
        rho = tl.where(moving, tl.maximum(rho + f * f * (f - 1.0) / tl.where(moving, s3, 1.0), 0.0), rho)
    rho3 = rho[None, :, None]
    z = tl.where(nonzero[None, :, None], -(nb * rho3) / (p * rho3 + c), 0.0)
    w = tl.load(W + off, mask=mask, other=0.0)
    w = tl.where(mix == 1.0, z, w + mix * (z - w))
    tl.store(W + off, w, mask=mask)


@triton.jit
def ramda_step(
    W, G_, V, U, W0,
    n_out, n_in, kw, K, s0, s1, s2, s3,
    scale, eps, c, mix, tol,
    ROWS: tl.constexpr, G: tl.constexpr, KB: tl.constexpr, NEWTON: tl.constexpr,
):  # fmt: skip
    off, mask = tile_offsets(n_out, n_in, kw, K, s0, s1, s2, s3, ROWS, G, KB)
    g = tl.load(G_ + off, mask=mask, other=0.0)
    v = tl.load(V + off, mask=mask, other=0.0) + scale * g
    u = tl.load(U + off, mask=mask, other=0.0) + scale * g * g
    tl.store(V + off, v, mask=mask)
    tl.store(U + off, u, mask=mask)
    p = tl.where(u > 0, tl.exp(tl.log(u) / 3.0), 0.0) + eps
    nb = tl.where(mask, v - p * tl.load(W0 + off, mask=mask, other=0.0), 0.0)
    solve_and_write(W, off, mask, p, nb, c, mix, tol, NEWTON)


@triton.jit
def proxgen_step(
    W, G_, M, S,
    n_out, n_in, kw, K, s0, s1, s2, s3,
    one_minus_beta1, beta2, one_minus_beta2, bias2_sqrt, step_size, eps, c, tol,
    ROWS: tl.constexpr, G: tl.constexpr, KB: tl.constexpr, NEWTON: tl.constexpr,
):  # fmt: skip
    off, mask = tile_offsets(n_out, n_in, kw, K, s0, s1, s2, s3, ROWS, G, KB)
    g = tl.load(G_ + off, mask=mask, other=0.0)
    m = tl.load(M + off, mask=mask, other=0.0)
    m = m + one_minus_beta1 * (g - m)
    sq = tl.load(S + off, mask=mask, other=0.0) * beta2 + one_minus_beta2 * (g * g)
    tl.store(M + off, m, mask=mask)
    tl.store(S + off, sq, mask=mask)
    p = tl.sqrt(sq) / bias2_sqrt + eps
    nb = tl.where(mask, m * step_size - p * tl.load(W + off, mask=mask, other=0.0), 0.0)
    solve_and_write(W, off, mask, p, nb, c, 1.0, tol, NEWTON)
