"""Optimizer and schedules from the run config."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

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
    """``trainer.momentum_start_epoch`` if set, else the last milestone (0 without milestones)."""
    if trainer.momentum_start_epoch is not None:
        return int(trainer.momentum_start_epoch)
    return int(trainer.milestones[-1]) if trainer.milestones else 0


def build_schedules(cfg: DictConfig, optimizer: Optimizer) -> tuple[StageWiseLR, MomentumSchedule | None]:
    """The stage-wise lr for every optimizer; the momentum schedule for the dual-averaging ones (RMDA, RAMDA)
    when enabled."""
    lr = StageWiseLR(optimizer, list(cfg.trainer.milestones), cfg.trainer.gamma)
    momentum = None
    if OPTIMIZERS[cfg.optimizer.name].dual_averaging and cfg.trainer.momentum_schedule:
        momentum = MomentumSchedule(optimizer, momentum_start_epoch(cfg.trainer))
    return lr, momentum
