"""Optimizer and schedules from the run config."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR

from ramda.optim.schedules import MomentumSchedule, StageWiseLR
from ramda.structure import param_groups

DUAL_AVERAGING = ("rmda", "ramda")


def build_optimizer(cfg: DictConfig, model: nn.Module) -> Optimizer:
    """``instantiate(cfg.optimizer)`` (less ``name``) over :func:`ramda.structure.param_groups` of ``model``:
    the regularised tensors get λ = ``regularizer.lam`` and ``regularizer.name``, the rest λ = 0."""
    opt_cfg: dict[str, Any] = OmegaConf.to_container(cfg.optimizer, resolve=True)  # type: ignore[assignment]
    opt_cfg.pop("name")
    reg = cfg.regularizer.name
    lam = 0.0 if reg == "none" else float(cfg.regularizer.lam)
    groups = param_groups(model, lam, None if reg == "none" else reg)
    return instantiate(opt_cfg, params=groups, _convert_="all")


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
    if cfg.optimizer.name in DUAL_AVERAGING and tr.momentum_schedule:
        momentum = MomentumSchedule(optimizer, tr.milestones, tr.momentum_start)
    return lr, momentum
