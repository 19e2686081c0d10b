"""Group layout by module type, sparsity metrics by hand, schedules, and structure identification on a convex
group-LASSO problem against scikit-learn's MultiTaskLasso."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import MultiTaskLasso
from torch import nn

from ramda import (
    RAMDA,
    RMDA,
    MomentumSchedule,
    StageWiseLR,
    param_groups,
    sparsity_report,
    weighted_group_sparsity,
)
from ramda.structure import structured_parameters


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.lstm = nn.LSTM(5, 6, num_layers=2)
        self.cell = nn.LSTMCell(6, 7)
        self.attn = nn.MultiheadAttention(8, 2)
        self.emb = nn.Embedding(10, 8)
        self.deconv = nn.ConvTranspose2d(4, 2, 3)
        self.head = nn.AdaptiveLogSoftmaxWithLoss(8, 20, cutoffs=[10])
        self.fc = nn.Linear(8, 3)


def test_layout_by_module_type():
    names = [n for n, _ in structured_parameters(Mixed())]
    assert names == [
        "conv.weight",
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1",
        "cell.weight_ih", "cell.weight_hh",
        "attn.in_proj_weight", "attn.out_proj.weight",
        "fc.weight",
    ]  # fmt: skip
    groups = param_groups(Mixed(), 1e-3)
    assert groups[0]["lam"] == 1e-3 and groups[1]["lam"] == 0.0
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(Mixed().parameters()))


def test_layout_on_torchvision_resnet():
    from torchvision.models import resnet18

    names = [n for n, _ in structured_parameters(resnet18())]
    assert len(names) == 21 and names[0] == "conv1.weight" and names[-1] == "fc.weight"


def test_sparsity_metrics_by_hand():
    model = nn.Sequential(nn.Conv2d(4, 2, 3, bias=False), nn.Flatten(), nn.Linear(6, 5))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[:, 1] = 0.0  # 1 of 4 groups of 18 entries
        model[2].weight.fill_(1.0)
        model[2].weight[:, :3] = 0.0  # 3 of 6 groups of 5 entries
        model[2].bias.zero_()
    report = sparsity_report(model)
    assert report["weighted_group_sparsity"] == pytest.approx((18 + 15) / (72 + 30))
    assert weighted_group_sparsity(model) == report["weighted_group_sparsity"]
    assert report["group_sparsity"] == pytest.approx(4 / 10)
    assert report["unstructured_sparsity"] == pytest.approx((18 + 15 + 5) / (72 + 30 + 5))


def test_stagewise_lr_restarts_and_momentum_schedule():
    model = nn.Linear(3, 2)
    opt = RAMDA(param_groups(model, 1e-3), lr=1.0, momentum=0.01, eps=1e-6)
    sched = StageWiseLR(opt, [2, 4], gamma=0.1)
    mom = MomentumSchedule(opt, start_epoch=4)
    lrs = []
    for epoch in range(6):
        model.weight.grad = torch.ones_like(model.weight)
        model.bias.grad = torch.ones_like(model.bias)
        opt.step()
        for _ in range(3):
            mom.step(epoch)
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.01])
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-8)
    assert opt.state[model.weight]["step"] == 2
    # epochs 4 and 5 (6 calls) after the last milestone: c = c0·√7
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.01 * 7**0.5)
    state = (sched.state_dict(), mom.state_dict())
    sched2, mom2 = StageWiseLR(opt, [1]), MomentumSchedule(opt, start_epoch=0)
    sched2.load_state_dict(state[0])
    mom2.load_state_dict(state[1])
    assert (sched2.state_dict(), mom2.state_dict()) == state


@pytest.mark.parametrize("cls", [RAMDA, RMDA])
def test_identifies_the_multitask_lasso_structure(cls):
    """Full-gradient group-LASSO least squares; RAMDA/RMDA stage-wise with restarts reach the zero groups of
    scikit-learn's MultiTaskLasso and its objective to 1e-3 relative."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, d, tasks, lam = 200, 20, 3, 0.08
    x = rng.standard_normal((n, d))
    w_true = np.zeros((tasks, d))
    w_true[:, :8] = rng.standard_normal((tasks, 8))
    y = x @ w_true.T + 0.5 * rng.standard_normal((n, tasks))
    ref = MultiTaskLasso(alpha=lam * np.sqrt(tasks), fit_intercept=False, tol=1e-12, max_iter=100000).fit(
        x, y
    )

    def objective(w):
        return 0.5 / n * np.sum((y - x @ w.T) ** 2) + lam * np.sqrt(tasks) * np.linalg.norm(w, axis=0).sum()

    torch.manual_seed(0)
    lin = nn.Linear(d, tasks, bias=False).double()
    opt = cls(param_groups(lin, lam), lr=0.1, momentum=0.1)
    milestones = [150, 300, 450, 600]
    sched, mom = StageWiseLR(opt, milestones, gamma=0.5), MomentumSchedule(opt, start_epoch=milestones[-1])
    xt, yt = torch.tensor(x), torch.tensor(y)
    for epoch in range(750):
        opt.zero_grad()
        (0.5 / n * ((yt - lin(xt)) ** 2).sum()).backward()
        opt.step()
        mom.step(epoch)
        sched.step()
    w = lin.weight.detach().numpy()
    np.testing.assert_array_equal(np.linalg.norm(w, axis=0) == 0, np.linalg.norm(ref.coef_, axis=0) == 0)
    assert (np.linalg.norm(ref.coef_, axis=0) == 0).sum() == 12
    assert abs(objective(w) - objective(ref.coef_)) <= 1e-3 * objective(ref.coef_)
