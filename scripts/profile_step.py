"""Where a step's time goes, per optimizer, on the paper's parameter shapes (torch.profiler).

    python scripts/profile_step.py --device cuda --model resnet50
    python scripts/profile_step.py --model resnet50 --only RAMDA --top 5     # the CPU: host time only

For each optimizer (and ``AdamW(fused=True)`` as the anchor), after warm-up steps on real gradients: the host
time to issue a step (``step()`` returns before the GPU is done), the wall time of a synchronised step, the
torch operations it dispatches (a foreach call counts once; the same count on every device), the device time of
its kernels, the kernel launches and copies per step, and the kernels that take the most device time. On a GPU, a step whose host time exceeds its kernels' time is bound by launches and Python, not by memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_optim import (  # scripts/ is on the path when this runs
    candidates,
    copy_params,
    recorded_grads,
    sync,
)

#: Host-side calls counted per step: kernel launches (torch's and Triton's) and copies.
CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaMemcpyAsync")


class OpCount(TorchDispatchMode):
    """Counts the torch operations dispatched (a foreach call is one): on a GPU each is one launch or more."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def profile_steps(opt: torch.optim.Optimizer, device: torch.device, steps: int, top: int) -> tuple[str, str]:
    """(the row of the summary table, the top kernels) for ``steps`` profiled steps of ``opt``."""
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    host = (time.perf_counter() - start) / steps
    sync(device)
    wall = (time.perf_counter() - start) / steps
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            opt.step()
        sync(device)
    with OpCount() as count:
        opt.step()
    sync(device)
    events = prof.key_averages()
    # Kernels are the device-side events; user ranges ("Optimizer.step#RAMDA.step") carry a '#'.
    kernels = [e for e in events if e.device_type.name == "CUDA" and "#" not in e.key]
    device_ms = sum(e.self_device_time_total for e in kernels) / steps / 1e3
    calls = sum(e.count for e in events if e.key in CALLS) / steps
    row = f"{host * 1e3:.2f} | {wall * 1e3:.2f} | {count.ops} | " + (
        f"{device_ms:.2f} | {calls:.0f}" if cuda else "– | –"
    )
    kernels.sort(key=lambda e: -e.self_device_time_total)
    lines = [
        f"  {e.self_device_time_total / steps / 1e3:7.3f} ms, {e.count / steps:5.0f}× per step: {e.key[:90]}"
        for e in kernels[:top]
    ]
    return row, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["resnet50", "txl"], default="resnet50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="steps timed, then as many profiled")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (they compile the kernels)"
    )
    parser.add_argument("--only", nargs="*", help="optimizer names, as in bench_optim.py (default: all four)")
    parser.add_argument("--top", type=int, default=4, help="kernels listed per optimizer (by device time)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    net, grads = recorded_grads(args.model, device, None)
    makers = {
        "AdamW fused": lambda: torch.optim.AdamW(list(copy_params(net, grads).values()), lr=1e-3, fused=True)
    }
    makers.update(
        {
            name: (lambda make=make: make(net, copy_params(net, grads)))
            for name, make in candidates(args.model, args.only).items()
        }
    )
    print(f"{args.model} on {device}, {args.steps} steps after {args.warmup} warm-up steps")
    print(
        "| optimizer | host (ms/step) | synchronised (ms/step) | torch ops per step | kernels (ms/step) |"
        " launches + copies per step |"
    )
    print("|---|---|---|---|---|---|")
    tops = []
    for name, make in makers.items():
        opt = make()
        for _ in range(args.warmup):
            opt.step()
        sync(device)
        row, top = profile_steps(opt, device, args.steps, args.top)
        print(f"| {name} | {row} |", flush=True)
        tops.append(f"{name}:\n{top}" if top else "")
        del opt
    if any(tops):
        print("\nKernels with the most device time:\n" + "\n".join(t for t in tops if t))


if __name__ == "__main__":
    main()
