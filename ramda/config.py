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
    """The optimizer's name, as tables and run directories show it (set by the ``optimizer=`` choice)."""
    lr: float = MISSING
    """η, the learning rate (> 0)."""


@dataclass
class RAMDAConfig(OptimizerConfig):
    name: str = "ramda"
    lr: float = 1e-2
    momentum: float = 1e-2
    """c ∈ (0, 1]: W ← (1 − c)·W + c·W̃; raised to 1 by the momentum schedule."""
    eps: float = 1e-6
    """ε added to the cube root of the preconditioner (× ``trainer.gamma`` at every restart)."""
    stop: str | None = None
    """Subproblem stop rule: ``null`` (the fastest exact mode for the regularizer), ``exact``, ``objective`` (the
    authors' rule, used by the paper presets) or ``subgradient``."""
    max_iters: int = 100
    """At most this many solver iterations per tensor and step (``objective``, ``subgradient``)."""
    rtol: float = 1e-8
    """``objective`` rule: stop when the relative decrease of the subproblem objective is below this."""
    tol: float = 1e-6
    """``subgradient`` rule: stop when the minimum-norm subgradient has norm ≤ this."""
    fused: bool | None = None
    """Fused kernels for float32 group-LASSO tensors: ``null`` where numba / Triton is installed, ``true`` also
    fails when missing, ``false`` the plain-torch path."""


@dataclass
class RMDAConfig(OptimizerConfig):
    name: str = "rmda"
    lr: float = 1.0
    momentum: float = 0.1
    """c ∈ (0, 1]: W ← (1 − c)·W + c·W̃; raised to 1 by the momentum schedule."""
    fused: bool | None = None
    """Fused kernels, as for ``optimizer=ramda``."""


@dataclass
class ProxSGDConfig(OptimizerConfig):
    name: str = "proxsgd"
    lr: float = 0.1
    momentum: float = 0.1
    """c ∈ (0, 1]: m ← (1 − c)·m + c·g."""
    fused: bool | None = None
    """Fused kernels, as for ``optimizer=ramda``."""


@dataclass
class ProxGenConfig(OptimizerConfig):
    name: str = "proxgen"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's (β₁, β₂)."""
    eps: float = 1e-8
    """ε added to the root of the second moment."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay, applied before the proximal step."""
    stop: str | None = None
    """Subproblem stop rule, as for ``optimizer=ramda``."""
    max_iters: int = 100
    """At most this many solver iterations per tensor and step."""
    rtol: float = 1e-8
    """``objective`` rule: relative-decrease threshold."""
    tol: float = 1e-6
    """``subgradient`` rule: subgradient-norm threshold."""
    fused: bool | None = None
    """Fused kernels, as for ``optimizer=ramda``."""


@dataclass
class MSGDConfig(OptimizerConfig):
    name: str = "msgd"
    lr: float = 0.1
    momentum: float = 0.9
    """Heavy-ball momentum ∈ [0, 1)."""
    weight_decay: float = 1e-4
    """L2 weight decay added to the gradient."""


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's (β₁, β₂)."""
    weight_decay: float = 0.0
    """L2 weight decay added to the gradient (Adam) or decoupled (AdamW)."""


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
    needed |= {"fused"} if spec.fused else set()
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
    """The regulariser ψ (a key of ``ramda.regularizers.REGULARIZERS`` or ``none``) and its weight λ."""

    name: str = "group_lasso"
    """ψ: ``group_lasso`` (input-wise groups), ``l1``, ``nuclear``, ``binary`` or ``none`` (set by the
    ``regularizer=`` choice)."""
    lam: float = 0.0
    """λ ≥ 0; must be 0 for msgd/adam/adamw and with ``regularizer=none``."""
    scale: float = 1.0
    """≥ 0; the λ used is ``lam`` × ``scale`` (sweeps λ around a preset's value, e.g.
    ``regularizer.scale=0.25,0.5,1,2,4`` in the ``<table>_frontier`` experiments)."""


REGULARIZERS: tuple[str, ...] = (*REGULARIZER_CLASSES, "none")


