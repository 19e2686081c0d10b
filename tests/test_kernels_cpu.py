"""The numba CPU kernels (ramda.kernels.cpu) against independent float64 references: a correctly rounded cube
root, the group-LASSO subproblem solved by bisection, and the plain-torch optimizers in float64."""

import copy
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("numba")

from numba import njit, prange

from ramda import RAMDA, RMDA, ProxGen, ProxSGD, param_groups
from ramda.kernels.cpu import _cbrt

REPO = Path(__file__).resolve().parents[1]


def test_cube_root_is_correctly_rounded():
    rng = np.random.default_rng(0)
    x = (10.0 ** rng.uniform(-45.5, 38.5, 20000)).astype(np.float32)
    x = np.concatenate([x, np.array([0.0, 1e-45, 1.1754944e-38, 1.0, 8.0, 3.4e38], np.float32)])
    got = np.array([np.float32(_cbrt(v)) for v in x])
    want = np.cbrt(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    assert _cbrt(np.float32(np.inf)) == np.inf
    assert math.isnan(_cbrt(np.float32(np.nan)))


@njit(parallel=True, error_model="numpy")
def _cube_root_misses(first, count):
    """How many of the float32 values with bit patterns first … first + count − 1 the kernels' cube root rounds
    differently from the float64 cube root (libm's) rounded to float32."""
    misses = 0
    for i in prange(count):
        x = np.uint32(first + i).view(np.float32)
        misses += np.float32(_cbrt(x)) != np.float32(np.cbrt(np.float64(x)))
    return misses


@pytest.mark.slow
def test_cube_root_is_correctly_rounded_for_every_float32():
    """Every float32 from +0 to +inf (2³¹ values, subnormals included), not a sample: the division-free Newton in
    float32 and float64 against libm's float64 cube root, two independent computations."""
    assert _cube_root_misses(0, 0x7F800001) == 0


def solve_by_bisection(b, p, c):
    """argmin_Z −⟨b, Z⟩ + ½⟨Z, P⊙Z⟩ + c‖Z‖ for one group (float64): 0 if ‖b‖ ≤ c, else Z = bρ/(Pρ + c) with
    ‖Z‖ = ρ found by bisection on Σ b²/(Pρ + c)² = 1."""
    if np.linalg.norm(b) <= c:
        return np.zeros_like(b)
    lo, hi = 0.0, np.linalg.norm(b) / p.min()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum((b / (p * mid + c)) ** 2) > 1.0 else (lo, mid)
    rho = 0.5 * (lo + hi)
    return b * rho / (p * rho + c)


def reference_ramda(w0, grads, lr, lam, eps):
    """RAMDA with momentum 1 in float64, per group by bisection (docs/math.md#ramda): W = argmin of the subproblem."""
    v = np.zeros_like(w0)
    u = np.zeros_like(w0)
    alpha = 0.0
    n_in = w0.shape[1]
    out = np.empty_like(w0)
    for k, g in enumerate(grads, start=1):
        s = lr * math.sqrt(k)
        alpha += s
        v, u = v + s * g, u + s * g * g
        p = np.cbrt(u) + eps
        c = alpha * lam * math.sqrt(w0.size / n_in)
        for j in range(n_in):
            b = np.take(p * w0 - v, j, axis=1)
            idx = (slice(None), j)
            out[idx] = solve_by_bisection(b, np.take(p, j, axis=1), c)
    return out


def lambda_splitting_groups(w0, grads, lr, eps):
    """A λ whose zero threshold at the last step sits in the widest gap between the groups' ‖b_g‖ (b = P⊙W⁰ − V
    does not depend on λ), so that no group is within rounding of it."""
    v = sum(lr * math.sqrt(k) * g for k, g in enumerate(grads, start=1))
    u = sum(lr * math.sqrt(k) * g * g for k, g in enumerate(grads, start=1))
    alpha = sum(lr * math.sqrt(k) for k in range(1, len(grads) + 1))
    b = (np.cbrt(u) + eps) * w0 - v
    norms = np.sort(np.sqrt((b**2).sum(axis=tuple(i for i in range(b.ndim) if i != 1))))
    gap = int(np.argmax(norms[1:] / norms[:-1]))
    return float(np.sqrt(norms[gap] * norms[gap + 1]) / (alpha * math.sqrt(w0.size / w0.shape[1])))


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((6, 5, 3, 3), torch.contiguous_format),
        ((7, 9, 1, 1), torch.contiguous_format),
        ((5, 12), torch.contiguous_format),
        ((4, 3, 5), torch.contiguous_format),
        ((6, 5, 3, 3), torch.channels_last),
        ((4, 6, 2, 3, 3), torch.channels_last_3d),
    ],
)
def test_ramda_kernel_solves_the_subproblem(shape, layout):
    torch.manual_seed(0)
    small = torch.ones(shape[1]).view(1, -1, *([1] * (len(shape) - 2)))
    small[:, ::2] = 0.1  # every other group ten times smaller: a clear gap for the zero threshold
    w = nn.Parameter((torch.randn(shape) * small).contiguous(memory_format=layout))
    w0 = w.detach().double().numpy().copy()
    lr, eps = 0.3, 1e-6
    grads = [torch.randn(shape) * small for _ in range(3)]
    lam = lambda_splitting_groups(w0, [g.double().numpy() for g in grads], lr, eps)
    opt = RAMDA([{"params": [w], "lam": lam}], lr=lr, momentum=1.0, eps=eps, fused=True)
    for g in grads:
        w.grad = g.clone(memory_format=layout)
        opt.step()
    assert opt._workspace is not None, "the tensor should have taken the fused kernel"
    want = reference_ramda(w0, [g.double().numpy() for g in grads], lr, lam, eps)
    got = w.detach().double().numpy()
    zero = np.abs(want).max(axis=tuple(i for i in range(w0.ndim) if i != 1)) == 0
    assert 0 < zero.sum() < zero.size, "the instance should have zero and nonzero groups"
    np.testing.assert_array_equal(np.take(got, np.flatnonzero(zero), axis=1), 0.0)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * np.abs(want).max())
    assert opt.solver_iterations() >= 1


