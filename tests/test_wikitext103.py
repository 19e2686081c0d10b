"""WikiText-103 task: the real file format, vocabulary, ordered LM batches, perplexity, memory, sharding."""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ramda.fixtures import make
from ramda.optim import RAMDA
from ramda.structure import param_groups, sparsity_report
from ramda.tasks.base import RunEnv
from ramda.tasks.wikitext103 import Config, Corpus, DataConfig, OrderedLMStream, WikiText103Task

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "task" / "wikitext103_tiny.yaml"

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make("wikitext103", tmp_path_factory.mktemp("fx"))


def tiny_config(root: Path, cache: Path, **kw) -> Config:
    """The ``task=wikitext103_tiny`` model (its config file) on ``root``."""
    from omegaconf import OmegaConf

    tiny = OmegaConf.to_container(OmegaConf.load(TINY_YAML))
    assert tiny.pop("defaults") == ["wikitext103", "_self_"]
    tiny.pop("data")
    return Config(data=DataConfig(root=str(root), cache_dir=str(cache)), **{**tiny, "roll": False, **kw})


def reference_tokens(path: Path) -> list[str]:
    """What the recipe reads: every line's whitespace-separated words, then <eos>."""
    return [w for line in path.read_text(encoding="utf-8").split("\n")[:-1] for w in [*line.split(), "<eos>"]]


def test_fixture_has_the_wikitext_format(root: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == [
        "wiki.test.tokens",
        "wiki.train.tokens",
        "wiki.valid.tokens",
    ]
    text = (root / "wiki.train.tokens").read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]
    assert lines[0] == " " and re.fullmatch(r" = [^=]+ = ", lines[1]) and lines[2] == " "
    assert any(re.fullmatch(r" = = [^=]+ = = ", line) for line in lines)
    assert all(line == " " or (line.startswith(" ") and line.endswith(" ")) for line in lines)
    for token in ("@-@", "@,@", "@.@", "<unk>", ","):
        assert f" {token} " in text
    train_words = set(text.split())
    for split in ("valid", "test"):  # closed vocabulary: rare words are <unk> everywhere
        assert set((root / f"wiki.{split}.tokens").read_text(encoding="utf-8").split()) <= train_words


def test_vocabulary_and_encoding_follow_the_recipe(root: Path, tmp_path: Path) -> None:
    corpus = Corpus.load(DataConfig(root=str(root), cache_dir=str(tmp_path)))
    train = reference_tokens(root / "wiki.train.tokens")
    counts = Counter(train)
    assert corpus.itos[0] == "<eos>"
    assert sorted(corpus.itos) == sorted(counts)
    freq = [counts[w] for w in corpus.itos[1:]]
    assert freq == sorted(freq, reverse=True)
    for split in ("train", "valid", "test"):
        decoded = [corpus.itos[i] for i in corpus.splits[split].tolist()]
        assert decoded == reference_tokens(root / f"wiki.{split}.tokens")


def test_cache_is_reused_and_keyed_by_the_source(root: Path, tmp_path: Path) -> None:
    data = DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"))
    first = Corpus.load(data)
    (entry,) = (tmp_path / "cache").iterdir()
    files = sorted(p.name for p in entry.iterdir())
    assert files == ["test.pt", "train.pt", "valid.pt", "vocab.txt"]  # no temporary files left
    stamps = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    second = Corpus.load(data)
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == stamps  # read, not rewritten
    assert second.itos == first.itos
    assert all(torch.equal(second.splits[s], first.splits[s]) for s in first.splits)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in root.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    (copy / "wiki.valid.tokens").write_text(" a b <unk> \n", encoding="utf-8")
    other = Corpus.load(replace(data, root=str(copy)))
    assert len(list((tmp_path / "cache").iterdir())) == 2
    assert [other.itos[i] for i in other.splits["valid"].tolist()] == ["<unk>", "<unk>", "<unk>", "<eos>"]


def test_missing_data_is_one_clear_error(tmp_path: Path) -> None:
    expected = (
        f"task.data.root: {tmp_path} has no wiki.train.tokens; expected wiki.{{train,valid,test}}.tokens"
    )
    with pytest.raises(ValueError) as err:
        WikiText103Task(tiny_config(tmp_path, tmp_path / "cache"), RunEnv(CPU))
    assert str(err.value) == expected
    assert not (tmp_path / "cache").exists()
    bad = Config(data=DataConfig(root=str(tmp_path), source="zip"))
    with pytest.raises(ValueError, match=r"task.data.source='zip' is not valid; use 'files' or 'hf'"):
        WikiText103Task(bad, RunEnv(CPU))


def test_hf_source_without_datasets_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail as when absent
    with pytest.raises(ValueError, match=r"task.data.source=hf needs the Hugging Face `datasets` package"):
        WikiText103Task(Config(data=DataConfig(source="hf")), RunEnv(CPU))


