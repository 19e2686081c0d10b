"""The inexact subproblem solver (docs/math.md#the-subproblem-solver).

Solves, for one tensor and a diagonal preconditioner P > 0,

    min_Z  Q(Z) = ⟨V, Z − W⁰⟩ + ½⟨Z − W⁰, P⊙(Z − W⁰)⟩ + t·ψ(Z)

(the constant ⟨V, W⁰⟩ is dropped, as in the authors' code, which matters for the relative-decrease rule).
First the exact zero test (group g is 0 iff ‖P_g⊙W⁰_g − V_g‖ ≤ t·w_g); those groups are set to 0.0 and never
iterated. Then, by ``stop``:

- ``"exact"``: the regulariser's closed form / safeguarded Newton (group LASSO, L1, binary);
- ``"objective"``: proximal gradient with per-group steps h_g = 1/max P_g, warm-started at the current W, until
  the relative decrease (Q_prev − Q_cur)/(|Q_cur| + 1) < rtol at an iteration i > 0, or ``max_iters``;
- ``"subgradient"``: the same iterations until the minimum-norm subgradient of Q has norm ≤ ``tol``.

Convergence is read on the host only every ``check_every`` iterations (1 on CPU, where reading is free; 8 on a
GPU, where the iterate at which the rule fired is kept on the device), and the exact solver runs a fixed number
of Newton steps on a GPU, so a step never stalls on a host round trip per inner iteration.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ramda import newton
from ramda.regularizers import Regularizer

STOP_MODES = ("exact", "objective", "subgradient")


def default_stop(reg: Regularizer) -> str:
    """The most accurate fast mode: exact where the regulariser allows it, else the authors' rule."""
    return "exact" if reg.has_exact else "objective"


def default_check_every(device: torch.device) -> int:
    return 1 if device.type == "cpu" else 8


def subproblem_objective(reg: Regularizer, z: Tensor, w0: Tensor, v: Tensor, p: Tensor, t: float) -> Tensor:
    """Q(Z) = ⟨V, Z − W⁰⟩ + ½⟨Z − W⁰, P⊙(Z − W⁰)⟩ + t·ψ(Z), summed over the tensor."""
    d = z - w0
    return torch.sum(d * v) + 0.5 * torch.sum(d * p * d) + t * reg.value(z)


def solve(
    reg: Regularizer,
    z0: Tensor,
    w0: Tensor,
    v: Tensor,
    p: Tensor,
    t: float,
    *,
    stop: str,
    max_iters: int = 100,
    rtol: float = 1e-8,
    tol: float = 1e-6,
    check_every: int | None = None,
) -> tuple[Tensor, Tensor | int]:
    """Approximately minimise Q (module docstring); returns (Z, inner iterations taken)."""
    if stop == "exact":
        if check_every is None and z0.device.type != "cpu":
            # Newton from the left bracket converges quadratically: a fixed count needs no host read at all.
            return reg.solve_exact(w0, v, p, t, check_every=0, max_newton=newton.DEVICE_STEPS)
        return reg.solve_exact(w0, v, p, t, check_every=check_every or 1)
    if check_every is None:
        check_every = default_check_every(z0.device)
    if stop not in STOP_MODES:
        raise ValueError(f"stop: unknown mode '{stop}'; valid: {', '.join(STOP_MODES)}")

    zero = reg.zero_groups(torch.addcmul(-v, p, w0), t)
    active = None if zero is None else ~zero
    h = 1.0 / reg.group_max(p)
    z = z0 if active is None else torch.where(active, z0, 0.0)

    def masked_q(z: Tensor) -> Tensor:
        d = z - w0
        per_entry = d * v + 0.5 * d * p * d
        penalty = t * reg.group_penalty(z)
        if active is None:
            return per_entry.sum() + penalty.sum()
        return torch.where(active, per_entry, 0.0).sum() + torch.where(active, penalty, 0.0).sum()

    def pg_step(z: Tensor) -> Tensor:
        y = z - h * torch.addcmul(v, p, z - w0)
        nz = reg.prox(y, h * t)
        return nz if active is None else torch.where(active, nz, 0.0)

    if stop == "subgradient":
        return _solve_subgradient(reg, z, w0, v, p, t, pg_step, max_iters, tol, check_every)
    return _solve_objective(z, masked_q, pg_step, max_iters, rtol, check_every)


def _solve_objective(z, masked_q, pg_step, max_iters: int, rtol: float, check_every: int):
    prev = masked_q(z)
    if check_every == 1:
        prev_f = float(prev)
        for i in range(max_iters):
            z = pg_step(z)
            cur_f = float(masked_q(z))
            if i > 0 and (prev_f - cur_f) / (abs(cur_f) + 1.0) < rtol:
                return z, i + 1
            prev_f = cur_f
        return z, max_iters
    done = torch.zeros((), dtype=torch.bool, device=z.device)
    iters = torch.zeros((), dtype=torch.int64, device=z.device)
    for i in range(max_iters):
        z_new = pg_step(z)
        cur = masked_q(z_new)
        z = torch.where(done, z, z_new)
        iters = iters + (~done).long()
        if i > 0:
            done = done | ((prev - cur) / (cur.abs() + 1.0) < rtol)
        prev = torch.where(done, prev, cur)
        if (i + 1) % check_every == 0 and bool(done):
            break
    return z, iters


def _solve_subgradient(reg, z, w0, v, p, t: float, pg_step, max_iters: int, tol: float, check_every: int):
    tol_sq = tol * tol

    def converged(z: Tensor) -> Tensor:
        return reg.subgrad_norm_sq(z, torch.addcmul(v, p, z - w0), t) <= tol_sq

    if check_every == 1:
        for i in range(max_iters):
            if bool(converged(z)):
                return z, i
            z = pg_step(z)
        return z, max_iters
    done = converged(z)
    iters = torch.zeros((), dtype=torch.int64, device=z.device)
    for i in range(max_iters):
        z = torch.where(done, z, pg_step(z))
        iters = iters + (~done).long()
        done = done | converged(z)
        if (i + 1) % check_every == 0 and bool(done):
            break
    return z, iters