def mixed_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 7)
    )


def step_pairs(cls, kw, lam, steps=5, seed=1):
    """The fused optimizer in float32 and the plain-torch one in float64 on the same gradients."""
    net = mixed_net()
    fused, ref = copy.deepcopy(net), copy.deepcopy(net).double()
    opt_f = cls(param_groups(fused, lam), fused=True, **kw)
    opt_r = cls(param_groups(ref, lam), fused=False, **kw)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for pf, pr in zip(fused.parameters(), ref.parameters()):
            g = torch.randn(pf.shape, generator=gen)
            pf.grad, pr.grad = g, g.double()
        opt_f.step()
        opt_r.step()
    return fused, ref, opt_f


@pytest.mark.parametrize(
    "cls, kw, lam",
    [
        (RAMDA, dict(lr=0.3, momentum=1.0), 0.5),
        (RAMDA, dict(lr=0.3, momentum=0.3), 0.05),
        (ProxGen, dict(lr=0.05), 0.05),
        (ProxGen, dict(lr=0.05), 0.6),
    ],
)
def test_fused_float32_matches_float64_torch_path(cls, kw, lam):
    fused, ref, opt_f = step_pairs(cls, kw, lam)
    zeros = 0
    for pf, pr in zip(fused.parameters(), ref.parameters()):
        scale = pr.abs().max().item()
        torch.testing.assert_close(pf.double(), pr, rtol=0, atol=5e-5 * scale)
        assert torch.equal(pf == 0, pr == 0)
        zeros += int((pf == 0).sum())
    assert (zeros > 0) == (lam >= 0.5), zeros
    assert opt_f.solver_iterations() >= 1


@pytest.mark.parametrize("cls, kw", [(RAMDA, dict(momentum=0.5)), (ProxGen, {})])
def test_learning_rate_zero_keeps_zero_groups_zero(cls, kw):
    """lr = 0 (a warm-up's first step, the end of a cosine schedule) makes the threshold c = 0, so a group with
    b = 0 (one already pruned) has W̃ = bρ/(Pρ + c) = 0/0 at ρ = 0. It stays exactly zero, as on the plain-torch
    path, and the other groups match that path (the fused step wrote NaN there)."""
    torch.manual_seed(0)
    fused = nn.Conv2d(6, 8, 3)
    with torch.no_grad():
        fused.weight[:, 2] = 0.0
    ref = copy.deepcopy(fused)
    opts = [cls(param_groups(m, 0.1), lr=0.0, fused=f, **kw) for m, f in ((fused, True), (ref, False))]
    for _ in range(2):
        for pf, pr in zip(fused.parameters(), ref.parameters()):
            pf.grad = torch.randn_like(pf)
            pr.grad = pf.grad.clone()
        for opt in opts:
            opt.step()
    assert torch.equal(fused.weight[:, 2], torch.zeros_like(fused.weight[:, 2]))
    torch.testing.assert_close(fused.weight, ref.weight, rtol=1e-6, atol=1e-7)


