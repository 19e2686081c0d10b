"""WikiText-103 word-level language modeling with Transformer-XL (the paper's language table).

Data: the word-level files ``wiki.{train,valid,test}.tokens`` (``data.source=files``) or a Hugging Face
``datasets`` copy (``data.source=hf``, offline): the Hub's ``wikitext-103-v1`` from the local cache, or a
``DatasetDict`` saved to disk (``data.hf_path``). Every line, blank lines
included, is split on whitespace and ends with ``<eos>``; the vocabulary is ``<eos>`` followed by the training
words by decreasing frequency (ties in order of first appearance), so the adaptive softmax's head holds the
frequent words. Vocabulary and encoded splits are cached under ``data.cache_dir``.

Batches follow the recipe's ordered iterator (NVIDIA's, as the authors ran it): the token stream is cut into
``batch_size`` contiguous columns and read in windows of ``tgt_len`` (targets shifted by one), each epoch with
every column rotated by a random offset (``roll``); the model carries a memory of ``mem_len`` hidden states
from one window to the next, across epoch ends too, and checkpoints keep it. Evaluation reads the whole
validation split the same way (``eval_batch_size`` columns, windows of ``eval_tgt_len``, memory
``eval_mem_len``, no roll), reporting ``val_loss`` = mean NLL over all its tokens and ``perplexity`` =
exp(val_loss): the figure the authors' table reports. Their test protocol is ``scripts/eval_wikitext103.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ramda.engine.errors import DataError
from ramda.files import atomic_write
from ramda.tasks.base import RunEnv, Task, TaskConfig, per_process_batch

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
CACHE_VERSION = 1


@dataclass
class DataConfig:
    """``root``: directory with ``wiki.{train,valid,test}.tokens`` (source ``files``). ``source``: ``files``
    or ``hf``: with ``hf_path`` empty, ``datasets.load_dataset("wikitext", "wikitext-103-v1")`` from the local
    cache, offline (``hf_cache_dir`` overrides the cache location); else ``datasets.load_from_disk(hf_path)``,
    a ``DatasetDict`` with ``train``/``validation``/``test`` splits of a ``text`` column, one line per row as
    the Hub's copy (``python scripts/make_fixtures.py wikitext103 DIR --hf`` writes one). ``cache_dir``: where
    the vocabulary and encoded splits go."""

    root: str = "data/wikitext-103"
    """Directory with ``wiki.{train,valid,test}.tokens`` (source ``files``)."""
    source: str = "files"
    """``files`` (the token files under ``root``) or ``hf`` (Hugging Face ``datasets``, offline)."""
    hf_path: str = ""
    """With ``source=hf``: a ``DatasetDict`` saved with ``save_to_disk`` (empty: the Hub copy, cached)."""
    hf_cache_dir: str = ""
    """With ``source=hf`` and no ``hf_path``: the ``datasets`` cache to read (empty: its default)."""
    cache_dir: str = "results/cache/wikitext103"
    """Where the vocabulary and the encoded splits are cached (per source fingerprint)."""


@dataclass
class Config(TaskConfig):
    """NVIDIA's Transformer-XL base for WikiText-103, the authors' model (``Transformer-XL/pytorch/
    <Opt>_wt103_base.yaml``); ``batch_size`` is global. ``roll``: each epoch rotates every column of the
    training stream by a random offset drawn with the seed ``seed + epoch + 1`` (the released iterator's
    ``roll``, epochs counted from 1). ``tie_projs[i]``: softmax cluster i shares the embedding's projection
    (no effect without projections, i.e. with ``div_val`` 1 and ``d_embed`` = ``d_model``)."""

    name: str = "wikitext103"
    data: DataConfig = field(default_factory=DataConfig)
    """Where the text comes from and where its encoding is cached."""
    batch_size: int = 64
    eval_batch_size: int = 16
    grad_clip: float = 0.25
    n_layer: int = 16
    """Decoder layers."""
    d_model: int = 512
    """Model width."""
    n_head: int = 8
    """Attention heads."""
    d_head: int = 64
    """Width of each head."""
    d_inner: int = 2048
    """Inner width of the feed-forward layers."""
    d_embed: int = 0
    """Embedding width (0: ``d_model``)."""
    dropout: float = 0.1
    """Dropout rate."""
    dropatt: float = 0.0
    """Dropout rate on the attention probabilities."""
    tgt_len: int = 192
    """Tokens per training window."""
    mem_len: int = 192
    """Memory length (hidden states kept from the previous windows) in training."""
    eval_tgt_len: int = 192
    """Tokens per evaluation window."""
    eval_mem_len: int = 192
    """Memory length in evaluation (also the warm-up that first fills it)."""
    clamp_len: int = -1
    """Clamp relative positions at this distance (-1: no clamping)."""
    same_length: bool = False
    """Every query attends to the same number of keys."""
    cutoffs: list[int] = field(default_factory=lambda: [19997, 39997, 199997])
    """Adaptive softmax/embedding cluster boundaries (word ids)."""
    div_val: int = 1
    """Each tail cluster's embedding width is divided by ``div_val`` more."""
    tie_weight: bool = True
    """The softmax shares the embedding's weights."""
    tie_projs: list[bool] = field(default_factory=lambda: [False, True, True, True])
    """Per softmax cluster: share the embedding's projection (no effect without projections)."""
    pre_lnorm: bool = False
    """LayerNorm before (not after) each sublayer."""
    roll: bool = True
    """Rotate every column of the training stream each epoch, seeded with seed + epoch + 1 (released ``roll``)."""


