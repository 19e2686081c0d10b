"""LJSpeech / Tacotron2: the paper's speech-synthesis task, on the NVIDIA Tacotron2 recipe.

Data: the LJSpeech-1.1 directory (``<root>/metadata.csv``, ``<root>/wavs/<id>.wav``, 22.05 kHz mono) and
the standard 12500/100/500 split (``ljs_audio_text_{train,val,test}_filelist.txt``, lines
``LJSpeech-1.1/wavs/<id>.wav|<normalized text>``), shipped in ``ramda/data/ljspeech_filelists``.
Features: the log-mel spectrogram ``log(max(M |STFT(x)|, clamp))`` with a Hann window, centre (reflect)
padding, magnitude (power 1) and a Slaney-normalised Slaney-scale mel filterbank M, so a clip of n samples
has ``1 + n // hop`` frames. Text: :mod:`ramda.tasks.ljspeech_text` (english cleaners, 148 symbols).

Model: torchaudio's ``Tacotron2`` (the NVIDIA architecture, BatchNorm scales uniform in [0, 1) as NVIDIA's
``init_bn``), trained with teacher forcing. Loss per batch: MSE(mel, target) + MSE(post-net mel, target) +
BCE-with-logits(gate, gate target), each a mean over the padded batch, where the gate target is 1 from a
clip's last frame on; padded frames count (the authors' loss) unless ``mask_padding``. The reported
metric ``val_loss`` is that loss averaged over the validation batches (prenet dropout stays on, as in the
recipe; it is seeded so the number is a function of the weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from ramda.engine.errors import DataError
from ramda.files import atomic_write
from ramda.tasks.base import RunEnv, Task, TaskConfig, per_process_batch

SPLITS = ("train", "val", "test")
CACHE_PARAMS = "audio.json"


def filelist_name(split: str) -> str:
    return f"ljs_audio_text_{split}_filelist.txt"


@dataclass
class DataConfig:
    """``root``: the LJSpeech-1.1 directory. ``filelists``: directory of the three split lists (None: the
    shipped standard split). ``mel_cache``: directory of cached log-mels ``<id>.pt`` (None: no cache)."""

    root: str = "data/LJSpeech-1.1"
    """The ``LJSpeech-1.1`` directory (``metadata.csv``, ``wavs/``)."""
    filelists: str | None = None
    """Directory of the three split lists ``ljs_audio_text_{train,val,test}_filelist.txt`` (``null``: the
    shipped standard split)."""
    mel_cache: str | None = None
    """Directory of cached log-mels ``<id>.pt`` (``null``: computed in the loader workers every epoch)."""


@dataclass
class AudioConfig:
    """The recipe's audio front end (docs/math.md#the-papers-settings)."""

    sample_rate: int = 22050
    """Sampling rate of the wavs, Hz."""
    n_mels: int = 80
    """Mel bins."""
    n_fft: int = 1024
    """FFT size."""
    hop_length: int = 256
    """Hop between frames, samples."""
    win_length: int = 1024
    """Window length, samples."""
    f_min: float = 0.0
    """Lowest mel frequency, Hz."""
    f_max: float = 8000.0
    """Highest mel frequency, Hz."""
    clamp: float = 1e-5
    """Log-mel floor: log(max(x, clamp))."""


@dataclass
class ModelConfig:
    """Constructor arguments of ``torchaudio.models.Tacotron2``; the defaults are the NVIDIA model."""

    symbol_embedding_dim: int = 512
    """Text symbol embedding size."""
    encoder_embedding_dim: int = 512
    """Encoder channels."""
    encoder_n_convolution: int = 3
    """Encoder conv layers."""
    encoder_kernel_size: int = 5
    """Encoder conv kernel size."""
    decoder_rnn_dim: int = 1024
    """Decoder LSTM size."""
    attention_rnn_dim: int = 1024
    """Attention LSTM size."""
    attention_hidden_dim: int = 128
    """Attention hidden size."""
    attention_location_n_filter: int = 32
    """Location-sensitive attention filters."""
    attention_location_kernel_size: int = 31
    """Location-sensitive attention kernel size."""
    prenet_dim: int = 256
    """Decoder pre-net size."""
    postnet_n_convolution: int = 5
    """Post-net conv layers."""
    postnet_kernel_size: int = 5
    """Post-net conv kernel size."""
    postnet_embedding_dim: int = 512
    """Post-net channels."""
    decoder_dropout: float = 0.1
    """Dropout of the decoder LSTM output."""
    attention_dropout: float = 0.1
    """Dropout of the attention LSTM output."""


