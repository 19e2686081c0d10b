"""The torch.optim contract: PyTorch's generic optimizer tests (``test/test_optim.py``, class
``TestOptimRenewed``, over ``torch.testing._internal.common_optimizers``), written again for RAMDA, RMDA,
ProxSGD and ProxGen. Each test names the torch test it mirrors.

The cases cover every optimizer with a λ > 0 group (group LASSO, and L1) beside a λ = 0 group, and RAMDA and
ProxGen on both their fused (numba / Triton) and plain-torch paths. Where these optimizers differ from torch's
by design, the test says so; in short:

- A prox step moves weights even where g = 0: with λ > 0 the structure term shrinks W (ProxSGD/ProxGen), or
  the dual-averaging subproblem is re-solved around W⁰ (RAMDA/RMDA). ``test_step_is_noop_for_zero_grads``
  holds for λ = 0 groups only; for λ > 0 the test checks that the weights do move.
- No ``maximize``, ``capturable``, ``differentiable`` or ``foreach`` flags: the plain path is always the
  multi-tensor (foreach) one, and ``fused=True``/``False`` is the implementation switch compared instead of
  foreach/forloop. The fused kernels are float32 only; other dtypes take the plain path under either setting.
- The step count ``state["step"]`` is a Python int (never a tensor), so ``test_load_nontensor_step`` holds
  by construction; a tensor ``lr`` (one element) is read as a number at each step.
- Complex parameters are stepped as real views (torch's rule), in groups with λ = 0 only: which entries form
  a group of a complex weight is not defined, so a λ > 0 group refuses them.
- AMP: the optimizers do not take GradScaler's ``grad_scale``/``found_inf`` arguments
  (``_step_supports_amp_scaling``), so the scaler unscales the gradients and skips a step that found an inf;
  the found-inf test goes through ``torch.amp.GradScaler`` instead of setting those attributes by hand.
- Sparse gradients are refused (no ``test_rosenbrock_sparse``).
"""

from __future__ import annotations

import copy
import functools
import tempfile

import pytest
import torch
from torch import nn
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from ramda import RAMDA, RMDA, ProxGen, ProxSGD
from ramda.kernels import numba_available

FUSED = numba_available()
needs_numba = pytest.mark.skipif(not FUSED, reason="the fused CPU kernels need numba")


# One case = an optimizer, its options, and the λ / regulariser of the group of weights (≥ 2-D tensors); the
# other tensors (biases) go to a λ = 0 group, as ramda.structure.param_groups lays a model out.
CASES = {
    "ramda-glasso": (RAMDA, dict(lr=0.05, momentum=0.1), 1e-3, "group_lasso"),
    "ramda-glasso-plain": (RAMDA, dict(lr=0.05, momentum=0.1, fused=False), 1e-3, "group_lasso"),
    "ramda-l1": (RAMDA, dict(lr=0.05, momentum=0.1), 1e-3, "l1"),
    "ramda-lam0": (RAMDA, dict(lr=0.05, momentum=0.1), 0.0, "group_lasso"),
    "rmda-glasso": (RMDA, dict(lr=0.01, momentum=0.1), 1e-3, "group_lasso"),
    "rmda-l1": (RMDA, dict(lr=0.01, momentum=0.1), 1e-3, "l1"),
    "proxsgd-glasso": (ProxSGD, dict(lr=0.01, momentum=0.5), 1e-3, "group_lasso"),
    "proxsgd-l1": (ProxSGD, dict(lr=0.01, momentum=0.5), 1e-3, "l1"),
    "proxgen-glasso": (ProxGen, dict(lr=0.01), 1e-3, "group_lasso"),
    "proxgen-glasso-plain": (ProxGen, dict(lr=0.01, fused=False), 1e-3, "group_lasso"),
    "proxgen-l1-wd": (ProxGen, dict(lr=0.01, weight_decay=0.01), 1e-3, "l1"),
    "proxgen-lam0": (ProxGen, dict(lr=0.01), 0.0, "group_lasso"),
    "rmda-lam0": (RMDA, dict(lr=0.01, momentum=0.1), 0.0, "group_lasso"),
    "proxsgd-lam0": (ProxSGD, dict(lr=0.01, momentum=0.5), 0.0, "group_lasso"),
}
LAM0 = [k for k, c in CASES.items() if c[2] == 0.0]
ONE_PER_CLASS = ["ramda-glasso", "rmda-glasso", "proxsgd-glasso", "proxgen-glasso"]
FUSED_CLASSES = {"ramda": (RAMDA, dict(lr=0.05, momentum=0.3)), "proxgen": (ProxGen, dict(lr=0.01))}


