"""Optimizers against independent references (numpy re-derivations of docs/math.md#update-rules, torch.optim.Adam/AdamW)."""

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from ramda import RAMDA, RMDA, ProxGen, ProxSGD, param_groups, sparsity_report


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4),
    )  # fmt: skip


def group_norms_np(w):
    return np.sqrt((w**2).sum(axis=tuple(i for i in range(w.ndim) if i != 1)))


def glasso_prox_np(y, tau):
    """Independent group-LASSO prox over input groups (axis 1), one group at a time."""
    out = np.zeros_like(y)
    wg = math.sqrt(y.size / y.shape[1])
    for j in range(y.shape[1]):
        g = np.take(y, j, axis=1)
        n = np.linalg.norm(g)
        scale = max(0.0, 1.0 - tau * wg / n) if n > 0 else 0.0
        idx = [slice(None)] * y.ndim
        idx[1] = j
        out[tuple(idx)] = scale * g
    return out


def authors_rule_np(w, w0, v, p, t, max_iters=100, rtol=1e-8):
    """A plain re-derivation of the released solver's `objective` rule, one group at a time in float64."""
    wg = math.sqrt(w.size / w.shape[1])
    groups = range(w.shape[1])
    take = lambda a, j: np.take(a, j, axis=1)  # noqa: E731
    active = [j for j in groups if np.linalg.norm(take(p * w0 - v, j)) > t * wg]
    z = {j: take(w, j).copy() for j in active}
    h = {j: 1.0 / take(p, j).max() for j in active}

    def q(z):
        total = 0.0
        for j in active:
            d = z[j] - take(w0, j)
            total += np.sum(d * take(v, j)) + 0.5 * np.sum(d * take(p, j) * d) + t * wg * np.linalg.norm(z[j])
        return total

    prev = q(z)
    for i in range(max_iters):
        for j in active:
            y = z[j] - h[j] * (take(v, j) + take(p, j) * (z[j] - take(w0, j)))
            n = np.linalg.norm(y)
            z[j] = max(0.0, 1 - h[j] * t * wg / n) * y if n > 0 else y * 0
        cur = q(z)
        if i > 0 and (prev - cur) / (abs(cur) + 1.0) < rtol:
            break
        prev = cur
    out = np.zeros_like(w)
    for j in active:
        idx = [slice(None)] * w.ndim
        idx[1] = j
        out[tuple(idx)] = z[j]
    return out


def run_steps(model, opt, grads_seq):
    for grads in grads_seq:
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt.step()


def random_grads(model, steps, seed=5, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale for p in model.parameters()]
        for _ in range(steps)
    ]


def test_ramda_lambda_zero_is_closed_form():
    model = tiny_cnn().double()
    w_init = [p.detach().numpy().copy() for p in model.parameters()]
    grads = random_grads(model, 3)
    lr, c, eps = 0.05, 0.3, 1e-6
    opt = RAMDA(model.parameters(), lr=lr, momentum=c, eps=eps)
    run_steps(model, opt, grads)
    for i, p in enumerate(model.parameters()):
        w, v, u = w_init[i].copy(), 0.0, 0.0
        for k in range(1, 4):
            g = grads[k - 1][i].numpy()
            s = lr * math.sqrt(k)
            v, u = v + s * g, u + s * g * g
            w = (1 - c) * w + c * (w_init[i] - v / (np.cbrt(u) + eps))
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-10, atol=1e-12)


def test_ramda_objective_mode_reproduces_released_rule():
    """float64: at rtol = 1e-8 the rule reads decreases below float32 resolution, so in float32 the stopping
    iteration depends on reduction order (the released code shares this)."""
    model = tiny_cnn(1).double()
    lr, c, eps, lam = 0.1, 0.5, 1e-6, 2e-2
    opt = RAMDA(param_groups(model, lam), lr=lr, momentum=c, eps=eps, stop="objective")
    w_init = [p.detach().double().numpy().copy() for p in model.parameters()]
    grads = random_grads(model, 4, seed=9)
    structured = {id(p) for p in opt.param_groups[0]["params"]}
    ref = [w.copy() for w in w_init]
    v = [0.0] * len(ref)
    u = [0.0] * len(ref)
    alpha = 0.0
    for k in range(1, 5):
        for p, g in zip(model.parameters(), grads[k - 1]):
            p.grad = g.clone()
        opt.step()
        s = lr * math.sqrt(k)
        alpha += s
        for i, p in enumerate(model.parameters()):
            g = grads[k - 1][i].double().numpy()
            v[i], u[i] = v[i] + s * g, u[i] + s * g * g
            pc = np.cbrt(u[i]) + eps
            if id(p) in structured:
                target = authors_rule_np(ref[i], w_init[i], v[i], pc, alpha * lam)
            else:
                target = w_init[i] - v[i] / pc
            ref[i] = (1 - c) * ref[i] + c * target
        for i, p in enumerate(model.parameters()):
            got = p.detach().double().numpy()
            np.testing.assert_allclose(got, ref[i], rtol=1e-5, atol=1e-6)
            if id(p) in structured:
                np.testing.assert_array_equal(group_norms_np(got) == 0, group_norms_np(ref[i]) == 0)
    assert sparsity_report(model)["group_sparsity"] == 0.0 or c == 1.0