@dataclass
class Config(TaskConfig):
    name: str = "ljspeech"
    batch_size: int = 64
    num_workers: int = 4
    grad_clip: float = 1.0
    mask_padding: bool = False
    """Mask the padded frames out of the loss (false: the authors' loss, where they count)."""
    uniform_bn_weight: bool = True
    """BatchNorm scales drawn uniform in [0, 1), as NVIDIA's ``init_bn`` (false: torch's ones)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Where the clips are, the split and the mel cache."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """The log-mel front end."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Constructor arguments of ``torchaudio.models.Tacotron2``; the defaults are the NVIDIA model."""


# ---------------------------------------------------------------------------------------------- data files


def shipped_filelists() -> Path:
    """The standard split shipped with the package."""
    return Path(str(resources.files("ramda") / "data" / "ljspeech_filelists"))


def read_filelist(path: Path) -> list[tuple[str, str]]:
    """``(id, text)`` pairs of a recipe filelist (``.../<id>.wav|text`` per line)."""
    if not path.is_file():
        raise ValueError(
            f"task.data.filelists: {path} does not exist (expected {filelist_name('train')} etc.)"
        )
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        wav, sep, text = line.partition("|")
        if not sep or not wav.endswith(".wav"):
            raise ValueError(f"{path}:{lineno}: expected '<path>/<id>.wav|<text>', got {line[:80]!r}")
        items.append((Path(wav).stem, text))
    return items


def check_root(root: str | Path) -> Path:
    """``root`` as a Path once it has the LJSpeech-1.1 layout; otherwise one ``ValueError`` line."""
    path = Path(root).expanduser()
    if not (path / "metadata.csv").is_file() or not (path / "wavs").is_dir():
        raise ValueError(
            f"task.data.root={root} is not an LJSpeech-1.1 directory: expected {path}/metadata.csv and "
            f"{path}/wavs/*.wav (download LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/)"
        )
    return path


def split_items(data: DataConfig, split: str) -> list[tuple[str, str]]:
    """The ``(id, text)`` items of ``split``, after checking every id has a wav under ``data.root``."""
    root = check_root(data.root)
    lists = Path(data.filelists).expanduser() if data.filelists else shipped_filelists()
    items = read_filelist(lists / filelist_name(split))
    wavs = {p.stem for p in (root / "wavs").glob("*.wav")}
    missing = [i for i, _ in items if i not in wavs]
    if missing:
        raise ValueError(
            f"task.data.root={data.root}: {len(missing)} of the {len(items)} clips of "
            f"{lists / filelist_name(split)} have no wav, e.g. {root / 'wavs' / missing[0]}.wav "
            "(set task.data.filelists to lists that match)"
        )
    return items


# ------------------------------------------------------------------------------------------------ features


CORRUPT_HINT = "replace the file (or remove it and its line from the metadata)"


def _wav_data_bytes(path: Path) -> tuple[int, int] | None:
    """(data bytes the RIFF header declares, data bytes the file holds), or None when not a plain RIFF WAV."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if head[pos : pos + 4] == b"data":
            return (size, path.stat().st_size - pos - 8) if 0 < size < 0xFFFFFFFF else None
        pos += 8 + size + (size & 1)
    return None


def load_wav(path: Path, sample_rate: int) -> torch.Tensor:
    """A mono clip as float32 in [-1, 1] (16-bit PCM / 32768); any other rate or channel count is an error."""
    import soundfile

    try:
        wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise DataError(str(path), f"not a readable WAV file ({err})", CORRUPT_HINT) from None
    sizes = _wav_data_bytes(path)
    if sizes is not None and sizes[1] < sizes[0]:
        raise DataError(
            str(path), f"a truncated WAV file ({sizes[1]} of its {sizes[0]} data bytes)", CORRUPT_HINT
        )
    if wave.shape[0] == 0:
        raise DataError(str(path), "a WAV file with no samples", CORRUPT_HINT)
    if rate != sample_rate or wave.shape[1] != 1:
        raise ValueError(f"{path}: {rate} Hz x {wave.shape[1]} channels; expected {sample_rate} Hz mono")
    return torch.from_numpy(wave[:, 0].copy())


class LogMel(nn.Module):
    """``log(max(M |STFT(x)|, clamp))``, the recipe's mel spectrogram: ``[..., n] -> [..., n_mels, frames]``
    with ``frames = 1 + n // hop``."""

    def __init__(self, audio: AudioConfig) -> None:
        super().__init__()
        import torchaudio

        self.clamp = audio.clamp
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=audio.sample_rate,
            n_fft=audio.n_fft,
            win_length=audio.win_length,
            hop_length=audio.hop_length,
            f_min=audio.f_min,
            f_max=audio.f_max,
            n_mels=audio.n_mels,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.mel(wave), min=self.clamp))


