"""Fused CPU steps (numba) for RAMDA, ProxGen, RMDA and ProxSGD, many tensors per call.

A call takes a table of tensors (raw data pointers) and a :class:`Plan` that cuts each tensor into chunks of
consecutive groups (``CHUNK``), the unit of work of a thread; an optimizer keeps the plan across steps. A group-LASSO
tensor is viewed as ``[n_out, n_in, k_size]`` (group j = ``[:, j, :]``, its ``n_out·k_size`` entries) and a
chunk is ``m`` consecutive groups: in every row a contiguous run of ``m·k_size`` floats. Per chunk:

1. one pass over the chunk reads the gradient and the state, writes the state and, into scratch, the
   preconditioner P and b (RAMDA: V += s·G, U += s·G⊙G, P = U^{1/3} + ε, b = P⊙W⁰ − V; ProxGen: the Adam
   moments, P = √(v/b₂) + ε, b = P⊙W − (η/b₁)·m), accumulating ‖b_g‖² (float64) and max P_g per group;
2. groups with ‖b_g‖ ≤ c = t·√|g| are exactly zero; the others solve F(ρ) = ‖b_g/(P_g ρ + c)‖ = 1 by Newton on
   1/F − 1 from ρ₀ = (‖b_g‖ − c)/max P_g, each step evaluating F and F' over the chunk's still-moving groups; a
   group stops at its first iterate with |F − 1| ≤ ``tol``;
3. W̃_g = b_g ρ/(P_g ρ + c) is mixed into W: W ← W + m·(W̃ − W) (exactly W̃ when m = 1).

RMDA and ProxSGD have closed-form proxes: step 1 writes Y (RMDA: V += s·G, Y = W⁰ − V/β, into scratch; ProxSGD:
m ← (1 − c)m + c·G, Y = W − η m, into W itself, whose old value its mix of 1 never needs again) and ‖Y_g‖², step 3
writes W ← mix(W, Y_g·max(0, ‖Y_g‖ − τ)/‖Y_g‖) with no step 2. So every chunk's state and W are read and written
once per step, and only the chunk's scratch (ProxSGD: its W) is read again.
Tensors without a structure term take one pass (state and W), in chunks of ``PLAIN_CHUNK`` entries.

Group sums are float64 and run in a fixed order: per column of the chunk (an entry position in the row span) over
the rows, then over k_size. Per row span the column sums vectorise; RAMDA's and ProxGen's take a loop of their
own after the state update (with the five state streams in the same loop LLVM would need more runtime alias
checks than it makes, and would not vectorise it). Chunks depend on the tensor's shape alone and threads take
whole chunks, so the result does not depend on the number of threads. The cube root is correctly rounded to
float32 (division-free Newton on x^{-1/3}, two steps in float32 and two in float64; a test checks every float32).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from ramda import newton
from ramda.kernels import channels_last, same_layout

_FLT_MIN = np.float32(1.1754944e-38)
_U = np.uint64
_TOL = newton.tolerance(torch.float32)
# Indices are unsigned throughout: numba's wrap-around handling of signed indices stops LLVM vectorising.

#: Target entries of a group-LASSO chunk (its P and b scratch: 16 MB, within a large L3 cache). Chunks small
#: enough for a 2 MB L2 were measured slower on the 2-core Xeon of docs/benchmarks.md (RAMDA on ResNet50: 3×
#: slower at 64 K entries): their row spans m·k_size get short (32 floats for a 2048-row weight), so the state
#: streams are read a few cache lines at a time, which the hardware prefetchers do not follow.
CHUNK = 1 << 21
#: A chunk's row span m·k_size is a multiple of this where the tensor allows (no scalar loop remainders).
LANES = 16
#: Entries of a chunk of a tensor without a structure term (only the unit of work split across threads).
PLAIN_CHUNK = 1 << 16
#: Below this many entries in a call, the kernels run on the calling thread (a parallel launch costs more).
PARALLEL_MIN = 1 << 17

#: The optimizers, as the kernels' ``kind`` argument.
RAMDA, PROXGEN, RMDA, PROXSGD = 0, 1, 2, 3
#: Per-tensor float arguments (columns of ``scal``) and state streams after W and G, per kind.
SCALARS = {RAMDA: 4, PROXGEN: 6, RMDA: 4, PROXSGD: 3}
STREAMS = {RAMDA: 5, PROXGEN: 4, RMDA: 4, PROXSGD: 3}
#: Scratch floats per chunk entry of a group-LASSO step: P and b (RAMDA, ProxGen), Y (RMDA); ProxSGD keeps Y in W.
SCRATCH = {RAMDA: 2, PROXGEN: 2, RMDA: 1, PROXSGD: 0}


@intrinsic
def _f32_ptr(typingctx, addr):
    """The address ``addr`` (uint64) as a float32 pointer."""
    sig = types.CPointer(types.float32)(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(inline="always", cache=True, error_model="numpy")
def _stream(ptrs, t, s, n):
    """Stream ``s`` of tensor ``t`` (``n`` float32 entries) as an array."""
    return numba.carray(_f32_ptr(_U(ptrs[t, s])), (n,))


@njit(inline="always", cache=True, error_model="numpy")
def _streams4(ptrs, t, first, n):
    """Streams first … first + 3 of tensor t, as :func:`_stream`."""
    return (_stream(ptrs, t, first, n), _stream(ptrs, t, first + 1, n), _stream(ptrs, t, first + 2, n),
            _stream(ptrs, t, first + 3, n))  # fmt: skip


@njit(inline="always", cache=True, error_model="numpy")
def _cbrt(x):
    """x^{1/3} for a float32 x ≥ 0 (float64 result that rounds to the correctly rounded float32): r ≈ x^{-1/3} from
    a bit-level guess (3.4 %), Newton r ← r(4 − x r³)/3 twice in float32 and twice in float64, then x·r²."""
    small = x < _FLT_MIN
    xs = np.float32(x * (np.float32(1.0) + np.float32(16777215.0) * np.float32(small)))
    r = np.uint32(np.uint32(1419915938) - xs.view(np.uint32) // np.uint32(3)).view(np.float32)
    x3 = xs * np.float32(1.0 / 3.0)
    for _ in range(2):
        r = r * (np.float32(4.0 / 3.0) - x3 * (r * r * r))
    rd = np.float64(r)
    xd3 = np.float64(xs) * (1.0 / 3.0)
    for _ in range(2):
        rd = rd * (4.0 / 3.0 - xd3 * (rd * rd * rd))
    y = np.float64(xs) * rd * rd * (1.0 - 0.99609375 * np.float64(small))
    xd = np.float64(x)
    return y if (xd > 0.0 and xd < np.inf) else xd


@njit(inline="always", cache=True, error_model="numpy")
def _lerp(w, z, mix):
    """torch.lerp's formula, so that mix = 1 gives exactly z."""
    if mix < 0.5:
        return w + mix * (z - w)
    return z - (z - w) * (np.float32(1.0) - mix)