def groups_of(params, lam, regularizer):
    """Weights (≥ 2-D) in a group with ``lam``; the rest with λ = 0. ``params`` may be (name, tensor) pairs."""
    tensor = lambda p: p[1] if isinstance(p, tuple) else p  # noqa: E731
    weights = [p for p in params if tensor(p).dim() >= 2]
    rest = [p for p in params if tensor(p).dim() < 2]
    groups = [{"params": weights, "lam": lam, "regularizer": regularizer}] if weights else []
    return groups + ([{"params": rest, "lam": 0.0, "regularizer": None}] if rest else [])


def build(case, params, **overrides):
    cls, kw, lam, reg = CASES[case]
    return cls(groups_of(list(params), lam, reg), **{**kw, **overrides})


def linear_problem(contiguous=True, seed=0):
    torch.manual_seed(seed)
    if contiguous:
        weight, bias = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10))
    else:
        weight, bias = Parameter(torch.randn(10, 5, 2)[..., 0]), Parameter(torch.randn(10, 2)[..., 0])
    return weight, bias, torch.randn(5)


def fwd_bwd(opt, weight, bias, x):
    opt.zero_grad()
    loss = (weight.mv(x) + bias).pow(2).sum()
    loss.backward()
    return loss


def assert_same(a, b, path="state_dict"):
    """Exact equality of nested state dicts (tensors by value, everything else by ==)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, (path, a, b)


def mlp(dtype=torch.float32):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid()).to(dtype)


def cnn(dtype=torch.float32):
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1), nn.Flatten(), nn.Linear(48, 1)
    ).to(dtype)  # fmt: skip


def model_input(kind, dtype):
    torch.manual_seed(2)
    return torch.rand(3, 2, dtype=dtype) if kind == "mlp" else torch.rand(2, 2, 4, 4, dtype=dtype)


# --------------------------------------------------------------------------------------------- errors


ERRORS = [
    (cls, kwargs, match)
    for cls in (RAMDA, RMDA, ProxSGD, ProxGen)
    for kwargs, match in [
        (dict(lr=-1e-2), "lr must be >= 0"),
        (dict(lr=float("nan")), "lr must be >= 0"),
        (dict(lr=torch.tensor([1e-2, 1e-3])), "lr as a tensor must have exactly one element"),
        (dict(lam=-0.1), "lam"),
        (dict(regularizer="nope"), "regularizer"),
    ]
] + [
    (RAMDA, dict(momentum=0.0), "momentum must be in"),
    (RMDA, dict(momentum=1.5), "momentum must be in"),
    (ProxSGD, dict(momentum=-0.1), "momentum must be in"),
    (RAMDA, dict(eps=-1.0), "eps must be >= 0"),
    (ProxGen, dict(eps=float("nan")), "eps must be >= 0"),
    (RAMDA, dict(stop="never"), "stop must be one of"),
    (ProxGen, dict(max_iters=0), "max_iters must be >= 1"),
    (ProxGen, dict(betas=(0.9, 1.0)), "betas"),
    (ProxGen, dict(weight_decay=-1.0), "weight_decay"),
]


@pytest.mark.parametrize("cls, kwargs, match", ERRORS)
def test_errors(cls, kwargs, match):
    """Mirrors ``test_errors`` (construction errors): one ValueError naming the bad option."""
    with pytest.raises(ValueError, match=match):
        cls([Parameter(torch.randn(4, 3))], **kwargs)


@pytest.mark.parametrize("cls", [RAMDA, RMDA, ProxSGD, ProxGen])
def test_errors_on_tensors(cls):
    """Mirrors ``test_errors``: the tensors a group cannot take (construction) and sparse gradients (step)."""
    with pytest.raises(ValueError, match="needs a weight with >= 2 dims"):
        cls([Parameter(torch.randn(4))], lam=0.1)
    with pytest.raises(ValueError, match="complex weights are supported only in groups with lam = 0"):
        cls([Parameter(torch.randn(4, 3, dtype=torch.complex64))], lam=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        cls([torch.randn(4, 3, requires_grad=True) * 2])
    p = Parameter(torch.randn(4, 3))
    opt = cls([p])
    p.grad = torch.randn(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients are not supported"):
        opt.step()


# ------------------------------------------------------------------------------------ right direction


@pytest.mark.parametrize("with_lrsched", [False, True])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_forloop_goes_right_direction(case, contiguous, with_lrsched):
    """Mirrors ``test_forloop_goes_right_direction``: 20 steps lower the loss, with contiguous and strided
    tensors, with and without LR schedulers (torch's StepLR and ReduceLROnPlateau)."""
    weight, bias, x = linear_problem(contiguous)
    opt = build(case, [weight, bias])
    schedulers = [StepLR(opt, step_size=10, gamma=0.9), ReduceLROnPlateau(opt)] if with_lrsched else []
    initial = fwd_bwd(opt, weight, bias, x).item()
    for _ in range(20):
        loss = opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
        for scheduler in schedulers:
            scheduler.step(loss.item()) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()
    assert fwd_bwd(opt, weight, bias, x).item() < initial


@pytest.mark.parametrize("case", list(CASES))
def test_param_groups_lr(case):
    """Mirrors ``test_param_groups_lr`` and ``test_param_group_with_lrscheduler_goes_right_direction``: a
    group's own lr wins over the default; a group with lr = 1e-28 leaves its tensor exactly as it was."""
    cls, kw, lam, reg = CASES[case]
    weight, bias, x = linear_problem()
    irrelevant = Parameter(torch.randn(2, 4))
    before = irrelevant.detach().clone()
    groups = groups_of([weight, bias], lam, reg)
    for group in groups:
        group["lr"] = kw["lr"]
    opt = cls([*groups, {"params": [irrelevant]}], **{**kw, "lr": 1e-28})
    scheduler = StepLR(opt, step_size=5, gamma=0.5)
    initial = fwd_bwd(opt, weight, bias, x).item()
    for _ in range(20):
        fwd_bwd(opt, weight, bias, x)
        irrelevant.grad = torch.rand_like(irrelevant)
        opt.step()
        scheduler.step()
    assert fwd_bwd(opt, weight, bias, x).item() < initial
    assert torch.equal(irrelevant, before)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][2] > 0])