class MelCache:
    """Log-mels stored as ``<dir>/<id>.pt``, with the audio parameters that made them in ``audio.json``;
    files are written atomically (temporary name, then rename), so concurrent writers are safe."""

    def __init__(self, directory: str | Path, audio: AudioConfig) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        params = self.dir / CACHE_PARAMS
        if params.exists():
            stored = json.loads(params.read_text())
            if stored != asdict(audio):
                raise ValueError(
                    f"task.data.mel_cache={directory} holds mels made with {stored}, not with task.audio="
                    f"{asdict(audio)}; use another directory"
                )
        else:
            text = json.dumps(asdict(audio), sort_keys=True)
            atomic_write(params, lambda f: f.write(text.encode()), durable=False)

    def get(self, clip_id: str) -> torch.Tensor | None:
        path = self.dir / f"{clip_id}.pt"
        if not path.exists():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as err:  # torch raises several types for truncated or foreign files
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            raise DataError(
                str(path), f"a corrupt mel cache file ({reason})", "delete it: it is rebuilt"
            ) from None

    def put(self, clip_id: str, mel: torch.Tensor) -> None:
        atomic_write(self.dir / f"{clip_id}.pt", lambda f: torch.save(mel, f), durable=False)


class LJSpeechDataset(torch.utils.data.Dataset):
    """Items ``(token ids [L], log-mel [n_mels, T])`` of one split; mels come from the cache when given."""

    def __init__(self, items: list[tuple[str, str]], data: DataConfig, audio: AudioConfig) -> None:
        from ramda.tasks.ljspeech_text import text_to_sequence

        self.root = check_root(data.root)
        self.ids = [clip_id for clip_id, _ in items]
        self.tokens = [torch.tensor(text_to_sequence(text), dtype=torch.long) for _, text in items]
        empty = [i for i, t in zip(self.ids, self.tokens) if len(t) == 0]
        if empty:
            raise ValueError(f"clip {empty[0]} has no speakable text after cleaning")
        self.audio = audio
        self.logmel = LogMel(audio)
        self.cache = MelCache(data.mel_cache, audio) if data.mel_cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def mel(self, index: int) -> torch.Tensor:
        clip_id = self.ids[index]
        mel = self.cache.get(clip_id) if self.cache else None
        if mel is None:
            wave = load_wav(self.root / "wavs" / f"{clip_id}.wav", self.audio.sample_rate)
            with torch.no_grad():
                mel = self.logmel(wave)
            if self.cache:
                self.cache.put(clip_id, mel)
        return mel

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens[index], self.mel(index)


class TTSBatch(NamedTuple):
    """A padded batch sorted by text length, longest first. ``gates[b, t] = 1`` for t ≥ mel_lengths[b] − 1."""

    tokens: torch.Tensor  # [B, L] long, padded with the pad id 0
    token_lengths: torch.Tensor  # [B] long
    mels: torch.Tensor  # [B, n_mels, T], zero-padded
    mel_lengths: torch.Tensor  # [B] long
    gates: torch.Tensor  # [B, T] float

    def to(self, device: torch.device) -> TTSBatch:
        return TTSBatch(*(t.to(device, non_blocking=True) for t in self))


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> TTSBatch:
    """Sort by text length (descending, as the packed encoder LSTM needs), pad text with 0 and mels with 0,
    and set the gate (stop-token) target to 1 from each clip's last frame on."""
    from ramda.tasks.ljspeech_text import PAD_ID

    batch = sorted(batch, key=lambda item: len(item[0]), reverse=True)
    token_lengths = torch.tensor([len(t) for t, _ in batch], dtype=torch.long)
    mel_lengths = torch.tensor([m.shape[1] for _, m in batch], dtype=torch.long)
    n_mels = batch[0][1].shape[0]
    tokens = torch.full((len(batch), int(token_lengths.max())), PAD_ID, dtype=torch.long)
    mels = torch.zeros(len(batch), n_mels, int(mel_lengths.max()))
    gates = torch.zeros(len(batch), int(mel_lengths.max()))
    for b, (text, mel) in enumerate(batch):
        tokens[b, : len(text)] = text
        mels[b, :, : mel.shape[1]] = mel
        gates[b, mel.shape[1] - 1 :] = 1.0
    return TTSBatch(tokens, token_lengths, mels, mel_lengths, gates)


