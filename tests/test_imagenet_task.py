"""The ImageNet task through the ``Task`` API on the fixture (real JPEGs, real ImageFolder, real ResNet50)."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ramda.fixtures import imagenet as fixture
from ramda.tasks import RunEnv, task_module
from ramda.tasks.imagenet import IMAGENET_MEAN, IMAGENET_STD, Config, ImageNetTask, input_memory_format

CPU = torch.device("cpu")
N_TRAIN = len(fixture.WNIDS) * fixture.TRAIN_PER_CLASS
N_VAL = len(fixture.WNIDS) * fixture.VAL_PER_CLASS


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture.make(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("init")


def small_cfg(root: Path, init_dir: Path, **kw: object) -> Config:
    cfg = Config(batch_size=8, num_workers=0, init_cache=str(init_dir), **kw)
    cfg.data.root = str(root)
    cfg.data.train_crop, cfg.data.val_resize, cfg.data.val_crop = 32, 40, 32
    return cfg


@pytest.fixture(scope="module")
def task(root: Path, init_dir: Path) -> ImageNetTask:
    return ImageNetTask(small_cfg(root, init_dir), RunEnv(device=CPU, seed=1))


def test_registry_and_defaults() -> None:
    module = task_module("imagenet")
    cfg = module.Config()
    assert module.TASK is ImageNetTask and module.TASK.metric == "top1" and module.TASK.higher_is_better
    assert (cfg.name, cfg.batch_size, cfg.model, cfg.label_smoothing) == ("imagenet", 256, "resnet50", 0.1)
    assert (cfg.data.train_crop, cfg.data.val_resize, cfg.data.val_crop) == (224, 256, 224)


def test_fixture_is_real_imagenet_layout(root: Path) -> None:
    modes = []
    for split, per_class in (("train", fixture.TRAIN_PER_CLASS), ("val", fixture.VAL_PER_CLASS)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(fixture.WNIDS)
        for wnid in fixture.WNIDS:
            files = sorted((root / split / wnid).glob("*.JPEG"))
            assert len(files) == per_class
            for f in files:
                with Image.open(f) as im:
                    assert im.format == "JPEG"
                    modes.append(im.mode)
    assert modes.count("L") == 1 and modes.count("CMYK") == 1
    assert all(p.name.startswith("ILSVRC2012_val_") for p in (root / "val").rglob("*.JPEG"))

    # Learnable content: a nearest-class-mean-colour rule, fitted on train, classifies every val image.
    def colour(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))

    means = np.stack(
        [np.mean([colour(p) for p in (root / "train" / w).glob("*.JPEG")], axis=0) for w in fixture.WNIDS]
    )
    for label, wnid in enumerate(fixture.WNIDS):
        for p in (root / "val" / wnid).glob("*.JPEG"):
            assert np.argmin(((means - colour(p)) ** 2).sum(axis=1)) == label


@pytest.mark.parametrize("layout", ["missing", "no_val", "empty_train"])
def test_layout_error_is_one_line(tmp_path: Path, init_dir: Path, layout: str) -> None:
    bad = tmp_path / "imnet"
    if layout != "missing":
        (bad / "train" / "n01440764").mkdir(parents=True)
    if layout == "empty_train":
        (bad / "val" / "n01440764").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(bad / "val" / "n01440764" / "a.JPEG")
    with pytest.raises(ValueError) as info:
        ImageNetTask(small_cfg(bad, init_dir), RunEnv(device=CPU, seed=1))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"task.data.root: {bad} is not an ImageNet directory; "
        f"expected {bad}/train/<wnid>/*.JPEG and {bad}/val/<wnid>/*.JPEG"
    )


def test_bad_settings_name_their_key(tmp_path: Path, root: Path, init_dir: Path) -> None:
    mismatched = tmp_path / "mismatch"
    for split, wnid in (("train", "n01440764"), ("val", "n01443537")):
        (mismatched / split / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(mismatched / split / wnid / "a.JPEG")
    with pytest.raises(ValueError, match=r"^task\.data\.root: .*/val has classes different"):
        ImageNetTask(small_cfg(mismatched, init_dir), RunEnv(device=CPU, seed=1))
    with pytest.raises(ValueError, match=r"^task\.batch_size=96 exceeds the 72 training images"):
        ImageNetTask(
            dataclasses.replace(small_cfg(root, init_dir), batch_size=96), RunEnv(device=CPU, seed=1)
        )
    with pytest.raises(
        ValueError, match=r"^task\.batch_size=9 is not divisible by the number of processes \(2\)"
    ):
        ImageNetTask(
            dataclasses.replace(small_cfg(root, init_dir), batch_size=9),
            RunEnv(device=CPU, seed=1, world_size=2),
        )
    with pytest.raises(ValueError, match=r"^task\.model: unknown torchvision classifier 'resnet51'"):
        ImageNetTask(small_cfg(root, init_dir, model="resnet51"), RunEnv(device=CPU, seed=1)).build_model()
    with pytest.raises(ValueError, match=r"^task\.model: unknown timm model 'nope'"):
        ImageNetTask(small_cfg(root, init_dir, model="timm:nope"), RunEnv(device=CPU, seed=1)).build_model()


def test_train_batches_follow_the_seeded_epoch_shuffle(task: ImageNetTask) -> None:
    n_batches = N_TRAIN // 8
    assert task.num_train_batches() == n_batches
    targets = task.train_set.targets
    for epoch in (0, 1):
        labels, shapes = [], set()
        for images, y in task.train_batches(epoch):
            shapes.add(tuple(images.shape))
            labels += y.tolist()
        # DistributedSampler's documented order: randperm(n) from a generator seeded with seed + epoch.
        order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1 + epoch)).tolist()
        assert labels == [targets[i] for i in order[: n_batches * 8]]
        assert shapes == {(8, 3, 32, 32)}
    capped = ImageNetTask(dataclasses.replace(task.cfg, max_train_batches=2), task.env)
    assert capped.num_train_batches() == 2 and len(list(capped.train_batches(0))) == 2


def test_the_last_partial_batch_is_kept_unless_drop_last(root: Path, init_dir: Path) -> None:
    """The released loader keeps the last partial training batch: 72 images in batches of 10 are 7 batches
    of 10 and one of 2; ``drop_last`` gives the 7 full ones."""
    kept = ImageNetTask(
        dataclasses.replace(small_cfg(root, init_dir), batch_size=10), RunEnv(device=CPU, seed=1)
    )
    sizes = [len(y) for _, y in kept.train_batches(0)]
    assert sizes == [10] * 7 + [N_TRAIN - 70] and kept.num_train_batches() == 8
    dropped = ImageNetTask(
        dataclasses.replace(small_cfg(root, init_dir), batch_size=10, drop_last=True),
        RunEnv(device=CPU, seed=1),
    )
    assert [len(y) for _, y in dropped.train_batches(0)] == [10] * 7 and dropped.num_train_batches() == 7


def test_validation_transform_resizes_crops_and_normalises(tmp_path: Path, init_dir: Path) -> None:
    colour = (30, 140, 220)
    for split in ("train", "val"):
        (tmp_path / split / "n0").mkdir(parents=True)
        Image.new("RGB", (90, 50), colour).save(tmp_path / split / "n0" / "a.JPEG", quality=100)
    cfg = dataclasses.replace(small_cfg(tmp_path, init_dir), batch_size=1)
    image, label = ImageNetTask(cfg, RunEnv(device=CPU, seed=1)).val_set[0]
    assert image.shape == (3, 32, 32) and label == 0
    expected = (torch.tensor(colour) / 255.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(image.mean(dim=(1, 2)), expected, atol=0.03, rtol=0)
    assert (image - expected[:, None, None]).abs().max() < 0.06


def test_model_is_resnet50_with_the_data_classes(task: ImageNetTask) -> None:
    model = task.build_model()
    assert type(model).__module__ == "torchvision.models.resnet" and type(model).__name__ == "ResNet"
    # ResNet50 has 25,557,032 parameters with its 1000-way head (2048·1000 + 1000 of them).
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 - 2_049_000 + 2048 * 6 + 6
    assert model.fc.out_features == len(fixture.WNIDS)


def test_timm_models_by_name(root: Path, init_dir: Path) -> None:
    model = ImageNetTask(
        small_cfg(root, init_dir, model="timm:resnet18"), RunEnv(device=CPU, seed=1)
    ).build_model()
    assert type(model).__module__.startswith("timm.") and model.num_classes == len(fixture.WNIDS)
    assert (init_dir / "timm-resnet18-c6-seed1.pt").is_file()


def test_initial_weights_depend_on_the_seed_only_and_are_cached(root: Path, tmp_path: Path) -> None:
    def weights(seed: int, **env: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(int(torch.randint(0, 10**6, ())))  # whatever the global RNG state is
        return (
            ImageNetTask(small_cfg(root, tmp_path), RunEnv(device=CPU, seed=seed, **env))
            .build_model()
            .state_dict()
        )

    assert weights(3, rank=1, world_size=2) and not list(tmp_path.iterdir())  # only the main rank writes
    first, again, other = weights(3), weights(3), weights(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet50-c6-seed3.pt", "resnet50-c6-seed4.pt"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv1.weight"], other["conv1.weight"])
    assert not torch.equal(first["fc.weight"], other["fc.weight"])

    # Later runs load the file rather than regenerate: edit it and the edit shows up.
    cached = torch.load(tmp_path / "resnet50-c6-seed3.pt", weights_only=True)
    torch.testing.assert_close(cached["conv1.weight"], first["conv1.weight"], rtol=0, atol=0)
    cached["conv1.weight"].fill_(0.5)
    torch.save(cached, tmp_path / "resnet50-c6-seed3.pt")
    assert torch.all(weights(3)["conv1.weight"] == 0.5)

    del cached["fc.bias"]
    torch.save(cached, tmp_path / "resnet50-c6-seed3.pt")
    with pytest.raises(ValueError, match=r"^task\.init_cache: .*resnet50-c6-seed3\.pt does not match"):
        weights(3)


def test_loss_is_label_smoothed_cross_entropy(task: ImageNetTask) -> None:
    model = task.build_model().eval()
    images, labels = next(iter(task.train_batches(0)))
    with torch.no_grad():
        logp = torch.log_softmax(model(images).double(), dim=1)
        nll = -logp.gather(1, labels[:, None]).squeeze(1)
        expected = (0.9 * nll + 0.1 * (-logp.mean(dim=1))).mean()
        loss = task.loss(model, (images, labels))
    assert loss.ndim == 0 and loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert abs(loss.item() - nll.mean().item()) > 1e-4  # the smoothing term is really there

    model.train()
    task.loss(model, (images, labels)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_evaluate_matches_a_per_image_count(task: ImageNetTask) -> None:
    model = task.build_model()
    torch.manual_seed(0)
    with torch.no_grad():
        model(next(iter(task.train_batches(0)))[0])  # BN running statistics move away from their init
        model.fc.weight.normal_()  # logits that differ a lot between images: top-1/top-5 are not constant
    result = task.evaluate(model)
    assert model.training  # mode restored

    model.eval()
    images = torch.stack([task.val_set[i][0] for i in range(N_VAL)])
    labels = torch.tensor(task.val_set.targets)
    with torch.no_grad():  # the same batch size, other batches: reversed order
        logits = torch.cat([model(chunk) for chunk in images.flip(0).split(8)]).flip(0).double()
    rank = [int((row > row[y]).sum()) for row, y in zip(logits, labels)]  # classes scored above the label
    nll = -torch.log_softmax(logits, dim=1)[torch.arange(N_VAL), labels]
    assert result["top1"] == pytest.approx(100.0 * np.mean([r == 0 for r in rank]))
    assert result["top5"] == pytest.approx(100.0 * np.mean([r < 5 for r in rank]))
    assert 0.0 < result["top1"] < result["top5"] < 100.0
    assert result["val_loss"] == pytest.approx(nll.mean().item(), rel=1e-4)

    capped = ImageNetTask(dataclasses.replace(task.cfg, max_eval_batches=1), task.env)
    assert capped.evaluate(model)["top1"] == pytest.approx(100.0 * np.mean([r == 0 for r in rank[:8]]))


def test_channels_last_models_get_channels_last_inputs(task: ImageNetTask) -> None:
    model = task.build_model().eval()
    batch = next(iter(task.train_batches(0)))
    assert input_memory_format(model) == torch.contiguous_format
    reference = task.loss(model, batch)
    model = model.to(memory_format=torch.channels_last)
    assert input_memory_format(model) == torch.channels_last
    torch.testing.assert_close(task.loss(model, batch), reference, rtol=1e-4, atol=1e-5)


def _distributed_worker(rank: int, world: int, init_file: str, cfg: Config, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        task = ImageNetTask(cfg, RunEnv(device=CPU, seed=5, rank=rank, world_size=world))
        assert isinstance(task.train_sampler, torch.utils.data.DistributedSampler)
        assert task.train_sampler.seed == 5 and task.train_sampler.shuffle
        orders = {}
        for epoch in (0, 1):
            task.train_sampler.set_epoch(epoch)
            orders[epoch] = list(task.train_sampler)
            assert sum(len(y) for _, y in task.train_batches(epoch)) == task.num_train_batches() * 4
        model = task.build_model()
        torch.save(
            {"orders": orders, "eval": task.evaluate(model), "n_batches": task.num_train_batches()}, out
        )
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_sharding_and_evaluation(root: Path, init_dir: Path, tmp_path: Path) -> None:
    cfg = small_cfg(root, init_dir)  # global batch 8 → 4 per process
    ImageNetTask(cfg, RunEnv(device=CPU, seed=5)).build_model()  # writes the seed-5 weights both ranks load
    outs = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.multiprocessing.start_processes(
        _run_rank, args=(2, str(tmp_path / "init"), cfg, outs), nprocs=2, start_method="spawn"
    )
    results = [torch.load(o, weights_only=False) for o in outs]
    for epoch in (0, 1):
        shards = [set(r["orders"][epoch]) for r in results]
        assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == N_TRAIN
    assert results[0]["orders"][0] != results[0]["orders"][1]  # set_epoch reshuffles
    assert results[0]["n_batches"] == N_TRAIN // 2 // 4

    single = ImageNetTask(cfg, RunEnv(device=CPU, seed=5))
    expected = single.evaluate(single.build_model())
    for r in results:
        assert r["eval"]["top1"] == pytest.approx(expected["top1"])
        assert r["eval"]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)


def _run_rank(rank: int, world: int, init_file: str, cfg: Config, outs: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    _distributed_worker(rank, world, init_file, cfg, outs[rank])
