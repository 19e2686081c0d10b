"""The Triton kernels against the plain-torch path on CUDA, over the group-LASSO weight shapes of ResNet50, of
the Transformer-XL base and Tacotron2's of ≥ 1024 rows (its LSTMs' 4096-row weights are the largest tiles), with
zero and nonzero groups (fp32 parameters), every Triton step under ``torch.cuda.set_sync_debug_mode("error")`` (a
step that synchronises with the host fails). Prints a Markdown table; exit status 1 when a shape disagrees.

    python scripts/gpu_kernel_check.py            # on a CUDA machine
    python scripts/gpu_kernel_check.py --list     # the shapes only (no CUDA needed)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda import RAMDA, ProxGen
from ramda.regularizers import GroupLasso


def shapes() -> dict[str, list[tuple[int, ...]]]:
    """The distinct shapes of the weights carrying a group-LASSO term, per model (built on the meta device)."""
    from torchvision.models import resnet50

    from ramda.models.transformer_xl import TransformerXL
    from ramda.structure import param_groups
    from ramda.tasks.ljspeech import AudioConfig, ModelConfig, build_tacotron2

    out = {}
    with torch.device("meta"):
        models = {
            "resnet50": resnet50(),
            "txl": TransformerXL(267735),
            "tacotron2": build_tacotron2(ModelConfig(), AudioConfig()),
        }
    for name, net in models.items():
        grouped = [p for g in param_groups(net, 1.0) if g["lam"] > 0 for p in g["params"]]
        if name == "tacotron2":  # its LSTMs' weights, ≥ 1024 rows: the largest tiles, besides those above
            grouped = [p for p in grouped if p.shape[0] >= 1024]
        out[name] = sorted({tuple(p.shape) for p in grouped}, key=lambda s: (len(s), s))
    return out


def check(cls: type, kw: dict, shape: tuple[int, ...], steps: int = 3) -> dict:
    """fused=True (Triton) and fused=False on the same weights and gradients, from W = 0, with every second input
    group's gradients 20× smaller and λ between the two kinds of groups: those groups are zero, the others not.
    Times (ms per step, host clock around a synchronised step) leave out the first step, which compiles."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    small = torch.ones(shape[1], device="cuda").view(1, -1, *([1] * (len(shape) - 2)))
    small[:, ::2] = 0.05
    w = torch.zeros(shape, device="cuda")
    grads = [torch.randn(shape, device="cuda", generator=gen) * small for _ in range(steps)]
    norms = GroupLasso().norms(grads[0]).flatten()
    between = float((norms[0::2].max() * norms[1::2].min()).sqrt())
    # Zero test at step 3 from W = 0: RAMDA ‖V_g‖ ≈ η√6‖g_g‖ against αλ√|g| with α = η(1 + √2 + √3);
    # ProxGen ‖m_g‖/(1 − β₁ᵏ) ≈ ‖g_g‖ against λ√|g|.
    lam = between / (w[:, 0].numel() ** 0.5) * (6**0.5 / (1 + 2**0.5 + 3**0.5) if cls is RAMDA else 1.0)
    params = [nn.Parameter(w.clone()) for _ in range(2)]
    opts = [cls([{"params": [p], "lam": lam}], fused=f, **kw) for p, f in zip(params, (True, False))]
    times = [0.0, 0.0]
    for step, g in enumerate(grads):
        for i, (p, opt) in enumerate(zip(params, opts)):
            p.grad = g.clone()
            torch.cuda.synchronize()
            start = time.perf_counter()
            # The Triton path must never wait for the GPU; the plain-torch reference may.
            torch.cuda.set_sync_debug_mode("error" if i == 0 else "default")
            try:
                opt.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            if step > 0:  # the first step compiles the kernels
                times[i] += time.perf_counter() - start
    fused, ref = (p.detach() for p in params)
    zero_f = GroupLasso().norms(fused).flatten() == 0
    zero_r = GroupLasso().norms(ref).flatten() == 0
    err = float((fused - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
    return {
        "err": err,
        "zeros": int(zero_r.sum()),
        "groups": zero_r.numel(),
        "same_zeros": bool(torch.equal(zero_f, zero_r)),
        "ms": [t / (steps - 1) * 1e3 for t in times],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--list", action="store_true", help="print the shapes and exit")
    parser.add_argument(
        "--rtol", type=float, default=2e-5, help="largest accepted max|fused − torch|/max|torch|"
    )
    args = parser.parse_args()
    table = shapes()
    if args.list:
        for model, shps in table.items():
            print(f"{model}: {len(shps)} shapes: " + ", ".join("×".join(map(str, s)) for s in shps))
        return
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device; run with --list to see the shapes")
    optimizers = {"RAMDA": (RAMDA, dict(lr=0.05, momentum=1.0)), "ProxGen": (ProxGen, dict(lr=0.01))}
    print(
        "| model | shape | optimizer | max rel. error | zero groups | same zeros | Triton (ms) | torch (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    bad = 0
    for model, shps in table.items():
        for shape in shps:
            for name, (cls, kw) in optimizers.items():
                r = check(cls, kw, shape)
                ok = r["same_zeros"] and r["err"] <= args.rtol and 0 < r["zeros"] < r["groups"]
                bad += not ok
                print(
                    f"| {model} | {'×'.join(map(str, shape))} | {name} | {r['err']:.1e} | {r['zeros']}/{r['groups']}"
                    f" | {'yes' if r['same_zeros'] else 'NO'} | {r['ms'][0]:.2f} | {r['ms'][1]:.2f} |"
                    + ("" if ok else " **FAIL**"),
                    flush=True,
                )
    print(f"\n{bad} failing rows" if bad else "\nall rows agree")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
