"""Structured configs: the schema Hydra checks every run against before any work starts.

Config groups mirror the code: ``optimizer=<name>`` is one dataclass below whose ``_target_`` is the optimizer
class, ``regularizer=<name>`` picks the regularizer of :mod:`ramda.regularizers`, ``task=<name>`` is the
``Config`` dataclass of ``ramda.tasks.<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class OptimizerConfig:
    """Fields shared by every optimizer config; ``name`` is what tables and run directories show."""

    _target_: str = MISSING
    name: str = MISSING
    lr: float = MISSING


@dataclass
class RAMDAConfig(OptimizerConfig):
    _target_: str = "ramda.optim.RAMDA"
    name: str = "ramda"
    lr: float = 1e-2
    momentum: float = 1e-2
    eps: float = 1e-6
    stop: str | None = None
    max_iters: int = 100
    rtol: float = 1e-8
    tol: float = 1e-6


@dataclass
class RMDAConfig(OptimizerConfig):
    _target_: str = "ramda.optim.RMDA"
    name: str = "rmda"
    lr: float = 1.0
    momentum: float = 0.1


@dataclass
class ProxSGDConfig(OptimizerConfig):
    _target_: str = "ramda.optim.ProxSGD"
    name: str = "proxsgd"
    lr: float = 0.1
    momentum: float = 0.1


@dataclass
class ProxGenConfig(OptimizerConfig):
    _target_: str = "ramda.optim.ProxGen"
    name: str = "proxgen"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    stop: str | None = None
    max_iters: int = 100
    rtol: float = 1e-8
    tol: float = 1e-6


@dataclass
class MSGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    name: str = "msgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    name: str = "adamw"
    weight_decay: float = 1e-2


OPTIMIZERS: dict[str, type[OptimizerConfig]] = {
    "ramda": RAMDAConfig,
    "rmda": RMDAConfig,
    "proxsgd": ProxSGDConfig,
    "proxgen": ProxGenConfig,
    "msgd": MSGDConfig,
    "adam": AdamConfig,
    "adamw": AdamWConfig,
}


@dataclass
class RegularizerConfig:
    """``name`` is a key of ``ramda.regularizers.REGULARIZERS`` or ``none``; ``lam`` is λ."""

    name: str = "group_lasso"
    lam: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    momentum_schedule: bool = True
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    checkpoint_every_steps: int = 0
    log_every_steps: int = 50
    progress: str = "auto"


@dataclass
class LoggerConfig:
    name: str = "local"
    project: str = "ramda"
    entity: str | None = None
    mode: str = "auto"
    tags: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """The root config. ``table`` groups runs for ``make tables``; ``resume`` is auto|never|<checkpoint>."""

    defaults: list[Any] = field(
        default_factory=lambda: [
            "_self_",
            {"task": "digits"},
            {"optimizer": "ramda"},
            {"regularizer": "group_lasso"},
            {"logger": "local"},
        ]
    )
    task: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 1
    resume: str = "auto"
    table: str = "adhoc"
