"""ImageNet-1k classification with ResNet50 (the paper's vision table; settings: docs/math.md#the-papers-settings).

Data: the standard on-disk layout ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG`` read
with torchvision's ``ImageFolder``. Training transform: RandomResizedCrop(train_crop) + horizontal flip;
validation: Resize(val_resize) + CenterCrop(val_crop); both normalised with the ImageNet mean/std.

Model: torchvision ``resnet50`` (any ``torchvision.models`` classifier by name, or ``timm:<name>``), built
from the run's seed alone and cached per (model, classes, seed) under ``init_cache``, so every optimizer at a
given seed starts from the very same weights file.

Loss: cross-entropy with label smoothing ε: (1 − ε)·(−log p_y) + ε·mean_k(−log p_k).
Metrics: top-1 / top-5 validation accuracy in percent and the (unsmoothed) validation cross-entropy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ramda.engine.errors import DataError
from ramda.files import atomic_write
from ramda.tasks.base import RunEnv, Task, TaskConfig, per_process_batch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Where the images are and how they are cropped (pixel sizes)."""

    root: str = "data/imagenet"
    """Directory holding ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``."""
    train_crop: int = 224
    """RandomResizedCrop size for training, pixels."""
    val_resize: int = 256
    """Validation images are resized to this (shorter side), pixels."""
    val_crop: int = 224
    """Validation centre-crop size, pixels."""
    pin_memory: bool = True
    """Pinned host memory for the data loader (CUDA only)."""


@dataclass
class Config(TaskConfig):
    """``batch_size`` is global (split over processes). ``model``: a ``torchvision.models`` name or
    ``timm:<name>``. ``init_cache``: directory of the per-seed initial weights (relative paths are taken from
    the directory ``train.py`` was launched in). ``drop_last``: drop the last partial training batch (off: kept,
    as the authors' loader does; with several processes the sampler then pads the shards to equal size)."""

    name: str = "imagenet"
    batch_size: int = 256
    num_workers: int = 8
    data: DataConfig = field(default_factory=DataConfig)
    """Where the images are and how they are cropped."""
    model: str = "resnet50"
    """A ``torchvision.models`` classifier name, or ``timm:<name>`` (randomly initialised)."""
    label_smoothing: float = 0.1
    """Label smoothing ε of the training loss."""
    drop_last: bool = False
    """Drop the last partial training batch (false: kept, as the authors' loader)."""
    init_cache: str = "results/init"
    """Directory of the per-seed initial weights, shared by every optimizer at a seed (relative to where
    ``train.py`` starts)."""


def _absolute(path: str) -> Path:
    """``path`` relative to the launch directory (Hydra's original cwd when Hydra runs)."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(path))


def check_layout(root: Path) -> None:
    """Raise a one-line ``ValueError`` unless ``root`` holds ``train/<wnid>/`` and ``val/<wnid>/`` folders."""
    ok = all(
        (root / split).is_dir() and any(p.is_dir() for p in (root / split).iterdir())
        for split in ("train", "val")
    )
    if not ok:
        raise ValueError(
            f"task.data.root: {root} is not an ImageNet directory; "
            f"expected {root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG"
        )


def build_network(model: str, num_classes: int) -> nn.Module:
    """A freshly initialised classifier: ``timm:<name>`` through timm, anything else through torchvision."""
    if model.startswith("timm:"):
        try:
            import timm
        except ImportError as exc:
            raise ValueError(f"task.model={model} needs timm: pip install 'ramda[vision]'") from exc
        name = model.removeprefix("timm:")
        if not timm.is_model(name):
            raise ValueError(f"task.model: unknown timm model '{name}'; see timm.list_models()")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    if model not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"task.model: unknown torchvision classifier '{model}'; use a name from "
            "torchvision.models.list_models(module=torchvision.models) (e.g. resnet50) or timm:<name>"
        )
    return torchvision.models.get_model(model, weights=None, num_classes=num_classes)


def load_image(path: str) -> Any:
    """An RGB PIL image; an unreadable or truncated file is a :class:`DataError` naming it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(path, f"not a readable image ({err})", "replace or remove the file") from None


def initial_weights(
    model: str, num_classes: int, seed: int, cache_dir: Path, write: bool = True
) -> nn.Module:
    """The network with the initial weights of ``seed``, identical for every optimizer.

    The weights are generated on the CPU from ``seed`` alone (the global RNG state is saved and restored).
    The first run at a seed writes ``<cache_dir>/<model>-c<classes>-seed<seed>.pt`` atomically (temporary
    file, then a hard link that never replaces an existing file); every later run (and the loser of a
    concurrent first write) loads that file, so the weights stay the same even across library versions or
    machines. Only the main process writes (``write``); data-parallel wrappers broadcast its weights to the
    other ranks.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        net = build_network(model, num_classes)
    path = cache_dir / f"{model.replace(':', '-').replace('/', '-')}-c{num_classes}-seed{seed}.pt"
    if not path.exists() and write:
        atomic_write(path, lambda f: torch.save(net.state_dict(), f), replace=False)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"task.init_cache: {path} does not match task.model={model} with {num_classes} classes; "
                "delete it or point task.init_cache elsewhere"
            ) from exc
    return net


def input_memory_format(model: nn.Module) -> torch.memory_format:
    """``channels_last`` when the model's first 2-D convolution is stored that way, else contiguous."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight
            if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
                return torch.channels_last
            break
    return torch.contiguous_format