def split_files(root: Path) -> dict[str, Path]:
    """The three token files under ``root``; a missing one is a ``ValueError`` naming ``task.data.root``."""
    files = {split: root / f"wiki.{split}.tokens" for split in SPLITS}
    for path in files.values():
        if not path.is_file():
            raise ValueError(
                f"task.data.root: {root} has no {path.name}; expected wiki.{{train,valid,test}}.tokens"
            )
    return files


def _file_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        yield from f


def _hf_lines(dataset: Any) -> Iterator[str]:
    for rows in dataset.iter(batch_size=10_000):
        yield from rows["text"]


def build_vocab(lines: Iterable[str]) -> list[str]:
    """``<eos>`` then every word of ``lines`` by decreasing count (ties: first appearance first)."""
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line.split())
    counts.pop(EOS, None)
    return [EOS, *sorted(counts, key=lambda w: -counts[w])]


def encode(lines: Iterable[str], stoi: dict[str, int], where: str) -> Tensor:
    """Token ids (int32) of ``lines``, ``<eos>`` after each line; unknown words map to ``<unk>`` when the
    vocabulary has it, else a ``ValueError`` naming the word and ``where``."""
    eos, unk = stoi[EOS], stoi.get(UNK)
    ids = array("i")
    for line in lines:
        words = line.split()
        try:
            ids.extend([stoi[w] for w in words])
        except KeyError:
            if unk is None:
                bad = next(w for w in words if w not in stoi)
                raise ValueError(
                    f"{where}: word '{bad}' is not in the training vocabulary, which has no {UNK}"
                ) from None
            ids.extend([stoi.get(w, unk) for w in words])
        ids.append(eos)
    return torch.frombuffer(ids, dtype=torch.int32).clone() if ids else torch.zeros(0, dtype=torch.int32)


def _read_cache(cache: Path, vocab_path: Path) -> tuple[list[str], dict[str, Tensor]]:
    """The cached vocabulary and token streams; a corrupt file is a :class:`DataError` naming it."""
    hint = f"delete {cache}: it is rebuilt from the source"
    try:
        itos = vocab_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(str(vocab_path), f"a corrupt vocabulary cache ({err})", hint) from None
    splits = {}
    for s in SPLITS:
        path = cache / f"{s}.pt"
        try:
            splits[s] = torch.load(path, weights_only=True)
        except Exception as err:  # torch raises several types for truncated or foreign files
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            raise DataError(str(path), f"a corrupt token cache ({reason})", hint) from None
        if not isinstance(splits[s], Tensor) or splits[s].dim() != 1:
            raise DataError(str(path), "a corrupt token cache (not a 1-D tensor of token ids)", hint)
    return itos, splits