@njit(inline="always", cache=True, error_model="numpy")
def _ramda_entry(i, g, v, u, s, eps):
    """RAMDA's state update of entry i in place, V += s·g and U += s·g²; returns V and P = ∛U + ε."""
    gi = g[i]
    vi = v[i] + s * gi
    ui = u[i] + s * gi * gi
    v[i] = vi
    u[i] = ui
    return vi, np.float32(_cbrt(ui)) + eps


@njit(inline="always", cache=True, error_model="numpy")
def _adam_entry(i, g, m1, m2, w1, beta2, w2, bias2_sqrt, eps):
    """Adam's moments of entry i in place, m ← m + w₁(g − m) and v ← β₂v + (1 − β₂)g²; returns m and the
    denominator P = √v / √(1 − β₂ᵗ) + ε."""
    gi = g[i]
    mi = _lerp(m1[i], gi, w1)
    vi = m2[i] * beta2 + w2 * (gi * gi)
    m1[i] = mi
    m2[i] = vi
    return mi, np.sqrt(vi) / bias2_sqrt + eps


@njit(inline="always", cache=True, error_model="numpy")
def _add_squares(y, q, L, sq):
    """sq[e] += y[q + e]² (float64) for a row span of L entries: its share of the per-column sums."""
    for e in range(L):
        sq[e] += np.float64(y[q + e]) * y[q + e]