def test_param_groups_lam_is_per_group(case):
    """Mirrors ``test_param_groups_weight_decay`` for λ, and torch's principle that param groups equal
    separate optimizers: one optimizer with groups λ = 0.3 and λ = 0 steps exactly as two optimizers."""
    cls, kw, _, reg = CASES[case]
    torch.manual_seed(0)
    init = [torch.randn(6, 4), torch.randn(6, 4)]
    grads = [[torch.randn(6, 4) for _ in init] for _ in range(4)]
    joint = [Parameter(t.clone()) for t in init]
    apart = [Parameter(t.clone()) for t in init]
    opt = cls([{"params": [joint[0]], "lam": 0.3, "regularizer": reg}, {"params": [joint[1]]}], **kw)
    opts = [cls([apart[0]], lam=0.3, regularizer=reg, **kw), cls([apart[1]], **kw)]
    for g in grads:
        for p, q, gi in zip(joint, apart, g):
            p.grad, q.grad = gi.clone(), gi.clone()
        opt.step()
        for o in opts:
            o.step()
    for p, q in zip(joint, apart):
        assert torch.equal(p, q)
    assert not torch.equal(joint[0], joint[1])


# --------------------------------------------------------------------------------------- tensor lr


@pytest.mark.parametrize("case", list(CASES))
def test_tensor_lr(case):
    """Mirrors ``test_tensor_lr``: lr=torch.tensor(η) steps exactly as lr=η for the η it holds (a float32
    tensor rounds η), also under torch's StepLR, which updates the tensor in place."""
    weight, bias, x = linear_problem()
    weight_c, bias_c = (Parameter(t.detach().clone()) for t in (weight, bias))
    lr = torch.tensor(CASES[case][1]["lr"])
    opt = build(case, [weight, bias], lr=lr.item())
    opt_t = build(case, [weight_c, bias_c], lr=lr)
    scheds = [StepLR(o, step_size=2, gamma=0.5) for o in (opt, opt_t)]
    for _ in range(5):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
        opt_t.step(functools.partial(fwd_bwd, opt_t, weight_c, bias_c, x))
        for s in scheds:
            s.step()
        assert torch.equal(weight, weight_c)
        assert torch.equal(bias, bias_c)
    assert isinstance(opt_t.param_groups[0]["lr"], torch.Tensor)


# ------------------------------------------------------------------------------------------- complex


