"""The subproblem solver against an independent convex solver (cvxpy) on random instances."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from ramda.regularizers import REGULARIZERS
from ramda.solver import solve, subproblem_objective


def make_instance(seed: int, cond: float, shape=(6, 10, 2), zero_frac=0.4):
    """Random (W⁰, V, P, t) with P spread over [1, cond] and roughly ``zero_frac`` zero groups."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    v = rng.standard_normal(shape)
    p = np.exp(rng.uniform(0, np.log(cond), size=shape))
    b = p * w0 - v
    norms = np.sqrt((b**2).sum(axis=(0, 2)))
    w = np.sqrt(shape[0] * shape[2])
    t = float(np.quantile(norms, zero_frac)) / w * 1.0001
    return w0, v, p, t


def cvxpy_solution(w0, v, p, t):
    out, inn, k = w0.shape
    m = lambda a: a.transpose(1, 0, 2).reshape(inn, out * k)  # noqa: E731 - one row per input group
    z = cp.Variable((inn, out * k))
    w = np.sqrt(out * k)
    obj = (
        cp.sum(cp.multiply(m(v), z - m(w0)))
        + 0.5 * cp.sum(cp.multiply(m(p), cp.square(z - m(w0))))
        + t * w * cp.sum(cp.norm(z, 2, axis=1))
    )
    cp.Problem(cp.Minimize(obj)).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
    )
    zv = z.value.reshape(inn, out, k).transpose(1, 0, 2)
    zero = np.linalg.norm(z.value, axis=1) < 1e-7 * np.abs(z.value).max()
    return zv, float(obj.value), zero


def objective(z, w0, v, p, t):
    reg = REGULARIZERS["group_lasso"]
    return float(subproblem_objective(reg, *map(torch.tensor, (z, w0, v, p)), t))


@pytest.mark.parametrize("cond", [1.0, 10.0, 1e4])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_matches_cvxpy(seed, cond):
    w0, v, p, t = make_instance(seed, cond)
    z_ref, _, zero_ref = cvxpy_solution(w0, v, p, t)
    z, _ = solve(REGULARIZERS["group_lasso"], *map(torch.tensor, (w0, w0, v, p)), t, stop="exact")
    z = z.numpy()
    ours, ref = objective(z, w0, v, p, t), objective(z_ref, w0, v, p, t)
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    assert ours <= ref + 1e-9 * abs(ref)
    zero = np.abs(z).max(axis=(0, 2)) == 0.0
    np.testing.assert_array_equal(zero, zero_ref)
    assert 0 < zero.sum() < zero.size


@pytest.mark.parametrize("cond", [1.0, 1e3])
def test_subgradient_mode_matches_cvxpy_and_certifies_tol(cond):
    w0, v, p, t = make_instance(7, cond)
    z_ref, _, zero_ref = cvxpy_solution(w0, v, p, t)
    tol = 1e-9
    reg = REGULARIZERS["group_lasso"]
    start = np.random.default_rng(3).standard_normal(w0.shape)
    z, iters = solve(
        reg, *map(torch.tensor, (start, w0, v, p)), t, stop="subgradient", tol=tol, max_iters=200000
    )
    z = z.numpy()
    assert iters < 200000
    ours, ref = objective(z, w0, v, p, t), objective(z_ref, w0, v, p, t)
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    np.testing.assert_array_equal(np.abs(z).max(axis=(0, 2)) == 0.0, zero_ref)
    # independent min-norm subgradient of Q at z, group by group
    r = v + p * (z - w0)
    w = np.sqrt(w0.shape[0] * w0.shape[2])
    sq = 0.0
    for j in range(w0.shape[1]):
        zg, rg = z[:, j], r[:, j]
        nz = np.linalg.norm(zg)
        sq += np.sum((rg + t * w * zg / nz) ** 2) if nz > 0 else max(0.0, np.linalg.norm(rg) - t * w) ** 2
    assert np.sqrt(sq) <= tol


def test_objective_rule_stops_early_when_badly_conditioned():
    """The authors' relative-decrease rule is cheap but inexact for badly conditioned P (docs/benchmarks.md#how-inexact-is-the-authors-stopping-rule)."""
    w0, v, p, t = make_instance(3, 1e4)
    reg = REGULARIZERS["group_lasso"]
    args = [torch.tensor(a) for a in (w0, w0, v, p)]
    z_obj, iters = solve(reg, *args, t, stop="objective")
    z_ex, _ = solve(reg, *args, t, stop="exact")
    gap = (objective(z_obj.numpy(), w0, v, p, t) - objective(z_ex.numpy(), w0, v, p, t)) / abs(
        objective(z_ex.numpy(), w0, v, p, t)
    )
    assert gap > 0
    assert iters <= 100


