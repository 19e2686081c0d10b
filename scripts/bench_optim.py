"""Optimizer step time against torch's own optimizers, in one process, on the paper's parameter shapes.

    python scripts/bench_optim.py --model resnet50 --steps 9
    python scripts/bench_optim.py --model txl --only RAMDA ProxGen
    python scripts/bench_optim.py --device cuda --model resnet50 --iteration --batch 256 --amp bf16 --only RAMDA

Gradients come from one real forward/backward on generated data. Each optimizer steps its own copy of the
parameters on those gradients, interleaved round by round with the baselines (``AdamW(fused=True)``,
``AdamW(foreach=True)`` and ``SGD(fused=True)``, momentum 0.9), each on a copy of its own, so that every round
sees all of them under the same machine load. Printed: the median step time of each, and the median over rounds
of the ratio to each baseline; the mean inner solver iterations per tensor and step. With ``--iteration`` it times
whole training iterations (zero_grad, forward, backward, step) against the same iteration with ``SGD`` (momentum
0.9, fused where torch has it) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda import RAMDA, RMDA, ProxGen, ProxSGD, param_groups

#: The paper's λ and learning rates per task (docs/math.md, "Paper settings"): ImageNet for ResNet50,
#: WikiText-103 for the Transformer-XL base (``txl``: the real model of ``ramda.models.transformer_xl``, 151 M
#: parameters with the 267,735-word vocabulary).
PAPER = {
    "resnet50": {
        "ProxSGD": dict(lr=0.1, momentum=0.1, lam=1.25e-5),
        "RMDA": dict(lr=1.0, momentum=0.1, lam=1.35e-5),
        "ProxGen": dict(lr=1e-3, lam=1.3e-7),
        "RAMDA": dict(lr=1e-2, momentum=1e-2, lam=4e-7),
    },
    "txl": {
        "ProxSGD": dict(lr=10.0, momentum=0.1, lam=2.5e-7),
        "RMDA": dict(lr=25.0, momentum=1e-2, lam=1.65e-7),
        "ProxGen": dict(lr=2.5e-4, lam=1.75e-7),
        "RAMDA": dict(lr=5e-3, momentum=1e-2, lam=1.25e-7),
    },
}
CLASSES = {"ProxSGD": ProxSGD, "RMDA": RMDA, "ProxGen": ProxGen, "RAMDA": RAMDA}
#: Variants besides each optimizer's defaults, run when named in --only ("objective": RAMDA and ProxGen only).
VARIANTS = {"fused=False": dict(fused=False), "objective": dict(stop="objective")}


def build(
    model: str, device: torch.device, batch: int | None
) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    """The model and a loss on generated data (small inputs on the CPU: only the parameter shapes matter there)."""
    torch.manual_seed(0)
    if model == "resnet50":
        from torchvision.models import resnet50

        net = resnet50().to(device)
        size = 224 if device.type == "cuda" else 64
        batch = batch or (32 if device.type == "cuda" else 4)
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)
        return net, lambda m: nn.functional.cross_entropy(m(x), y)
    from ramda.models.transformer_xl import TransformerXL

    net = TransformerXL(267735).to(device)
    batch = batch or (60 if device.type == "cuda" else 2)
    data = torch.randint(0, 267735, (150, batch), device=device)
    target = torch.randint(0, 267735, (150, batch), device=device)
    return net, lambda m: m(data, target, None)[0].mean()


def recorded_grads(
    model: str, device: torch.device, batch: int | None
) -> tuple[nn.Module, list[torch.Tensor]]:
    """The model of :func:`build` and its gradients from one forward/backward (the model's own cleared)."""
    net, loss_fn = build(model, device, batch)
    loss_fn(net).backward()
    grads = [p.grad.detach().clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return net, grads


def baselines(device: torch.device, iteration: bool) -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    """torch's optimizers to compare with, by name, as factories of a parameter list."""
    if iteration:
        return {"SGD": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True)}
    return {
        "AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
        "AdamW foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "SGD fused": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True),
    }


def candidates(
    model: str, only: list[str] | None
) -> dict[str, Callable[[nn.Module, dict], torch.optim.Optimizer]]:
    """Our optimizers by name (``RAMDA``, ``RAMDA (fused=False)``…), as factories of (module, parameter map)."""
    out = {}
    for name, cls in CLASSES.items():
        settings = PAPER[model][name]
        variants = (
            {"": {}, **VARIANTS}
            if name in ("RAMDA", "ProxGen")
            else {"": {}, "fused=False": VARIANTS["fused=False"]}
        )
        for label, extra in variants.items():
            full = f"{name} ({label})" if label else name
            if (only and full not in only) or (not only and label):
                continue
            kw = {k: v for k, v in settings.items() if k != "lam"}

            def make(net: nn.Module, copies: dict, cls=cls, kw=kw, extra=extra, lam=settings["lam"]):
                groups = [{**g, "params": [copies[p] for p in g["params"]]} for g in param_groups(net, lam)]
                return cls(groups, **kw, **extra)

            out[full] = make
    return out


def copy_params(net: nn.Module, grads: list[torch.Tensor]) -> dict[nn.Parameter, nn.Parameter]:
    """A fresh copy of every parameter, with the recorded gradient (shared, read only) as its ``.grad``."""
    copies = {}
    for p, g in zip(net.parameters(), grads):
        q = nn.Parameter(p.detach().clone())
        q.grad = g
        copies[p] = q
    return copies


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


#: Clocks for --clock: wall time, or this process's CPU time (all its threads), which a machine loaded by other
#: processes inflates far less (use it with --threads 1: waiting threads of a parallel region spin on CPU time).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def interleave(
    fns: dict[str, Callable[[], object]], args: argparse.Namespace, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn once per round (after ``--warmup`` untimed rounds)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    rounds, warmup = args.steps, args.warmup
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            t = timed(fn, device, CLOCKS[args.clock])
            if r >= warmup:
                times[name].append(t)
    return times


def ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b (both timed in the same round)."""
    return statistics.median(x / y for x, y in zip(a, b))


def bench_steps(model: str, args: argparse.Namespace, device: torch.device) -> None:
    net, grads = recorded_grads(model, device, args.batch)
    base = baselines(device, False)
    cols = " | ".join(f"{b} (ms) | × {b}" for b in base)
    print(
        f"| optimizer | step (ms) | {cols} | inner iters |\n|---|---|{'---|---|' * len(base)}---|", flush=True
    )
    for name, make in candidates(model, args.only).items():
        opts = {b: factory(list(copy_params(net, grads).values())) for b, factory in base.items()}
        opts[name] = make(net, copy_params(net, grads))
        times = interleave({k: o.step for k, o in opts.items()}, args, device)
        iters = opts[name].solver_iterations() if isinstance(opts[name], (RAMDA, ProxGen)) else float("nan")
        mine = times[name]
        row = " | ".join(
            f"{statistics.median(times[b]) * 1e3:.1f} | {ratio(mine, times[b]):.2f}" for b in base
        )
        iters_s = "" if iters != iters else f"{iters:.1f}"
        print(f"| {name} | {statistics.median(mine) * 1e3:.1f} | {row} | {iters_s} |", flush=True)
        del opts


def bench_iterations(model: str, args: argparse.Namespace, device: torch.device) -> None:
    net, loss_fn = build(model, device, args.batch)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    print("| optimizer | iteration (ms) | SGD iteration (ms) | × SGD |\n|---|---|---|---|", flush=True)
    for name, make in candidates(model, args.only).items():
        identity = {p: p for p in net.parameters()}
        opts = {"SGD": baselines(device, True)["SGD"](list(net.parameters())), name: make(net, identity)}

        def iteration(opt: torch.optim.Optimizer) -> Callable[[], None]:
            def run() -> None:
                opt.zero_grad(set_to_none=True)
                ctx = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
                with ctx:
                    loss = loss_fn(net)
                loss.backward()
                opt.step()

            return run

        times = interleave({k: iteration(o) for k, o in opts.items()}, args, device)
        mine, sgd = times[name], times["SGD"]
        print(
            f"| {name} | {statistics.median(mine) * 1e3:.1f} | {statistics.median(sgd) * 1e3:.1f} | "
            f"{ratio(mine, sgd):.3f} |",
            flush=True,
        )
        del opts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["resnet50", "txl", "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=7, help="timed rounds (medians are over these)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), default="wall", help="wall time, or process CPU time"
    )
    parser.add_argument("--threads", type=int, help="torch (and numba) threads; torch's default otherwise")
    parser.add_argument(
        "--only",
        nargs="*",
        help="optimizer names to run, e.g. RAMDA 'RAMDA (fused=False)' 'ProxGen (objective)'",
    )
    parser.add_argument(
        "--iteration",
        action="store_true",
        help="time whole training iterations (forward, backward, step) against SGD instead of step() alone",
    )
    parser.add_argument(
        "--batch", type=int, help="batch size (default: 32 for ResNet50 on CUDA, 4 on the CPU)"
    )
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="with --iteration: forward under autocast")
    parser.add_argument("--channels-last", action="store_true", help="with --iteration: channels-last model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    what = "iteration" if args.iteration else "step"
    for model in ["resnet50", "txl"] if args.model == "all" else [args.model]:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        where = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"\n{model}, {what} time, {where}, median of {args.steps} rounds ({args.clock} clock), load average {load:.1f} at start"
        )
        (bench_iterations if args.iteration else bench_steps)(model, args, device)


if __name__ == "__main__":
    main()