@pytest.mark.parametrize("case", LAM0)
def test_complex(case):
    """Mirrors ``test_complex``: complex tensors step exactly as their ``view_as_real`` twins, mixed with a
    real tensor (λ = 0 groups: see the module docstring)."""
    torch.manual_seed(0)
    cplx = [
        torch.randn(10, 5, dtype=torch.complex64, requires_grad=True),
        torch.randn(10, dtype=torch.complex64, requires_grad=True),
        torch.randn(10, 5, requires_grad=True),
    ]
    real = [(torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_() for p in cplx]
    opt_c, opt_r = build(case, cplx), build(case, real)
    for _ in range(3):
        for p, r in zip(cplx, real):
            r.grad = torch.randn_like(r)
            p.grad = torch.view_as_complex(r.grad.clone()) if p.is_complex() else r.grad.clone()
        opt_c.step()
        opt_r.step()
        for p, r in zip(cplx, real):
            assert torch.equal(torch.view_as_real(p) if p.is_complex() else p, r)


@pytest.mark.parametrize("case", LAM0)
def test_complex_2d(case):
    """Mirrors ``test_complex_2d``: a complex vector steps as its real and imaginary parts held apart."""
    torch.manual_seed(0)
    a = torch.randn(2, dtype=torch.complex64, requires_grad=True)
    re, im = a.real.detach().clone().requires_grad_(), a.imag.detach().clone().requires_grad_()
    opt_a, opt_ri = build(case, [a]), build(case, [re, im])

    def f(z):
        x, y = z
        return ((1 - x) ** 2 + 100 * (y - x**2) ** 2).abs()

    for _ in range(3):
        opt_a.zero_grad()
        opt_ri.zero_grad()
        f(a).backward()
        f(torch.complex(re, im)).backward()
        opt_a.step()
        opt_ri.step()
        assert torch.equal(a.real, re) and torch.equal(a.imag, im)


# ------------------------------------------------------------------------------- fused = plain path


def compare_between(models, opts, x, atol, rtol):
    """torch's ``_compare_between``: 7 steps; step 2 has no gradients (a no-op), the third layer is frozen for
    steps 3–4; parameters and every state entry must agree after each step."""
    for i in range(7):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            model[2].requires_grad_(i not in (3, 4))
            if i != 2:
                model(x).sum().backward()
            opt.step()
        for p, q in zip(models[0].parameters(), models[1].parameters()):
            torch.testing.assert_close(p, q, atol=atol, rtol=rtol)
            for key, value in opts[0].state[p].items():
                other = opts[1].state[q][key]
                if isinstance(value, torch.Tensor):
                    torch.testing.assert_close(value, other, atol=atol, rtol=rtol)
                else:
                    assert value == pytest.approx(other, rel=1e-6), key


@needs_numba
@pytest.mark.parametrize(
    "kind, dtype",
    [("mlp", torch.float32), ("mlp", torch.float64), ("mlp", torch.bfloat16), ("cnn", torch.float32)],
)
@pytest.mark.parametrize("lam", [0.0, 0.05])
@pytest.mark.parametrize("name", list(FUSED_CLASSES))
def test_fused_matches_forloop(name, lam, kind, dtype, monkeypatch):
    """Mirrors ``test_fused_matches_forloop`` (``_test_derived_optimizers``): fused=True and fused=False agree
    on parameters and state across dtypes, with a step without gradients, a frozen layer (its tensors fall a
    step behind the rest of their group) and a zero-size tensor. In float32 the kernels must have run."""
    cls, kw = FUSED_CLASSES[name]
    ran = []

    def spy(kernel):
        def wrapped(*args):
            ran.append(kernel)
            return kernel(*args)

        return wrapped

    monkeypatch.setattr(cls, "fused_kernels", {k: spy(v) for k, v in cls.fused_kernels.items()})
    models, opts = [], []
    for fused in (False, True):
        model = mlp(dtype) if kind == "mlp" else cnn(dtype)
        empty = torch.empty(0, 3, dtype=dtype, requires_grad=True)
        empty.grad = torch.rand_like(empty)
        opt = cls(groups_of([*model.parameters(), empty], lam, "group_lasso"), fused=fused, **kw)
        models.append(model)
        opts.append(opt)
    tol = {torch.float32: (1e-6, 1e-5), torch.float64: (0, 0), torch.bfloat16: (0, 0)}[dtype]
    compare_between(models, opts, model_input(kind, dtype), *tol)
    assert bool(ran) == (dtype == torch.float32)


@needs_numba
@pytest.mark.parametrize("name", list(FUSED_CLASSES))
def test_fused_channels_last_cnn_matches_forloop(name):
    """Mirrors ``test_fused_matches_forloop`` for a channels-last CNN (the kernels' strided layout)."""
    cls, kw = FUSED_CLASSES[name]
    models = [cnn().to(memory_format=torch.channels_last) for _ in range(2)]
    opts = [cls(groups_of(list(m.parameters()), 0.05, "group_lasso"), fused=f, **kw) for m, f in
            zip(models, (False, True))]  # fmt: skip
    compare_between(models, opts, model_input("cnn", torch.float32), 1e-6, 1e-5)


@pytest.mark.parametrize("fused", [None, False])
def test_proxgen_with_a_frozen_tensor_is_torch_adam(fused):
    """The frozen-layer part of ``_compare_between`` against an independent reference: with λ = 0 ProxGen is
    Adam, and a tensor of the group that misses gradients for some steps keeps its own step count, bias
    corrections included, exactly as in ``torch.optim.Adam``."""
    torch.manual_seed(0)
    init = [torch.randn(4, 3), torch.randn(4, 3), torch.randn(3)]
    ours, ref = [Parameter(t.clone()) for t in init], [Parameter(t.clone()) for t in init]
    opt = ProxGen(ours, lr=0.01, fused=fused)
    adam = torch.optim.Adam(ref, lr=0.01, foreach=False)
    for k in range(6):
        grads = [torch.randn_like(t) for t in init]
        for i, (p, q, g) in enumerate(zip(ours, ref, grads)):
            frozen = i == 1 and k in (1, 2)
            p.grad, q.grad = (None, None) if frozen else (g.clone(), g.clone())
        opt.step()
        adam.step()
        for p, q in zip(ours, ref):
            torch.testing.assert_close(p, q)
    assert [opt.state[p]["step"] for p in ours] == [6, 4, 6]


# ----------------------------------------------------------------------------------------- no-op steps


@pytest.mark.parametrize("case", list(CASES))
def test_step_is_noop_when_params_have_no_grad(case):
    """Mirrors ``test_step_is_noop_when_params_have_no_grad``: tensors without gradients are skipped: no
    change, no state."""
    params = [torch.randn(2, 3) for _ in range(2)]
    before = [p.clone() for p in params]
    opt = build(case, params)
    assert opt.step(lambda: torch.tensor([1.0])).item() == 1.0
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert len(opt.state) == 0


@pytest.mark.parametrize("case", list(CASES))
def test_step_is_noop_for_zero_grads(case):
    """Mirrors ``test_step_is_noop_for_zero_grads`` where it applies (λ = 0, no weight decay). With λ > 0 a
    prox step shrinks the weights even at g = 0, by design, and the test checks that it does."""
    _, kw, lam, _ = CASES[case]
    param = Parameter(torch.randn(5, 2))
    before = param.detach().clone()
    opt = build(case, [param])
    param.grad = torch.zeros_like(param)
    opt.step()
    moves = lam > 0 or kw.get("weight_decay", 0) > 0
    assert torch.equal(param, before) != moves


@pytest.mark.parametrize("case", list(CASES))
def test_non_empty_state(case):
    """Mirrors ``test_non_empty_state``: every stepped tensor has state."""
    model = nn.Linear(5, 5)
    opt = build(case, model.parameters())
    model(torch.rand(2, 5)).sum().backward()
    opt.step()
    assert len(opt.state) == 2 and all(len(s) > 0 for s in opt.state.values())


# ------------------------------------------------------------------------------------------- printing


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_can_be_printed(case):
    """Mirrors ``test_optimizer_can_be_printed``: the repr names the class and each group's λ."""
    text = repr(build(case, [Parameter(torch.randn(2, 3)), Parameter(torch.randn(2))]))
    assert text.startswith(CASES[case][0].__name__) and "lam:" in text and "Parameter Group 1" in text


# ----------------------------------------------------------------------------------------- state_dict


NAMED_CASES = [(case, False, False) for case in CASES] + [
    (case, *names) for case in ONE_PER_CLASS for names in ((False, True), (True, False), (True, True))
]


def named(params, is_named):
    return [(f"name{i}", p) for i, p in enumerate(params)] if is_named else list(params)


@pytest.mark.parametrize("case, is_named0, is_named1", NAMED_CASES)
def test_state_dict_deterministic(case, is_named0, is_named1):
    """Mirrors ``test_state_dict_deterministic``: a state dict loaded into a fresh optimizer over equal (not
    identical) tensors continues bit for bit; both state dicts then agree; repeated groups look the same."""
    weight, bias, x = linear_problem()
    opt = build(case, named([weight, bias], is_named0))
    for _ in range(5):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
    with torch.no_grad():
        weight_c, bias_c = Parameter(weight.clone()), Parameter(bias.clone())
    opt_c = build(case, named([weight_c, bias_c], is_named1))
    opt_c.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(5):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
        opt_c.step(functools.partial(fwd_bwd, opt_c, weight_c, bias_c, x))
        assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)

    def without_names(sd):
        sd = copy.deepcopy(sd)
        for group in sd["param_groups"]:
            group.pop("param_names", None)
        return sd

    assert_same(without_names(opt.state_dict()), without_names(opt_c.state_dict()))
    opt_c.param_groups.extend(opt_c.param_groups)
    assert (
        without_names(opt.state_dict())["param_groups"][-1]
        == (without_names(opt_c.state_dict())["param_groups"][-1])
    )


