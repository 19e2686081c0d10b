"""The task contract: data + model + loss + metric, independent of the optimizer and the engine.

A task module ``ramda.tasks.<name>`` defines a ``Config`` dataclass (a subclass of :class:`TaskConfig`,
registered by the runner in Hydra's ConfigStore as ``task=<name>``) and a :class:`Task` subclass ``TASK``.
Module import must stay cheap: heavy imports (torchvision, torchaudio, datasets) go inside methods.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class TaskConfig:
    """Fields every task has. ``batch_size`` is the *global* batch, whatever the number of processes."""

    name: str = "?"
    """The task's name (set by the ``task=`` choice)."""
    batch_size: int = 64
    """The global batch, split over the processes (must divide by their number)."""
    eval_batch_size: int = 0
    """The evaluation batch (0: ``batch_size``)."""
    num_workers: int = 0
    """Data-loading worker processes per training process."""
    max_train_batches: int = 0
    """Train on at most this many batches per epoch (0: all; for smoke runs)."""
    max_eval_batches: int = 0
    """Evaluate on at most this many batches (0: all; for smoke runs)."""
    grad_clip: float = 0.0
    """Gradient-norm clipping (0: off)."""


@dataclass(frozen=True)
class RunEnv:
    """Where a task runs: the device, the distributed rank/world and the run's seed."""

    device: torch.device
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def per_process_batch(global_batch: int, world_size: int, key: str = "task.batch_size") -> int:
    """The per-process share of a global batch; an indivisible setting is a ``ValueError`` naming ``key``."""
    if global_batch <= 0:
        raise ValueError(f"{key} must be a positive integer, got {global_batch}")
    if global_batch % world_size:
        raise ValueError(
            f"{key}={global_batch} is not divisible by the number of processes ({world_size}); "
            f"use a multiple of {world_size}"
        )
    return global_batch // world_size


class Task(abc.ABC):
    """One training problem. The engine calls, in order: ``build_model`` (after seeding), then per epoch
    ``on_epoch_start(epoch)``, ``train_batches(epoch)`` and ``loss(model, batch)`` per batch, then
    ``evaluate(model)``. ``metric`` names the key of ``evaluate``'s result that the paper's table reports.
    """

    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __init__(self, cfg: TaskConfig, env: RunEnv) -> None:
        self.cfg = cfg
        self.env = env

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The network, on ``env.device``; identical for every optimizer at a given seed."""

    @abc.abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]:
        """This process's training batches for ``epoch`` (reshuffled per epoch, sharded when distributed)."""

    @abc.abstractmethod
    def num_train_batches(self) -> int:
        """How many batches ``train_batches`` yields per epoch on this process."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar training loss of one batch (moves the batch to ``env.device`` itself)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics, identical on every rank; must contain ``self.metric``."""

    def on_epoch_start(self, epoch: int) -> None:
        """Reset per-epoch state."""

    def state_dict(self) -> dict[str, Any]:
        """State the training loop carries between steps besides the model and optimizer (e.g. a recurrent
        memory); saved in every checkpoint, per process."""
        return {}

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        """Restore from the :meth:`state_dict` of every process of the run that saved it (rank order)."""
