"""Optimizer and schedules from the run config."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR

from ramda.config import OPTIMIZERS
from ramda.optim.schedules import MomentumSchedule, StageWiseLR
from ramda.structure import param_groups


def build_optimizer(cfg: DictConfig, model: nn.Module) -> Optimizer:
    """The registry's class for ``optimizer.name`` (:data:`ramda.config.OPTIMIZERS`: only those can be built)
    with the config's other keys, over :func:`ramda.structure.param_groups` of ``model``: the regularised
    tensors get λ = ``regularizer.lam`` × ``regularizer.scale`` and ``regularizer.name``, the rest λ = 0."""
    kwargs: dict[str, Any] = OmegaConf.to_container(cfg.optimizer, resolve=True)  # type: ignore[assignment]
    spec = OPTIMIZERS[kwargs.pop("name")]
    reg = cfg.regularizer.name
    lam = 0.0 if reg == "none" else float(cfg.regularizer.lam) * float(cfg.regularizer.scale)
    return spec.cls(param_groups(model, lam, None if reg == "none" else reg), **kwargs)


def momentum_start_epoch(trainer: DictConfig) -> int:
    """The first tick of the momentum schedule: ``trainer.momentum_start_epoch`` if set, else the released rule, the
    last milestone − 1 (0 without milestones)."""
    if trainer.momentum_start_epoch is not None:
        return int(trainer.momentum_start_epoch)
    return int(trainer.milestones[-1]) - 1 if trainer.milestones else 0


def build_schedules(
    cfg: DictConfig, optimizer: Optimizer, total_steps: int
) -> tuple[StageWiseLR | CosineAnnealingLR, MomentumSchedule | None]:
    """The lr schedule of ``trainer.lr_schedule`` — stage-wise, or cosine annealing to 0 over ``total_steps``
    optimizer steps — and, with the stage-wise one, the momentum schedule for RMDA/RAMDA when enabled."""
    tr = cfg.trainer
    if tr.lr_schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0.0), None
    lr = StageWiseLR(optimizer, list(tr.milestones), tr.gamma)
    momentum = None
    if OPTIMIZERS[cfg.optimizer.name].dual_averaging and tr.momentum_schedule:
        momentum = MomentumSchedule(optimizer, start_epoch=momentum_start_epoch(tr))
    return lr, momentum
