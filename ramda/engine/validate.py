"""Semantic checks of a composed run config (Hydra's schema has already checked the types of known keys).

Each section of the config has its own check; the valid choices come from where they are defined: optimizers
and their capabilities from :data:`ramda.config.OPTIMIZERS`, regularisers from
:data:`ramda.regularizers.REGULARIZERS`, stopping rules from :data:`ramda.solver.STOP_MODES`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ramda.config import OPTIMIZERS, REGULARIZERS
from ramda.engine.build import momentum_start_epoch
from ramda.engine.errors import ConfigError
from ramda.regularizers import check_lam
from ramda.solver import STOP_MODES

PRECISIONS = ("fp32", "bf16", "fp16")
PROGRESS = ("auto", "bar", "lines", "none")
LOGGERS = ("local", "wandb")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
LR_SCHEDULES = ("stagewise", "cosine")
# What ``optimizer.momentum`` may be, by its meaning in the registry: (low, high, closed low, closed high).
MOMENTUM_RANGES = {"average": (0.0, 1.0, False, True), "heavy_ball": (0.0, 1.0, True, False)}


def _one_of(key: str, value: object, valid: Sequence[object]) -> None:
    if value not in valid:
        raise ConfigError(key, f"unknown value '{value}'", "valid: " + ", ".join(map(str, valid)))


def _number(key: str, value: float, low: float, high: float, closed_low: bool, closed_high: bool) -> None:
    ok = math.isfinite(value) and (value >= low if closed_low else value > low)
    ok = ok and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
        raise ConfigError(key, f"{value} is out of range", f"valid: a number in {interval}")


def _positive(key: str, value: float) -> None:
    _number(key, value, 0.0, math.inf, False, False)


def _nonneg(key: str, value: float) -> None:
    _number(key, value, 0.0, math.inf, True, False)


def _known_keys(node: DictConfig, prefix: str, schemas: dict[str, type]) -> None:
    """Every key of ``node`` (and of its sub-configs) is a field of its dataclass (``schemas[prefix]`` where
    given, else the node's own type): ``+key=value`` can add a key Hydra's schema does not know, which no code
    would read."""
    schema = schemas.get(prefix) or OmegaConf.get_type(node)
    if schema is None or not dataclasses.is_dataclass(schema):
        return
    allowed = [f.name for f in dataclasses.fields(schema) if f.name != "defaults"]
    for key in node:
        if key not in allowed:
            where = f"{prefix}{key}" if prefix else str(key)
            valid = "valid keys here: " + ", ".join(allowed)
            if prefix == "optimizer.":
                valid += " (switch optimizers with optimizer=<name>, not optimizer.name)"
            raise ConfigError(where, "unknown key" if prefix else "unknown top-level key", valid)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _known_keys(child, f"{prefix}{key}.", schemas)


def check_device(device: str, exists: bool = True) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and (``exists``) the CUDA device must exist here."""
    import torch

    if device in ("auto", "cpu"):
        return
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not exists:
            return
        count = torch.cuda.device_count()
        index = int(device[5:]) if ":" in device else 0
        if index >= count:
            raise ConfigError(
                "trainer.device", f"'{device}' is not available ({count} CUDA devices)", "use cpu"
            )
        return
    raise ConfigError("trainer.device", f"unknown value '{device}'", "valid: auto, cpu, cuda, cuda:N")


def validate(cfg: DictConfig, tasks: Sequence[str], here: bool = True) -> None:
    """Raise :class:`ConfigError` on the first setting that cannot run; ``tasks`` are the available ones.
    ``here=False``: the run will execute on another machine (a cluster launcher), whose GPUs are not checked."""
    _one_of("task.name", cfg.task.name, tasks)
    _one_of("optimizer.name", cfg.optimizer.name, list(OPTIMIZERS))
    _known_keys(cfg, "", {"optimizer.": OPTIMIZERS[cfg.optimizer.name].config})
    _validate_run(cfg)
    _validate_optimizer(cfg.optimizer)
    _validate_regularizer(cfg.regularizer, cfg.optimizer.name)
    _validate_trainer(cfg.trainer, cfg.optimizer.name, here)
    _validate_task(cfg.task)
    _one_of("logger.name", cfg.logger.name, LOGGERS)
    _one_of("logger.mode", cfg.logger.mode, LOGGER_MODES)


def _validate_run(cfg: DictConfig) -> None:
    """The root's own keys: ``seed``, ``table``, ``resume``."""
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError("seed", f"{cfg.seed} is out of range", "valid: an integer in [0, 2^32)")
    if not cfg.table or "/" in cfg.table:
        raise ConfigError(
            "table", f"'{cfg.table}' is not a valid name", "valid: a non-empty name without '/'"
        )
    if cfg.resume not in ("auto", "never") and not Path(cfg.resume).is_file():
        raise ConfigError(
            "resume", f"checkpoint '{cfg.resume}' does not exist", "valid: auto, never, or a file"
        )


def _validate_optimizer(opt: DictConfig) -> None:
    """The hyperparameters, with ``momentum``'s range from what it means to this optimizer."""
    spec = OPTIMIZERS[opt.name]
    _positive("optimizer.lr", opt.lr)
    if spec.momentum:
        _number("optimizer.momentum", opt.momentum, *MOMENTUM_RANGES[spec.momentum])
    if "betas" in opt:
        if len(opt.betas) != 2:
            raise ConfigError("optimizer.betas", f"{list(opt.betas)} is not a pair", "valid: [beta1, beta2]")
        for i, beta in enumerate(opt.betas):
            _number(f"optimizer.betas[{i}]", beta, 0.0, 1.0, True, False)
    if "eps" in opt:
        _positive("optimizer.eps", opt.eps)
    if "weight_decay" in opt:
        _nonneg("optimizer.weight_decay", opt.weight_decay)
    if spec.solver:
        if opt.stop is not None:
            _one_of("optimizer.stop", opt.stop, STOP_MODES)
        if opt.max_iters < 1:
            raise ConfigError(
                "optimizer.max_iters", f"{opt.max_iters} is out of range", "valid: an integer >= 1"
            )
        _positive("optimizer.rtol", opt.rtol)
        _positive("optimizer.tol", opt.tol)


def _validate_regularizer(reg: DictConfig, optimizer: str) -> None:
    """The regulariser's name and λ, and that the optimizer takes one when λ > 0."""
    _one_of("regularizer.name", reg.name, REGULARIZERS)
    lam = reg.lam
    try:
        check_lam(lam)
    except ValueError as err:
        raise ConfigError("regularizer.lam", f"{lam} is out of range", "valid: a finite number >= 0") from err
    _nonneg("regularizer.scale", reg.scale)
    if lam == 0:
        return
    if reg.name == "none":
        raise ConfigError(
            "regularizer.lam", f"{lam} with regularizer=none", "valid: 0, or pick a regularizer"
        )
    if not OPTIMIZERS[optimizer].regularized:
        structured = ", ".join(name for name, spec in OPTIMIZERS.items() if spec.regularized)
        raise ConfigError(
            "regularizer.lam",
            f"optimizer {optimizer} does not support a regularizer (lam={lam})",
            f"valid: regularizer.lam=0 or regularizer=none, or a structured optimizer: {structured}",
        )


def _validate_trainer(tr: DictConfig, optimizer: str, here: bool = True) -> None:
    """The loop's settings; milestones and the momentum schedule must take effect within the run."""
    _one_of("trainer.precision", tr.precision, PRECISIONS)
    _one_of("trainer.progress", tr.progress, PROGRESS)
    if tr.epochs < 1:
        raise ConfigError("trainer.epochs", f"{tr.epochs} is out of range", "valid: an integer >= 1")
    for key in ("max_steps", "eval_every_steps"):
        if tr[key] < 0:
            raise ConfigError(f"trainer.{key}", f"{tr[key]} < 0", "valid: 0 (off) or a positive integer")
    _one_of("trainer.lr_schedule", tr.lr_schedule, LR_SCHEDULES)
    milestones = list(tr.milestones)
    if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
        unit = "steps" if tr.max_steps > 0 else "epochs"
        raise ConfigError(
            "trainer.milestones", f"{milestones} is not valid", f"valid: strictly increasing {unit} >= 1"
        )
    if tr.lr_schedule == "cosine" and milestones:
        raise ConfigError(
            "trainer.milestones",
            f"{milestones} with trainer.lr_schedule=cosine",
            "valid: [] (cosine annealing has no milestones), or trainer.lr_schedule=stagewise",
        )
    _number("trainer.gamma", tr.gamma, 0.0, 1.0, False, True)
    if tr.momentum_start_epoch is not None and tr.momentum_start_epoch < 0:
        raise ConfigError(
            "trainer.momentum_start_epoch", f"{tr.momentum_start_epoch} < 0", "valid: null or >= 0"
        )
    by_steps = tr.max_steps > 0
    length, unit = (tr.max_steps, "steps") if by_steps else (tr.epochs, "epochs")
    start = momentum_start_epoch(tr)
    late_momentum = (
        OPTIMIZERS[optimizer].dual_averaging
        and tr.momentum_schedule
        and tr.lr_schedule == "stagewise"
        and start >= length
    )
    if milestones and milestones[-1] >= length:
        short = " trainer.momentum_start_epoch=null" if late_momentum and tr.momentum_start_epoch else ""
        acts = "after step m − 1" if by_steps else "after epoch m"
        one = "none in a 1-step run" if by_steps else "none in a 1-epoch run"
        raise ConfigError(
            "trainer.milestones",
            f"{milestones} reaches beyond the run's {length} {unit} (a milestone m acts {acts})",
            f"valid: {f'{unit} in [1, {length - 1}]' if length > 1 else one}; "
            f"for a short run: trainer.milestones=[]{short}",
        )
    if late_momentum:
        tick = "step" if by_steps else "epoch"
        raise ConfigError(
            "trainer.momentum_start_epoch",
            f"the momentum schedule would start at {tick} {start}, after the run's {length} {unit}",
            f"valid: a (0-based) {tick} in [0, {length - 1}], or trainer.momentum_schedule=false",
        )
    for key in ("checkpoint_every_steps", "log_every_steps", "threads"):
        if tr[key] < 0:
            raise ConfigError(f"trainer.{key}", f"{tr[key]} < 0", "valid: 0 (off) or a positive integer")
    check_device(tr.device, exists=here)


def _validate_task(task: DictConfig) -> None:
    """Batch sizes, limits, and that the data directory exists."""
    if task.batch_size < 1:
        raise ConfigError("task.batch_size", f"{task.batch_size} is out of range", "valid: an integer >= 1")
    for key in ("eval_batch_size", "num_workers", "max_train_batches", "max_eval_batches"):
        if task[key] < 0:
            raise ConfigError(f"task.{key}", f"{task[key]} < 0", "valid: an integer >= 0")
    _nonneg("task.grad_clip", task.grad_clip)
    data = task.get("data", {})
    root = data.get("root", "")
    # WikiText-103 from the Hugging Face cache (task.data.source=hf) reads no root directory.
    if root and data.get("source", "files") != "hf" and not Path(root).is_dir():
        from ramda.fixtures import FIXTURES

        hint = (
            f" (a small one: python scripts/make_fixtures.py {task.name} <dir>)"
            if task.name in FIXTURES
            else ""
        )
        raise ConfigError(
            "task.data.root",
            f"directory '{root}' does not exist",
            f"valid: a directory holding the data{hint}",
        )