class ShardSampler(torch.utils.data.Sampler[int]):
    """Indices ``rank, rank + world, …``: every example exactly once over all ranks (no padding)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ImageNetTask(Task):
    """ResNet50 on ImageNet-1k; reports top-1/top-5 accuracy (%) on the validation set.

    Training order: a ``DistributedSampler`` (with one process too) seeded with the run's seed and reshuffled
    per epoch (permutation of seed + epoch), each rank taking every ``world_size``-th example; the last partial
    batch is kept (padding the shards to equal size) unless ``drop_last``. Validation: each rank takes every ``world_size``-th image, no padding,
    and the counts are summed over ranks.
    """

    metric = "top1"
    higher_is_better = True
    cfg: Config

    def __init__(self, cfg: Config, env: RunEnv) -> None:
        super().__init__(cfg, env)
        from torchvision import datasets
        from torchvision.transforms import v2

        root = _absolute(cfg.data.root)
        check_layout(root)
        for key in ("train_crop", "val_resize", "val_crop"):
            if getattr(cfg.data, key) <= 0:
                raise ValueError(f"task.data.{key} must be a positive number of pixels")
        if cfg.data.val_crop > cfg.data.val_resize:
            raise ValueError("task.data.val_crop must not exceed task.data.val_resize")
        if not 0.0 <= cfg.label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
        self.batch = per_process_batch(cfg.batch_size, env.world_size)
        self.eval_batch = (
            per_process_batch(cfg.eval_batch_size, env.world_size, "task.eval_batch_size")
            if cfg.eval_batch_size
            else self.batch
        )
        normalise = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.ToPureTensor(),
        ]
        train_tf = v2.Compose(
            [v2.RandomResizedCrop(cfg.data.train_crop), v2.RandomHorizontalFlip(), *normalise]
        )
        val_tf = v2.Compose([v2.Resize(cfg.data.val_resize), v2.CenterCrop(cfg.data.val_crop), *normalise])
        try:
            self.train_set = datasets.ImageFolder(str(root / "train"), transform=train_tf, loader=load_image)
            self.val_set = datasets.ImageFolder(str(root / "val"), transform=val_tf, loader=load_image)
        except FileNotFoundError as exc:
            raise ValueError(
                f"task.data.root: {root} is not an ImageNet directory; "
                f"expected {root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG ({exc})"
            ) from exc
        if self.val_set.classes != self.train_set.classes:
            raise ValueError(
                f"task.data.root: {root}/val has classes different from {root}/train "
                f"({len(self.val_set.classes)} vs {len(self.train_set.classes)}); "
                "both need the same <wnid> folders"
            )
        if len(self.train_set) < self.batch * env.world_size:
            raise ValueError(
                f"task.batch_size={cfg.batch_size} exceeds the {len(self.train_set)} training images "
                f"in {root}/train"
            )
        self.num_classes = len(self.train_set.classes)
        self.train_sampler = torch.utils.data.DistributedSampler(
            self.train_set,
            num_replicas=env.world_size,
            rank=env.rank,
            shuffle=True,
            seed=env.seed,
            drop_last=cfg.drop_last,
        )
        pin = cfg.data.pin_memory and env.device.type == "cuda"
        workers = {
            "num_workers": cfg.num_workers,
            "persistent_workers": cfg.num_workers > 0,
            "pin_memory": pin,
        }
        self.train_loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.batch,
            sampler=self.train_sampler,
            drop_last=cfg.drop_last,
            generator=torch.Generator().manual_seed(env.seed),
            **workers,
        )
        self.val_loader = torch.utils.data.DataLoader(
            self.val_set,
            batch_size=self.eval_batch,
            sampler=ShardSampler(len(self.val_set), env.rank, env.world_size),
            **workers,
        )

    def build_model(self) -> nn.Module:
        net = initial_weights(
            self.cfg.model,
            self.num_classes,
            self.env.seed,
            _absolute(self.cfg.init_cache),
            write=self.env.is_main,
        )
        return net.to(self.env.device)

    def num_train_batches(self) -> int:
        n = len(self.train_loader)
        return min(n, self.cfg.max_train_batches) if self.cfg.max_train_batches > 0 else n

    def train_batches(self, epoch: int) -> Iterable[Any]:
        self.train_sampler.set_epoch(epoch)
        return itertools.islice(self.train_loader, self.num_train_batches())

    def _inputs(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        images = images.to(self.env.device, non_blocking=True, memory_format=input_memory_format(model))
        return images, labels.to(self.env.device, non_blocking=True)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = self._inputs(model, batch)
        return F.cross_entropy(model(images).float(), labels, label_smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Top-1/top-5 hit counts and summed cross-entropy, all-reduced over ranks when distributed."""
        was_training = model.training
        model.eval()
        totals = torch.zeros(4, dtype=torch.float64, device=self.env.device)  # top1, top5, loss sum, count
        batches = self.val_loader
        if self.cfg.max_eval_batches > 0:
            batches = itertools.islice(batches, self.cfg.max_eval_batches)
        for batch in batches:
            images, labels = self._inputs(model, batch)
            logits = model(images).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == labels[:, None]
            totals[0] += hits[:, 0].sum()
            totals[1] += hits.any(dim=1).sum()
            totals[2] += F.cross_entropy(logits, labels, reduction="sum")
            totals[3] += labels.numel()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        model.train(was_training)
        top1, top5, loss_sum, count = totals.tolist()
        count = max(count, 1.0)
        return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "val_loss": loss_sum / count}


TASK = ImageNetTask
