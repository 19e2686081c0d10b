"""Regularisers ψ with their prox, subgradients and the per-group pieces the subproblem solver needs.

Every regulariser acts on one parameter tensor. Group-structured ones use the paper's layout (docs/math.md#group-structure): a group
is one *input* slice ``W[:, j, ...]`` (axis 1), so a Conv weight ``[out, in, *k]`` has ``in`` groups of
``out·prod(k)`` entries and a Linear/LSTM weight ``[out, in]`` has ``in`` column groups of ``out`` entries.

Shapes: per-group quantities are kept with ``keepdim=True`` (shape ``[1, in, 1, ...]``) so they broadcast
against the tensor. L1 and binary are separable per entry: their "groups" are the entries themselves.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import torch
from torch import Tensor

from ramda import newton


def _group_reduce(x: Tensor, op: str) -> Tensor:
    """Reduce each input-wise group (``op`` = "sum" or "amax"), keepdim shape ``[1, in, 1, ...]``. Done as an
    inner reduction over the kernel dims followed by an outer one over rows: several times faster on the CPU
    than one reduction over the strided dims (0, 2, 3)."""
    reduce = getattr(torch, op)
    out, n_in = x.shape[0], x.shape[1]
    if x.numel() == out * n_in:
        return reduce(x.reshape(out, n_in), dim=0).view(1, n_in, *([1] * (x.dim() - 2)))
    return reduce(reduce(x, dim=tuple(range(2, x.dim())), keepdim=True), dim=0, keepdim=True)


def group_sum(x: Tensor) -> Tensor:
    """Σ over each input-wise group, keepdim shape ``[1, in, 1, ...]``."""
    return _group_reduce(x, "sum")


def group_amax(x: Tensor) -> Tensor:
    """max over each input-wise group, keepdim shape ``[1, in, 1, ...]``."""
    return _group_reduce(x, "amax")


class Regularizer(abc.ABC):
    """ψ for one tensor. ``t`` below is the scale in front of ψ (α·λ for RAMDA, η·λ for ProxGen)."""

    name: ClassVar[str]
    #: The diagonal-P subproblem min ⟨V,Z⟩ + ½⟨Z−W⁰, P⊙(Z−W⁰)⟩ + t·ψ(Z) has an exact solver.
    has_exact: ClassVar[bool] = True

    def check(self, w: Tensor, where: str = "param") -> None:
        """Raise ``ValueError`` when ψ cannot act on a tensor of this shape."""

    @abc.abstractmethod
    def value(self, w: Tensor) -> Tensor:
        """ψ(w), a 0-dim tensor."""

    @abc.abstractmethod
    def prox(self, y: Tensor, tau: Tensor | float) -> Tensor:
        """prox_{τψ}(y) = argmin_z ½‖z − y‖² + τψ(z); ``tau`` may be per group (broadcastable)."""

    def prox_(self, ys: list[Tensor], taus: list[float]) -> None:
        """y_i ← prox_{τ_i ψ}(y_i) in place, for a list of tensors (one tensor at a time here)."""
        for y, tau in zip(ys, taus):
            y.copy_(self.prox(y, tau))

    @abc.abstractmethod
    def group_max(self, p: Tensor) -> Tensor:
        """max of the diagonal P over each group (the proximal-gradient step is its inverse)."""

    @abc.abstractmethod
    def group_penalty(self, z: Tensor) -> Tensor:
        """ψ split per group (broadcastable shape, summing to ψ(z))."""

    def zero_groups(self, b: Tensor, t: float) -> Tensor | None:
        """Mask of the groups that are exactly zero at the subproblem's solution, given b = P⊙W⁰ − V."""
        return None

    @abc.abstractmethod
    def subgrad_norm_sq(self, z: Tensor, r: Tensor, t: float) -> Tensor:
        """‖min-norm element of r + t·∂ψ(z)‖², summed over the tensor (r = gradient of the smooth part)."""

    def solve_exact(self, w0: Tensor, v: Tensor, p: Tensor, t: float, **kw: float) -> tuple[Tensor, int]:
        """The exact subproblem solution and the number of inner iterations it took."""
        raise ValueError(f"regularizer '{self.name}' has no exact diagonal solver; use stop='objective'")