@dataclass
class TrainerConfig:
    """The training loop: epochs or steps, the lr schedule and RMDA/RAMDA's momentum schedule
    (docs/math.md#schedules), precision, device, checkpoints, progress and distributed options. The schedules
    count *ticks*: epochs (0-based), or with ``max_steps`` the number of steps taken (1, 2, …), as the authors'
    scripts pass them to their scheduler."""

    epochs: int = 10
    """Number of epochs (ignored when ``max_steps`` > 0)."""
    milestones: list[int] = field(default_factory=list)
    """Ticks m (epochs, or steps with ``max_steps``): after tick m − 1, lr ← ``gamma``·lr, as the released
    scheduler; for RMDA/RAMDA also a dual-averaging restart. Each must fall within the run: shortening a
    preset's run needs ``trainer.milestones=[]`` or earlier ones."""
    gamma: float = 0.1
    """The stage-wise decay factor."""
    momentum_schedule: bool = True
    """RMDA/RAMDA with ``stagewise``: from tick ``momentum_start_epoch`` on, c ← min(c₀√j, 1) at every step, j
    counted from 1 and never reset; the weights become exactly group-sparse only once c reaches 1."""
    momentum_start_epoch: int | None = None
    """The first tick of the momentum schedule (within the run); ``null``: the released rule, the last
    milestone − 1 (the epoch before the last restart; 0 without milestones)."""
    max_steps: int = 0
    """> 0: train for that many optimizer steps (the epochs run on until then); ``milestones`` are then step
    counts and the schedules tick per step."""
    eval_every_steps: int = 0
    """> 0: evaluate, write a metrics row and a checkpoint every N steps (and at the last step of a
    ``max_steps`` run); epochs still end with a row unless ``max_steps`` is set."""
    lr_schedule: str = "stagewise"
    """``stagewise`` (``milestones``, RMDA/RAMDA restarts and momentum schedule) or ``cosine`` (torch's
    ``CosineAnnealingLR`` from lr to 0 over the run's steps, stepped after every step; no milestones)."""
    precision: str = "fp32"
    """``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast and gradient scaling); evaluation always runs in
    full precision."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    compile: bool = False
    """``torch.compile`` the model."""
    channels_last: bool = False
    """Channels-last memory format (CUDA only)."""
    checkpoint_every_steps: int = 0
    """Also checkpoint every N optimizer steps (always at the end of each epoch; 0: only then)."""
    log_every_steps: int = 50
    """A progress line every N steps when not on a terminal (0: none)."""
    progress: str = "auto"
    """``auto`` (bars on a terminal, lines otherwise), ``bar``, ``lines`` or ``none``."""
    sync_batchnorm: bool = False
    """BatchNorm over the global batch under DDP (``SyncBatchNorm``, CUDA only)."""
    dump_replicas: bool = False
    """Debugging aid: every rank writes ``replica_rank<r>.pt`` (its parameters and optimizer state) at the end."""
    export: bool = False
    """At the end of a completed run, write the smaller dense model (every channel that all its readers ignore
    removed; the same function) to ``slim.pt`` / ``slim.json`` in the run directory and its FLOPs kept, params
    kept and CPU speedup to ``summary.json``'s ``slim`` (as ``python -m ramda.export <run dir>``;
    docs/export.md)."""


@dataclass
class LoggerConfig:
    """Where a run's figures go besides its run directory."""

    name: str = "local"
    """``local`` (the run directory only) or ``wandb`` (also Weights & Biases; set by the ``logger=`` choice)."""
    project: str = "ramda"
    """W&B project."""
    entity: str | None = None
    """W&B entity (``null``: the account's default)."""
    mode: str = "auto"
    """``auto`` (online when an API key is configured, else offline with no network access; ``WANDB_MODE`` is
    honoured), ``online``, ``offline`` or ``disabled``."""
    tags: list[str] = field(default_factory=list)
    """W&B tags of the run."""


@dataclass
class RunConfig:
    """The root config. Composition order: the groups, then the root's own values (``_self_``), then the
    (task, optimizer) preset with the paper's settings when one exists, then an optional experiment (a whole
    table: task, grid, ``table``). Command-line overrides win over all of them.
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
    """The task: data, model, loss and metric."""
    optimizer: OptimizerConfig = MISSING
    """The optimizer."""
    regularizer: RegularizerConfig = MISSING
    """The regulariser ψ and λ."""
    trainer: TrainerConfig = MISSING
    """The training loop."""
    logger: LoggerConfig = MISSING
    """Where the figures go besides the run directory."""
    seed: int = 1
    """Seeds Python, NumPy and torch; the same seed gives the same initial weights for every optimizer."""
    resume: str = "auto"
    """``auto``: continue the checkpoint in the run directory if there is one; ``never``: refuse a directory
    holding one; a path: start from that checkpoint in a new directory."""
    table: str = "adhoc"
    """The table a run belongs to (``demo``, ``vision``, ``language``, ``speech``, …); part of the run directory."""


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
