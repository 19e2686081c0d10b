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
    fused: bool | None = None


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
    weight_decay: float = 0.0
    stop: str | None = None
    max_iters: int = 100
    rtol: float = 1e-8
    tol: float = 1e-6
    fused: bool | None = None


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


REGULARIZERS: tuple[str, ...] = ("group_lasso", "l1", "nuclear", "binary", "none")


@dataclass
class TrainerConfig:
    """The training loop, counted in ``epochs``, or in optimizer steps when ``max_steps`` > 0 (the epochs then
    run on until that step). The schedule counts *ticks*: epochs (0-based), or with ``max_steps`` the number of
    steps taken (1, 2, …), as the authors' scripts pass them to their scheduler.
    ``lr_schedule``: ``stagewise`` — after tick t with t + 1 in ``milestones`` (epoch or step counts),
    lr ← ``gamma``·lr and RMDA/RAMDA restart, and their momentum c ← min(c₀√j, 1) rises at every step from tick
    ``momentum_start`` on (None: the authors' rule, the last milestone − 1: the epoch before the last restart;
    0 without milestones); or ``cosine`` — torch's ``CosineAnnealingLR`` from lr to 0 over the run's steps,
    stepped after every optimizer step (no milestones, no momentum schedule).
    ``eval_every_steps`` > 0 evaluates, writes a metrics row and a checkpoint every that many steps (and at
    the last step); epochs still end with a row unless ``max_steps`` is set. Evaluation always runs in full
    precision. ``checkpoint_every_steps`` > 0 also saves mid-epoch (always at epoch ends).
    ``device``: auto|cpu|cuda|cuda:N; ``threads`` > 0 sets torch's CPU threads (0: torch's default);
    ``precision``: fp32|bf16|fp16; ``progress``: auto|bar|lines|none.
    Distributed (torchrun/srun): ``sync_batchnorm`` normalises over the global batch (CUDA only);
    ``dump_replicas`` (a debugging aid) makes every rank write its model and optimizer state to
    ``replica_rank<r>.pt`` in the run directory at the end, to check that the replicas are identical.
    """

    epochs: int = 10
    max_steps: int = 0
    eval_every_steps: int = 0
    lr_schedule: str = "stagewise"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    momentum_schedule: bool = True
    momentum_start: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    threads: int = 0
    compile: bool = False
    channels_last: bool = False
    checkpoint_every_steps: int = 0
    log_every_steps: int = 50
    progress: str = "auto"
    sync_batchnorm: bool = False
    dump_replicas: bool = False


@dataclass
class LoggerConfig:
    """``local`` writes only the run directory; ``wandb`` also logs to Weights & Biases (``mode`` auto:
    online when an API key is configured, else offline; or online|offline|disabled)."""

    name: str = "local"
    project: str = "ramda"
    entity: str | None = None
    mode: str = "auto"
    tags: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """The root config. ``table`` groups runs for ``make tables``; ``resume`` is auto|never|<checkpoint>.

    Defaults: the groups, then the root's own values (``_self_``), then the (task, optimizer) preset with the
    paper's settings when one exists, then an optional experiment (a whole table: task, grid, ``table``).
    Command-line overrides win over all of them.
    """

    defaults: list[Any] = field(
        default_factory=lambda: [
            {"task": "digits"},
            {"optimizer": "ramda"},
            {"regularizer": "group_lasso"},
            {"logger": "local"},
            {"trainer": "default"},
            "runtime",
            "_self_",
            {"optional preset": "${task}/${optimizer}"},
            {"experiment": None},
        ]
    )
    task: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    regularizer: RegularizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 1
    resume: str = "auto"
    table: str = "adhoc"


UNAVAILABLE_TASKS: dict[str, str] = {}
"""Tasks of ``ramda.tasks.TASKS`` whose module could not be imported here, with the reason."""


def register_configs() -> list[str]:
    """Store the schema in Hydra's ConfigStore: the root ``train``, every optimizer, regularizer, logger,
    the ``trainer`` default and every task whose module imports on this install (the others are recorded in
    ``UNAVAILABLE_TASKS``). Returns the registered task names."""
    import importlib

    from hydra.core.config_store import ConfigStore

    from ramda.tasks import TASKS

    cs = ConfigStore.instance()
    cs.store(name="train", node=RunConfig)
    for name, opt in OPTIMIZERS.items():
        cs.store(group="optimizer", name=name, node=opt)
    for name in REGULARIZERS:
        cs.store(group="regularizer", name=name, node=RegularizerConfig(name=name))
    cs.store(group="logger", name="local", node=LoggerConfig(name="local"))
    cs.store(group="logger", name="wandb", node=LoggerConfig(name="wandb"))
    cs.store(group="trainer", name="default", node=TrainerConfig)
    tasks = []
    for name, module in TASKS.items():
        try:
            task_cfg = importlib.import_module(module).Config
        except ModuleNotFoundError as err:  # the task module or one of its optional dependencies is absent
            UNAVAILABLE_TASKS[name] = str(err)
            continue
        cs.store(group="task", name=name, node=task_cfg)
        tasks.append(name)
    return tasks