@njit(inline="always", cache=True, error_model="numpy")
def _add_max(x, q, L, top):
    """top[e] = max(top[e], x[q + e]) for a row span of L entries (the per-column maxima)."""
    for e in range(L):
        top[e] = max(top[e], x[q + e])


@njit(inline="always", cache=True, error_model="numpy")
def _group_sums(col, m, k_size, out):
    """out[j] = Σ_k col[j·k_size + k] for the m groups of a row span (the per-column sums over the rows, then
    over k)."""
    for jj in range(m):
        a = 0.0
        for k in range(k_size):
            a += col[jj * k_size + k]
        out[jj] = a


@njit(inline="always", cache=True, error_model="numpy")
def _broadcast(x, m, k_size, out):
    """out[j·k_size + k] = float32(x[j]) for the m groups of a row span."""
    for jj in range(m):
        r = np.float32(x[jj])
        for k in range(k_size):
            out[jj * k_size + k] = r


@njit(cache=True, error_model="numpy")
def _newton_write(w, P, B, n_out, n_in, k_size, j0, m, col_bsq, col_pmax, c, mix, tol, max_newton):
    """Steps 2 and 3 of the module docstring for the chunk's groups j0 … j0+m−1 (P, B: its scratch, row-major
    ``[n_out, m·k_size]``; col_bsq, col_pmax: per-column ‖b‖² and max P over the rows); returns the Newton steps."""
    L = m * k_size
    cf = np.float32(c)
    col_f = np.empty(L)
    col_s = np.empty(L)
    rho_e = np.empty(L, np.float32)
    bsq = np.empty(m)
    _group_sums(col_bsq, m, k_size, bsq)
    rho = np.zeros(m)
    f2 = np.zeros(m)
    s3 = np.zeros(m)
    active = np.zeros(m, np.bool_)
    lo, hi = m, _U(0)
    for jj in range(m):
        bn = np.sqrt(bsq[jj])
        if bn > c:
            pmax = np.float32(0.0)
            for k in range(k_size):
                pmax = max(pmax, col_pmax[jj * k_size + k])
            active[jj] = True
            rho[jj] = (bn - c) / pmax
            lo, hi = min(lo, _U(jj)), _U(jj) + _U(1)
    it = 0
    while lo < hi:
        _broadcast(rho[lo:hi], hi - lo, k_size, rho_e[lo * k_size :])
        e0, e1 = lo * k_size, hi * k_size
        col_f[e0:e1] = 0.0
        col_s[e0:e1] = 0.0
        for o in range(n_out):
            q = o * L
            for e in range(e0, e1):
                p = P[q + e]
                inv = np.float32(1.0) / (p * rho_e[e] + cf)
                x = B[q + e] * inv
                x = x * x
                col_f[e] += x
                col_s[e] += x * p * inv
        _group_sums(col_f[e0:e1], hi - lo, k_size, f2[lo:hi])
        _group_sums(col_s[e0:e1], hi - lo, k_size, s3[lo:hi])
        more_lo, more_hi = m, _U(0)
        for jj in range(lo, hi):
            if active[jj]:
                f = np.sqrt(f2[jj])
                if abs(f - 1.0) <= tol:
                    active[jj] = False
                else:
                    more_lo, more_hi = min(more_lo, _U(jj)), _U(jj) + _U(1)
                    f2[jj] = f
        if more_lo >= more_hi or it == max_newton:
            break
        it += 1
        for jj in range(more_lo, more_hi):
            if active[jj]:
                f = f2[jj]
                rho[jj] = max(rho[jj] + f * f * (f - 1.0) / s3[jj], 0.0)
        lo, hi = more_lo, more_hi
    _broadcast(rho, m, k_size, rho_e)
    for o in range(n_out):
        base = (o * n_in + j0) * k_size
        q = o * L
        for e in range(L):
            r = rho_e[e]
            i = base + e
            z = B[q + e] * r
            d = P[q + e] * r + cf
            # A zero group (ρ = 0) with c = 0 (a learning rate of 0) has d = 0: its W̃ is 0, not 0/0.
            w[i] = _lerp(w[i], z / d if d > 0.0 else z, mix)
    return it


