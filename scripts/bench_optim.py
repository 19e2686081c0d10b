"""Optimizer step time against torch's AdamW, in one process, on the paper's parameter shapes.

    python scripts/bench_optim.py --model resnet50 --steps 5
    python scripts/bench_optim.py --model txl --device cuda
    python scripts/bench_optim.py --model resnet50 --iteration --only RAMDA    # whole iterations against SGD

Gradients come from one real forward/backward on generated data; every optimizer then steps on the same
gradients. Prints the median step time, the median AdamW step (foreach on CPU, fused on CUDA) timed just before
it on the same model (so both see the same machine load), their ratio, and the mean inner solver iterations per
tensor and step. With ``--iteration`` it times whole training iterations (zero_grad, forward, backward, step)
against the same iteration with SGD (momentum 0.9, foreach) instead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda import RAMDA, RMDA, ProxGen, ProxSGD, param_groups

#: The paper's ImageNet λ per optimizer (docs/math.md#the-papers-settings), used for both models. ``txl`` is the real Transformer-XL base
#: model of ``ramda.models.transformer_xl`` (151 M parameters with the 267,735-word vocabulary).
PAPER = {
    "proxsgd": dict(lr=0.1, momentum=0.1, lam=1.25e-5),
    "rmda": dict(lr=1.0, momentum=0.1, lam=1.35e-5),
    "proxgen": dict(lr=1e-3, lam=1.3e-7),
    "ramda": dict(lr=1e-2, momentum=1e-2, lam=4e-7),
}


def build(model: str, device: torch.device) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    torch.manual_seed(0)
    if model == "resnet50":
        from torchvision.models import resnet50

        net = resnet50().to(device)
        size = 224 if device.type == "cuda" else 64
        batch = 32 if device.type == "cuda" else 4
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)
        return net, lambda m: nn.functional.cross_entropy(m(x), y)
    from ramda.models.transformer_xl import TransformerXL

    net = TransformerXL(267735).to(device)
    batch = 2 if device.type == "cpu" else 60
    data = torch.randint(0, 267735, (150, batch), device=device)
    target = torch.randint(0, 267735, (150, batch), device=device)
    return net, lambda m: m(data, target, None)[0].mean()


def make_optimizers(net: nn.Module, fused: bool) -> dict[str, Callable[[], torch.optim.Optimizer]]:
    def groups(lam: float):
        return param_groups(net, lam)

    adamw = dict(fused=True) if fused else dict(foreach=True)
    return {
        "AdamW": lambda: torch.optim.AdamW(net.parameters(), lr=1e-3, **adamw),
        "SGD": lambda: torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, foreach=True),
        "ProxSGD": lambda: ProxSGD(groups(PAPER["proxsgd"]["lam"]), lr=0.1, momentum=0.1),
        "RMDA": lambda: RMDA(groups(PAPER["rmda"]["lam"]), lr=1.0, momentum=0.1),
        "ProxGen": lambda: ProxGen(groups(PAPER["proxgen"]["lam"]), lr=1e-3),
        "ProxGen (fused=False)": lambda: ProxGen(groups(PAPER["proxgen"]["lam"]), lr=1e-3, fused=False),
        "ProxGen (objective)": lambda: ProxGen(groups(PAPER["proxgen"]["lam"]), lr=1e-3, stop="objective"),
        "RAMDA": lambda: RAMDA(groups(PAPER["ramda"]["lam"]), lr=1e-2, momentum=1e-2),
        "RAMDA (fused=False)": lambda: RAMDA(
            groups(PAPER["ramda"]["lam"]), lr=1e-2, momentum=1e-2, fused=False
        ),
        "RAMDA (objective)": lambda: RAMDA(
            groups(PAPER["ramda"]["lam"]), lr=1e-2, momentum=1e-2, stop="objective"
        ),
    }


def time_calls(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls (synchronising CUDA around each)."""
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def timed(
    opt: torch.optim.Optimizer,
    args: argparse.Namespace,
    device: torch.device,
    net: nn.Module,
    loss_fn: Callable,
) -> float:
    """Median milliseconds of ``opt.step()`` or, with ``--iteration``, of a whole training iteration (zero_grad,
    forward, backward, step)."""

    def iteration() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net).backward()
        opt.step()

    times = time_calls(iteration if args.iteration else opt.step, args.steps, args.warmup, device)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["resnet50", "txl", "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="optimizer names to run (the baseline always runs)")
    parser.add_argument(
        "--iteration",
        action="store_true",
        help="time whole training iterations (forward, backward, step) against SGD instead of step() against AdamW",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    baseline = "SGD" if args.iteration else "AdamW"
    what = "iteration" if args.iteration else "step"
    for model in ["resnet50", "txl"] if args.model == "all" else [args.model]:
        net, loss_fn = build(model, device)
        loss_fn(net).backward()
        grads = [p.grad.detach().clone() for p in net.parameters()]
        initial = {k: v.clone() for k, v in net.state_dict().items()}
        n_params = sum(p.numel() for p in net.parameters()) / 1e6
        print(
            f"\n{model}: {n_params:.1f} M parameters, device {device}, {threads} threads, median of {args.steps}"
        )
        print(
            f"| optimizer | {what} (ms) | {baseline} {what} (ms) | × {baseline} | inner iters |\n|---|---|---|---|---|"
        )

        factories = make_optimizers(net, fused=device.type == "cuda")
        base_opt = None
        for name, factory in [(baseline, factories.pop(baseline)), *factories.items()]:
            if args.only and name != baseline and name not in args.only:
                continue
            net.load_state_dict(initial)
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            if base_opt is None:
                base_opt = factory()
                continue
            # The baseline is timed right before each optimizer so that both see the same machine load.
            base = timed(base_opt, args, device, net, loss_fn)
            net.load_state_dict(initial)
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt = factory()
            median = timed(opt, args, device, net, loss_fn)
            iters = opt.solver_iterations() if hasattr(opt, "solver_iterations") else float("nan")
            iters_s = "" if iters != iters else f"{iters:.1f}"
            print(f"| {name} | {median:.1f} | {base:.1f} | {median / base:.2f} | {iters_s} |", flush=True)
            del opt


if __name__ == "__main__":
    main()
