"""The fused Triton kernels (ramda.kernels.gpu) against the optimizers' plain-torch path over three steps, run by
tests/test_kernels.py in a fresh process because ``TRITON_INTERPRET=1`` must be set before triton is imported:
``TRITON_INTERPRET=1 python tests/triton_kernel_checks.py ramda|proxgen`` prints ``ok``."""

from __future__ import annotations

import copy
import math
import sys

import torch
from torch import nn

from ramda import RAMDA, ProxGen, param_groups
from ramda.kernels.gpu import proxgen_group_lasso_step, ramda_group_lasso_step


def same_random_grads(a: nn.Module, b: nn.Module, gen: torch.Generator) -> dict[torch.Tensor, torch.Tensor]:
    """A fresh gradient per parameter (in its memory format), set as ``b``'s ``.grad`` and returned for ``a``."""
    grads = {}
    for pa, pb in zip(a.parameters(), b.parameters()):
        g = torch.randn(pa.shape, generator=gen)
        if not pa.is_contiguous():
            g = g.to(memory_format=torch.channels_last)
        grads[pa], pb.grad = g.clone(), g.clone()
    return grads


def compare(
    a: nn.Module, b: nn.Module, state: dict, ref: torch.optim.Optimizer, keys: tuple[str, str], atol: float
) -> tuple[int, int]:
    """Assert that the weights of ``a`` (kernel) equal those of ``b`` (``ref``'s plain-torch path), zeros
    included, and that state ``keys[0]`` equals ``ref``'s ``keys[1]``; returns (zero entries, entries)."""
    zeros = total = 0
    for pa, pb in zip(a.parameters(), b.parameters()):
        if pa.dim() < 2:
            continue
        torch.testing.assert_close(pa, pb, rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(state[pa][keys[0]], ref.state[pb][keys[1]], rtol=1e-6, atol=atol)
        assert torch.equal(pa == 0, pb == 0)
        zeros, total = zeros + int((pa == 0).sum()), total + pa.numel()
    return zeros, total


def check_ramda() -> None:
    """RAMDA's kernel with c = 1 on a small CNN and c = 0.5 on a channels-last convolution."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(24, 7))
    models = [net, nn.Conv2d(4, 5, 3).to(memory_format=torch.channels_last)]
    lr, eps, lam = 0.3, 1e-6, 1.0
    for momentum, model in ((1.0, models[0]), (0.5, models[1])):
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        ref = RAMDA(param_groups(b, lam), lr=lr, momentum=momentum, eps=eps, fused=False)
        weights = [p for p in a.parameters() if p.dim() > 1]
        state = {
            p: dict(v=torch.zeros_like(p), u=torch.zeros_like(p), w0=p.detach().clone()) for p in weights
        }
        gen = torch.Generator().manual_seed(1)
        alpha = 0.0
        for k in range(1, 4):
            grads = same_random_grads(a, b, gen)
            ref.step()
            s = lr * math.sqrt(k)
            alpha += s
            with torch.no_grad():
                for p in weights:
                    st = state[p]
                    ramda_group_lasso_step(
                        p, grads[p], st["v"], st["u"], st["w0"], s, eps, alpha * lam, momentum
                    )
        zeros, _ = compare(a, b, state, ref, ("u", "u"), atol=1e-9)
        assert momentum < 1 or zeros > 0, "the test should exercise zero groups"


def check_proxgen() -> None:
    """ProxGen's kernel on a small CNN."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(24, 7))
    lr, eps, lam, betas = 0.05, 1e-8, 1.0, (0.9, 0.999)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ref = ProxGen(param_groups(b, lam), lr=lr, betas=betas, eps=eps, fused=False)
    weights = [p for p in a.parameters() if p.dim() > 1]
    state = {p: dict(m=torch.zeros_like(p), v=torch.zeros_like(p)) for p in weights}
    gen = torch.Generator().manual_seed(1)
    for k in range(1, 4):
        grads = same_random_grads(a, b, gen)
        ref.step()
        with torch.no_grad():
            for p in weights:
                st = state[p]
                proxgen_group_lasso_step(
                    p,
                    grads[p],
                    st["m"],
                    st["v"],
                    betas,
                    1 - betas[1] ** k,
                    lr / (1 - betas[0] ** k),
                    eps,
                    lr * lam,
                )
    zeros, total = compare(a, b, state, ref, ("v", "exp_avg_sq"), atol=1e-12)
    assert 0 < zeros < total, "the test should exercise zero and nonzero groups"


CHECKS = {"ramda": check_ramda, "proxgen": check_proxgen}

if __name__ == "__main__":
    CHECKS[sys.argv[1]]()
    print("ok")
