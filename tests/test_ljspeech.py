"""LJSpeech / Tacotron2 task on the generated fixture: layout, features, batches, training, errors."""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ramda.fixtures import ljspeech as fixture
from ramda.tasks import RunEnv, task_module
from ramda.tasks.ljspeech import (
    SPLITS,
    AudioConfig,
    Config,
    DataConfig,
    LogMel,
    ModelConfig,
    collate,
    filelist_name,
    main,
    read_filelist,
    shipped_filelists,
)
from ramda.tasks.ljspeech_text import text_to_sequence

SMALL = ModelConfig(
    symbol_embedding_dim=32,
    encoder_embedding_dim=32,
    encoder_n_convolution=1,
    decoder_rnn_dim=64,
    attention_rnn_dim=64,
    attention_hidden_dim=16,
    attention_location_n_filter=4,
    attention_location_kernel_size=7,
    prenet_dim=32,
    postnet_n_convolution=2,
    postnet_embedding_dim=32,
)
CPU = RunEnv(torch.device("cpu"), seed=1)


@pytest.fixture(scope="module")
def ljs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture.make(tmp_path_factory.mktemp("ljs"))


def small_cfg(ljs: Path, **kw) -> Config:
    data = DataConfig(root=str(ljs), filelists=str(ljs.parent / "filelists"))
    return Config(batch_size=4, num_workers=0, data=data, model=SMALL, **kw)


def test_fixture_has_the_ljspeech_layout(ljs: Path):
    lines = (ljs / "metadata.csv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("|") for line in lines]  # id|text|normalized text
    assert all(len(row) == 3 for row in rows)
    meta = {row[0]: row[1:] for row in rows}
    assert len(meta) == len(rows)
    wavs = sorted((ljs / "wavs").glob("*.wav"))
    assert {p.stem for p in wavs} == set(meta)
    for path in wavs:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "PCM_16", "WAV")
        assert 0.2 < info.duration < 5.0
        wave, _ = soundfile.read(str(path))
        assert np.abs(wave).max() > 0.05  # not silence
    for split in SPLITS:
        ours = read_filelist(ljs.parent / "filelists" / filelist_name(split))
        standard = dict(read_filelist(shipped_filelists() / filelist_name(split)))
        assert ours and all(standard[i] == text == meta[i][1] for i, text in ours)  # real ids of that split
    assert fixture.MARKER in {p.name for p in ljs.iterdir()}


def test_fixture_refuses_to_overwrite_a_real_dataset(tmp_path: Path):
    (tmp_path / "LJSpeech-1.1").mkdir()
    (tmp_path / "LJSpeech-1.1" / "metadata.csv").write_text("LJ001-0001|a|a\n")
    with pytest.raises(ValueError, match="did not write"):
        fixture.make(tmp_path)
    assert (tmp_path / "LJSpeech-1.1" / "metadata.csv").read_text() == "LJ001-0001|a|a\n"


def test_tone_fixture_audio_follows_the_text():
    text = random.choice("abcdefghijklmnopqrstuvwxyz") + " " + random.choice("abcdefghijklmnopqrstuvwxyz")
    wave = fixture.tones(text)
    n = int(0.06 * 22050)
    assert wave.shape == (3 * n,) and np.all(wave[n : 2 * n] == 0)
    for k in (0, 2):
        spectrum = np.abs(np.fft.rfft(wave[k * n : (k + 1) * n], 1 << 16))
        peak = np.argmax(spectrum) * 22050 / (1 << 16)
        assert abs(peak - (200 + 40 * (ord(text[k]) - ord("a")))) < 2.0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_speech_is_22khz_and_longer_for_longer_text():
    short, long = (
        fixture.espeak("Hello."),
        fixture.espeak("Hello there, this sentence is a good deal longer."),
    )
    assert short.dtype == np.float32 and 0.05 < np.abs(short).max() <= 1.0
    assert len(long) > 2 * len(short)


