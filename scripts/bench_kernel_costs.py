"""Where a fused CPU step's time goes: the numba kernels of ramda.kernels.cpu, part by part, against torch's
fused AdamW step on the same tensors, in one process.

    python scripts/bench_kernel_costs.py              # ResNet50's weights, 1 thread, CPU clock
    python scripts/bench_kernel_costs.py --threads 2

On every weight of ResNet50 (the group-LASSO tensors: 25.5 M entries), with random gradients and a state as after
100 steps, it times ``step()`` of ``AdamW(fused=True)`` and, calling the kernels directly (no optimizer
bookkeeping):

- ``cube root``: the kernels' correctly rounded float32 cube root alone, as many as there are entries, on an
  L1-resident array per thread (its cost with no memory traffic at all);
- RAMDA ``λ = 0``: the one-pass update without a structure term;
- RAMDA ``all groups zero``: λ so large that every group is zero, so the step is the first pass (state update,
  P and b into scratch, the group sums) and the write, with no Newton step;
- RAMDA ``λ = 0``, grouped: λ = 0 on the group path, where every group is nonzero and takes exactly one Newton
  step (two evaluations of F);
- each optimizer's group-LASSO kernel at its paper λ and learning rate (ImageNet's: ``bench_optim.PAPER``).

Printed: the median over rounds of each, in ms and as a ratio to the AdamW step timed in the same round.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_optim import PAPER  # scripts/ is on the path when this script runs

from ramda.kernels import cpu

STEP = 100  #: the step k the state is taken at


@njit(parallel=True, cache=True, error_model="numpy")
def _cube_roots(u, out, reps):
    """Cube roots of each row of ``u`` (one L1-resident row per thread), ``reps`` times over."""
    for r in prange(u.shape[0]):
        for _ in range(reps):
            for i in range(u.shape[1]):
                out[r, i] = np.float32(cpu._cbrt(u[r, i]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (medians are over these)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time or wall time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu.set_threads()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    from torchvision.models import resnet50

    torch.manual_seed(0)
    weights = [p.detach() for p in resnet50().parameters() if p.dim() > 1]
    grads = [torch.randn_like(w) * 1e-2 for w in weights]
    shapes = [cpu.layout([w], True) for w in weights]
    entries = sum(w.numel() for w in weights)
    workspace = cpu.Workspace()

    paper = PAPER["resnet50"]
    roots = [math.sqrt(cpu.group_size(shape)) for shape in shapes]

    def dual_averaging(lr: float) -> tuple[float, float]:
        """s = η√k and α = Σ_{i≤k} η√i at step k = STEP."""
        return lr * math.sqrt(STEP), sum(lr * math.sqrt(k) for k in range(1, STEP + 1))

    def ramda(lam: float, grouped: bool) -> Callable[[], None]:
        tensors = [[w.clone(), g, torch.randn_like(w) * 1e-2, torch.rand_like(w) * 1e-3 + 1e-5, w.clone()]
                   for w, g in zip(weights, grads)]  # fmt: skip
        s, alpha = dual_averaging(paper["RAMDA"]["lr"])
        scalars = [(s, 1e-6, alpha * lam * r, paper["RAMDA"]["momentum"]) for r in roots]
        return lambda: cpu.run(cpu.RAMDA, tensors, shapes, grouped, scalars, workspace, args.threads)

    def proxgen() -> Callable[[], None]:
        tensors = [[w.clone(), g, torch.randn_like(w) * 1e-3, torch.rand_like(w) * 1e-5]
                   for w, g in zip(weights, grads)]  # fmt: skip
        lr, lam = paper["ProxGen"]["lr"], paper["ProxGen"]["lam"]
        bias1, bias2 = 1 - 0.9**STEP, 1 - 0.999**STEP
        scalars = [(0.9, 0.999, math.sqrt(bias2), lr / bias1, 1e-8, lr * lam * r) for r in roots]
        return lambda: cpu.run(cpu.PROXGEN, tensors, shapes, True, scalars, workspace, args.threads)

    def rmda() -> Callable[[], None]:
        tensors = [[w.clone(), g, torch.randn_like(w) * 1e-2, w.clone()] for w, g in zip(weights, grads)]
        s, alpha = dual_averaging(paper["RMDA"]["lr"])
        beta, lam = math.sqrt(STEP), paper["RMDA"]["lam"]
        scalars = [(s, 1 / beta, alpha / beta * lam * r, paper["RMDA"]["momentum"]) for r in roots]
        return lambda: cpu.run(cpu.RMDA, tensors, shapes, True, scalars, workspace, args.threads)

    def proxsgd() -> Callable[[], None]:
        tensors = [[w.clone(), g, torch.randn_like(w) * 1e-2] for w, g in zip(weights, grads)]
        lr, momentum, lam = (paper["ProxSGD"][k] for k in ("lr", "momentum", "lam"))
        scalars = [(momentum, lr, lr * lam * r) for r in roots]
        return lambda: cpu.run(cpu.PROXSGD, tensors, shapes, True, scalars, workspace, args.threads)

    block = np.random.default_rng(0).uniform(1e-8, 1.0, (args.threads, 1 << 13)).astype(np.float32)
    out = np.empty_like(block)
    reps = max(1, entries // block.size)

    def cube_roots() -> None:
        _cube_roots(block, out, reps)

    params = [w.clone().requires_grad_() for w in weights]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    adamw = torch.optim.AdamW(params, lr=1e-3, fused=True)
    rows: dict[str, Callable[[], None]] = {
        "cube root alone (L1)": cube_roots,
        "RAMDA, λ = 0": ramda(0.0, False),
        "RAMDA, all groups zero": ramda(1e3, True),
        "RAMDA, λ = 0 on the group path (1 Newton step)": ramda(0.0, True),
        f"RAMDA, paper λ {paper['RAMDA']['lam']:g}": ramda(paper["RAMDA"]["lam"], True),
        f"ProxGen, paper λ {paper['ProxGen']['lam']:g}": proxgen(),
        f"RMDA, paper λ {paper['RMDA']['lam']:g}": rmda(),
        f"ProxSGD, paper λ {paper['ProxSGD']['lam']:g}": proxsgd(),
    }
    for fn in [adamw.step, *rows.values()]:
        fn()
    times: dict[str, list[float]] = {name: [] for name in ["AdamW fused", *rows]}
    ratios: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        t = clock()
        adamw.step()
        base = clock() - t
        times["AdamW fused"].append(base)
        for name, fn in rows.items():
            t = clock()
            fn()
            times[name].append(clock() - t)
            ratios[name].append(times[name][-1] / base)
    print(
        f"ResNet50 weights ({entries / 1e6:.1f} M entries), {args.threads} thread(s), {args.clock} clock, "
        f"median of {args.rounds} rounds"
    )
    print("| part | ms | × AdamW fused |\n|---|---|---|")
    print(f"| AdamW fused step | {statistics.median(times['AdamW fused']) * 1e3:.1f} | 1.00 |")
    for name in rows:
        print(
            f"| {name} | {statistics.median(times[name]) * 1e3:.1f} | {statistics.median(ratios[name]):.2f} |"
        )


if __name__ == "__main__":
    main()
