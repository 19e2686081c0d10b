"""Semantic checks of a composed run config (Hydra's schema has already checked keys and types)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from ramda.config import OPTIMIZERS, REGULARIZERS, RunConfig
from ramda.engine.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
PROGRESS = ("auto", "bar", "lines", "none")
LOGGERS = ("local", "wandb")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
STOP_RULES = ("objective", "subgradient", "exact")
NO_REGULARIZER = ("msgd", "adam", "adamw")  # plain torch optimizers: no λ term
DUAL_AVERAGING = ("rmda", "ramda")
LR_SCHEDULES = ("stagewise", "cosine")


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


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and the CUDA device must exist."""
    import torch

    if device in ("auto", "cpu"):
        return
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        count = torch.cuda.device_count()
        index = int(device[5:]) if ":" in device else 0
        if index >= count:
            raise ConfigError(
                "trainer.device", f"'{device}' is not available ({count} CUDA devices)", "use cpu"
            )
        return
    raise ConfigError("trainer.device", f"unknown value '{device}'", "valid: auto, cpu, cuda, cuda:N")


def validate(cfg: DictConfig, tasks: Sequence[str]) -> None:
    """Raise :class:`ConfigError` on the first setting that cannot run; ``tasks`` are the available ones."""
    allowed = set(RunConfig.__dataclass_fields__) - {"defaults"}
    for key in cfg:
        if key not in allowed:
            raise ConfigError(str(key), "unknown top-level key", "valid: " + ", ".join(sorted(allowed)))
    _one_of("task.name", cfg.task.name, tasks)
    _one_of("optimizer.name", cfg.optimizer.name, list(OPTIMIZERS))
    _one_of("regularizer.name", cfg.regularizer.name, REGULARIZERS)
    _one_of("trainer.precision", cfg.trainer.precision, PRECISIONS)
    _one_of("trainer.progress", cfg.trainer.progress, PROGRESS)
    _one_of("logger.name", cfg.logger.name, LOGGERS)
    _one_of("logger.mode", cfg.logger.mode, LOGGER_MODES)
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError("seed", f"{cfg.seed} is out of range", "valid: an integer in [0, 2^32)")
    if not cfg.table or "/" in cfg.table:
        raise ConfigError(
            "table", f"'{cfg.table}' is not a valid name", "valid: a non-empty name without '/'"
        )

    opt = cfg.optimizer
    name = opt.name
    _positive("optimizer.lr", opt.lr)
    if "momentum" in opt:
        if name == "msgd":
            _number("optimizer.momentum", opt.momentum, 0.0, 1.0, True, False)
        else:  # the c of RMDA/RAMDA/ProxSGD: an averaging weight
            _number("optimizer.momentum", opt.momentum, 0.0, 1.0, False, True)
    if "betas" in opt:
        if len(opt.betas) != 2:
            raise ConfigError("optimizer.betas", f"{list(opt.betas)} is not a pair", "valid: [beta1, beta2]")
        for i, beta in enumerate(opt.betas):
            _number(f"optimizer.betas[{i}]", beta, 0.0, 1.0, True, False)
    if "eps" in opt:
        _positive("optimizer.eps", opt.eps)
    if "weight_decay" in opt:
        _nonneg("optimizer.weight_decay", opt.weight_decay)
    if "stop" in opt and opt.stop is not None:
        _one_of("optimizer.stop", opt.stop, STOP_RULES)
    if "max_iters" in opt and opt.max_iters < 1:
        raise ConfigError("optimizer.max_iters", f"{opt.max_iters} is out of range", "valid: an integer >= 1")
    for key in ("rtol", "tol"):
        if key in opt:
            _positive(f"optimizer.{key}", opt[key])

    lam = cfg.regularizer.lam
    _nonneg("regularizer.lam", lam)
    if cfg.regularizer.name == "none" and lam != 0:
        raise ConfigError(
            "regularizer.lam", f"{lam} with regularizer=none", "valid: 0, or pick a regularizer"
        )
    if name in NO_REGULARIZER and lam != 0:
        raise ConfigError(
            "regularizer.lam",
            f"optimizer {name} does not support a regularizer (lam={lam})",
            "valid: regularizer.lam=0 or regularizer=none, or a structured optimizer: ramda, rmda, proxsgd, "
            "proxgen",
        )

    tr = cfg.trainer
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
    if tr.momentum_start is not None and tr.momentum_start < 0:
        raise ConfigError("trainer.momentum_start", f"{tr.momentum_start} < 0", "valid: null or >= 0")
    for key in ("checkpoint_every_steps", "log_every_steps", "threads"):
        if tr[key] < 0:
            raise ConfigError(f"trainer.{key}", f"{tr[key]} < 0", "valid: 0 (off) or a positive integer")
    check_device(tr.device)

    task = cfg.task
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

    if cfg.resume not in ("auto", "never") and not Path(cfg.resume).is_file():
        raise ConfigError(
            "resume", f"checkpoint '{cfg.resume}' does not exist", "valid: auto, never, or a file"
        )