def test_ordered_stream_matches_the_recipe_layout() -> None:
    n, bsz, tgt_len = 103, 4, 7
    tokens = torch.arange(n, dtype=torch.int32)
    batches = list(OrderedLMStream(tokens, bsz, tgt_len))
    n_step = n // bsz  # 25 rows, the last 3 tokens dropped
    assert len(batches) == len(OrderedLMStream(tokens, bsz, tgt_len)) == math.ceil((n_step - 1) / tgt_len)
    starts = 0
    for data, target in batches:
        for col in range(bsz):  # column c is the contiguous chunk [c·n_step, (c+1)·n_step)
            expected = torch.arange(col * n_step + starts, col * n_step + starts + data.shape[0])
            assert torch.equal(data[:, col].long(), expected)
        assert torch.equal(target.long(), data.long() + 1)
        starts += data.shape[0]
    assert starts == n_step - 1 and batches[-1][0].shape[0] == (n_step - 1) % tgt_len
    # Two processes see the two halves of the global batch's columns.
    shards = [list(OrderedLMStream(tokens, bsz, tgt_len, rank, 2)) for rank in range(2)]
    for k, (data, target) in enumerate(batches):
        assert torch.equal(torch.cat([shards[0][k][0], shards[1][k][0]], 1), data)
        assert torch.equal(torch.cat([shards[0][k][1], shards[1][k][1]], 1), target)
    with pytest.raises(ValueError, match="not divisible"):
        OrderedLMStream(tokens, 5, tgt_len, 0, 2)


def test_perplexity_is_exp_mean_nll_over_all_tokens(root: Path, tmp_path: Path) -> None:
    """Eval in windows of 37 with a memory that never forgets = one pass over each column preceded by its
    warm-up rows (the last 74 of the previous column, as the recipe's evaluation iterator), counting the
    column's tokens only."""
    cfg = tiny_config(root, tmp_path, eval_tgt_len=37, eval_mem_len=100_000, eval_batch_size=3)
    task = WikiText103Task(cfg, RunEnv(CPU, seed=1))
    torch.manual_seed(0)
    model = task.build_model().double()
    metrics = task.evaluate(model)
    assert model.training  # evaluate restores the mode
    valid = task.corpus.splits["valid"].long()
    n_step = valid.numel() // 3
    columns = valid[: 3 * n_step].view(3, n_step).t()
    warm = task._stream("valid", 3, 37, 100_000).warm_rows
    assert warm == min(n_step, math.ceil(100_000 / 37) * 37)
    stream = torch.cat((columns.roll(1, 1)[-warm:], columns))
    model.eval()
    with torch.no_grad():
        nll, _ = model(stream[:-1], stream[1:], mem_len=0)
    first = math.ceil(warm / 37) * 37  # the first counted window starts there
    nll = nll[first:]
    assert metrics["val_loss"] == pytest.approx(nll.mean().item(), rel=1e-8)
    assert metrics["perplexity"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-8)


def test_memory_carries_across_batches_epochs_and_checkpoints(root: Path, tmp_path: Path) -> None:
    """The memory of one window is the next one's (across an epoch end too, as the released loop); the
    task's state restores it, also into a process of two (its half of the columns)."""
    task = WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU, seed=1))
    torch.manual_seed(0)
    model = task.build_model().double().eval()
    first, second = list(task.train_batches(0))[:2]
    assert task.state_dict() == {"mems": None}
    task.loss(model, first)
    saved = task.state_dict()
    carried = task.loss(model, second)
    _, mems = model(first[0].long(), first[1].long())
    with_memory, _ = model(second[0].long(), second[1].long(), mems)
    assert carried.item() == pytest.approx(with_memory.mean().item(), rel=1e-12)
    task.on_epoch_start(1)
    assert task.loss(model, second).item() != pytest.approx(carried.item(), rel=1e-9)  # memory kept
    resumed = WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU, seed=1))
    resumed.load_state_dict([saved])
    assert resumed.loss(model, second).item() == pytest.approx(carried.item(), rel=1e-12)
    half = WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU, seed=1, rank=1, world_size=2))
    half.load_state_dict([saved])
    assert all(torch.equal(h, m[:, 2:]) for h, m in zip(half._mems, saved["mems"]))