@njit(cache=True, error_model="numpy")
def _prox_scales(col_ysq, m, k_size, c):
    """max(0, ‖Y_g‖ − c)/‖Y_g‖ for the entries of a row span of the chunk's m groups (col_ysq: per-column ‖Y‖²
    over the rows), so that prox(Y)_g = Y_g·scale."""
    ysq = np.empty(m)
    _group_sums(col_ysq, m, k_size, ysq)
    for jj in range(m):
        shrunk = max(np.sqrt(ysq[jj]) - c, 0.0)
        ysq[jj] = shrunk / (shrunk + c) if c > 0.0 else 1.0
    scale = np.empty(m * k_size, np.float32)
    _broadcast(ysq, m, k_size, scale)
    return scale


@njit(inline="always", cache=True, error_model="numpy")
def _ramda_span(ptrs, scal, t, n, base, q, L, P, B):
    """Step 1 of RAMDA on the row span base … base + L − 1 of tensor t (``n`` entries): state, P and b."""
    g, v, u, w0 = _streams4(ptrs, t, 1, n)
    s, eps = np.float32(scal[t, 0]), np.float32(scal[t, 1])
    for e in range(L):
        vi, p = _ramda_entry(base + e, g, v, u, s, eps)
        P[q + e] = p
        B[q + e] = p * w0[base + e] - vi


@njit(inline="always", cache=True, error_model="numpy")
def _adam_scalars(scal, t):
    """ProxGen's per-tensor scalars as :func:`_adam_entry` takes them, and the step size η/b₁: w₁ = 1 − β₁, β₂,
    1 − β₂, √(1 − β₂ᵗ), η/(1 − β₁ᵗ), ε."""
    return (np.float32(1.0 - scal[t, 0]), np.float32(scal[t, 1]), np.float32(1.0 - scal[t, 1]),
            np.float32(scal[t, 2]), np.float32(scal[t, 3]), np.float32(scal[t, 4]))  # fmt: skip


@njit(inline="always", cache=True, error_model="numpy")
def _proxgen_span(ptrs, scal, t, n, base, q, L, P, B):
    """Step 1 of ProxGen on the row span base … base + L − 1 of tensor t (``n`` entries): state, P and b."""
    w, g, m1, m2 = _streams4(ptrs, t, 0, n)
    w1, beta2, w2, bias2_sqrt, step_size, eps = _adam_scalars(scal, t)
    for e in range(L):
        mi, p = _adam_entry(base + e, g, m1, m2, w1, beta2, w2, bias2_sqrt, eps)
        P[q + e] = p
        B[q + e] = p * w[base + e] - mi * step_size


@njit(cache=True, error_model="numpy")
def _adaptive_chunk(kind, ptrs, scal, t, n_out, n_in, k_size, j0, m, P, B, tol, max_newton):
    """Steps 1–3 of RAMDA or ProxGen (``kind``) on a group-LASSO chunk; returns the Newton steps taken."""
    n, L = n_out * n_in * k_size, m * k_size
    col_bsq, col_pmax = np.zeros(L), np.zeros(L, np.float32)
    for o in range(n_out):
        base, q = (o * n_in + j0) * k_size, o * L
        if kind == RAMDA:
            _ramda_span(ptrs, scal, t, n, base, q, L, P, B)
        else:
            _proxgen_span(ptrs, scal, t, n, base, q, L, P, B)
        _add_squares(B, q, L, col_bsq)
        _add_max(P, q, L, col_pmax)
    c, mix = (scal[t, 2], np.float32(scal[t, 3])) if kind == RAMDA else (scal[t, 5], np.float32(1.0))
    w = _stream(ptrs, t, 0, n)
    return _newton_write(w, P, B, n_out, n_in, k_size, j0, m, col_bsq, col_pmax, c, mix, tol, max_newton)