def naive_mel_bank(audio: AudioConfig, freqs: np.ndarray) -> np.ndarray:
    """Slaney-scale triangles (linear below 1 kHz, log above) with Slaney (area) norm, at ``freqs`` Hz."""

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, f * 3 / 200, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m):
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    edges = mel_to_hz(np.linspace(hz_to_mel(audio.f_min), hz_to_mel(audio.f_max), audio.n_mels + 2))
    bank = np.zeros((audio.n_mels, len(freqs)))
    for m in range(audio.n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        tri = np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))
        bank[m] = np.maximum(tri, 0) * 2 / (hi - lo)
    return bank


def naive_log_mel(wave: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """Reflect-pad by n_fft/2, periodic-Hann frames every hop, |rFFT|, mel bank, log with clamp."""
    n_fft, hop = audio.n_fft, audio.hop_length
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.stack(
        [np.abs(np.fft.rfft(padded[t * hop : t * hop + n_fft] * window)) for t in range(frames)], 1
    )
    bank = naive_mel_bank(audio, np.linspace(0, audio.sample_rate / 2, n_fft // 2 + 1))
    return np.log(np.maximum(bank @ spec, audio.clamp))


def test_log_mel_matches_a_naive_reference_with_centre_padding_frames():
    audio = AudioConfig()
    logmel = LogMel(audio)
    for n in random.sample(range(2000, 12000), 3):
        wave = np.random.uniform(-0.5, 0.5, n).astype(np.float32)
        mel = logmel(torch.from_numpy(wave))
        assert mel.shape == (80, 1 + n // 256)
        np.testing.assert_allclose(mel.numpy(), naive_log_mel(wave, audio), atol=2e-3)
    silence = logmel(torch.zeros(4096))
    assert torch.all(silence == math.log(1e-5))


def test_log_mel_of_a_tone_peaks_in_the_band_of_its_frequency():
    freq = random.uniform(300, 7000)
    wave = 0.5 * torch.sin(2 * math.pi * freq * torch.arange(22050) / 22050)
    mel = LogMel(AudioConfig())(wave)
    response = naive_mel_bank(AudioConfig(), np.array([freq]))[:, 0]  # the filters' gains at freq
    peak = int(mel[:, 10:-10].mean(1).argmax())
    assert response[peak] >= 0.8 * response.max()  # the strongest band, or its near-equal neighbour
    assert mel[:, 10:-10].max() - mel[:, 10:-10].min() > 8  # log scale: far bands sit near log(1e-5)


def test_collate_sorts_pads_and_sets_gate_targets():
    items = []
    for _ in range(6):
        tokens = torch.randint(1, 148, (random.randrange(1, 30),))
        items.append((tokens, torch.randn(80, random.randrange(5, 60))))
    batch = collate(items)
    lengths = batch.token_lengths.tolist()
    assert lengths == sorted(lengths, reverse=True)
    assert batch.tokens.shape == (6, max(lengths)) and batch.mels.shape == (
        6,
        80,
        int(batch.mel_lengths.max()),
    )
    by_tokens = {tuple(t.tolist()): m for t, m in items}
    for b in range(6):
        L, T = lengths[b], int(batch.mel_lengths[b])
        mel = by_tokens[tuple(batch.tokens[b, :L].tolist())]
        assert torch.equal(batch.mels[b, :, :T], mel) and mel.shape[1] == T
        assert torch.all(batch.tokens[b, L:] == 0) and torch.all(batch.mels[b, :, T:] == 0)
        assert torch.all(batch.gates[b, : T - 1] == 0) and torch.all(batch.gates[b, T - 1 :] == 1)


def test_loss_counts_padding_unless_masked_and_batchnorm_scales_are_uniform(ljs: Path, one_thread):
    """The authors' loss (mask_padding false): plain means over the padded batch, predictions on padded
    frames against mel 0 and gate 1, recomputed here from the model's outputs; masked: those frames set to
    the targets. BatchNorm scales: uniform in [0, 1) (NVIDIA's init_bn), not torch's ones."""
    from ramda.tasks.ljspeech import tacotron2_losses

    task = task_module("ljspeech").TASK(small_cfg(ljs), CPU)
    torch.manual_seed(0)
    model = task.build_model().eval()
    scales = torch.cat([m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)])
    assert scales.numel() > 0 and scales.min() >= 0 and scales.max() < 1 and scales.std() > 0.2
    batch = next(iter(task.train_batches(0)))
    assert (batch.mel_lengths < batch.mels.shape[-1]).any()  # some padding to count or mask
    with torch.no_grad():
        torch.manual_seed(1)
        mel, post, gate, _ = model(batch.tokens, batch.token_lengths, batch.mels, batch.mel_lengths)
        torch.manual_seed(1)
        plain = tacotron2_losses(model, batch)
        torch.manual_seed(1)
        masked = tacotron2_losses(model, batch, mask_padding=True)
    mse = torch.nn.functional.mse_loss
    assert plain[0].item() == pytest.approx((mse(mel, batch.mels) + mse(post, batch.mels)).item(), rel=1e-6)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(gate, batch.gates)
    assert plain[1].item() == pytest.approx(bce.item(), rel=1e-6)
    pad = torch.arange(batch.mels.shape[-1])[None, :] >= batch.mel_lengths[:, None]
    kept = mel.masked_fill(pad[:, None], 0.0), post.masked_fill(pad[:, None], 0.0)
    assert masked[0].item() == pytest.approx(sum(mse(k, batch.mels) for k in kept).item(), rel=1e-6)
    assert masked[0].item() < plain[0].item()  # the padded frames' errors are gone
    assert task_module("ljspeech").TASK(small_cfg(ljs, mask_padding=True), CPU).cfg.mask_padding


def test_task_module_contract():
    module = task_module("ljspeech")
    assert module.Config().name == "ljspeech" and module.TASK.metric == "val_loss"
    cfg = module.Config()
    assert (cfg.batch_size, cfg.grad_clip, cfg.audio.n_mels, cfg.audio.hop_length) == (64, 1.0, 80, 256)
    assert not module.TASK.higher_is_better


def test_dataset_items_are_ids_of_the_text_and_mels_of_the_wav(ljs: Path):
    task = task_module("ljspeech").TASK(small_cfg(ljs), CPU)
    items = read_filelist(ljs.parent / "filelists" / filelist_name("val"))
    tokens, mel = task.val_set[1]
    assert tokens.tolist() == text_to_sequence(items[1][1])
    wave, rate = soundfile.read(str(ljs / "wavs" / f"{items[1][0]}.wav"), dtype="float32")
    assert rate == 22050 and mel.shape == (80, 1 + len(wave) // 256)
    np.testing.assert_allclose(mel.numpy(), naive_log_mel(wave, AudioConfig()), atol=2e-3)


def test_a_few_adam_steps_reduce_train_and_validation_loss(ljs: Path, one_thread):
    task = task_module("ljspeech").TASK(small_cfg(ljs), CPU)
    torch.manual_seed(0)
    model = task.build_model()
    assert task.num_train_batches() == len(task.train_set) // 4
    before = task.evaluate(model)
    assert before == task.evaluate(model)  # seeded prenet dropout: a function of the weights
    assert set(before) == {"val_loss", "val_mel_loss", "val_gate_loss"}
    assert before["val_loss"] == pytest.approx(before["val_mel_loss"] + before["val_gate_loss"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(2):
        for batch in task.train_batches(epoch):
            assert batch.tokens.shape[0] == 4
            loss = task.loss(model, batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert task.evaluate(model)["val_loss"] < 0.8 * before["val_loss"]
    assert model.training


def test_epochs_reshuffle_and_max_batches_caps(ljs: Path):
    task = task_module("ljspeech").TASK(small_cfg(ljs, max_train_batches=2), CPU)
    assert task.num_train_batches() == 2
    orders = [[tuple(b.token_lengths.tolist()) for b in task.train_batches(e)] for e in range(4)]
    assert all(len(o) == 2 for o in orders) and len(set(map(tuple, orders))) > 1


def test_missing_or_wrong_data_is_one_clear_error(ljs: Path, tmp_path: Path):
    TASK = task_module("ljspeech").TASK
    with pytest.raises(ValueError, match=r"task\.data\.root=.*metadata\.csv.*wavs/\*\.wav"):
        TASK(replace(small_cfg(ljs), data=DataConfig(root=str(tmp_path / "nowhere"))), CPU)
    missing = 12500 - fixture.CLIPS["train"]
    with pytest.raises(
        ValueError, match=rf"task\.data\.root=.*: {missing} of the 12500 clips .* have no wav"
    ):
        TASK(replace(small_cfg(ljs), data=DataConfig(root=str(ljs))), CPU)  # the shipped lists
    bad = tmp_path / "stereo"
    shutil.copytree(ljs.parent, bad)
    clip = read_filelist(bad / "filelists" / filelist_name("val"))[0][0]
    soundfile.write(str(bad / "LJSpeech-1.1" / "wavs" / f"{clip}.wav"), np.zeros((100, 2)), 16000)
    task = TASK(
        replace(small_cfg(ljs), data=DataConfig(str(bad / "LJSpeech-1.1"), str(bad / "filelists"))), CPU
    )
    with pytest.raises(ValueError, match="16000 Hz x 2 channels; expected 22050 Hz mono"):
        task.val_set[0]


def test_mel_cache_round_trip_and_parameter_check(ljs: Path, tmp_path: Path):
    cache = tmp_path / "mels"
    main(["--root", str(ljs), "--filelists", str(ljs.parent / "filelists"), "--mel-cache", str(cache)])
    ids = {p.stem for p in cache.glob("*.pt")}
    assert ids == {p.stem for p in (ljs / "wavs").glob("*.wav")}
    cfg = small_cfg(ljs)
    cached = task_module("ljspeech").TASK(replace(cfg, data=replace(cfg.data, mel_cache=str(cache))), CPU)
    fresh = task_module("ljspeech").TASK(cfg, CPU)
    clip = cached.val_set.ids[0]
    torch.save(torch.full((80, 7), 3.0), cache / f"{clip}.pt")  # proves the cache is what is read
    assert torch.equal(cached.val_set[0][1], torch.full((80, 7), 3.0))
    assert torch.equal(cached.val_set[1][1], fresh.val_set[1][1])
    other = replace(cfg, data=replace(cfg.data, mel_cache=str(cache)), audio=AudioConfig(f_max=11025.0))
    with pytest.raises(ValueError, match=r"task\.data\.mel_cache=.*use another directory"):
        task_module("ljspeech").TASK(other, CPU)


def test_ramda_with_a_large_lambda_zeroes_whole_input_groups_of_tacotron2(ljs: Path, one_thread):
    from ramda.optim import RAMDA
    from ramda.structure import param_groups, sparsity_report, structured_parameters

    task = task_module("ljspeech").TASK(small_cfg(ljs, max_train_batches=2), CPU)
    torch.manual_seed(0)
    model = task.build_model()
    expected = set()
    for prefix, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            expected.add(f"{prefix}.weight")
        if isinstance(module, (torch.nn.LSTM, torch.nn.LSTMCell)):
            expected |= {f"{prefix}.{n}" for n, _ in module.named_parameters() if n.startswith("weight_")}
    structured = dict(structured_parameters(model))
    assert set(structured) == expected
    assert any("reverse" in n for n in expected) and any("postnet" in n for n in expected)
    opt = RAMDA(param_groups(model, 1e-2), lr=1e-2, momentum=1.0, stop="objective")
    for batch in task.train_batches(0):
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    report = sparsity_report(model)
    assert 0.05 < report["weighted_group_sparsity"] < 0.95
    zero_groups = nonzero_groups = 0
    for weight in structured.values():
        columns = weight.detach().transpose(0, 1).reshape(weight.shape[1], -1)  # one row per input group
        is_zero = columns.eq(0)
        whole = is_zero.all(1)
        zero_groups += int(whole.sum())
        nonzero_groups += int((~whole).sum())
        assert not is_zero[~whole].any()  # exact zeros come in whole groups only
    assert report["group_sparsity"] == pytest.approx(zero_groups / (zero_groups + nonzero_groups))