def conv_bn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(4, 2, 1, stride=2), nn.BatchNorm2d(2)), torch.rand(1, 4, 16, 16)


def step_model(opt, model, x, n=1):
    for _ in range(n):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()


@pytest.mark.parametrize("case", list(CASES))
def test_can_load_older_state_dict(case):
    """Mirrors ``test_can_load_older_state_dict``: a state dict without the options added since the first
    release (fused, the solver's stop rule and limits) loads, those options take their defaults, and the
    optimizer steps."""
    model, x = conv_bn()
    opt = build(case, model.parameters())
    step_model(opt, model, x, 3)
    old = copy.deepcopy(opt.state_dict())
    flags = [f for f in ("fused", "stop", "max_iters", "rtol", "tol") if f in opt.defaults]
    for group in old["param_groups"]:
        for flag in flags:
            del group[flag]
    opt.load_state_dict(old)
    for group in opt.param_groups:
        assert all(group[flag] == opt.defaults[flag] for flag in flags)
    step_model(opt, model, x)


@pytest.mark.parametrize("is_named1", [False, True])
@pytest.mark.parametrize("is_named0", [False, True])
@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_can_load_from_to_named_state_dict(case, is_named0, is_named1):
    """Mirrors ``test_can_load_from_to_named_state_dict``: named and unnamed parameters load into each other;
    parameter names survive when either side has them."""
    model, x = conv_bn()
    opt = build(case, model.named_parameters() if is_named0 else model.parameters())
    step_model(opt, model, x, 3)
    opt2 = build(case, model.named_parameters() if is_named1 else model.parameters())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    step_model(opt2, model, x)
    if is_named0 or is_named1:
        names = [n for g in opt2.state_dict()["param_groups"] for n in g["param_names"]]
        assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]