def test_unit_momentum_gives_subproblem_solution():
    """c = 1 makes W = W̃: one exact-solver step equals the solver applied to the state."""
    from ramda.regularizers import REGULARIZERS
    from ramda.solver import solve

    model = tiny_cnn(3).double()
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = RAMDA(param_groups(model, 1e-2), lr=0.2, momentum=1.0)
    grads = random_grads(model, 1)
    run_steps(model, opt, grads)
    p = model[0].weight
    g = grads[0][0]
    v, u = 0.2 * g, 0.2 * g * g
    z, _ = solve(REGULARIZERS["group_lasso"], w0[0], w0[0], v, u.pow(1 / 3) + 1e-6, 0.2 * 1e-2, stop="exact")
    torch.testing.assert_close(p.detach(), z, rtol=1e-13, atol=1e-15)
    assert torch.equal(p.detach() == 0, z == 0)


def test_rmda_matches_reference():
    model = tiny_cnn(4).double()
    lr, c, lam = 0.5, 0.4, 3e-3
    opt = RMDA(param_groups(model, lam), lr=lr, momentum=c)
    structured = {id(p) for p in opt.param_groups[0]["params"]}
    w_init = [p.detach().numpy().copy() for p in model.parameters()]
    ref, v, alpha = [w.copy() for w in w_init], [0.0] * len(w_init), 0.0
    grads = random_grads(model, 3)
    run_steps(model, opt, grads)
    for k in range(1, 4):
        beta = math.sqrt(k)
        alpha += lr * beta
        for i, p in enumerate(model.parameters()):
            v[i] = v[i] + lr * beta * grads[k - 1][i].numpy()
            y = w_init[i] - v[i] / beta
            target = glasso_prox_np(y, alpha / beta * lam) if id(p) in structured else y
            ref[i] = (1 - c) * ref[i] + c * target
    for i, p in enumerate(model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), ref[i], rtol=1e-10, atol=1e-12)


def test_proxsgd_matches_reference():
    model = tiny_cnn(5).double()
    lr, c, lam = 0.1, 0.1, 0.05
    opt = ProxSGD(param_groups(model, lam), lr=lr, momentum=c)
    structured = {id(p) for p in opt.param_groups[0]["params"]}
    ref = [p.detach().numpy().copy() for p in model.parameters()]
    grads = random_grads(model, 3)
    run_steps(model, opt, grads)
    m = [None] * len(ref)
    for k in range(3):
        for i, p in enumerate(model.parameters()):
            g = grads[k][i].numpy()
            m[i] = c * g if m[i] is None else (1 - c) * m[i] + c * g
            y = ref[i] - lr * m[i]
            ref[i] = glasso_prox_np(y, lr * lam) if id(p) in structured else y
    for i, p in enumerate(model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), ref[i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_proxgen_without_lambda_is_adamw(weight_decay):
    a, b = tiny_cnn(6).double(), tiny_cnn(6).double()
    ours = ProxGen(a.parameters(), lr=1e-2, weight_decay=weight_decay)
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=weight_decay, eps=1e-8)
    grads = random_grads(a, 5)
    run_steps(a, ours, grads)
    run_steps(b, ref, grads)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_proxgen_objective_mode_reproduces_released_rule():
    model = tiny_cnn(7).double()
    lr, lam, (b1, b2), eps = 1e-2, 0.5, (0.9, 0.999), 1e-8
    opt = ProxGen(param_groups(model, lam), lr=lr, stop="objective")
    structured = {id(p) for p in opt.param_groups[0]["params"]}
    ref = [p.detach().numpy().copy() for p in model.parameters()]
    m, v = [0.0] * len(ref), [0.0] * len(ref)
    grads = random_grads(model, 3)
    run_steps(model, opt, grads)
    for k in range(1, 4):
        for i, p in enumerate(model.parameters()):
            g = grads[k - 1][i].numpy()
            m[i], v[i] = b1 * m[i] + (1 - b1) * g, b2 * v[i] + (1 - b2) * g * g
            d = np.sqrt(v[i]) / math.sqrt(1 - b2**k) + eps
            lin = m[i] * lr / (1 - b1**k)
            if id(p) in structured:
                ref[i] = authors_rule_np(ref[i], ref[i], lin, d, lr * lam)
            else:
                ref[i] = ref[i] - lin / d
    for i, p in enumerate(model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), ref[i], rtol=1e-5, atol=1e-8)


