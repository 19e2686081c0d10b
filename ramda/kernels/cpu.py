"""Fused CPU steps (numba) for RAMDA and ProxGen: group-LASSO tensors, and the unregularised ones.

The plain-torch path makes ~25 memory passes per tensor and step (each foreach/elementwise op is one); these
kernels make 2 + (Newton steps + 1):

1. one pass updates the state and writes, per entry, the preconditioner P and b = P⊙W⁰ − V (RAMDA:
   V += s·G, U += s·G⊙G, P = U^{1/3} + ε; ProxGen: the Adam moments, P = √(v/b₂) + ε, V = (η/b₁)·m,
   W⁰ = W), accumulating ‖b_g‖² and max P_g per input-wise group g;
2. groups with ‖b_g‖ ≤ c = t·√|g| are exactly zero; the others solve F(ρ) = ‖b_g/(P_g ρ + c)‖ = 1 by Newton on
   1/F − 1 from ρ₀ = (‖b_g‖ − c)/max P_g, each pass evaluating F and F' of every group; a group stops at its first
   iterate with |F − 1| ≤ ``tol``;
3. one pass writes W̃_g = b_g ρ/(P_g ρ + c) mixed into W: W ← W + m·(W̃ − W) (exactly W̃ when m = 1).

Tensors are flat float32 arrays viewed as ``[n_out, n_in, k_size]`` (group j = ``[:, j, :]``); each of the
``nblocks`` parallel blocks owns a contiguous range of groups, and every group's sums run over the rows and then
over k_size in a fixed order, so the result does not depend on the number of threads. The cube root is correctly
rounded to float32 (two Halley steps in float64 from a bit-level first guess); sums are accumulated in float64.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ramda import newton

_FLT_MIN = np.float32(1.1754944e-38)
_U = np.uint64
_TOL = newton.tolerance(torch.float32)
# Indices are unsigned throughout: numba's wrap-around handling of signed indices stops LLVM vectorising.


@njit(inline="always", cache=True)
def _cbrt(x):
    """x^{1/3} for a float32 x ≥ 0 (float64 result that rounds to the correctly rounded float32)."""
    small = x < _FLT_MIN
    xs = np.float32(x * (np.float32(1.0) + np.float32(16777215.0) * np.float32(small)))
    y = np.float64(np.int32(xs.view(np.int32) // 3 + np.int32(709921077)).view(np.float32))
    y *= 1.0 - 0.99609375 * np.float64(small)
    xd = np.float64(x)
    for _ in range(2):
        y3 = y * y * y
        y = y * (y3 + xd + xd) / (y3 + y3 + xd)
    return y if (xd > 0.0 and xd < np.inf) else xd


@njit(inline="always", cache=True)
def _lerp(w, z, mix):
    """torch.lerp's formula, so that mix = 1 gives exactly z."""
    if mix < 0.5:
        return w + mix * (z - w)
    return z - (z - w) * (np.float32(1.0) - mix)


@njit(inline="always", cache=True)
def _group_add(x, m, k_size, acc):
    """acc[j] += Σ_k x[j·k_size + k] for the m groups of one row span."""
    if k_size == _U(1):
        for jj in range(m):
            acc[jj] += x[jj]
    else:
        for jj in range(m):
            a = 0.0
            for k in range(k_size):
                a += x[jj * k_size + k]
            acc[jj] += a


@njit(inline="always", cache=True)
def _group_max(P, base, m, k_size, acc):
    if k_size == _U(1):
        for jj in range(m):
            acc[jj] = max(acc[jj], P[base + jj])
    else:
        for jj in range(m):
            a = acc[jj]
            for k in range(k_size):
                a = max(a, P[base + jj * k_size + k])
            acc[jj] = a


@njit(inline="always", cache=True)
def _block_groups(blk_i, n_in, nblocks):
    """The groups j0 … j0 + m − 1 of parallel block ``blk_i``."""
    j0 = _U(blk_i) * n_in // _U(nblocks)
    return j0, (_U(blk_i) + _U(1)) * n_in // _U(nblocks) - j0


