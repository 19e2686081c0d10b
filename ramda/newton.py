"""The limits of the Newton solve in the exact group-LASSO subproblem, shared by the plain-torch solver
(:meth:`ramda.regularizers.GroupLasso.solve_exact`) and the fused kernels (:mod:`ramda.kernels`).

Per group, Newton runs on g(ρ) = 1/F(ρ) − 1 with F(ρ) = ‖b_g/(P_g ρ + c)‖, from ρ₀ = (‖b_g‖ − c)/max P_g, a
point left of the root. g is exactly linear when P_g is constant (one step) and nearly linear otherwise, so Newton
converges quadratically: in practice 1–4 steps. The caps below only bound the work where nothing is read back,
or guard against a stall; none changes a result that converged within it.
"""

from __future__ import annotations

import torch

#: A group stops at its first iterate with |F − 1| ≤ TOL_ULPS ulps of the dtype: F is a square root of a sum of
#: squares, computed to about that accuracy, so asking for less would chase rounding noise.
TOL_ULPS = 64

#: Step cap where convergence is read after every step (the plain-torch solver on the CPU, the numba kernels):
#: the loop normally ends by the tolerance long before; the cap only stops a group that stalls on rounding.
MAX_STEPS = 30

#: Fixed step count of the Triton kernel, which keeps a group in registers and cannot stop early per tensor:
#: a converged group stops moving (masked), so the spare steps cost a few flops, never accuracy.
TRITON_STEPS = 10

#: Fixed step count of the plain-torch solver on a GPU, run without reading convergence back to the host: each
#: step is a few full-tensor kernels, so the count is the smallest that covers the 1–4 steps seen in training.
DEVICE_STEPS = 5


def tolerance(dtype: torch.dtype) -> float:
    """|F − 1| at which a group stops moving: TOL_ULPS ulps of ``dtype``."""
    return TOL_ULPS * torch.finfo(dtype).eps