def test_restart_resets_exactly_the_dual_averaging_state():
    model = tiny_cnn(8)
    opt = RAMDA(param_groups(model, 1e-3), lr=0.1, momentum=0.5, eps=1e-4)
    run_steps(model, opt, random_grads(model, 2))
    opt.restart(eps_scale=0.1)
    for p in model.parameters():
        st = opt.state[p]
        assert st["step"] == 0 and st["alpha"] == 0.0
        assert torch.equal(st["w0"], p.detach())
        assert not st["v"].any() and not st["u"].any()
    assert all(g["eps"] == pytest.approx(1e-5) for g in opt.param_groups)
    assert all(g["lr"] == 0.1 for g in opt.param_groups)


@pytest.mark.parametrize("cls", [RAMDA, RMDA, ProxSGD, ProxGen])
def test_checkpoint_resume_is_bit_identical(cls):
    kw = {"lr": 1e-2} if cls is ProxGen else {"lr": 0.1, "momentum": 0.5}
    model = tiny_cnn(9)
    opt = cls(param_groups(model, 1e-3), **kw)
    grads = random_grads(model, 6)
    run_steps(model, opt, grads[:3])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    run_steps(model, opt, grads[3:])
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = tiny_cnn(0)
    resumed.load_state_dict(ckpt["model"])
    opt2 = cls(param_groups(resumed, 1e-3), **kw)
    opt2.load_state_dict(ckpt["opt"])
    run_steps(resumed, opt2, grads[3:])
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for the cross-device round trip")
def test_state_dict_moves_across_devices():
    model = tiny_cnn(10)
    opt = RAMDA(param_groups(model, 1e-3), lr=0.1, momentum=0.5)
    run_steps(model, opt, random_grads(model, 2))
    gpu = copy.deepcopy(model).cuda()
    opt2 = RAMDA(param_groups(gpu, 1e-3), lr=0.1, momentum=0.5)
    opt2.load_state_dict(opt.state_dict())
    for p in gpu.parameters():
        assert opt2.state[p]["v"].device.type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host-device synchronisation")
@pytest.mark.parametrize(("cls", "kw"), [(RAMDA, {}), (RAMDA, {"fused": False}), (ProxGen, {}), (RMDA, {})])
def test_default_step_never_synchronises_with_the_gpu(cls, kw):
    model = tiny_cnn(11).cuda()
    opt = cls(param_groups(model, 1e-3), **kw)
    grads = [[g.cuda() for g in step] for step in random_grads(model, 3)]
    run_steps(model, opt, grads[:1])  # the first step compiles kernels and allocates state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run_steps(model, opt, grads[1:])
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "lr"),
        ({"momentum": 0.0}, "momentum"),
        ({"momentum": 1.5}, "momentum"),
        ({"lam": -1e-3}, "lam"),
        ({"eps": -1.0}, "eps"),
        ({"stop": "fast"}, "stop"),
        ({"regularizer": "l3", "lam": 1e-3}, "regularizer"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RAMDA(param_groups(tiny_cnn(), 0.0), **kwargs)


def test_regularizer_that_does_not_fit_the_shape():
    with pytest.raises(ValueError, match="group_lasso"):
        RAMDA(tiny_cnn().parameters(), lam=1e-3)
    with pytest.raises(ValueError, match="exact"):
        RAMDA(param_groups(tiny_cnn(), 1e-3, "nuclear"), stop="exact")


@pytest.mark.parametrize(
    ("cls", "kw", "lam"),
    [
        (RAMDA, {"lr": 0.05, "momentum": 1.0}, 2e-3),
        (RAMDA, {"lr": 0.05, "momentum": 1.0, "stop": "objective"}, 2e-3),
        (RMDA, {"lr": 0.3, "momentum": 1.0}, 1e-2),
        (ProxSGD, {"lr": 0.5, "momentum": 0.5}, 5e-3),
        (ProxGen, {"lr": 2e-2}, 3e-3),
    ],
)
def test_trains_tiny_cnn_into_group_zeros(cls, kw, lam):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > 0).long() + 2 * (x[:, 0, :, :4].mean(dim=(1, 2)) > 0).long()
    model = tiny_cnn(11)
    opt = cls(param_groups(model, lam), **kw)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0]
    report = sparsity_report(model)
    assert 0.0 < report["group_sparsity"] < 1.0
    zero_groups = model[2].weight.detach().abs().amax(dim=(0, 2, 3)) == 0
    assert zero_groups.any()