@njit(cache=True, error_model="numpy")
def _adaptive_plain(kind, ptrs, scal, t, j0, m):
    """RAMDA or ProxGen (``kind``) on entries j0 … j0 + m − 1 of a tensor without a structure term:
    W̃ = W⁰ − V/P (RAMDA, mixed into W) or W − η/b₁·m/P (ProxGen)."""
    n = j0 + m
    w, g = _stream(ptrs, t, 0, n), _stream(ptrs, t, 1, n)
    if kind == RAMDA:
        v, u, w0 = _stream(ptrs, t, 2, n), _stream(ptrs, t, 3, n), _stream(ptrs, t, 4, n)
        s, eps, mix = np.float32(scal[t, 0]), np.float32(scal[t, 1]), np.float32(scal[t, 3])
        for i in range(j0, n):
            vi, p = _ramda_entry(i, g, v, u, s, eps)
            w[i] = _lerp(w[i], w0[i] - vi / p, mix)
    else:
        m1, m2 = _stream(ptrs, t, 2, n), _stream(ptrs, t, 3, n)
        w1, beta2, w2, bias2_sqrt, step_size, eps = _adam_scalars(scal, t)
        for i in range(j0, n):
            mi, p = _adam_entry(i, g, m1, m2, w1, beta2, w2, bias2_sqrt, eps)
            w[i] = w[i] - step_size * (mi / p)


@njit(cache=True, error_model="numpy")
def _averaged_chunk(kind, ptrs, scal, t, n_out, n_in, k_size, j0, m, grouped, Y):
    """RMDA or ProxSGD (``kind``) on a chunk: both keep one state Z and take the prox of Y = X − κ·Z after
    Z ← a·Z + b·G (RMDA: Z = V, a = 1, b = s, X = W⁰, κ = 1/β; ProxSGD: Z the momentum buffer, a = 1 − c, b = c,
    X = W, κ = η), then W ← mix(W, prox(Y))."""
    n = n_out * n_in * k_size
    w, g, z = _stream(ptrs, t, 0, n), _stream(ptrs, t, 1, n), _stream(ptrs, t, 2, n)
    if kind == RMDA:
        x = _stream(ptrs, t, 3, n)
        a, b, kappa = np.float32(1.0), np.float32(scal[t, 0]), np.float32(scal[t, 1])
        c, mix = scal[t, 2], np.float32(scal[t, 3])
    else:
        x = w
        a, b, kappa = np.float32(1.0 - scal[t, 0]), np.float32(scal[t, 0]), np.float32(scal[t, 1])
        c, mix = scal[t, 2], np.float32(1.0)
    if not grouped:
        # ProxSGD's X is W and its mix is 1: it reads and writes W through ``w`` alone (read through a second
        # array as well, LLVM's run-time alias check fails and the loop runs scalar).
        if kind == RMDA:
            for i in range(j0, j0 + m):
                zi = z[i] * a + b * g[i]
                z[i] = zi
                w[i] = _lerp(w[i], x[i] - kappa * zi, mix)
        else:
            for i in range(j0, j0 + m):
                zi = z[i] * a + b * g[i]
                z[i] = zi
                w[i] = w[i] - kappa * zi
        return
    L, row = m * k_size, n_in * k_size
    col_ysq = np.zeros(L)
    for o in range(n_out):
        base, q = o * row + j0 * k_size, o * L
        if kind == RMDA:
            for e in range(L):
                i = base + e
                zi = z[i] * a + b * g[i]
                z[i] = zi
                y = x[i] - kappa * zi
                Y[q + e] = y
                col_ysq[e] += np.float64(y) * y
        else:
            # W holds Y until the scales are known: ProxSGD's mix is 1, so W's old value is not needed again and
            # the chunk needs no scratch.
            for e in range(L):
                i = base + e
                zi = z[i] * a + b * g[i]
                z[i] = zi
                y = w[i] - kappa * zi
                w[i] = y
                col_ysq[e] += np.float64(y) * y
    scale = _prox_scales(col_ysq, m, k_size, c)
    for o in range(n_out):
        base, q = o * row + j0 * k_size, o * L
        if kind == RMDA:
            for e in range(L):
                i = base + e
                w[i] = _lerp(w[i], Y[q + e] * scale[e], mix)
        else:
            for e in range(L):
                w[base + e] = w[base + e] * scale[e]