def test_zero_groups_are_exact_zeros_in_float32():
    w0, v, p, t = make_instance(5, 100.0)
    reg = REGULARIZERS["group_lasso"]
    args = [torch.tensor(a, dtype=torch.float32) for a in (w0, w0, v, p)]
    for stop in ("exact", "objective", "subgradient"):
        z, _ = solve(reg, *args, t, stop=stop)
        groups = z.abs().amax(dim=(0, 2))
        assert (groups == 0).sum() > 0
        assert torch.all((groups == 0) | (groups > 1e-6))


@pytest.mark.parametrize("name", ["l1", "binary"])
def test_separable_exact_matches_brute_force(name):
    rng = np.random.default_rng(11)
    w0, v = rng.standard_normal(30), rng.standard_normal(30)
    p, t = np.exp(rng.uniform(0, 3, 30)), 0.8
    reg = REGULARIZERS[name]
    z, _ = solve(reg, *map(torch.tensor, (w0, w0, v, p)), t, stop="exact")
    grid = np.linspace(-6, 6, 600001)
    pen = np.abs(grid) if name == "l1" else np.abs(np.abs(grid) - 1)
    for i in range(30):
        q = v[i] * grid + 0.5 * p[i] * (grid - w0[i]) ** 2 + t * pen
        assert abs(grid[np.argmin(q)] - float(z[i])) < 5e-5


def test_nuclear_objective_and_subgradient_modes_match_cvxpy():
    rng = np.random.default_rng(2)
    w0, v = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    p, t = np.exp(rng.uniform(0, 1, (5, 4))), 1.5
    z = cp.Variable((5, 4))
    obj = cp.sum(cp.multiply(v, z - w0)) + 0.5 * cp.sum(cp.multiply(p, cp.square(z - w0))) + t * cp.normNuc(z)
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL)
    reg = REGULARIZERS["nuclear"]
    args = [torch.tensor(a) for a in (w0, w0, v, p)]
    ref = float(obj.value)
    zs, _ = solve(reg, *args, t, stop="subgradient", tol=1e-8, max_iters=5000)
    got = float(subproblem_objective(reg, zs, *args[1:], t))
    assert abs(got - ref) <= 1e-6 * abs(ref)
    zo, _ = solve(reg, *args, t, stop="objective")
    assert float(subproblem_objective(reg, zo, *args[1:], t)) <= ref + 1e-3 * abs(ref)
    with pytest.raises(ValueError, match="no exact"):
        solve(reg, *args, t, stop="exact")


@pytest.mark.parametrize("stop", ["objective", "subgradient"])
def test_device_style_deferred_checks_give_the_same_iterate(stop):
    """The GPU path reads convergence only every 8 iterations and freezes the iterate where the rule fired: it
    must return what checking every iteration returns."""
    w0, v, p, t = make_instance(4, 50.0)
    reg = REGULARIZERS["group_lasso"]
    args = [torch.tensor(a) for a in (w0, w0, v, p)]
    z1, n1 = solve(reg, *args, t, stop=stop, tol=1e-7, check_every=1)
    z8, n8 = solve(reg, *args, t, stop=stop, tol=1e-7, check_every=8)
    assert torch.equal(z1, z8)
    assert int(n8) == n1


def test_fixed_newton_steps_without_checks_converge():
    """The GPU path of the exact solver runs newton.DEVICE_STEPS steps with no convergence read."""
    from ramda import newton

    for cond in (1.0, 1e2, 1e4):
        w0, v, p, t = make_instance(8, cond)
        reg = REGULARIZERS["group_lasso"]
        args = [torch.tensor(a, dtype=torch.float32) for a in (w0, v, p)]
        fixed, n = reg.solve_exact(*args, t, check_every=0, max_newton=newton.DEVICE_STEPS)
        checked, _ = reg.solve_exact(*args, t)
        assert n == newton.DEVICE_STEPS
        torch.testing.assert_close(fixed, checked, rtol=1e-5, atol=1e-7)
        assert torch.equal(fixed == 0, checked == 0)