@njit(inline="always", cache=True)
def _row_stats(b2, P, base, m, k_size, bsq, pmax):
    """Add one row span's b² (``b2``) and max P into the per-group accumulators."""
    _group_add(b2, m, k_size, bsq)
    _group_max(P, base, m, k_size, pmax)


@njit(inline="always", cache=True)
def _solve_and_write(w, P, B, n_out, n_in, k_size, j0, m, bsq, pmax, c, mix, tol, max_newton, tmp):
    """Steps 2 and 3 of the module docstring for groups j0 … j0+m−1; returns the Newton steps taken."""
    L = m * k_size
    cf = np.float32(c)
    tmp2 = np.empty(L)
    rho_e = np.empty(L, np.float32)
    rho = np.zeros(m)
    f2 = np.zeros(m)
    s3 = np.zeros(m)
    active = np.zeros(m, np.bool_)
    for jj in range(m):
        bn = np.sqrt(bsq[jj])
        if bn > c:
            active[jj] = True
            rho[jj] = (bn - c) / pmax[jj]
    it = 0
    while True:
        for jj in range(m):
            r = np.float32(rho[jj])
            for k in range(k_size):
                rho_e[jj * k_size + k] = r
        f2[:] = 0.0
        s3[:] = 0.0
        for o in range(n_out):
            base = (o * n_in + j0) * k_size
            for e in range(L):
                p = P[base + e]
                inv = np.float32(1.0) / (p * rho_e[e] + cf)
                q = B[base + e] * inv
                q = q * q
                tmp[e] = q
                tmp2[e] = q * p * inv
            _group_add(tmp, m, k_size, f2)
            _group_add(tmp2, m, k_size, s3)
        more = False
        for jj in range(m):
            if active[jj]:
                f = np.sqrt(f2[jj])
                if abs(f - 1.0) <= tol:
                    active[jj] = False
                else:
                    more = True
                    f2[jj] = f
        if not more or it == max_newton:
            break
        it += 1
        for jj in range(m):
            if active[jj]:
                f = f2[jj]
                rho[jj] = max(rho[jj] + f * f * (f - 1.0) / s3[jj], 0.0)
    for jj in range(m):
        r = np.float32(rho[jj])
        for k in range(k_size):
            rho_e[jj * k_size + k] = r
    for o in range(n_out):
        base = (o * n_in + j0) * k_size
        for e in range(L):
            r = rho_e[e]
            i = base + e
            w[i] = _lerp(w[i], B[i] * r / (P[i] * r + cf), mix)
    return it


@njit(parallel=True, cache=True)
def _ramda_group_lasso(w, g, v, u, w0, P, B, shape, s, eps, c, mix, tol, max_newton, iters):
    n_out, n_in, k_size = _U(shape[0]), _U(shape[1]), _U(shape[2])
    nblocks = iters.shape[0]
    s, eps, mix = np.float32(s), np.float32(eps), np.float32(mix)
    for blk_i in prange(nblocks):
        j0, m = _block_groups(blk_i, n_in, nblocks)
        bsq, pmax, tmp = np.zeros(m), np.zeros(m, np.float32), np.empty(m * k_size)
        for o in range(n_out):
            base = (o * n_in + j0) * k_size
            for e in range(m * k_size):
                i = base + e
                gi = g[i]
                vi = v[i] + s * gi
                ui = u[i] + s * gi * gi
                v[i] = vi
                u[i] = ui
                p = np.float32(_cbrt(ui)) + eps
                b = p * w0[i] - vi
                P[i] = p
                B[i] = b
                tmp[e] = np.float64(b) * b
            _row_stats(tmp, P, base, m, k_size, bsq, pmax)
        iters[blk_i] = _solve_and_write(
            w, P, B, n_out, n_in, k_size, j0, m, bsq, pmax, c, mix, tol, max_newton, tmp
        )


