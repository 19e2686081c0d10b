"""Prox operators against closed forms and brute-force minimisation (cvxpy / dense grids)."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from ramda.regularizers import REGULARIZERS, get_regularizer


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_group_lasso_prox_closed_form(rng):
    reg = REGULARIZERS["group_lasso"]
    y = rng.standard_normal((5, 4, 3, 3))
    tau = 0.7
    out = reg.prox(torch.tensor(y), tau).numpy()
    w = np.sqrt(5 * 3 * 3)
    for j in range(4):
        g = y[:, j]
        norm = np.linalg.norm(g)
        expected = max(0.0, 1 - tau * w / norm) * g
        np.testing.assert_allclose(out[:, j], expected, rtol=1e-12, atol=1e-14)


def test_group_lasso_prox_zeroes_small_groups_exactly(rng):
    reg = REGULARIZERS["group_lasso"]
    y = rng.standard_normal((6, 8))
    y[:, :3] *= 1e-3
    out = reg.prox(torch.tensor(y, dtype=torch.float32), 0.5)
    assert torch.all(out[:, :3] == 0.0)
    assert torch.all(out[:, 3:].abs().amax(0) > 0)


def test_group_lasso_prox_of_a_list_in_place(rng):
    """prox_ over a list (the foreach path): the closed form per group, exact zeros, τ = 0 the identity, and bit
    for bit what prox gives tensor by tensor."""
    reg = REGULARIZERS["group_lasso"]
    shapes = [(6, 4, 3, 3), (5, 7), (3, 2, 5), (8, 16, 1, 1)]
    ys = [torch.tensor(rng.standard_normal(s), dtype=torch.float32) for s in shapes]
    ys[0][:, :2] *= 1e-3  # groups below the threshold
    taus = [0.3, 0.0, 1.5, 0.05]
    before = [y.clone() for y in ys]
    reg.prox_(ys, taus)
    for y, y0, tau in zip(ys, before, taus):
        assert torch.equal(y, reg.prox(y0, tau))
        w = np.sqrt(y0.numel() / y0.shape[1])
        for j in range(y0.shape[1]):
            g = y0[:, j].double().numpy()
            expected = max(0.0, 1 - tau * w / np.linalg.norm(g)) * g
            np.testing.assert_allclose(y[:, j].double().numpy(), expected, rtol=2e-6, atol=1e-7)
    assert torch.equal(ys[1], before[1])
    assert torch.all(ys[0][:, :2] == 0) and torch.all(ys[0][:, 2:].abs().amax(0) > 0)


def test_l1_prox_of_a_list_in_place(rng):
    reg = REGULARIZERS["l1"]
    ys = [torch.tensor(rng.standard_normal(s)) for s in [(4, 5), (3,)]]
    before = [y.clone() for y in ys]
    reg.prox_(ys, [0.5, 0.1])
    for y, y0, tau in zip(ys, before, [0.5, 0.1]):
        np.testing.assert_array_equal(
            y.numpy(), np.sign(y0.numpy()) * np.maximum(np.abs(y0.numpy()) - tau, 0)
        )


@pytest.mark.parametrize("name", ["group_lasso", "l1", "nuclear"])
def test_convex_prox_matches_cvxpy(rng, name):
    reg = REGULARIZERS[name]
    y = rng.standard_normal((6, 5))
    tau = 0.6
    z = cp.Variable((6, 5))
    if name == "group_lasso":
        psi = np.sqrt(6) * cp.sum(cp.norm(z, 2, axis=0))
    elif name == "l1":
        psi = cp.sum(cp.abs(z))
    else:
        psi = cp.normNuc(z)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(z - y) + tau * psi)).solve(solver=cp.CLARABEL)
    out = reg.prox(torch.tensor(y), tau).numpy()
    np.testing.assert_allclose(out, z.value, atol=2e-6)
    np.testing.assert_allclose(float(reg.value(torch.tensor(out))), psi.value, rtol=1e-5)


def test_l1_prox_soft_threshold(rng):
    y = rng.standard_normal(50)
    out = REGULARIZERS["l1"].prox(torch.tensor(y), 0.4).numpy()
    np.testing.assert_array_equal(out, np.sign(y) * np.maximum(np.abs(y) - 0.4, 0))


def test_binary_prox_brute_force(rng):
    """Per entry, minimise ½(z − y)² + τ·||z| − 1| over a dense grid."""
    reg = REGULARIZERS["binary"]
    y = rng.uniform(-2.5, 2.5, size=40)
    tau = 0.3
    out = reg.prox(torch.tensor(y), tau).numpy()
    grid = np.linspace(-4, 4, 800001)
    for yi, oi in zip(y, out):
        obj = 0.5 * (grid - yi) ** 2 + tau * np.abs(np.abs(grid) - 1)
        assert abs(grid[np.argmin(obj)] - oi) < 2e-5
    sticky = reg.prox(torch.tensor([0.9, -1.2, 1.1]), 0.25)
    assert torch.equal(sticky, torch.tensor([1.0, -1.0, 1.0]))


def test_nuclear_prox_soft_thresholds_singular_values(rng):
    y = rng.standard_normal((7, 4, 3))
    out = REGULARIZERS["nuclear"].prox(torch.tensor(y), 1.0).numpy().reshape(7, 12)
    s_in = np.linalg.svd(y.reshape(7, 12), compute_uv=False)
    s_out = np.linalg.svd(out, compute_uv=False)
    np.testing.assert_allclose(np.sort(s_out)[::-1], np.maximum(s_in - 1.0, 0), atol=1e-10)


def test_min_norm_subgradient_group_lasso(rng):
    reg = REGULARIZERS["group_lasso"]
    z = rng.standard_normal((3, 4))
    z[:, 1] = 0
    r = rng.standard_normal((3, 4))
    t = 0.5
    w = np.sqrt(3)
    expected = 0.0
    for j in range(4):
        if j == 1:
            expected += max(0.0, np.linalg.norm(r[:, j]) - t * w) ** 2
        else:
            expected += np.sum((r[:, j] + t * w * z[:, j] / np.linalg.norm(z[:, j])) ** 2)
    got = float(reg.subgrad_norm_sq(torch.tensor(z), torch.tensor(r), t))
    assert got == pytest.approx(expected, rel=1e-12)


def test_shape_and_name_errors():
    with pytest.raises(ValueError, match="group_lasso"):
        REGULARIZERS["group_lasso"].check(torch.zeros(5))
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        get_regularizer("l3")
    assert get_regularizer("none") is None


@pytest.mark.parametrize("lam", [-0.1, float("nan"), float("inf")])
def test_lam_is_refused_alike_everywhere(lam: float):
    """λ is checked in one place (``check_lam``): the optimizers and ``param_groups`` refuse the same values."""
    from ramda import RAMDA, param_groups

    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"lam \(λ\) must be a finite number >= 0"):
        param_groups(model, lam)
    with pytest.raises(ValueError, match=r"lam \(λ\) must be a finite number >= 0"):
        RAMDA(model.parameters(), lam=lam)