def test_roll_matches_the_released_in_place_rotation(root: Path, tmp_path: Path) -> None:
    """The released iterator rotates each column in place at every epoch start (epochs from 1), drawing the
    offsets one column at a time from a generator seeded seed + epoch; epoch e (0-based) therefore reads the
    stream after e + 1 rotations."""
    seed, batch = 7, 4
    task = WikiText103Task(tiny_config(root, tmp_path, roll=True), RunEnv(CPU, seed=seed))
    rows = task._stream("train", batch, task.cfg.tgt_len).rows
    data = rows.clone()
    for epoch in range(3):
        gen = torch.Generator().manual_seed(seed + epoch + 1)
        for c in range(batch):
            shift = int(torch.randint(0, data.size(0), (1,), generator=gen))
            data[:, c] = torch.cat((data[shift:, c], data[:shift, c]))
        ours = list(task.train_batches(epoch))
        expected = list(OrderedLMStream(data.t().reshape(-1), batch, task.cfg.tgt_len))
        assert len(ours) == len(expected)
        for (d, t), (de, te) in zip(ours, expected):
            assert torch.equal(d, de) and torch.equal(t, te)


def test_a_process_of_two_trains_on_its_half_of_each_batch(root: Path, tmp_path: Path) -> None:
    whole = WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU))
    half = WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU, rank=1, world_size=2))
    assert half.num_train_batches() == whole.num_train_batches()
    for (data, target), (d1, t1) in zip(whole.train_batches(0), half.train_batches(0)):
        assert torch.equal(data[:, 2:], d1) and torch.equal(target[:, 2:], t1)
    with pytest.raises(ValueError, match=r"task.batch_size=4 is not divisible"):
        WikiText103Task(tiny_config(root, tmp_path), RunEnv(CPU, rank=0, world_size=3))


def test_limits_and_bad_cutoffs(root: Path, tmp_path: Path) -> None:
    task = WikiText103Task(tiny_config(root, tmp_path, max_train_batches=3), RunEnv(CPU))
    assert task.num_train_batches() == 3 == len(list(task.train_batches(0)))
    bad = WikiText103Task(tiny_config(root, tmp_path, cutoffs=[40, 100_000]), RunEnv(CPU))
    with pytest.raises(ValueError, match=r"task.cutoffs=\[40, 100000\] must be strictly increasing"):
        bad.build_model()


def test_ramda_training_lowers_loss_and_zeroes_groups(root: Path, tmp_path: Path) -> None:
    """40 RAMDA steps (c = 1: the iterate is the subproblem solution) through the Task API: the loss goes
    down; a large λ makes whole input columns of the structured weights exactly zero."""
    results = {}
    for lam in (0.0, 1e-3):
        task = WikiText103Task(
            tiny_config(root, tmp_path, max_train_batches=40, max_eval_batches=30), RunEnv(CPU, seed=1)
        )
        torch.manual_seed(1)
        model = task.build_model()
        opt = RAMDA(param_groups(model, lam), lr=0.1, momentum=1.0)
        before = task.evaluate(model)["val_loss"]
        task.on_epoch_start(0)
        for batch in task.train_batches(0):
            loss = task.loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        results[lam] = (before, task.evaluate(model)["val_loss"], sparsity_report(model), model)
    before, after, report, _ = results[0.0]
    assert after < before - 0.5
    assert report["weighted_group_sparsity"] == 0.0
    _, _, report, model = results[1e-3]
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    zero_columns = sum(int((w == 0).all(0).sum()) for w in weights)
    assert zero_columns / sum(w.shape[1] for w in weights) > 0.5
    assert report["group_sparsity"] == pytest.approx(zero_columns / sum(w.shape[1] for w in weights))
    assert model.word_emb.emb_layers[0].weight.count_nonzero() == model.word_emb.emb_layers[0].weight.numel()


def _distributed_worker(rank: int, root: str, cache: str, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        result: dict[str, object] = {}
        try:
            WikiText103Task(tiny_config(Path(root) / "missing", Path(cache)), RunEnv(CPU, 1, rank, 2))
        except ValueError as err:
            result["error"] = str(err)
        task = WikiText103Task(tiny_config(Path(root), Path(cache)), RunEnv(CPU, 1, rank, 2))
        torch.manual_seed(0)
        result["metrics"] = task.evaluate(task.build_model().double())
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_share_the_cache_and_agree_on_perplexity(root: Path, tmp_path: Path) -> None:
    """Real gloo processes: rank 0 builds the cache, a missing root fails on both ranks, and the all-reduced
    evaluation over the two halves of the columns equals the single-process one."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = (str(root), str(tmp_path / "cache"), port, str(tmp_path))
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="fork")
    single = WikiText103Task(tiny_config(root, tmp_path / "cache"), RunEnv(CPU, seed=1))
    torch.manual_seed(0)
    expected = single.evaluate(single.build_model().double())
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert result["error"].startswith(f"task.data.root: {root / 'missing'} has no wiki.train.tokens")
        assert result["metrics"]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-12)


def test_unwritable_cache_dir_is_one_clear_error(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"^task.data.cache_dir: cannot write the vocabulary cache"):
        Corpus.load(DataConfig(root=str(root), cache_dir=str(blocker)))
