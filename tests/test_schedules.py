"""Schedule timing against a plain re-derivation of the authors' released scheduler (``Core/scheduler.py``),
driven as their training scripts drive it: per epoch (ImageNet, LJSpeech) and per step (Transformer-XL)."""

from __future__ import annotations

import pytest
from torch import nn

from ramda import RAMDA, MomentumSchedule, StageWiseLR, param_groups


class ReleasedRule:
    """The released class in words: a counter j = 1; ``momentum_step(t)``: if t + 1 ≥ the last milestone,
    j += 1 and c = min(c₀·√j, 1); ``step(t)``: if t + 1 is a milestone, lr *= γ and the dual averaging
    restarts. Records (lr, c, restarts) after every optimizer step."""

    def __init__(self, lr: float, c0: float, milestones: list[int], gamma: float):
        self.lr, self.c0, self.c, self.milestones, self.gamma = lr, c0, c0, milestones, gamma
        self.j, self.restarts = 1, 0

    def momentum_step(self, t: int) -> None:
        if t + 1 >= self.milestones[-1]:
            self.j += 1
            self.c = min(self.c0 * self.j**0.5, 1.0)

    def step(self, t: int) -> None:
        if t + 1 in self.milestones:
            self.lr *= self.gamma
            self.restarts += 1


def _ours(milestones: list[int], gamma: float):
    model = nn.Linear(3, 2)
    opt = RAMDA(param_groups(model, 1e-3), lr=1.0, momentum=0.01)
    restarts = []
    opt.restart = lambda eps_scale: restarts.append(eps_scale)  # count the restarts the schedule asks for
    return opt, StageWiseLR(opt, milestones, gamma), MomentumSchedule(opt, milestones), restarts


@pytest.mark.parametrize("milestones", [[2, 4], [1, 3, 5], [6]])
def test_epoch_ticks_match_the_released_scheduler(milestones):
    """ImageNet/LJSpeech loop: ``momentum_step(epoch)`` after every step, ``step(epoch)`` at the epoch end."""
    gamma, steps_per_epoch = 0.5, 3
    ref = ReleasedRule(1.0, 0.01, milestones, gamma)
    opt, lr_sched, mom, restarts = _ours(milestones, gamma)
    for epoch in range(milestones[-1] + 2):
        for _ in range(steps_per_epoch):
            ref.momentum_step(epoch)
            mom.step(epoch)
            group = opt.param_groups[0]
            assert (group["lr"], group["momentum"]) == pytest.approx((ref.lr, ref.c), rel=1e-15)
        ref.step(epoch)
        lr_sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(ref.lr, rel=1e-15)
        assert len(restarts) == ref.restarts
    # the counter starts during the epoch before the last restart: that epoch's steps plus two more epochs
    assert mom.count == 1 + 3 * steps_per_epoch


@pytest.mark.parametrize("milestones", [[4, 9], [3, 6, 12]])
def test_step_ticks_match_the_released_scheduler(milestones):
    """Transformer-XL loop: after each optimizer step ``train_step += 1``, then ``momentum_step(train_step)``
    and ``step(train_step)``; ours gets the same tick, the number of steps taken."""
    gamma = 0.1
    ref = ReleasedRule(1.0, 0.01, milestones, gamma)
    opt, lr_sched, mom, restarts = _ours(milestones, gamma)
    for train_step in range(1, milestones[-1] + 5):
        ref.momentum_step(train_step)
        ref.step(train_step)
        mom.step(train_step)
        lr_sched.step(train_step)
        group = opt.param_groups[0]
        assert (group["lr"], group["momentum"]) == pytest.approx((ref.lr, ref.c), rel=1e-15)
        assert len(restarts) == ref.restarts
    # a milestone m takes effect after step m - 1; the momentum rises from step m_last - 1 on
    assert mom.count == 1 + 6
    assert restarts == [gamma] * len(milestones)


def test_state_round_trip_and_explicit_start():
    model = nn.Linear(3, 2)
    opt = RAMDA(param_groups(model, 1e-3), lr=1.0, momentum=0.04)
    lr_sched, mom = StageWiseLR(opt, [2], 0.1), MomentumSchedule(opt, start_epoch=1)
    for tick in range(3):
        mom.step(tick)
        lr_sched.step()
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.04 * 3**0.5)
    lr2, mom2 = StageWiseLR(opt, [7]), MomentumSchedule(opt, start_epoch=0)
    lr2.load_state_dict(lr_sched.state_dict())
    mom2.load_state_dict(mom.state_dict())
    assert (lr2.state_dict(), mom2.state_dict()) == (lr_sched.state_dict(), mom.state_dict())
    with pytest.raises(ValueError, match="start_epoch"):
        MomentumSchedule(opt, start_epoch=-1)
    assert MomentumSchedule(opt).start == 0