# -------------------------------------------------------------------------------------------- model, loss


def build_tacotron2(model: ModelConfig, audio: AudioConfig, uniform_bn_weight: bool = True) -> nn.Module:
    """torchaudio's ``Tacotron2`` with the recipe's 148 symbols, BatchNorm scales uniform in [0, 1) as NVIDIA's
    training script initialises them (``uniform_bn_weight``). Its own ``mask_padding`` fills the outputs in
    place after the post-net has used them, which breaks backward (pytorch/pytorch#93440), so it stays off
    and :func:`tacotron2_losses` applies the same mask out of place when asked."""
    from torchaudio.models import Tacotron2

    from ramda.tasks.ljspeech_text import SYMBOLS

    if model.symbol_embedding_dim != model.encoder_embedding_dim or model.encoder_embedding_dim % 2:
        raise ValueError(
            "task.model.symbol_embedding_dim and task.model.encoder_embedding_dim must be equal and even, "
            "got "
            f"{model.symbol_embedding_dim} and {model.encoder_embedding_dim}"
        )
    net = Tacotron2(mask_padding=False, n_mels=audio.n_mels, n_symbol=len(SYMBOLS), **asdict(model))
    if uniform_bn_weight:
        uniform_bn_weights(net)
    return net


def uniform_bn_weights(net: nn.Module) -> None:
    """NVIDIA's ``init_bn``: every affine BatchNorm weight (scale) drawn uniformly from [0, 1)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.uniform_()


def tacotron2_losses(
    model: nn.Module, batch: TTSBatch, mask_padding: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mel loss, gate loss)`` of a teacher-forced forward pass, in float32, each a mean over the padded
    batch. Without ``mask_padding`` (the authors' setting) the predictions on padded frames count against the
    padded targets (mel 0, gate 1). With it, as the recipe's ``mask_padding``: predicted frames past a clip's
    end are set to 0 and gate logits there to 1000, so padding adds nothing but the means still count it."""
    mel, mel_post, gate, _ = model(batch.tokens, batch.token_lengths, batch.mels, batch.mel_lengths)
    mel, mel_post, gate = mel.float(), mel_post.float(), gate.float()
    if mask_padding:
        frames = torch.arange(batch.mels.shape[-1], device=batch.mels.device)
        pad = frames[None, :] >= batch.mel_lengths[:, None]  # [B, T]
        mel = mel.masked_fill(pad[:, None, :], 0.0)
        mel_post = mel_post.masked_fill(pad[:, None, :], 0.0)
        gate = gate.masked_fill(pad, 1e3)
    mse = nn.functional.mse_loss
    mel_loss = mse(mel, batch.mels) + mse(mel_post, batch.mels)
    gate_loss = nn.functional.binary_cross_entropy_with_logits(gate, batch.gates)
    return mel_loss, gate_loss


# ----------------------------------------------------------------------------------------------- the task


