"""What the export buys on torchvision's ResNet50 with a given weighted group sparsity (docs/export.md).

``python scripts/bench_export.py [--sparsity 0.29] [--size 224] [--batch 8] [--repeats 10] [--threads 2]``

Zeroes a random ``--sparsity`` fraction of the input groups (columns) of every regularised tensor — the
paper's RAMDA reaches 29.19 % weighted group sparsity on ImageNet — then runs :func:`ramda.export.slim` and
prints the report: parameters, FLOPs, bytes kept, and the median CPU latency of both models at batch 1 and
``--batch`` (paired runs in one process, so the ratio holds on a busy machine). Random groups are a stand-in
for a trained model's: channels of a residual stream go only where every reader's group is zero, which random
groups rarely are, so this is a conservative case.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
import torchvision

from ramda.export import slim
from ramda.structure import structured_parameters, weighted_group_sparsity


def zero_groups(model: torch.nn.Module, fraction: float, gen: torch.Generator) -> None:
    """Zero ``round(fraction · n)`` random columns of each regularised tensor with n columns."""
    with torch.no_grad():
        for _, p in structured_parameters(model):
            n = p.shape[1]
            p[:, torch.randperm(n, generator=gen)[: round(fraction * n)]] = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sparsity", type=float, default=0.29)
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--batch", type=int, default=8, help="the larger batch timed")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = torchvision.models.resnet50().eval()
    zero_groups(model, args.sparsity, gen)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    print(
        f"ResNet50, {args.size}x{args.size}, weighted group sparsity {100 * weighted_group_sparsity(model):.2f}% "
        f"(random groups, seed {args.seed}); {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    _, report = slim(model, x[:1], latency_inputs={1: x[:1], args.batch: x}, repeats=args.repeats)
    print("\n".join(line for line in report.lines() if not line.startswith("not shrunk")))
    print(f"{len(report.unshrunk)} tensors keep some zero groups (residual streams, the image input)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=2)


if __name__ == "__main__":
    main()
