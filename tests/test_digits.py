"""The digits demo task: real bundled data, a fixed stratified split, per-epoch order, sharding, the CNN."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch

from ramda.structure import param_groups
from ramda.tasks import RunEnv, task_module
from ramda.tasks.digits import Config, DigitsTask, load_arrays, split_indices

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_loads_the_real_digits_data():
    images, labels = load_arrays()
    ref = sklearn.datasets.load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, ref.target)
    np.testing.assert_allclose(images[:, 0] * 16.0, ref.images, rtol=0, atol=1e-5)


def test_loads_the_same_csv_from_a_data_root(tmp_path: Path):
    src = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    shutil.copy(src, tmp_path / "digits.csv.gz")
    a, la = load_arrays(str(tmp_path))
    b, lb = load_arrays()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    with gzip.open(tmp_path / "digits.csv.gz", "rt") as f:
        assert len(f.readline().split(",")) == 65  # 64 pixels and the label, the format the loader reads


@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_split_is_a_stratified_partition(fraction: float):
    _, labels = load_arrays()
    train, val = split_indices(labels, fraction, seed=0)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((labels[val] == c).sum()) == round(fraction * n_c)
    _, again_val = split_indices(labels, fraction, seed=0)
    np.testing.assert_array_equal(val, again_val)
    _, other_val = split_indices(labels, fraction, seed=1)
    assert not np.array_equal(val, other_val)


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = DigitsTask(Config(), RunEnv(CPU, seed=3))
    b = DigitsTask(Config(), RunEnv(CPU, seed=3))
    torch.manual_seed(123)  # the global RNG must not matter
    ya = torch.cat([y for _, y in a.train_batches(2)])
    torch.manual_seed(456)
    yb = torch.cat([y for _, y in b.train_batches(2)])
    assert torch.equal(ya, yb)
    assert not torch.equal(ya, torch.cat([y for _, y in a.train_batches(3)]))
    assert len(ya) == len(a.y_train)  # every training image once per epoch
    assert sum(1 for _ in a.train_batches(0)) == a.num_train_batches() == -(-len(a.y_train) // 64)


def test_shards_are_disjoint_and_cover_the_epoch():
    cfg = Config(batch_size=64)
    ranks = [DigitsTask(cfg, RunEnv(CPU, seed=1, rank=r, world_size=2)) for r in range(2)]
    xs = [torch.cat([x.flatten(1) for x, _ in t.train_batches(0)]) for t in ranks]
    assert all(len(x) == len(ranks[0].y_train) // 2 for x in xs)
    assert ranks[0].batch == 32
    rows = {tuple(r.tolist()) for r in torch.cat(xs)}
    assert len(rows) >= len(torch.cat(xs)) - 20  # a few duplicate images exist in the data set itself


def test_max_batches_and_evaluate():
    task = DigitsTask(
        Config(max_train_batches=3, max_eval_batches=1, eval_batch_size=100), RunEnv(CPU, seed=1)
    )
    assert task.num_train_batches() == 3 and len(list(task.train_batches(0))) == 3
    torch.manual_seed(0)
    model = task.build_model().eval()
    out = task.evaluate(model)
    with torch.no_grad():
        logits = model(task.x_val[:100])
    assert out["accuracy"] == pytest.approx(
        100.0 * (logits.argmax(1) == task.y_val[:100]).float().mean().item()
    )
    assert out["val_loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, task.y_val[:100]).item()
    )


def test_cnn_groups_follow_the_paper_layout():
    model = DigitsTask(Config(), RunEnv(CPU, seed=1)).build_model()
    groups = param_groups(model, 1e-3)
    regularised = {id(p) for p in groups[0]["params"]}
    expected = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert regularised == {id(p) for p in expected} and len(expected) == 5
    x = torch.zeros(7, 1, 8, 8)
    assert model(x).shape == (7, 10)


def test_module_contract():
    module = task_module("digits")
    assert module.Config().name == "digits" and module.TASK is DigitsTask
    assert DigitsTask.metric == "accuracy" and DigitsTask.higher_is_better


def test_evaluation_uses_exact_batchnorm_statistics_of_the_training_split():
    task = DigitsTask(Config(), RunEnv(CPU, seed=1))
    torch.manual_seed(0)
    model = task.build_model()
    conv, norm = model.features[0], model.features[1]
    with torch.no_grad():
        conv.weight.mul_(3.0)  # stale running statistics would now be far off
        h = conv(task.x_train)
    task.evaluate(model.eval())
    torch.testing.assert_close(norm.running_mean, h.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(norm.running_var, h.var(dim=(0, 2, 3), unbiased=True))
    assert norm.momentum == 0.1 and not model.training