class Corpus:
    """Vocabulary (``itos``) and the encoded ``train``/``valid``/``test`` streams (1-D int32 tensors)."""

    def __init__(self, itos: list[str], splits: dict[str, Tensor]):
        self.itos = itos
        self.splits = splits

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @classmethod
    def load(cls, data: DataConfig, build: bool = True) -> Corpus:
        """Read the cache for ``data`` or (``build=True``) build it from the source, written atomically."""
        source = _Source(data)
        cache = Path(data.cache_dir) / source.fingerprint()
        vocab_path = cache / "vocab.txt"
        if vocab_path.is_file() and all((cache / f"{s}.pt").is_file() for s in SPLITS):
            return cls(*_read_cache(cache, vocab_path))
        if not build:
            raise FileNotFoundError(f"no WikiText-103 cache at {cache}")
        itos = build_vocab(source.lines("train"))
        stoi = {w: i for i, w in enumerate(itos)}
        splits = {s: encode(source.lines(s), stoi, source.where(s)) for s in SPLITS}
        try:
            cache.mkdir(parents=True, exist_ok=True)
            for s in SPLITS:
                atomic_write(cache / f"{s}.pt", lambda f, s=s: torch.save(splits[s], f), durable=False)
            vocab = "\n".join(itos).encode()
            atomic_write(vocab_path, lambda f: f.write(vocab), durable=False)
        except OSError as err:
            raise ValueError(
                f"task.data.cache_dir: cannot write the vocabulary cache {cache} ({err})"
            ) from None
        return cls(itos, splits)


