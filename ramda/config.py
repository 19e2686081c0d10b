"""Structured configs: the schema Hydra checks every run against before any work starts, and the optimizer
registry.

Config groups mirror the code: ``optimizer=<name>`` is the entry ``OPTIMIZERS[name]``: the optimizer class, its
config dataclass below and what it can do; ``regularizer=<name>`` picks the regularizer of
:mod:`ramda.regularizers`, ``task=<name>`` is the ``Config`` dataclass of ``ramda.tasks.<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from omegaconf import MISSING
from torch.optim import Optimizer

from ramda.optim import RAMDA, RMDA, ProxGen, ProxSGD, RegularizedOptimizer
from ramda.regularizers import REGULARIZERS as REGULARIZER_CLASSES


@dataclass
class OptimizerConfig:
    """Fields shared by every optimizer config; ``name`` is its key in :data:`OPTIMIZERS`, which is also what
    tables and run directories show."""

    name: str = MISSING
    lr: float = MISSING


@dataclass
class RAMDAConfig(OptimizerConfig):
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
    name: str = "rmda"
    lr: float = 1.0
    momentum: float = 0.1


@dataclass
class ProxSGDConfig(OptimizerConfig):
    name: str = "proxsgd"
    lr: float = 0.1
    momentum: float = 0.1


@dataclass
class ProxGenConfig(OptimizerConfig):
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
    name: str = "msgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 1e-2


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer the runner can build: ``optimizer=<name>`` trains with ``cls(param_groups, **config)``
    (``config`` the dataclass of the ``optimizer`` group, less ``name``); tables print it as ``display``.

    Its capabilities, read by validation, building, the schedules and the trainer, come from the class itself:
    ``regularized`` (takes λ and a regulariser per param group: a :class:`ramda.optim.RegularizedOptimizer`),
    ``dual_averaging`` (overrides ``restart()``: a milestone restarts it and the momentum schedule
    c ← min(c₀√j, 1) applies), ``solver`` (``uses_solver``: solves its subproblem with :mod:`ramda.solver`, keys
    ``stop``, ``max_iters``, ``rtol``, ``tol``; reports ``solver_iterations()``) and ``fused`` (lists fused
    kernels). ``momentum`` says what the ``momentum`` key means: ``"average"`` for the weight c ∈ (0, 1] of
    W ← (1 − c)·W + c·W̃, ``"heavy_ball"`` for SGD's β ∈ [0, 1), ``""`` where there is no such key.
    """

    name: str
    cls: type[Optimizer]
    config: type[OptimizerConfig]
    display: str
    momentum: str = ""

    @property
    def regularized(self) -> bool:
        return issubclass(self.cls, RegularizedOptimizer)

    @property
    def dual_averaging(self) -> bool:
        return self.regularized and self.cls.restart is not RegularizedOptimizer.restart

    @property
    def solver(self) -> bool:
        return self.regularized and self.cls.uses_solver

    @property
    def fused(self) -> bool:
        return self.regularized and bool(self.cls.fused_kernels)


MOMENTUM_MEANINGS = ("", "average", "heavy_ball")
SOLVER_KEYS = ("stop", "max_iters", "rtol", "tol")

OPTIMIZERS: dict[str, OptimizerSpec] = {}
"""The registry, in the tables' row order: the structured-sparsity methods, then the plain baselines."""


def register_optimizer(spec: OptimizerSpec) -> OptimizerSpec:
    """Add ``spec`` to :data:`OPTIMIZERS` (and to Hydra's ``optimizer`` group once :func:`register_configs`
    runs); ``ValueError`` when its config lacks a key its capabilities need or the name is taken."""
    keys = {f.name for f in fields(spec.config)}
    needed = {"name", "lr"} | ({"momentum"} if spec.momentum else set())
    needed |= set(SOLVER_KEYS) if spec.solver else set()
    problems = [f"config {spec.config.__name__} lacks '{k}'" for k in sorted(needed - keys)]
    if spec.momentum not in MOMENTUM_MEANINGS:
        problems.append(f"momentum must be one of {MOMENTUM_MEANINGS}, got '{spec.momentum}'")
    if spec.config().name != spec.name:
        problems.append(f"config {spec.config.__name__} has name '{spec.config().name}'")
    if spec.name in OPTIMIZERS and OPTIMIZERS[spec.name] != spec:
        problems.append("the name is already registered")
    if problems:
        raise ValueError(f"optimizer '{spec.name}': " + "; ".join(problems))
    OPTIMIZERS[spec.name] = spec
    return spec


register_optimizer(OptimizerSpec("ramda", RAMDA, RAMDAConfig, "RAMDA", momentum="average"))
register_optimizer(OptimizerSpec("rmda", RMDA, RMDAConfig, "RMDA", momentum="average"))
register_optimizer(OptimizerSpec("proxsgd", ProxSGD, ProxSGDConfig, "ProxSGD", momentum="average"))
register_optimizer(OptimizerSpec("proxgen", ProxGen, ProxGenConfig, "ProxGen"))
register_optimizer(OptimizerSpec("msgd", torch.optim.SGD, MSGDConfig, "MSGD", momentum="heavy_ball"))
register_optimizer(OptimizerSpec("adam", torch.optim.Adam, AdamConfig, "Adam"))
register_optimizer(OptimizerSpec("adamw", torch.optim.AdamW, AdamWConfig, "AdamW"))


@dataclass
class RegularizerConfig:
    """``name`` is a key of ``ramda.regularizers.REGULARIZERS`` or ``none``; ``lam`` is λ."""

    name: str = "group_lasso"
    lam: float = 0.0


REGULARIZERS: tuple[str, ...] = (*REGULARIZER_CLASSES, "none")


@dataclass
class TrainerConfig:
    """The training loop. ``milestones`` are epochs where lr ← ``gamma``·lr (and RMDA/RAMDA restart);
    the momentum schedule c ← min(c₀√j, 1) starts at ``momentum_start_epoch`` (None: the last milestone, or
    epoch 0 without milestones). ``checkpoint_every_steps`` > 0 also saves mid-epoch (always at epoch ends).
    ``device``: auto|cpu|cuda|cuda:N; ``threads`` > 0 sets torch's CPU threads (0: torch's default);
    ``precision``: fp32|bf16|fp16; ``progress``: auto|bar|lines|none.
    Distributed (torchrun/srun): ``sync_batchnorm`` normalises over the global batch (CUDA only);
    ``dump_replicas`` (a debugging aid) makes every rank write its model and optimizer state to
    ``replica_rank<r>.pt`` in the run directory at the end, to check that the replicas are identical.
    """

    epochs: int = 10
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    momentum_schedule: bool = True
    momentum_start_epoch: int | None = None
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
    for name, spec in OPTIMIZERS.items():
        cs.store(group="optimizer", name=name, node=spec.config)
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