@njit(parallel=True, cache=True)
def _proxgen_group_lasso(w, g, m1, m2, P, B, shape, beta1, beta2, bias2_sqrt, step_size, eps, c, tol, max_newton,
                         iters):  # fmt: skip
    n_out, n_in, k_size = _U(shape[0]), _U(shape[1]), _U(shape[2])
    nblocks = iters.shape[0]
    w1, w2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    beta2, bias2_sqrt = np.float32(beta2), np.float32(bias2_sqrt)
    step_size, eps = np.float32(step_size), np.float32(eps)
    for blk_i in prange(nblocks):
        j0, m = _block_groups(blk_i, n_in, nblocks)
        bsq, pmax, tmp = np.zeros(m), np.zeros(m, np.float32), np.empty(m * k_size)
        for o in range(n_out):
            base = (o * n_in + j0) * k_size
            for e in range(m * k_size):
                i = base + e
                gi = g[i]
                mi = _lerp(m1[i], gi, w1)
                vi = m2[i] * beta2 + w2 * (gi * gi)
                m1[i] = mi
                m2[i] = vi
                p = np.sqrt(vi) / bias2_sqrt + eps
                b = p * w[i] - mi * step_size
                P[i] = p
                B[i] = b
                tmp[e] = np.float64(b) * b
            _row_stats(tmp, P, base, m, k_size, bsq, pmax)
        iters[blk_i] = _solve_and_write(
            w, P, B, n_out, n_in, k_size, j0, m, bsq, pmax, c, np.float32(1.0), tol, max_newton, tmp
        )


@njit(parallel=True, cache=True)
def _ramda_plain(w, g, v, u, w0, s, eps, mix):
    s, eps, mix = np.float32(s), np.float32(eps), np.float32(mix)
    for i in prange(w.shape[0]):
        gi = g[i]
        vi = v[i] + s * gi
        ui = u[i] + s * gi * gi
        v[i] = vi
        u[i] = ui
        p = np.float32(_cbrt(ui)) + eps
        w[i] = _lerp(w[i], w0[i] - vi / p, mix)


@njit(parallel=True, cache=True)
def _proxgen_plain(w, g, m1, m2, beta1, beta2, bias2_sqrt, step_size, eps):
    w1, w2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    beta2, bias2_sqrt = np.float32(beta2), np.float32(bias2_sqrt)
    step_size, eps = np.float32(step_size), np.float32(eps)
    for i in prange(w.shape[0]):
        gi = g[i]
        mi = _lerp(m1[i], gi, w1)
        vi = m2[i] * beta2 + w2 * (gi * gi)
        m1[i] = mi
        m2[i] = vi
        w[i] = w[i] - step_size * (mi / (np.sqrt(vi) / bias2_sqrt + eps))


class Workspace:
    """The P and b scratch arrays, reused across tensors and steps (fresh multi-MB arrays cost page faults)."""

    def __init__(self) -> None:
        self._p = self._b = np.empty(0, np.float32)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._p.size < n:
            self._p, self._b = np.empty(n, np.float32), np.empty(n, np.float32)
        return self._p[:n], self._b[:n]