@pytest.mark.parametrize("case, is_named", [(c, False) for c in CASES] + [(c, True) for c in ONE_PER_CLASS])
def test_save_load_equality_with_weights_only(case, is_named):
    """Mirrors ``test_save_load_equality_with_weights_only``: torch.save / torch.load(weights_only=True) give
    back an equal state dict."""
    weight, bias, x = linear_problem()
    opt = build(case, named([weight, bias], is_named))
    for _ in range(3):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
    sd = opt.state_dict()
    with tempfile.TemporaryFile() as f:
        torch.save(sd, f)
        f.seek(0)
        assert_same(torch.load(f, weights_only=True), sd)


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_casts_to_the_parameters_dtype(case):
    """Mirrors ``test_state_dict_with_cuda_params`` on one device (and the older ``_test_state_dict``'s cast
    check): float32 state loads into float64 parameters as float64, and both runs continue together."""
    weight, bias, x = linear_problem()
    opt = build(case, [weight, bias])
    for _ in range(3):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
    weight_d, bias_d = (Parameter(t.detach().double()) for t in (weight, bias))
    opt_d = build(case, [weight_d, bias_d])
    opt_d.load_state_dict(copy.deepcopy(opt.state_dict()))
    for state in opt_d.state.values():
        assert all(v.dtype == torch.float64 for v in state.values() if isinstance(v, torch.Tensor))
    for _ in range(3):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
        opt_d.step(functools.partial(fwd_bwd, opt_d, weight_d, bias_d, x.double()))
    torch.testing.assert_close(weight_d.float(), weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bias_d.float(), bias, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_load_state_dict_checks_the_groups(case):
    """Mirrors torch's load-time checks (``Optimizer.load_state_dict``: group count and sizes) and adds this
    project's own: a loaded group is validated like a constructed one, and a refused load changes nothing."""
    weight, bias, x = linear_problem()
    opt = build(case, [weight, bias])
    opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
    sd = copy.deepcopy(opt.state_dict())
    fewer = copy.deepcopy(sd)
    fewer["param_groups"].pop()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(fewer)
    bigger = copy.deepcopy(sd)
    bigger["param_groups"][1]["params"].append(99)
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(bigger)
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["lam"] = -1.0
    bad["state"][0]["step"] = 1000
    with pytest.raises(ValueError, match="lam"):
        opt.load_state_dict(bad)
    assert_same(opt.state_dict(), sd)
    bad["param_groups"][0].update(lam=0.1, regularizer="group_lasso")
    bad["param_groups"][1].update(lam=0.1, regularizer="group_lasso")  # the 1-D bias cannot take it
    with pytest.raises(ValueError, match="needs a weight with >= 2 dims"):
        opt.load_state_dict(bad)
    assert_same(opt.state_dict(), sd)


# ----------------------------------------------------------------------------------------------- hooks


def _sd_pre_hook(opt):
    opt.state["test"] = 1


def _sd_post_hook(opt, sd):
    sd["ran_state_dict_pre_hook"] = sd["state"].pop("test", None) is not None
    return sd


def _load_pre_hook1(opt, sd):
    sd["param_groups"][0]["lr"] = 0.002


def _load_pre_hook2(opt, sd):
    sd = copy.deepcopy(sd)
    sd["param_groups"][0]["lr"] = 0.003
    return sd


def _load_post_hook(opt):
    opt.state["ran_load_state_dict_pre_hook2"] = opt.param_groups[0]["lr"] == 0.003
    opt.state["ran_load_state_dict_post_hook"] = True


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_state_dict_hooks(case):
    """Mirrors ``test_state_dict_pre_hook``, ``test_state_dict_post_hook``, ``test_state_dict_pre_post_hook``,
    ``test_load_state_dict_pre_hook_and_prepend``, ``test_load_state_dict_post_hook`` and
    ``test_load_state_dict_pre_post_hook``."""
    make = lambda: build(case, [torch.rand(2, 3, requires_grad=True)])  # noqa: E731
    opt = make()
    opt.register_state_dict_pre_hook(_sd_pre_hook)
    assert opt.state_dict()["state"]["test"] == 1
    opt = make()
    opt.register_state_dict_post_hook(_sd_post_hook)
    assert opt.state_dict()["ran_state_dict_pre_hook"] is False
    opt = make()
    opt.register_state_dict_pre_hook(_sd_pre_hook)
    opt.register_state_dict_post_hook(_sd_post_hook)
    sd = opt.state_dict()
    assert "test" not in sd["state"] and sd["ran_state_dict_pre_hook"]

    opt = make()
    sd = opt.state_dict()
    opt.register_load_state_dict_pre_hook(_load_pre_hook1)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.002
    opt.register_load_state_dict_pre_hook(_load_pre_hook2, prepend=True)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.002
    opt = make()
    opt.register_load_state_dict_post_hook(_load_post_hook)
    opt.load_state_dict(opt.state_dict())
    assert not opt.state["ran_load_state_dict_pre_hook2"] and opt.state["ran_load_state_dict_post_hook"]
    opt = make()
    opt.register_load_state_dict_pre_hook(_load_pre_hook2)
    opt.register_load_state_dict_post_hook(_load_post_hook)
    opt.load_state_dict(opt.state_dict())
    assert opt.state["ran_load_state_dict_pre_hook2"] and opt.state["ran_load_state_dict_post_hook"]


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_step_hooks(case):
    """Mirrors ``test_step_pre_hook``, ``test_step_post_hook`` and ``test_step_all_hooks`` (global and local
    hooks fire in torch's order, beside a torch SGD, and stop after removal)."""
    params = [torch.tensor([[1.0, 1.0]], requires_grad=True)]
    opt, sgd = build(case, params), torch.optim.SGD(params)
    data = []
    handles = [
        register_optimizer_step_pre_hook(lambda *a: data.append(0)),
        register_optimizer_step_post_hook(lambda *a: data.append(5)),
    ]
    for o in (opt, sgd):
        handles += [
            o.register_step_pre_hook(lambda *a: data.append(1)),
            o.register_step_post_hook(lambda *a: data.append(2)),
        ]
    try:
        opt.step()
        sgd.step()
        opt.step()
    finally:
        for handle in handles:
            handle.remove()
    opt.step()
    sgd.step()
    assert data == [0, 1, 2, 5] * 3


# --------------------------------------------------------------------------- deepcopy, groups, zero_grad


@pytest.mark.parametrize("case", list(CASES))
def test_deepcopy_copies_all_public_attrs(case):
    """Mirrors ``test_deepcopy_copies_all_public_attrs``: after steps, a deepcopy has the same public
    attributes and steps exactly as the original."""
    params = [Parameter(torch.randn(2, 3)), Parameter(torch.randn(3))]
    opt = build(case, params)
    for _ in range(3):
        for p in params:
            p.grad = torch.rand_like(p)
        opt.step()
    public = lambda o: {k for k in o.__dict__ if not k.startswith("_")}  # noqa: E731
    twin = copy.deepcopy(opt)
    assert public(opt) == public(twin)
    twin_params = [p for g in twin.param_groups for p in g["params"]]
    for p, q in zip(params, twin_params):
        p.grad = torch.rand_like(p)
        q.grad = p.grad.clone()
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twin_params))


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_add_param_group(case):
    """Mirrors torch's ``Optimizer.add_param_group`` contract: a valid group takes the defaults and trains; a
    rejected one raises ValueError and is not kept, so the next step works."""
    cls, kw, lam, reg = CASES[case]
    weight, bias, x = linear_problem()
    opt = cls([weight], lam=lam, regularizer=reg, **kw)
    opt.add_param_group({"params": [bias], "lam": 0.0})
    assert opt.param_groups[1]["lr"] == kw["lr"] and opt.param_groups[1]["regularizer"] == reg
    rejected = [
        ({"params": [Parameter(torch.randn(3, 2))], "lam": -1.0}, "lam"),
        ({"params": [Parameter(torch.randn(3))], "lam": 0.1}, "needs a weight with >= 2 dims"),
        ({"params": [Parameter(torch.randn(3, 2, dtype=torch.complex64))], "lam": 0.1}, "complex"),
        ({"params": [Parameter(torch.randn(3, 2))], "lr": torch.ones(2)}, "one element"),
        ({"params": [bias]}, "some parameters appear in more than one parameter group"),
    ]
    for group, match in rejected:
        with pytest.raises(ValueError, match=match):
            opt.add_param_group(group)
        assert len(opt.param_groups) == 2
    initial = fwd_bwd(opt, weight, bias, x).item()
    for _ in range(10):
        opt.step(functools.partial(fwd_bwd, opt, weight, bias, x))
    assert fwd_bwd(opt, weight, bias, x).item() < initial


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_zero_grad(case):
    """Mirrors the ``zero_grad`` contract: set_to_none=True drops gradients (and the step skips them), False
    zeros them in place."""
    weight, bias, x = linear_problem()
    opt = build(case, [weight, bias])
    fwd_bwd(opt, weight, bias, x)
    grad = weight.grad
    opt.zero_grad(set_to_none=False)
    assert weight.grad is grad and not grad.any()
    opt.zero_grad()
    assert weight.grad is None and bias.grad is None
    before = weight.detach().clone()
    opt.step()
    assert torch.equal(weight, before) and len(opt.state) == 0


