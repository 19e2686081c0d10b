"""The embedded demo task: scikit-learn's bundled handwritten digits (1797 8×8 images) with a small CNN.

Real data that ships with scikit-learn (``sklearn/datasets/data/digits.csv.gz``: 64 pixel values in 0..16 and
the label per row), so the demo runs anywhere without a download. A fixed split (``data.split_seed``,
independent of the run's seed) holds out ``data.val_fraction`` of the images, stratified by class.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ramda.tasks.base import RunEnv, Task, TaskConfig, per_process_batch

CSV_NAME = "digits.csv.gz"


@dataclass
class DataConfig:
    """The digits data and its fixed split."""

    root: str = ""
    """Empty: the copy bundled with scikit-learn; else a directory holding ``digits.csv.gz``."""
    val_fraction: float = 0.2
    """Fraction of the images held out for validation, stratified by class."""
    split_seed: int = 0
    """Seed of the fixed split (independent of the run's seed)."""


@dataclass
class Config(TaskConfig):
    """The digits demo: a small CNN on 8×8 images."""

    name: str = "digits"
    batch_size: int = 64
    eval_batch_size: int = 512
    data: DataConfig = field(default_factory=DataConfig)
    """Where the digits come from and how they are split."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """Output channels of the three conv layers."""
    hidden: int = 64
    """Width of the head's hidden layer."""
    batchnorm: bool = True
    """BatchNorm after each conv (``false``: conv biases instead)."""


def load_arrays(root: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, 1, 8, 8] scaled to [0, 1] and labels as int64 [N], from the digits CSV."""
    if root:
        table = np.loadtxt(Path(root) / CSV_NAME, delimiter=",")
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        pixels, labels = load_digits(return_X_y=True)
    images = (pixels.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return images, labels.astype(np.int64)


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: per class, the first ``round(val_fraction · n_class)`` of a seeded shuffle are val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = round(val_fraction * len(idx))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class DigitsTask(Task):
    """Classification with cross-entropy; the table metric is top-1 validation accuracy in percent."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: Config, env: RunEnv) -> None:
        super().__init__(cfg, env)
        if not 0.0 < cfg.data.val_fraction < 1.0:
            raise ValueError(f"task.data.val_fraction must be in (0, 1), got {cfg.data.val_fraction}")
        images, labels = load_arrays(cfg.data.root)
        train, val = split_indices(labels, cfg.data.val_fraction, cfg.data.split_seed)
        self.x_train, self.y_train = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
        self.x_val, self.y_val = torch.from_numpy(images[val]), torch.from_numpy(labels[val])
        self.batch = per_process_batch(cfg.batch_size, env.world_size)

    def build_model(self) -> nn.Module:
        channels = tuple(self.cfg.channels)
        if len(channels) != 3:
            raise ValueError(f"task.channels must list 3 conv widths, got {list(channels)}")
        from ramda.models.digits_cnn import DigitsCNN

        return DigitsCNN(channels, self.cfg.hidden, batchnorm=self.cfg.batchnorm).to(self.env.device)

    def _order(self, epoch: int) -> torch.Tensor:
        """This rank's share of the epoch's permutation (seeded by the run's seed and the epoch only)."""
        gen = torch.Generator().manual_seed(self.env.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.y_train), generator=gen)
        usable = len(perm) - len(perm) % self.env.world_size
        return perm[self.env.rank : usable : self.env.world_size]

    def num_train_batches(self) -> int:
        n = -(-len(self._order(0)) // self.batch)
        return min(n, self.cfg.max_train_batches) if self.cfg.max_train_batches > 0 else n

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(epoch)
        for i in range(self.num_train_batches()):
            idx = order[i * self.batch : (i + 1) * self.batch]
            yield self.x_train[idx], self.y_train[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x.to(self.env.device)), y.to(self.env.device))

    @torch.no_grad()
    def recalibrate_batchnorm(self, model: nn.Module) -> None:
        """Set every BatchNorm's running statistics to the exact mean and (unbiased) variance of its input over
        the training split (its first ``num_train_batches()·batch`` images when ``max_train_batches`` limits an
        epoch), under the current weights ("precise BN").

        The running averages kept during training lag behind weights that move fast — as RMDA's and RAMDA's do
        once their momentum reaches 1 and groups switch between zero and nonzero — and then the evaluation
        mis-normalises. Training itself (batch statistics) is unaffected.
        """
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch gives its exact statistics
        was_training = model.training
        model.train()
        model(self.x_train[: self.num_train_batches() * self.batch].to(self.env.device))
        model.train(was_training)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy (percent) and mean cross-entropy over the validation split (every rank sees all of it),
        after :meth:`recalibrate_batchnorm`."""
        self.recalibrate_batchnorm(model)
        size = self.cfg.eval_batch_size or self.batch
        n_batches = -(-len(self.y_val) // size)
        if self.cfg.max_eval_batches > 0:
            n_batches = min(n_batches, self.cfg.max_eval_batches)
        correct, loss_sum, count = 0, 0.0, 0
        for i in range(n_batches):
            x = self.x_val[i * size : (i + 1) * size].to(self.env.device)
            y = self.y_val[i * size : (i + 1) * size].to(self.env.device)
            logits = model(x).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            count += len(y)
        return {"accuracy": 100.0 * correct / count, "val_loss": loss_sum / count}


TASK = DigitsTask