@njit(cache=True, error_model="numpy")
def _block(kind, ptrs, dims, scal, work, q0, q1, ws, tol, max_newton, iters):
    """Work items q0 … q1 − 1 (tensor, chunk) on one thread, with its scratch row ``ws``."""
    for q in range(q0, q1):
        t, ci = work[q, 0], _U(work[q, 1])
        n_out, n_in, k_size, m, grouped = (
            _U(dims[t, 0]),
            _U(dims[t, 1]),
            _U(dims[t, 2]),
            _U(dims[t, 3]),
            dims[t, 4],
        )
        j0 = ci * m
        mm = min(m, n_in - j0)
        size = n_out * mm * k_size
        if kind in (RMDA, PROXSGD):
            _averaged_chunk(kind, ptrs, scal, t, n_out, n_in, k_size, j0, mm, grouped, ws[:size])
        elif grouped:
            P, B = ws[:size], ws[size : 2 * size]
            iters[q] = _adaptive_chunk(
                kind, ptrs, scal, t, n_out, n_in, k_size, j0, mm, P, B, tol, max_newton
            )
        else:
            _adaptive_plain(kind, ptrs, scal, t, j0, mm)


@njit(parallel=True, cache=True, error_model="numpy")
def _run_parallel(kind, ptrs, dims, scal, work, bounds, ws, tol, max_newton, iters):
    for b in prange(bounds.size - 1):
        _block(kind, ptrs, dims, scal, work, bounds[b], bounds[b + 1], ws[b], tol, max_newton, iters)


@njit(cache=True, error_model="numpy")
def _run_serial(kind, ptrs, dims, scal, work, bounds, ws, tol, max_newton, iters):
    _block(kind, ptrs, dims, scal, work, 0, work.shape[0], ws[0], tol, max_newton, iters)


class Workspace:
    """Per-thread scratch rows, reused across calls and steps (fresh multi-MB arrays cost page faults)."""

    def __init__(self) -> None:
        self._buf = np.empty((0, 0), np.float32)

    def get(self, rows: int, size: int) -> np.ndarray:
        if self._buf.shape[0] < rows or self._buf.shape[1] < size:
            self._buf = np.empty((max(rows, self._buf.shape[0]), max(size, self._buf.shape[1])), np.float32)
        return self._buf