class LJSpeechTask(Task):
    metric: ClassVar[str] = "val_loss"
    higher_is_better: ClassVar[bool] = False
    cfg: Config

    def __init__(self, cfg: Config, env: RunEnv) -> None:
        super().__init__(cfg, env)
        self.per_batch = per_process_batch(cfg.batch_size, env.world_size)
        eval_global = cfg.eval_batch_size or cfg.batch_size
        self.per_eval_batch = per_process_batch(eval_global, env.world_size, "task.eval_batch_size")
        self.train_set = LJSpeechDataset(split_items(cfg.data, "train"), cfg.data, cfg.audio)
        self.val_set = LJSpeechDataset(split_items(cfg.data, "val"), cfg.data, cfg.audio)
        if len(self.train_set) < self.per_batch * env.world_size:
            raise ValueError(
                f"task.batch_size={cfg.batch_size} is larger than the {len(self.train_set)} training clips"
            )
        self.train_sampler = self._sampler(self.train_set, shuffle=True)
        self.train_loader = self._loader(self.train_set, self.train_sampler, self.per_batch, drop_last=True)
        self.val_loader = self._loader(
            self.val_set, self._sampler(self.val_set, shuffle=False), self.per_eval_batch, drop_last=False
        )

    def _sampler(self, dataset: LJSpeechDataset, shuffle: bool) -> torch.utils.data.DistributedSampler:
        """One shard per process (the whole set when alone), reshuffled per epoch from the run's seed."""
        return torch.utils.data.DistributedSampler(
            dataset, num_replicas=self.env.world_size, rank=self.env.rank, shuffle=shuffle, seed=self.env.seed
        )

    def _loader(
        self, dataset: LJSpeechDataset, sampler: Any, batch_size: int, drop_last: bool
    ) -> torch.utils.data.DataLoader:
        workers = self.cfg.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.env.device.type == "cuda",
        )

    def build_model(self) -> nn.Module:
        return build_tacotron2(self.cfg.model, self.cfg.audio, self.cfg.uniform_bn_weight).to(self.env.device)

    def num_train_batches(self) -> int:
        n = len(self.train_loader)
        return min(n, self.cfg.max_train_batches) if self.cfg.max_train_batches else n

    def train_batches(self, epoch: int) -> Iterable[TTSBatch]:
        self.train_sampler.set_epoch(epoch)
        return islice(self.train_loader, self.num_train_batches())

    def loss(self, model: nn.Module, batch: TTSBatch) -> torch.Tensor:
        mel_loss, gate_loss = tacotron2_losses(model, batch.to(self.env.device), self.cfg.mask_padding)
        return mel_loss + gate_loss

    def _val_batches(self) -> Iterator[TTSBatch]:
        n = self.cfg.max_eval_batches or len(self.val_loader)
        return islice(self.val_loader, n)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean over validation batches (all processes) of the training loss and its two parts."""
        was_training = model.training
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.env.device)  # mel, gate, batches
        devices = [self.env.device] if self.env.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.env.seed + self.env.rank)  # the prenet's dropout is on in eval too
            for batch in self._val_batches():
                mel_loss, gate_loss = tacotron2_losses(
                    model, batch.to(self.env.device), self.cfg.mask_padding
                )
                totals += torch.stack([mel_loss.double(), gate_loss.double(), totals.new_ones(())])
        if self.env.distributed:
            torch.distributed.all_reduce(totals)
        model.train(was_training)
        mel, gate, n = totals.tolist()
        return {"val_loss": (mel + gate) / n, "val_mel_loss": mel / n, "val_gate_loss": gate / n}


TASK = LJSpeechTask


# ------------------------------------------------------------------------------------------ mel pre-compute


def precompute_mels(
    data: DataConfig, audio: AudioConfig, splits: Iterable[str] = SPLITS, workers: int = 0
) -> int:
    """Fill ``data.mel_cache`` with the log-mels of every clip of ``splits``; returns the number of clips."""
    if not data.mel_cache:
        raise ValueError("task.data.mel_cache is not set: name the directory to write the mels to")
    total = 0
    for split in splits:
        dataset = LJSpeechDataset(split_items(data, split), data, audio)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        total += sum(1 for _ in loader)
    return total


def main(argv: list[str] | None = None) -> None:
    """``python -m ramda.tasks.ljspeech --root data/LJSpeech-1.1 --mel-cache data/ljspeech_mels``."""
    import argparse

    parser = argparse.ArgumentParser(description="Pre-compute the LJSpeech log-mel cache.")
    parser.add_argument("--root", required=True, help="the LJSpeech-1.1 directory (task.data.root)")
    parser.add_argument("--mel-cache", required=True, help="output directory (task.data.mel_cache)")
    parser.add_argument("--filelists", default=None, help="split lists directory (default: the shipped ones)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    data = DataConfig(root=args.root, filelists=args.filelists, mel_cache=args.mel_cache)
    try:
        n = precompute_mels(data, AudioConfig(), workers=args.workers)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{n} log-mels in {args.mel_cache}")


if __name__ == "__main__":
    main()