class GroupLasso(Regularizer):
    """ψ(W) = Σ_g w_g ‖W_g‖₂ with w_g = √|g| over input-wise groups; prox_τψ(Y)_g = max(0, 1 − τw_g/‖Y_g‖)Y_g."""

    name = "group_lasso"

    def check(self, w: Tensor, where: str = "param") -> None:
        if w.dim() < 2:
            raise ValueError(
                f"regularizer 'group_lasso' needs a weight with >= 2 dims (input-wise groups), but {where} has "
                f"shape {tuple(w.shape)}; build the groups with ramda.structure.param_groups(model, lam)"
            )

    @staticmethod
    def weight(w: Tensor) -> float:
        return math.sqrt(w.numel() // w.shape[1])

    def norms(self, w: Tensor) -> Tensor:
        """‖W_g‖₂ per group (a square and a sum: torch's vector_norm is far slower over these dims)."""
        return torch.sqrt(group_sum(w * w))

    def value(self, w: Tensor) -> Tensor:
        return self.norms(w).sum() * self.weight(w)

    def prox(self, y: Tensor, tau: Tensor | float) -> Tensor:
        thr = tau * self.weight(y)
        if isinstance(thr, float) and thr == 0.0:
            return y.clone()
        shrunk = torch.relu(self.norms(y) - thr)
        return y * (shrunk / (shrunk + thr))

    def prox_(self, ys: list[Tensor], taus: list[float]) -> None:
        """:meth:`prox` in place on a list: the same operations, but the per-group ones (a few floats per group)
        as one foreach call each over all tensors, and the scaling in place: on a GPU that is a handful of
        launches for the list instead of eight per tensor."""
        pairs = [(y, tau * self.weight(y)) for y, tau in zip(ys, taus)]
        pairs = [(y, thr) for y, thr in pairs if thr != 0.0]  # τ = 0: the identity
        if not pairs:
            return
        ys, thr = [y for y, _ in pairs], [t for _, t in pairs]
        shrunk = [group_sum(y * y) for y in ys]
        torch._foreach_sqrt_(shrunk)
        torch._foreach_sub_(shrunk, thr)
        torch._foreach_clamp_min_(shrunk, 0.0)
        torch._foreach_div_(shrunk, torch._foreach_add(shrunk, thr))
        torch._foreach_mul_(ys, shrunk)

    def group_max(self, p: Tensor) -> Tensor:
        return group_amax(p)

    def group_penalty(self, z: Tensor) -> Tensor:
        return self.norms(z) * self.weight(z)

    def zero_groups(self, b: Tensor, t: float) -> Tensor:
        return self.norms(b) <= t * self.weight(b)

    def subgrad_norm_sq(self, z: Tensor, r: Tensor, t: float) -> Tensor:
        c = t * self.weight(z)
        zn = self.norms(z)
        nonzero = zn > 0
        g = r + c * z / torch.where(nonzero, zn, 1.0)
        at_zero = torch.relu(self.norms(r) - c) ** 2
        per_group = torch.where(nonzero, group_sum(g * g), at_zero)
        return per_group.sum()

    def solve_exact(
        self,
        w0: Tensor,
        v: Tensor,
        p: Tensor,
        t: float,
        newton_tol: float | None = None,
        max_newton: int = newton.MAX_STEPS,
        check_every: int = 1,
    ) -> tuple[Tensor, int]:
        """Z_g = b_g ρ/(P_g ρ + c) with c = t w_g, b = P⊙W⁰ − V, and ρ = ‖Z_g‖ the root of F(ρ) = 1,
        F(ρ) = ‖b_g/(P_g ρ + c)‖. Newton runs on g(ρ) = 1/F(ρ) − 1, which is exactly linear when P_g is constant
        (one step) and nearly so otherwise, from ρ₀ = (‖b_g‖ − c)/max P_g, a point left of the root. A group
        stops at its first iterate with |F − 1| ≤ ``newton_tol`` (by default :func:`ramda.newton.tolerance`: the
        accuracy F itself is computed to), so its result does not depend on the other groups; the loop ends when
        every group has stopped, or after ``max_newton`` steps (:mod:`ramda.newton`). Groups with ‖b_g‖ ≤ c are exactly zero."""
        neg_b = torch.addcmul(v, p, w0, value=-1.0)
        if t == 0.0:
            return neg_b.div_(p).neg_(), 0
        if newton_tol is None:
            newton_tol = newton.tolerance(p.dtype)
        c = t * self.weight(neg_b)
        c_t = torch.full((), c, dtype=p.dtype, device=p.device)  # a fill, not a host-to-device copy
        bn = self.norms(neg_b)
        nonzero = bn > c
        rho = torch.relu(bn - c) / self.group_max(p)
        # Buffers reused across Newton steps: fresh multi-MB temporaries cost page faults on the CPU.
        d, r, q = torch.empty_like(p), torch.empty_like(p), torch.empty_like(p)
        iters = 0
        while True:
            torch.addcmul(c_t, p, rho, out=d)
            torch.div(neg_b, d, out=r)
            f = torch.sqrt(group_sum(torch.mul(r, r, out=q)))
            moving = nonzero & (torch.abs(f - 1.0) > newton_tol)
            if iters == max_newton or (
                check_every and iters % check_every == 0 and not bool(torch.any(moving))
            ):
                break
            iters += 1
            s3 = group_sum(q.mul_(p).div_(d))
            step = f * f * (f - 1.0) / torch.where(moving, s3, 1.0)
            rho = torch.where(moving, torch.relu(rho + step), rho)
        return r.mul_(torch.where(nonzero, -rho, 0.0)), iters


class L1(Regularizer):
    """ψ(W) = ‖W‖₁; prox = soft threshold sign(y)·max(|y| − τ, 0). Groups are single entries."""

    name = "l1"

    def value(self, w: Tensor) -> Tensor:
        return w.abs().sum()

    def prox(self, y: Tensor, tau: Tensor | float) -> Tensor:
        return torch.sign(y) * torch.relu(y.abs() - tau)

    def group_max(self, p: Tensor) -> Tensor:
        return p

    def group_penalty(self, z: Tensor) -> Tensor:
        return z.abs()

    def zero_groups(self, b: Tensor, t: float) -> Tensor:
        return b.abs() <= t

    def subgrad_norm_sq(self, z: Tensor, r: Tensor, t: float) -> Tensor:
        g = torch.where(z != 0, r + t * torch.sign(z), torch.relu(r.abs() - t))
        return torch.sum(g * g)

    def solve_exact(self, w0: Tensor, v: Tensor, p: Tensor, t: float, **kw: float) -> tuple[Tensor, int]:
        """Per entry: Z = soft(W⁰ − V/P, t/P)."""
        return self.prox(w0 - v / p, t / p), 1


class Binary(Regularizer):
    """ψ(W) = Σ ||W| − 1| (distance to {−1, +1}; equals Σ|W − sign W| away from 0).
    prox_τψ(y) = s·(1 + soft(|y| − 1, τ)) with s = sign(y) (+1 at 0): entries move toward ±1 and stick there."""

    name = "binary"

    def value(self, w: Tensor) -> Tensor:
        return (w.abs() - 1.0).abs().sum()

    def prox(self, y: Tensor, tau: Tensor | float) -> Tensor:
        s = torch.where(y >= 0, 1.0, -1.0).to(y.dtype)
        dist = y.abs() - 1.0
        return s * (1.0 + torch.sign(dist) * torch.relu(dist.abs() - tau))

    def group_max(self, p: Tensor) -> Tensor:
        return p

    def group_penalty(self, z: Tensor) -> Tensor:
        return (z.abs() - 1.0).abs()

    def subgrad_norm_sq(self, z: Tensor, r: Tensor, t: float) -> Tensor:
        s = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
        dist = z.abs() - 1.0
        g = torch.where(dist != 0, r + t * s * torch.sign(dist), torch.relu(r.abs() - t))
        return torch.sum(g * g)

    def solve_exact(self, w0: Tensor, v: Tensor, p: Tensor, t: float, **kw: float) -> tuple[Tensor, int]:
        """Per entry: Z = prox_{(t/P)ψ}(W⁰ − V/P)."""
        return self.prox(w0 - v / p, t / p), 1


class Nuclear(Regularizer):
    """ψ(W) = Σ σ_i(W) of W viewed as [out, in·prod(k)]; prox soft-thresholds the singular values.
    One group (the whole matrix); no exact diagonal solver."""

    name = "nuclear"
    has_exact = False

    def check(self, w: Tensor, where: str = "param") -> None:
        if w.dim() < 2:
            raise ValueError(
                f"regularizer 'nuclear' needs a weight with >= 2 dims, but {where} has shape {tuple(w.shape)}"
            )

    @staticmethod
    def _mat(w: Tensor) -> Tensor:
        return w.reshape(w.shape[0], -1)

    def value(self, w: Tensor) -> Tensor:
        return torch.linalg.svdvals(self._mat(w)).sum()

    def prox(self, y: Tensor, tau: Tensor | float) -> Tensor:
        u, s, vh = torch.linalg.svd(self._mat(y), full_matrices=False)
        return ((u * torch.relu(s - tau)) @ vh).reshape(y.shape)

    def group_max(self, p: Tensor) -> Tensor:
        return p.amax()

    def group_penalty(self, z: Tensor) -> Tensor:
        return self.value(z)

    def subgrad_norm_sq(self, z: Tensor, r: Tensor, t: float) -> Tensor:
        """With Z = U_r Σ V_rᵀ (rank r) and G = R + t U_r V_rᵀ, the min-norm subgradient keeps G's part in
        the tangent space and shrinks the singular values of (I − U Uᵀ) G (I − V Vᵀ) by t."""
        u, s, vh = torch.linalg.svd(self._mat(z), full_matrices=False)
        rank = int(torch.count_nonzero(s > s.max() * 1e-6)) if s.numel() and float(s.max()) > 0 else 0
        u, vh = u[:, :rank], vh[:rank]
        g = self._mat(r) + t * (u @ vh)
        g_perp = g - u @ (u.T @ g) - (g @ vh.T) @ vh + u @ (u.T @ g @ vh.T) @ vh
        tangent_sq = torch.sum((g - g_perp) ** 2)
        shrunk = torch.relu(torch.linalg.svdvals(g_perp) - t)
        return tangent_sq + torch.sum(shrunk**2)


REGULARIZERS: dict[str, Regularizer] = {r.name: r for r in (GroupLasso(), L1(), Nuclear(), Binary())}


def check_lam(lam: float) -> None:
    """λ is a finite number ≥ 0 (the one place this is checked); ``ValueError`` otherwise."""
    if not (math.isfinite(lam) and lam >= 0.0):
        raise ValueError(f"lam (λ) must be a finite number >= 0, got {lam}")


def get_regularizer(name: str | None, where: str = "regularizer") -> Regularizer | None:
    """Look a regulariser up by name (``None``/``"none"`` mean no regulariser)."""
    if name is None or name == "none":
        return None
    if name not in REGULARIZERS:
        raise ValueError(
            f"{where}: unknown regularizer '{name}'; valid: {', '.join([*REGULARIZERS, 'none'])}"
        )
    return REGULARIZERS[name]