def layout(tensors: list[Tensor], grouped: bool) -> tuple[int, int, int] | None:
    """``(n_out, n_in, k_size)``: the view of ``tensors`` (the parameter, its gradient, the state) as
    ``[n_out, n_in, k_size]`` in memory order with the input-wise groups ``[:, j, :]`` (contiguous tensors, or
    4-/5-d channels-last ones, where the groups are the innermost axis); ``(1, numel, 1)`` when not ``grouped``
    (dense tensors of any one memory order). ``None`` when the tensors are not all CPU float32 of one layout."""
    p = tensors[0]
    if p.dtype != torch.float32 or not p.is_cpu or (grouped and p.dim() < 2):
        return None
    shape = p.shape
    for t in tensors[1:]:
        if t.dtype != torch.float32 or not t.is_cpu or not same_layout(t, p):
            return None
    n = p.numel()
    if p.is_contiguous():
        return (shape[0], shape[1], n // (shape[0] * shape[1])) if grouped else (1, n, 1)
    if not channels_last(p):
        return None
    return (n // shape[1], shape[1], 1) if grouped else (1, n, 1)


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


def group_size(shape: tuple[int, int, int]) -> int:
    """|g|, the entries of one input-wise group of a tensor of :func:`layout` ``shape``."""
    return shape[0] * shape[2]


class Plan:
    """How one call cuts its tensors into chunks and the chunks among threads: everything but the pointers and
    the scalars, so that an optimizer builds it once for a param group and reuses it while the tensors' layouts
    and the thread count stay the same. ``shapes``: each tensor's :func:`layout`; ``grouped``: with a group-LASSO
    term; ``threads``: numba threads for the call."""

    def __init__(self, shapes: list[tuple[int, int, int]], grouped: bool, threads: int) -> None:
        count = len(shapes)
        dims = np.empty((count, 5), np.int64)
        chunks = np.empty(count, np.int64)
        sizes = np.empty(count, np.int64)
        for i, (n_out, n_in, k_size) in enumerate(shapes):
            if grouped:
                # As few chunks as CHUNK allows, of about equal width (a narrow last chunk has short row spans),
                # rounded up to a multiple of ``unit`` groups where they are that wide.
                unit = LANES // math.gcd(k_size, LANES)
                parts = -(-n_in // max(1, CHUNK // (n_out * k_size)))
                m = -(-n_in // parts)
                m = min(n_in, -(-m // unit) * unit) if m >= unit else m
            else:
                n_out, n_in, k_size = 1, n_out * n_in * k_size, 1
                m = min(n_in, PLAIN_CHUNK)
            dims[i] = (n_out, n_in, k_size, m, grouped)
            chunks[i] = -(-n_in // m)
            sizes[i] = n_out * m * k_size
        owner = np.repeat(np.arange(count), chunks)
        first = np.cumsum(chunks) - chunks
        cost = np.cumsum(sizes[owner])
        total = int(cost[-1])
        self.grouped, self.dims, self.first = grouped, dims, first
        self.work = np.stack([owner, np.arange(owner.size) - first[owner]], axis=1)
        self.chunk_size = int(sizes.max())
        #: √|g| of each tensor's groups (the structure threshold is c = t·√|g|).
        self.root_sizes = [math.sqrt(group_size(shape)) for shape in shapes]
        self.parallel = threads > 1 and total >= PARALLEL_MIN and owner.size > 1
        if self.parallel:
            # Thread b takes work items bounds[b] … bounds[b + 1] − 1: each boundary is the one whose cost before
            # it is nearest to b/blocks of the total.
            blocks = min(threads, owner.size)
            before = np.concatenate([[0], cost])
            target = total * np.arange(blocks + 1) / blocks
            right = np.minimum(np.searchsorted(before, target), owner.size)
            nearer_left = target - before[right - 1] < before[right] - target
            self.bounds = np.where((right > 0) & nearer_left, right - 1, right)
            self.bounds[0], self.bounds[-1] = 0, owner.size
        else:
            self.bounds = np.array([0, owner.size], np.int64)

    def run(
        self, kind: int, ptrs: np.ndarray, scalars: list[tuple[float, ...]], workspace: Workspace,
        max_newton: int = newton.MAX_STEPS,
    ) -> np.ndarray:  # fmt: skip
        """One step of optimizer ``kind`` in place on the tensors whose raw pointers are the rows of ``ptrs`` (W, G,
        then the state as the kernel of ``kind`` reads it: ``_adaptive_chunk`` for RAMDA and ProxGen,
        ``_averaged_chunk`` for RMDA and ProxSGD), with per-tensor ``scalars`` as that kernel reads them. Returns
        each tensor's Newton steps (0 without one)."""
        scal = np.array(scalars, np.float64).reshape(len(self.root_sizes), -1)
        size = self.chunk_size * SCRATCH[kind] if self.grouped else 0
        iters = np.zeros(self.work.shape[0], np.int64)
        ws = workspace.get(self.bounds.size - 1, size)
        launch = _run_parallel if self.parallel else _run_serial
        launch(kind, ptrs, self.dims, scal, self.work, self.bounds, ws, _TOL, max_newton, iters)
        return np.maximum.reduceat(iters, self.first)


def pointers(tensors: list[list[Tensor]]) -> np.ndarray:
    """The raw data pointers of each tensor list (all of one length), one row per list, as :meth:`Plan.run`
    takes them."""
    width = len(tensors[0]) if tensors else 0
    flat = (t for ts in tensors for t in ts)
    return np.fromiter(map(Tensor.data_ptr, flat), np.uint64, len(tensors) * width).reshape(
        len(tensors), width
    )


def run(
    kind: int, tensors: list[list[Tensor]], shapes: list[tuple[int, int, int]], grouped: bool,
    scalars: list[tuple[float, ...]], workspace: Workspace, threads: int, max_newton: int = newton.MAX_STEPS,
) -> np.ndarray:  # fmt: skip
    """:meth:`Plan.run` on ``tensors`` (lists of W, G and the state) with a plan made for this call."""
    plan = Plan(shapes, grouped, threads)
    return plan.run(kind, pointers(tensors), scalars, workspace, max_newton)
