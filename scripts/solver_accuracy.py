"""How far the authors' `objective` stopping rule leaves the subproblem from its exact solution.

    python scripts/solver_accuracy.py

For random group-LASSO subproblems (float64, a conv-shaped tensor [64, 32, 3, 3], about 40 % zero groups) whose
diagonal P spreads over [1, cond] within each group, prints per condition number the objective rule's mean and
worst relative objective gap to the exact solution, the relative distance of the iterate, whether the zero pattern
matched, and the iterations it used (rtol 1e-8, at most 100, as in the paper's configs); the same for
`subgradient` at tol 1e-6.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda.regularizers import REGULARIZERS
from ramda.solver import solve, subproblem_objective

REG = REGULARIZERS["group_lasso"]


def instance(seed: int, cond: float) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shape = (64, 32, 3, 3)
    w0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    p = torch.exp(torch.rand(shape, generator=gen, dtype=torch.float64) * torch.log(torch.tensor(cond)))
    norms = REG.norms(p * w0 - v).flatten()
    t = float(torch.quantile(norms, 0.4)) / REG.weight(w0)
    return w0, v, p, t


def main() -> None:
    print(
        "| cond(P) | rule | mean rel. objective gap | worst gap | rel. distance | zero pattern | iterations |"
    )
    print("|---|---|---|---|---|---|---|")
    for cond in (1.0, 10.0, 1e2, 1e3, 1e4):
        for stop, extra in (("objective", {}), ("subgradient", {"tol": 1e-6})):
            gaps, dists, same, iters = [], [], 0, []
            for seed in range(10):
                w0, v, p, t = instance(seed, cond)
                exact, _ = solve(REG, w0, w0, v, p, t, stop="exact")
                z, n = solve(REG, w0, w0, v, p, t, stop=stop, **extra)
                q_star = float(subproblem_objective(REG, exact, w0, v, p, t))
                gaps.append((float(subproblem_objective(REG, z, w0, v, p, t)) - q_star) / abs(q_star))
                dists.append(float(torch.linalg.vector_norm(z - exact) / torch.linalg.vector_norm(exact)))
                zero_z, zero_e = REG.norms(z) == 0, REG.norms(exact) == 0
                same += bool(torch.equal(zero_z, zero_e))
                iters.append(int(n))
            print(
                f"| {cond:g} | {stop} | {sum(gaps) / len(gaps):.1e} | {max(gaps):.1e} | {max(dists):.1e} | "
                f"{same}/10 | {sum(iters) / len(iters):.1f} |"
            )


if __name__ == "__main__":
    main()
