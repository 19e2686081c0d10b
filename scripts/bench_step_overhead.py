"""The Python time of an optimizer's ``step()`` around its numba kernels: everything a step does on ResNet50's 161
tensors (state lookups, the per-tensor scalars, the batch checks, the pointer table) with the kernel launch
replaced by a no-op, so that only the bookkeeping is timed.

    python scripts/bench_step_overhead.py
    python scripts/bench_step_overhead.py --only RMDA ProxSGD --rounds 50

The last row is torch's ``AdamW(fused=True)`` with its fused kernel (``torch._fused_adamw_``) replaced by a
no-op in the same way: its own Python around the kernel, the reference for ours.

Printed per optimizer: the median ``step()`` time with warm caches (steps back to back) and with cold ones (after
a pass over a 256 MB array, as after a real kernel or a forward/backward pass, which evict the Python objects and
tensor headers a step touches). The weights do not change (no kernel runs), so every step sees the same state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_optim import (  # scripts/ is on the path when this runs
    CLASSES,
    candidates,
    copy_params,
    recorded_grads,
)

from ramda.kernels import cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(CLASSES), help="optimizers to time (default: all four)")
    ap.add_argument("--rounds", type=int, default=30, help="timed steps per case (medians are over these)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net, grads = recorded_grads("resnet50", torch.device("cpu"), None)
    for launch in ("_run_parallel", "_run_serial"):
        setattr(cpu, launch, lambda *a: None)
    sweep = np.ones(1 << 26, np.float32)
    print(
        f"ResNet50 ({len(grads)} tensors), 1 thread, kernels replaced by no-ops, median of {args.rounds} steps"
    )
    print("| optimizer | warm (ms) | cold (ms) |\n|---|---|---|")
    makers = {name: candidates("resnet50", [name])[name] for name in args.only or list(CLASSES)}
    makers["AdamW fused"] = lambda net, copies: torch.optim.AdamW(list(copies.values()), lr=1e-3, fused=True)
    for name, make in makers.items():
        opt = make(net, copy_params(net, grads))
        for _ in range(3):
            opt.step()
        if name == "AdamW fused":
            torch._fused_adamw_ = lambda *a, **k: None
        times: dict[str, list[float]] = {"warm": [], "cold": []}
        for _ in range(args.rounds):
            for mode in times:
                if mode == "cold":
                    sweep += 1.0
                t = time.perf_counter()
                opt.step()
                times[mode].append(time.perf_counter() - t)
        warm, cold = (statistics.median(times[m]) * 1e3 for m in ("warm", "cold"))
        print(f"| {name} | {warm:.2f} | {cold:.2f} |")


if __name__ == "__main__":
    main()