def test_result_does_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    outs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        try:
            fused, *_ = step_pairs(RAMDA, dict(lr=0.3, momentum=0.5), 0.2)
        finally:
            torch.set_num_threads(threads)
        outs.append([p.detach().clone() for p in fused.parameters()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_tensors_the_kernel_does_not_handle_take_the_torch_path():
    torch.manual_seed(0)
    transposed = nn.Parameter(torch.randn(6, 8).t())
    double = nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    results = []
    for fused in (True, False):
        params = [
            nn.Parameter(transposed.detach().clone().t().contiguous().t()),
            nn.Parameter(double.clone()),
        ]
        opt = RAMDA([{"params": params, "lam": 0.3}], lr=0.3, momentum=1.0, fused=fused)
        for k in range(3):
            gen = torch.Generator().manual_seed(k)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        results.append(params)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_fused_true_without_numba_raises_and_default_falls_back(monkeypatch):
    import ramda.optim.base as base_module

    monkeypatch.setattr(base_module, "numba_available", lambda: False)
    net = mixed_net()
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    with pytest.raises(RuntimeError, match="fused=True needs numba"):
        RAMDA(param_groups(net, 0.1), fused=True).step()
    RAMDA(param_groups(net, 0.1)).step()


def test_backend_that_fails_to_import_warns_once_and_falls_back(tmp_path):
    """numba and Triton installs that are found but fail to import (here: packages whose import raises, as one
    built for another torch would): one warning each, naming the error; fused=None steps on the plain-torch path
    and fused=True raises. Run in a fresh interpreter, where the broken packages shadow the real ones."""
    for name in ("numba", "triton"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} built for another torch')\n")
    script = """
import warnings
import torch
from torch import nn
from ramda import RAMDA, param_groups
from ramda.kernels import numba_available, triton_available
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert not triton_available() and not triton_available()
    net = nn.Linear(6, 4)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    before = net.weight.detach().clone()
    RAMDA(param_groups(net, 0.1)).step()
    assert not torch.equal(net.weight, before)
    assert not numba_available()
    try:
        RAMDA(param_groups(net, 0.1), fused=True).step()
    except RuntimeError as err:
        assert "fused=True needs numba" in str(err), err
    else:
        raise AssertionError("fused=True did not raise")
for w in caught:
    print(w.category.__name__, w.message)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        f"RuntimeWarning ramda: the {name} kernels failed to load (ImportError: {name} built for another torch); "
        f"using the plain-torch path{hint}"
        for name, hint in (
            ("triton", ""),
            ("numba", " (set NUMBA_CACHE_DIR to a writable directory if the error is about caching)"),
        )
    ], out.stdout


def test_optimizer_survives_deepcopy_and_pickle():
    net = mixed_net()
    opt = RAMDA(param_groups(net, 0.1), lr=0.1)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        for group in clone.param_groups:
            for p in group["params"]:
                p.grad = torch.randn_like(p)
        clone.step()
        assert clone.solver_iterations() >= 1


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_proxgen_unregularised_kernel_is_torch_adamw(weight_decay):
    a, b = mixed_net(), mixed_net()
    ours = ProxGen(a.parameters(), lr=1e-2, weight_decay=weight_decay, fused=True)
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=weight_decay, eps=1e-8, foreach=False)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        for p, q in zip(a.parameters(), b.parameters()):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        ours.step()
        ref.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_ramda_unregularised_kernel_is_the_closed_form():
    """λ = 0: W ← (1 − c)W + c(W⁰ − V/(U^{1/3} + ε)), recomputed in float64."""
    net = mixed_net()
    w_init = [p.detach().double().numpy().copy() for p in net.parameters()]
    lr, c, eps = 0.05, 0.3, 1e-6
    opt = RAMDA(net.parameters(), lr=lr, momentum=c, eps=eps, fused=True)
    gen = torch.Generator().manual_seed(4)
    grads = [[torch.randn(p.shape, generator=gen) for p in net.parameters()] for _ in range(3)]
    for step_grads in grads:
        for p, g in zip(net.parameters(), step_grads):
            p.grad = g.clone()
        opt.step()
    for i, p in enumerate(net.parameters()):
        w, v, u = w_init[i].copy(), 0.0, 0.0
        for k in range(1, 4):
            g = grads[k - 1][i].double().numpy()
            s = lr * math.sqrt(k)
            v, u = v + s * g, u + s * g * g
            w = (1 - c) * w + c * (w_init[i] - v / (np.cbrt(u) + eps))
        np.testing.assert_allclose(p.detach().double().numpy(), w, rtol=2e-6, atol=2e-6 * np.abs(w).max())


@pytest.mark.parametrize("cls", [RAMDA, ProxGen])
def test_state_dict_saved_before_the_fused_option_still_loads(cls):
    net = mixed_net()
    opt = cls(param_groups(net, 0.1))
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    old = opt.state_dict()
    for group in old["param_groups"]:
        del group["fused"]
    resumed = cls(param_groups(net, 0.1))
    resumed.load_state_dict(old)
    resumed.step()
    assert resumed.solver_iterations() >= 1


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("cls", [RAMDA, ProxGen])
def test_zero_size_tensors_are_skipped(cls):
    net = nn.Sequential(nn.Linear(0, 5), nn.Linear(5, 3))
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    for fused in (None, False):
        cls(param_groups(net, 0.1), fused=fused).step()
    assert net[0].weight.shape == (5, 0)


def group_prox(y, thr):
    """prox of thr·‖·‖ per input-wise group (axis 1) in float64: Y_g·max(0, 1 − thr/‖Y_g‖)."""
    axes = tuple(i for i in range(y.ndim) if i != 1)
    norms = np.sqrt((y**2).sum(axis=axes, keepdims=True))
    return y * np.maximum(0.0, 1.0 - thr / np.where(norms > 0, norms, 1.0))


def reference_rmda(w, grads, lr, lam, c):
    """RMDA in float64 (docs/math.md, RMDA): V += η√k·g, W̃ = prox_{(α/√k)λ√|g|‖·‖}(W⁰ − V/√k), W ← lerp(W, W̃, c)."""
    w0, w, v, alpha = w.copy(), w.copy(), np.zeros_like(w), 0.0
    size = w.size / w.shape[1]
    for k, g in enumerate(grads, start=1):
        beta = math.sqrt(k)
        v, alpha = v + lr * beta * g, alpha + lr * beta
        w = w + c * (group_prox(w0 - v / beta, alpha / beta * lam * math.sqrt(size)) - w)
    return w


def reference_proxsgd(w, grads, lr, lam, c):
    """ProxSGD in float64 (docs/math.md, ProxSGD): m ← (1 − c)m + c·g, W ← prox_{ηλ√|g|‖·‖}(W − η m)."""
    m = np.zeros_like(w)
    for g in grads:
        m = (1 - c) * m + c * g
        w = group_prox(w - lr * m, lr * lam * math.sqrt(w.size / w.shape[1]))
    return w


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    "cls, kw, lam, reference",
    [
        (RMDA, dict(lr=0.5, momentum=0.4), 0.3, reference_rmda),
        (RMDA, dict(lr=0.5, momentum=1.0), 0.3, reference_rmda),
        (ProxSGD, dict(lr=0.2, momentum=0.3), 0.5, reference_proxsgd),
    ],
)
def test_closed_form_prox_kernels_match_float64(cls, kw, lam, reference, layout, monkeypatch):
    """RMDA's and ProxSGD's one-pass kernels, on tensors cut into several chunks, against float64 numpy."""
    from ramda.kernels import cpu

    monkeypatch.setattr(cpu, "CHUNK", 216)  # chunks of 4, 4 and 3 groups
    torch.manual_seed(0)
    shape = (6, 11, 3, 3)
    small = torch.ones(shape[1]).view(1, -1, 1, 1)
    small[:, ::2] = 0.05
    w = nn.Parameter((torch.randn(shape) * small).contiguous(memory_format=layout))
    bias = nn.Parameter(torch.randn(6))
    w_init, b_init = w.detach().double().numpy().copy(), bias.detach().double().numpy().copy()
    grads = [torch.randn(shape) * small for _ in range(4)]
    bgrads = [torch.randn(6) for _ in range(4)]
    opt = cls([{"params": [w], "lam": lam}, {"params": [bias], "lam": 0.0}], fused=True, **kw)
    for g, bg in zip(grads, bgrads):
        w.grad, bias.grad = g.clone(memory_format=layout), bg.clone()
        opt.step()
    assert opt._workspace is not None, "the tensors should have taken the fused kernel"
    c = kw["momentum"]
    want = reference(w_init, [g.double().numpy() for g in grads], kw["lr"], lam, c)
    got = w.detach().double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    if cls is ProxSGD or c == 1.0:
        zero = np.abs(want).max(axis=(0, 2, 3)) == 0
        assert 0 < zero.sum() < zero.size, "the instance should have zero and nonzero groups"
        np.testing.assert_array_equal(got[:, zero] == 0, True)
    want_b = reference(b_init[:, None], [g.double().numpy()[:, None] for g in bgrads], kw["lr"], 0.0, c)[:, 0]
    np.testing.assert_allclose(bias.detach().double().numpy(), want_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 5, 3, 3), (7, 9, 1, 1), (5, 12)])
def test_ramda_kernel_solves_the_subproblem_across_chunks(shape, monkeypatch):
    """The bisection check of test_ramda_kernel_solves_the_subproblem with tensors cut into many chunks."""
    from ramda.kernels import cpu

    monkeypatch.setattr(cpu, "CHUNK", 20)
    test_ramda_kernel_solves_the_subproblem(shape, torch.contiguous_format)


def test_plan_cuts_equal_chunks_and_gives_threads_equal_work(monkeypatch):
    """A tensor over CHUNK is cut into chunks of about equal width (not full ones and a narrow rest, whose row spans
    are short), lane-aligned; each thread boundary falls where the work before it is nearest its share."""
    from ramda.kernels import cpu

    monkeypatch.setattr(cpu, "CHUNK", 1 << 21)
    plan = cpu.Plan([(512, 512, 9)] * 10, True, 2)
    assert plan.dims[0, 3] == 256 and plan.work.shape[0] == 20
    np.testing.assert_array_equal(plan.bounds, [0, 10, 20])
    widths = [cpu.Plan([(64, n_in, 9)], True, 1).dims[0, 3] for n_in in (3640, 3641, 3700)]
    assert widths == [3640, 1824, 1856]  # 64·3640·9 entries fit one chunk; more take two, rounded up to 16
    # Work items of 1000, then four of 2048·1024 entries: the half (4 194 804) is 500 after the third one.
    plan = cpu.Plan([(100, 10, 1), (2048, 2048, 1), (2048, 2048, 1)], True, 2)
    np.testing.assert_array_equal(plan.bounds, [0, 3, 5])


@pytest.mark.parametrize(
    "cls, kw, lam",
    [
        (RAMDA, dict(lr=0.3, momentum=0.5), 0.05),
        (ProxGen, dict(lr=0.05), 0.05),
        (RMDA, dict(lr=0.5, momentum=0.5), 0.02),
        (ProxSGD, dict(lr=0.1, momentum=0.3), 0.02),
    ],
)
def test_parallel_chunks_do_not_depend_on_the_thread_count(cls, kw, lam, monkeypatch):
    """Tensors large enough for the parallel kernels, cut into many chunks, stepped on 1 and 2 threads."""
    from ramda.kernels import cpu

    monkeypatch.setattr(cpu, "CHUNK", 4096)
    monkeypatch.setattr(cpu, "PLAIN_CHUNK", 4096)
    threads = torch.get_num_threads()
    outs = []
    for n in (1, 2):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(700, 300), nn.Conv2d(20, 48, 3), nn.Linear(3, 50000))
        assert sum(p.numel() for p in net.parameters()) > 2 * cpu.PARALLEL_MIN
        opt = cls(param_groups(net, lam), fused=True, **kw)
        gen = torch.Generator().manual_seed(1)
        torch.set_num_threads(n)
        try:
            for _ in range(3):
                for p in net.parameters():
                    p.grad = torch.randn(p.shape, generator=gen)
                opt.step()
        finally:
            torch.set_num_threads(threads)
        outs.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "cls, kw",
    [
        (RAMDA, dict(lr=0.3, momentum=0.5)),
        (ProxGen, dict(lr=0.05)),
        (RMDA, dict(lr=0.5, momentum=0.5)),
        (ProxSGD, dict(lr=0.1, momentum=0.3)),
    ],
)
def test_kept_cpu_batch_follows_changed_tensors(cls, kw):
    """The batch an optimizer keeps across steps (tensors the kernel takes, their layouts and pointers) against
    one rebuilt before every step, while storage is reassigned, state replaced, a weight transposed at the same
    address and a gradient given another layout: the two runs agree bit for bit."""
    threads = torch.get_num_threads()
    results = []
    for rebuild in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(12, 12), nn.Linear(12, 5))
        conv, square = net[0].weight, net[1].weight
        opt = cls(param_groups(net, 0.05), fused=True, **kw)
        conv_group = next(g["params"] for g in opt.param_groups if any(p is conv for p in g["params"]))
        gen = torch.Generator().manual_seed(1)
        kept = []
        for k in range(7):
            if rebuild:
                opt._cpu_batches.clear()
            if k == 2:
                conv.data = conv.data.clone()
            if k == 3:
                name = cls.fused_state[0]
                opt.state[conv][name] = opt.state[conv][name].clone()
            if k == 4:
                square.data = square.data.t()  # same address, other strides: the torch path's from now on
            for p in net.parameters():
                g = torch.randn(p.shape, generator=gen)
                p.grad = g.contiguous(memory_format=torch.channels_last) if k == 5 and p is conv else g
            torch.set_num_threads(1 if k == 6 else threads)
            try:
                opt.step()
            finally:
                torch.set_num_threads(threads)
            kept.append(opt._cpu_batches[id(conv_group)])
        if not rebuild:
            assert kept[1] is kept[0], "an unchanged group should keep its batch"
            assert all(kept[k] is not kept[k - 1] for k in (2, 3, 4, 5)), "each change should rebuild it"
        results.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_a_removed_param_group_releases_its_batch():
    """The kept batch holds its group's tensors: removing the group must not keep them alive."""
    import gc
    import weakref

    torch.manual_seed(0)
    kept, dropped = nn.Linear(6, 4), nn.Linear(5, 3)
    opt = RMDA([{"params": [kept.weight], "lam": 0.1}, {"params": [dropped.weight], "lam": 0.1}], fused=True)
    kept.weight.grad = torch.randn_like(kept.weight)
    dropped.weight.grad = torch.randn_like(dropped.weight)
    opt.step()
    assert len(opt._cpu_batches) == 2
    gone = weakref.ref(dropped.weight)
    opt.param_groups.pop()
    opt.state.pop(dropped.weight)
    opt.step()
    assert len(opt._cpu_batches) == 1
    del dropped
    gc.collect()
    assert gone() is None, "the removed group's tensor is still referenced"


@pytest.mark.parametrize("cls, kw", [(RAMDA, dict(lr=0.3, momentum=0.5)), (RMDA, dict(lr=0.5, momentum=0.5))])
def test_a_gradient_differing_only_in_unit_axis_strides_takes_the_kernel(cls, kw):
    """A channels-last 1×1 convolution weight and a gradient whose strides differ only along its axes of length
    1 (autograd may hand such a gradient over as it is) are one memory layout: the kernels take them (CPU and
    GPU checks alike), with the results of a gradient of the weight's own strides, bit for bit."""
    from ramda.kernels import gpu, same_layout

    results = []
    for own_strides in (True, False):
        torch.manual_seed(0)
        conv = nn.Conv2d(8, 16, 1, bias=False).to(memory_format=torch.channels_last)
        opt = cls([{"params": [conv.weight], "lam": 0.05}], fused=True, **kw)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            g = torch.randn(conv.weight.shape, generator=gen)
            conv.weight.grad = g.contiguous(memory_format=torch.channels_last) if own_strides else g
            opt.step()
        (batch,) = opt._cpu_batches.values()
        assert batch.taken == [0], "the kernel should take the weight"
        results.append(conv.weight.detach().clone())
    assert torch.equal(*results)
    w, g = conv.weight, conv.weight.grad
    assert w.stride() != g.stride() and same_layout(w, g) and gpu.fused_supported([w, g])
    transposed = torch.randn(8, 16).t().reshape(16, 8, 1, 1)  # strides (1, 16, 1, 1): another memory order
    assert not same_layout(w, transposed) and not gpu.fused_supported([w, transposed])