@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_closure_under_no_grad(case):
    """Mirrors torch's rule that ``step(closure)`` evaluates the closure with gradients enabled, even when the
    caller is under ``torch.no_grad()``, and returns its loss."""
    weight, bias, x = linear_problem()
    opt = build(case, [weight, bias])
    closure = functools.partial(fwd_bwd, opt, weight, bias, x)
    expected = closure().item()
    opt.zero_grad()
    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() == expected and weight.grad is not None


# ----------------------------------------------------------------------- autograd's version counter


@pytest.mark.parametrize("case", list(CASES))
def test_step_bumps_the_autograd_version_counter(case):
    """The in-place contract every torch optimizer keeps (its updates are in-place tensor ops): after
    ``step()`` a graph that saved the old weights refuses to backpropagate, on the fused path too."""
    torch.manual_seed(0)
    w, b = Parameter(torch.randn(6, 4)), Parameter(torch.randn(6))
    opt = build(case, [w, b])
    w.grad, b.grad = torch.randn_like(w), torch.randn_like(b)
    loss = (w * w).sum() + (b * b).sum()
    versions = (w._version, b._version)
    opt.step()
    assert w._version > versions[0] and b._version > versions[1]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ----------------------------------------------------------------------------------------------- AMP


@pytest.mark.parametrize("fused", [None, True, False] if FUSED else [False])
@pytest.mark.parametrize("case", ONE_PER_CLASS)
def test_fused_does_not_step_if_foundinf(case, fused):
    """Mirrors ``test_fused_does_not_step_if_foundinf`` through ``torch.amp.GradScaler``: a scaled step whose
    gradients hold an inf changes neither the parameters nor the state; finite steps match unscaled ones."""
    weight, bias, x = linear_problem()
    weight_r, bias_r = (Parameter(t.detach().clone()) for t in (weight, bias))
    extra = {"fused": fused} if CASES[case][0] in (RAMDA, ProxGen) else {}
    opt, ref = build(case, [weight, bias], **extra), build(case, [weight_r, bias_r], **extra)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)

    def scaled_step(poison):
        opt.zero_grad()
        scaler.scale((weight.mv(x) + bias).pow(2).sum()).backward()
        if poison:
            weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()

    for _ in range(2):
        scaled_step(False)
        ref.step(functools.partial(fwd_bwd, ref, weight_r, bias_r, x))
    sd, params = copy.deepcopy(opt.state_dict()), [weight.detach().clone(), bias.detach().clone()]
    scaled_step(True)
    assert torch.equal(weight, params[0]) and torch.equal(bias, params[1])
    assert_same(opt.state_dict(), sd)
    assert scaler.get_scale() == 2.0**7
    scaled_step(False)
    ref.step(functools.partial(fwd_bwd, ref, weight_r, bias_r, x))
    torch.testing.assert_close(weight, weight_r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bias, bias_r, atol=1e-6, rtol=1e-5)
