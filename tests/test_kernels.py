"""The fused Triton kernels (ramda.kernels.gpu) against the plain-torch path, on the CPU under
TRITON_INTERPRET=1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import copy, math, torch
from torch import nn
from ramda import RAMDA, param_groups
from ramda.kernels.gpu import ramda_group_lasso_step
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(24, 7))
models = [net, nn.Conv2d(4, 5, 3).to(memory_format=torch.channels_last)]
lr, eps, lam = 0.3, 1e-6, 1.0
for momentum, model in ((1.0, models[0]), (0.5, models[1])):
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ref = RAMDA(param_groups(b, lam), lr=lr, momentum=momentum, eps=eps, fused=False)
    weights = [p for p in a.parameters() if p.dim() > 1]
    state = {p: dict(v=torch.zeros_like(p), u=torch.zeros_like(p), w0=p.detach().clone()) for p in weights}
    gen = torch.Generator().manual_seed(1)
    alpha = 0.0
    for k in range(1, 4):
        grads = {}
        for pa, pb in zip(a.parameters(), b.parameters()):
            g = torch.randn(pa.shape, generator=gen)
            if not pa.is_contiguous():
                g = g.to(memory_format=torch.channels_last)
            grads[pa], pb.grad = g.clone(), g.clone()
        ref.step()
        s = lr * math.sqrt(k)
        alpha += s
        with torch.no_grad():
            for p in weights:
                st = state[p]
                ramda_group_lasso_step(p, grads[p], st["v"], st["u"], st["w0"], s, eps, alpha * lam, momentum)
    zeros = 0
    for pa, pb in zip(a.parameters(), b.parameters()):
        if pa.dim() < 2:
            continue
        torch.testing.assert_close(pa, pb, rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(state[pa]["u"], ref.state[pb]["u"], rtol=1e-6, atol=1e-9)
        assert torch.equal(pa == 0, pb == 0)
        zeros += int((pa == 0).sum())
    assert momentum < 1 or zeros > 0, "the test should exercise zero groups"
print("ok")
"""

PROXGEN_SCRIPT = r"""
import copy, torch
from torch import nn
from ramda import ProxGen, param_groups
from ramda.kernels.gpu import proxgen_group_lasso_step
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(24, 7))
lr, eps, lam, betas = 0.05, 1e-8, 1.0, (0.9, 0.999)
a, b = copy.deepcopy(model), copy.deepcopy(model)
ref = ProxGen(param_groups(b, lam), lr=lr, betas=betas, eps=eps, fused=False)
weights = [p for p in a.parameters() if p.dim() > 1]
state = {p: dict(m=torch.zeros_like(p), v=torch.zeros_like(p)) for p in weights}
gen = torch.Generator().manual_seed(1)
for k in range(1, 4):
    grads = {}
    for pa, pb in zip(a.parameters(), b.parameters()):
        g = torch.randn(pa.shape, generator=gen)
        grads[pa], pb.grad = g.clone(), g.clone()
    ref.step()
    with torch.no_grad():
        for p in weights:
            st = state[p]
            proxgen_group_lasso_step(
                p, grads[p], st["m"], st["v"], betas, 1 - betas[1] ** k, lr / (1 - betas[0] ** k), eps, lr * lam
            )
zeros = total = 0
for pa, pb in zip(a.parameters(), b.parameters()):
    if pa.dim() < 2:
        continue
    torch.testing.assert_close(pa, pb, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(state[pa]["v"], ref.state[pb]["exp_avg_sq"], rtol=1e-6, atol=1e-12)
    assert torch.equal(pa == 0, pb == 0)
    zeros, total = zeros + int((pa == 0).sum()), total + pa.numel()
assert 0 < zeros < total, "the test should exercise zero and nonzero groups"
print("ok")
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", [SCRIPT, PROXGEN_SCRIPT], ids=["ramda", "proxgen"])
def test_fused_kernel_matches_torch_path_in_interpreter(script: str):
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