def flat_views(tensors: list[Tensor], grouped: bool) -> tuple[tuple[int, int, int], list[np.ndarray]] | None:
    """Flat float32 numpy views sharing memory with ``tensors`` and the ``[n_out, n_in, k_size]`` shape in which the
    input-wise groups are ``[:, j, :]`` (contiguous tensors, or 4-/5-d channels-last ones, where the groups are
    the innermost axis); ``None`` when the tensors are not all CPU float32 in one such layout."""
    p = tensors[0]
    if not p.is_cpu or p.dtype != torch.float32 or p.numel() == 0 or (grouped and p.dim() < 2):
        return None
    shape_p, stride_p = p.shape, p.stride()
    if any(not t.is_cpu or t.dtype != p.dtype or t.shape != shape_p or t.stride() != stride_p
           for t in tensors[1:]):  # fmt: skip
        return None
    if p.is_contiguous():
        perm = None
        n_in = p.shape[1] if grouped else 1
        shape = (p.shape[0], n_in, p.numel() // (p.shape[0] * n_in)) if grouped else (p.numel(), 1, 1)
    elif p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
        perm, shape = (0, 2, 3, 1), (p.numel() // p.shape[1], p.shape[1], 1)
    elif p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d):
        perm, shape = (0, 2, 3, 4, 1), (p.numel() // p.shape[1], p.shape[1], 1)
    else:
        return None
    views = []
    for t in tensors:
        a = (t.detach() if t.requires_grad else t).numpy()
        if perm is not None:
            a = a.transpose(perm)
        if not a.flags.c_contiguous:
            return None
        views.append(a.reshape(-1))
    return shape, views


def set_threads() -> int:
    """Run numba's parallel loops on as many threads as torch uses; returns that number.

    The first call starts numba's thread pool, whose OpenMP layer resets the OpenMP thread count that torch
    shares; torch's count is put back, so that it stays what the caller set (``trainer.threads``)."""
    torch_threads = torch.get_num_threads()
    n = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return n


def _blocks(n_in: int, threads: int) -> np.ndarray:
    return np.zeros(max(1, min(n_in, threads)), np.int64)


def ramda_group_lasso_step(
    shape: tuple[int, int, int], arrays: list[np.ndarray], workspace: Workspace, threads: int,
    scale: float, eps: float, t: float, mix: float, max_newton: int = newton.MAX_STEPS,
) -> int:  # fmt: skip
    """One RAMDA step in place on ``arrays`` = (W, G, V, U, W⁰) (``t`` = αλ); returns the Newton steps taken."""
    w, g, v, u, w0 = arrays
    p_buf, b_buf = workspace.get(w.size)
    iters = _blocks(shape[1], threads)
    c = t * math.sqrt(shape[0] * shape[2])
    _ramda_group_lasso(w, g, v, u, w0, p_buf, b_buf, np.array(shape, np.int64), scale, eps, c, mix, _TOL,
                       max_newton, iters)  # fmt: skip
    return int(iters.max())


def proxgen_group_lasso_step(
    shape: tuple[int, int, int], arrays: list[np.ndarray], workspace: Workspace, threads: int,
    betas: tuple[float, float], bias2: float, step_size: float, eps: float, t: float,
    max_newton: int = newton.MAX_STEPS,
) -> int:  # fmt: skip
    """One ProxGen step in place on ``arrays`` = (W, G, m, v) (``t`` = ηλ, ``bias2`` = 1 − β₂ᵏ)."""
    w, g, m1, m2 = arrays
    p_buf, b_buf = workspace.get(w.size)
    iters = _blocks(shape[1], threads)
    c = t * math.sqrt(shape[0] * shape[2])
    _proxgen_group_lasso(w, g, m1, m2, p_buf, b_buf, np.array(shape, np.int64), betas[0], betas[1],
                         math.sqrt(bias2), step_size, eps, c, _TOL, max_newton, iters)  # fmt: skip
    return int(iters.max())


def proxgen_plain_step(
    arrays: list[np.ndarray], betas: tuple[float, float], bias2: float, step_size: float, eps: float
) -> None:
    """ProxGen's unregularised step (Adam's) in place on (W, G, m, v): W ← W − step_size·m/(√(v/b₂) + ε)."""
    _proxgen_plain(*arrays, betas[0], betas[1], math.sqrt(bias2), step_size, eps)


def ramda_plain_step(arrays: list[np.ndarray], scale: float, eps: float, mix: float) -> None:
    """RAMDA's unregularised step in place on (W, G, V, U, W⁰): W ← W + m·(W⁰ − V/P − W)."""
    _ramda_plain(*arrays, scale, eps, mix)