class _Source:
    """Where the lines come from: the token files or the Hugging Face cache."""

    def __init__(self, data: DataConfig):
        if data.source == "files":
            self.files = split_files(Path(data.root))
        elif data.source == "hf":
            self.dataset = _load_hf(data.hf_path, data.hf_cache_dir)
        else:
            raise ValueError(f"task.data.source={data.source!r} is not valid; use 'files' or 'hf'")
        self.source = data.source

    def fingerprint(self) -> str:
        if self.source == "files":
            parts = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in self.files.values()]
        else:
            parts = [self.dataset[HF_SPLITS[s]]._fingerprint for s in SPLITS]
        blob = json.dumps([CACHE_VERSION, self.source, parts]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def lines(self, split: str) -> Iterator[str]:
        if self.source == "files":
            return _file_lines(self.files[split])
        return _hf_lines(self.dataset[HF_SPLITS[split]])

    def where(self, split: str) -> str:
        if self.source == "files":
            return str(self.files[split])
        return f"wikitext-103-v1/{HF_SPLITS[split]}"


def _load_hf(path: str, cache_dir: str) -> Any:
    """``datasets.load_from_disk(path)``, or without ``path`` ``datasets.load_dataset("wikitext",
    "wikitext-103-v1")`` from the local cache only (newer ``datasets`` versions keep it under the Hub name
    ``Salesforce/wikitext``, tried second)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise ValueError(
            "task.data.source=hf needs the Hugging Face `datasets` package (pip install datasets); "
            "or use task.data.source=files with task.data.root=<dir with wiki.{train,valid,test}.tokens>"
        ) from None
    if path:
        try:
            dataset = datasets.load_from_disk(path)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(
                f"task.data.hf_path: {path} is not a dataset saved with save_to_disk ({err})"
            ) from None
        missing = [s for s in HF_SPLITS.values() if s not in dataset or "text" not in dataset[s].column_names]
        if missing:
            raise ValueError(
                f"task.data.hf_path: {path} lacks the split(s) {', '.join(missing)} with a 'text' column; "
                f"expected a DatasetDict with {', '.join(HF_SPLITS.values())}"
            )
        return dataset
    errors = []
    for name in ("wikitext", "Salesforce/wikitext"):
        try:
            return datasets.load_dataset(name, "wikitext-103-v1", cache_dir=cache_dir or None)
        except Exception as err:  # datasets raises many types for a missing offline copy
            errors.append(f"{name}: {err}")
    raise ValueError(
        f"task.data.source=hf: wikitext-103-v1 is not in the local Hugging Face cache "
        f"({cache_dir or 'default location'}); {' | '.join(errors)}"
    )


class OrderedLMStream:
    """The recipe's ordered LM iterator: ``tokens`` cut into ``batch_size`` contiguous columns (the tail that
    does not fill a row is dropped), read in windows of ``tgt_len`` rows: ``data = rows[i : i+L]``,
    ``target = rows[i+1 : i+1+L]``. With ``world_size > 1`` this process keeps columns
    ``[rank·b, (rank+1)·b)``, ``b = batch_size / world_size``: together the processes see the global
    batch. ``warmup`` > 0 (the evaluation memory length, as the recipe's evaluation iterator): the rows are
    preceded by ``warm_rows`` = ⌈warmup / tgt_len⌉·tgt_len rows, column c getting the last ones of column
    c − 1 (column 0 those of the last column), whose windows only fill the memory."""

    def __init__(
        self,
        tokens: Tensor,
        batch_size: int,
        tgt_len: int,
        rank: int = 0,
        world_size: int = 1,
        warmup: int = 0,
    ):
        n_step = tokens.numel() // batch_size
        if n_step < 2:
            raise ValueError(
                f"a split of {tokens.numel()} tokens is too short for batch size {batch_size} "
                "(each column needs at least 2 tokens)"
            )
        local = per_process_batch(batch_size, world_size)
        rows = tokens[: n_step * batch_size].view(batch_size, n_step).t()
        self.warm_rows = 0
        if warmup > 0:
            head = rows.roll((math.ceil(warmup / tgt_len) * tgt_len, 1), (0, 1))
            head = head[: math.ceil(warmup / tgt_len) * tgt_len]
            rows, self.warm_rows = torch.cat((head, rows)), head.size(0)
        self.rows = rows[:, rank * local : (rank + 1) * local].contiguous()
        self.tgt_len = tgt_len
        self.columns = slice(rank * local, (rank + 1) * local)

    def __len__(self) -> int:
        return math.ceil((self.rows.size(0) - 1) / self.tgt_len)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.windows()

    def windows(self, shift: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """The windows in order; with ``shift`` (one offset per global column, see :func:`roll_shifts`)
        column c reads the stream rotated by ``shift[c]``: row j holds row ``(j + shift[c]) mod n``."""
        n = self.rows.size(0)
        cols = torch.arange(self.rows.size(1))
        local = None if shift is None else shift[self.columns]
        for i in range(0, n - 1, self.tgt_len):
            seq_len = min(self.tgt_len, n - 1 - i)
            if local is None:
                yield self.rows[i : i + seq_len], self.rows[i + 1 : i + 1 + seq_len]
            else:
                block = self.rows[(torch.arange(i, i + seq_len + 1)[:, None] + local) % n, cols]
                yield block[:-1], block[1:]


def roll_shifts(seed: int, epoch: int, n_rows: int, batch_size: int) -> Tensor:
    """The offset of every column after the released iterator's ``roll`` at epochs 1 … ``epoch + 1`` (it
    rotates the stream in place at each epoch start, so the offsets add up): at epoch k, column c moves by
    ``randint(0, n_rows)``, the c-th draw of a generator seeded ``seed + k``."""
    total = torch.zeros(batch_size, dtype=torch.long)
    for k in range(1, epoch + 2):
        gen = torch.Generator().manual_seed(seed + k)
        total += torch.cat([torch.randint(0, n_rows, (1,), generator=gen) for _ in range(batch_size)])
    return total % n_rows


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class WikiText103Task(Task):
    metric = "perplexity"
    higher_is_better = False

    def __init__(self, cfg: Config, env: RunEnv) -> None:
        super().__init__(cfg, env)
        self.cfg: Config = cfg
        for key in ("tgt_len", "eval_tgt_len"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"task.{key}={getattr(cfg, key)} must be >= 1")
        for key in ("mem_len", "eval_mem_len"):
            if getattr(cfg, key) < 0:
                raise ValueError(f"task.{key}={getattr(cfg, key)} must be >= 0")
        self.local_batch = per_process_batch(cfg.batch_size, env.world_size)
        self.eval_batch = cfg.eval_batch_size or cfg.batch_size
        per_process_batch(self.eval_batch, env.world_size, "task.eval_batch_size")
        self.corpus = self._load_corpus()
        self._mems: list[Tensor] | None = None
        self._streams: dict[tuple[str, int, int], OrderedLMStream] = {}

    def _load_corpus(self) -> Corpus:
        """Rank 0 builds the cache (when missing) while the others wait, then everyone reads it. Every rank
        checks the source first, and a failure on rank 0 is raised on every rank (nobody waits forever)."""
        dist = torch.distributed
        if not (self.env.distributed and dist.is_available() and dist.is_initialized()):
            return Corpus.load(self.cfg.data)
        _Source(self.cfg.data)
        status: list[str | None] = [None]
        if self.env.is_main:
            try:
                corpus = Corpus.load(self.cfg.data)
            except (ValueError, OSError) as err:
                status[0] = str(err)
        dist.broadcast_object_list(status, src=0)
        if status[0] is not None:
            raise ValueError(status[0])
        return corpus if self.env.is_main else Corpus.load(self.cfg.data, build=False)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        n_token = self.corpus.vocab_size
        if any(b <= a for a, b in zip([0, *cfg.cutoffs], [*cfg.cutoffs, n_token])):
            raise ValueError(
                f"task.cutoffs={list(cfg.cutoffs)} must be strictly increasing and below the vocabulary "
                f"size {n_token}"
            )
        from ramda.models.transformer_xl import TransformerXL

        model = TransformerXL(
            n_token,
            n_layer=cfg.n_layer,
            d_model=cfg.d_model,
            n_head=cfg.n_head,
            d_head=cfg.d_head,
            d_inner=cfg.d_inner,
            dropout=cfg.dropout,
            dropatt=cfg.dropatt,
            mem_len=cfg.mem_len,
            cutoffs=list(cfg.cutoffs),
            div_val=cfg.div_val,
            d_embed=cfg.d_embed or None,
            tie_weight=cfg.tie_weight,
            tie_projs=list(cfg.tie_projs),
            clamp_len=cfg.clamp_len,
            same_length=cfg.same_length,
            pre_lnorm=cfg.pre_lnorm,
        )
        return model.to(self.env.device)

    def _stream(self, split: str, batch_size: int, tgt_len: int, warmup: int = 0) -> OrderedLMStream:
        key = (split, batch_size, tgt_len, warmup)
        if key not in self._streams:
            tokens = self.corpus.splits[split]
            self._streams[key] = OrderedLMStream(
                tokens, batch_size, tgt_len, self.env.rank, self.env.world_size, warmup
            )
        return self._streams[key]

    def train_batches(self, epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
        """The ordered stream, rotated per column for ``epoch`` when ``roll`` is on; this process's columns.
        The memory carries over from the previous epoch's last window, as in the released loop."""
        stream = self._stream("train", self.cfg.batch_size, self.cfg.tgt_len)
        shift = None
        if self.cfg.roll:
            shift = roll_shifts(self.env.seed, epoch, stream.rows.size(0), self.cfg.batch_size)
        return itertools.islice(stream.windows(shift), self.num_train_batches())

    def state_dict(self) -> dict[str, Any]:
        """The training memory (``n_layer + 1`` tensors ``[≤ mem_len, local batch, d]``), so that a run resumed
        mid-epoch continues with it."""
        return {"mems": None if self._mems is None else [m.detach().cpu() for m in self._mems]}

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        """Every saving rank's memory, joined along the batch and cut into this process's columns (the
        number of processes may differ from the saving run's)."""
        if any(s.get("mems") is None for s in states):
            self._mems = None
            return
        stream = self._stream("train", self.cfg.batch_size, self.cfg.tgt_len)
        layers = zip(*(s["mems"] for s in states))
        self._mems = [torch.cat(parts, 1)[:, stream.columns].to(self.env.device) for parts in layers]

    def num_train_batches(self) -> int:
        n = len(self._stream("train", self.cfg.batch_size, self.cfg.tgt_len))
        return min(n, self.cfg.max_train_batches) if self.cfg.max_train_batches > 0 else n

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Mean NLL of the window's tokens given the window and the memory of the previous windows."""
        data, target = (t.to(self.env.device, non_blocking=True).long() for t in batch)
        nll, self._mems = model(data, target, self._mems)
        return nll.mean()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        """``val_loss`` = Σ NLL / #tokens over the split (with memory; the warm-up windows that first fill the
        memory are not counted, as in the recipe), ``perplexity`` = exp(val_loss)."""
        cfg = self.cfg
        net = _unwrap(model)
        was_training = net.training
        net.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.env.device)
        mems = None
        stream = self._stream(split, self.eval_batch, cfg.eval_tgt_len, cfg.eval_mem_len)
        limit = cfg.max_eval_batches if cfg.max_eval_batches > 0 else None
        for k, (data, target) in enumerate(itertools.islice(stream, limit)):
            data, target = data.to(self.env.device).long(), target.to(self.env.device).long()
            nll, mems = net(data, target, mems, mem_len=cfg.eval_mem_len)
            if k * cfg.eval_tgt_len >= stream.warm_rows:
                total[0] += nll.double().sum()
                total[1] += nll.numel()
        net.train(was_training)
        if self.env.distributed and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        mean = (total[0] / total[1]).item()
        return {"val_loss": mean, "perplexity": math.exp(mean)}


TASK = WikiText103Task
