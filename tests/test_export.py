"""ramda.export: the slim model computes the same function, removes exactly the channels every reader ignores,
refuses the ones some reader still uses, and the run-directory CLI / ``trainer.export`` write its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("torch_pruning")

from ramda.export import SlimError, slim
from ramda.structure import structured_parameters

ROOT = Path(__file__).resolve().parent.parent


def zero_columns(weight: torch.Tensor, cols: list[int]) -> None:
    with torch.no_grad():
        weight[:, cols] = 0.0


def zero_random_groups(model: nn.Module, fraction: float, gen: torch.Generator) -> None:
    """Zero a random ``fraction`` of the input groups of every regularised tensor (never all of them)."""
    for _, p in structured_parameters(model):
        n = p.shape[1]
        k = min(round(fraction * n), n - 1)
        zero_columns(p, torch.randperm(n, generator=gen)[:k].tolist())


def randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine terms, so a wrongly removed channel changes the output."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.3 * torch.randn(c, generator=gen))


def zero_count(w: torch.Tensor) -> int:
    return int((w.detach().abs().amax(dim=(0, *range(2, w.dim()))) == 0).sum())


@pytest.fixture(autouse=True)
def one_thread():
    """Timings are not under test; one thread keeps these tests quick on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_function(model: nn.Module, small: nn.Module, inputs: tuple, report) -> None:
    with torch.no_grad():
        a, b = model.eval()(*inputs), small.eval()(*inputs)
    a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
    assert report.rel_diff <= 1e-5
    assert report.after["params"] < report.before["params"]
    assert report.after["flops"] < report.before["flops"]


# ------------------------------------------------------------------------------------ removal counts
class ConvChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.c3 = nn.Conv2d(12, 10, 3, padding=1)
        self.fc = nn.Linear(10 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.bn2(self.c2(x)))
        x = nn.functional.max_pool2d(torch.relu(self.c3(x)), 2)
        return self.fc(x.flatten(1))


def test_plain_chain_removes_exactly_the_unread_channels():
    gen = torch.Generator().manual_seed(0)
    model = ConvChain()
    randomise_norms(model, gen)
    zero_columns(model.c2.weight, [0, 3, 5])
    zero_columns(model.c3.weight, [1, 2, 7, 11])
    # fc reads channel c of c3 through 16 flattened columns: c3's channels 4 and 9 are unread, and one column
    # of channel 6 alone is not enough to remove it.
    zero_columns(model.fc.weight, [*range(4 * 16, 5 * 16), *range(9 * 16, 10 * 16), 6 * 16 + 3])
    # The independent count: an output channel goes iff its only reader ignores it.
    expected = {"c1": 3, "c2": 4, "c3": 2}
    x = torch.randn(2, 3, 8, 8, generator=gen)
    small, report = slim(model, (x,), repeats=1)
    assert report.channels_removed == sum(expected.values())
    assert (small.c1.out_channels, small.c2.out_channels, small.c3.out_channels) == (5, 8, 8)
    assert (small.c2.in_channels, small.c3.in_channels, small.fc.in_features) == (5, 8, 8 * 16)
    assert small.bn2.num_features == 8
    assert sorted((r.root, r.channels) for r in report.removals) == [("c1", 3), ("c2", 4), ("c3", 2)]
    assert zero_count(small.fc.weight) == 1  # the lone zero column of channel 6 stays, and is listed
    assert [u.tensor for u in report.unshrunk] == ["fc.weight"]
    assert_same_function(model, small, (x,), report)


class Residual(nn.Module):
    """``r = stem(x) + c2(relu(c1(stem(x))))``, ``out = head(relu(r))``: stem's and c2's output channels are one
    residual stream, read by c1 and head."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.c1 = nn.Conv2d(c, 8, 1)
        self.c2 = nn.Conv2d(8, c, 1)
        self.head = nn.Conv2d(c, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(torch.relu(s + self.c2(torch.relu(self.c1(s)))))


def test_residual_channel_goes_only_when_every_reader_ignores_it():
    gen = torch.Generator().manual_seed(1)
    model = Residual()
    zero_columns(model.c1.weight, [0, 1, 4])
    zero_columns(model.head.weight, [1, 2, 4])
    x = torch.randn(2, 2, 5, 5, generator=gen)
    small, report = slim(model, (x,), repeats=1)
    # Channels 1 and 4 are ignored by both readers; 0 (read by head) and 2 (read by c1) must stay.
    assert small.stem.out_channels == small.c2.out_channels == 4
    assert small.c1.in_channels == small.head.in_channels == 4
    assert zero_count(small.c1.weight) == 1 and zero_count(small.head.weight) == 1
    reasons = {u.tensor: u.reason for u in report.unshrunk}
    assert "also read by head" in reasons["c1.weight"]
    assert "also read by c1" in reasons["head.weight"]
    assert_same_function(model, small, (x,), report)


def test_residual_removal_refused_when_one_reader_uses_the_channel():
    model = Residual()
    zero_columns(model.head.weight, [0, 1, 2])  # head ignores 0..2, c1 reads them all
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    small, report = slim(model, (x,), repeats=1)
    assert small.stem.out_channels == small.c2.out_channels == 6
    assert report.channels_removed == 0
    assert [u.tensor for u in report.unshrunk] == ["head.weight"]


def test_output_channels_of_the_model_are_kept_and_a_changed_function_raises():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    zero_columns(model[2].weight, [1])
    x = torch.randn(1, 3, 4, 4)
    small, report = slim(model, (x,), repeats=1)
    assert small[0].out_channels == 3 and small[2].out_channels == 4  # the output stays 4 channels
    assert report.channels_removed == 1 and not report.unshrunk
    with pytest.raises(SlimError, match="differ"):
        slim(model, (x,), repeats=1, rtol=-1.0)  # any difference at all, even 0 > -1


# ------------------------------------------------------------------------------------ model families
def test_digits_cnn():
    from ramda.models.digits_cnn import DigitsCNN

    gen = torch.Generator().manual_seed(3)
    model = DigitsCNN()
    randomise_norms(model, gen)
    zero_random_groups(model, 0.4, gen)
    x = torch.rand(4, 1, 8, 8, generator=gen)
    small, report = slim(model, (x,), latency_inputs={1: (x[:1],), 4: (x,)}, repeats=2)
    assert_same_function(model, small, (x,), report)
    assert set(report.speedup) == {"batch1", "batch4"} and all(v > 0 for v in report.speedup.values())
    figures = report.figures()
    assert 0 < figures["flops_kept"] < 1 and 0 < figures["params_kept"] < 1
    json.dumps(report.to_dict())


def test_torchvision_resnet_bottlenecks():
    """ResNet50's family (torchvision's Bottleneck ResNet), one block per stage to stay quick."""
    from torchvision.models.resnet import Bottleneck, ResNet

    gen = torch.Generator().manual_seed(4)
    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, width_per_group=16)
    randomise_norms(model, gen)
    zero_random_groups(model, 0.3, gen)
    x = torch.randn(1, 3, 32, 32, generator=gen)
    small, report = slim(model, (x,), repeats=1)
    assert_same_function(model, small, (x,), report)
    # inside each bottleneck conv1 -> conv2 -> conv3 is a plain chain: its unread channels all go
    for name in ("layer1", "layer2", "layer3", "layer4"):
        block, before = getattr(small, name)[0], getattr(model, name)[0]
        assert block.conv1.out_channels == before.conv1.out_channels - zero_count(before.conv2.weight)
        assert block.conv2.out_channels == before.conv2.out_channels - zero_count(before.conv3.weight)
    assert any("also read by" in u.reason for u in report.unshrunk)  # the residual streams


def test_timm_cnn_depthwise_and_squeeze_excite():
    timm = pytest.importorskip("timm")
    gen = torch.Generator().manual_seed(5)
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    randomise_norms(model, gen)
    zero_random_groups(model, 0.3, gen)
    x = torch.randn(1, 3, 32, 32, generator=gen)
    small, report = slim(model, (x,), repeats=1)
    assert_same_function(model, small, (x,), report)


def test_transformer_xl_feed_forward_rows():
    from ramda.models.transformer_xl import TransformerXL

    gen = torch.Generator().manual_seed(6)
    model = TransformerXL(
        120, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32, dropout=0.0, dropatt=0.0, mem_len=4,
        cutoffs=[40, 80],
    )  # fmt: skip
    zero_random_groups(model, 0.3, gen)
    data = torch.randint(0, 120, (6, 2), generator=gen)
    target = torch.randint(0, 120, (6, 2), generator=gen)
    small, report = slim(model, (data, target), repeats=1)
    for layer, before in zip(small.layers, model.layers):
        # zero input columns of the second FF layer remove rows of the first
        unread = zero_count(before.ff.core[3].weight)
        assert unread > 0
        assert layer.ff.core[0].out_features == 32 - unread
        assert layer.ff.core[0].bias.shape == (32 - unread,)
        assert layer.ff.core[3].in_features == 32 - unread
    assert_same_function(model, small, (data, target), report)
    reasons = {u.tensor: u.reason for u in report.unshrunk}
    assert "LN" in reasons["layers.0.ff.core.0.weight"]  # the residual stream feeds LayerNorm: kept


def test_tacotron2_convolutions_shrink_and_lstms_are_listed():
    pytest.importorskip("torchaudio")
    from torchaudio.models import Tacotron2

    gen = torch.Generator().manual_seed(7)
    model = Tacotron2(
        mask_padding=False, n_mels=12, n_symbol=30, symbol_embedding_dim=16, encoder_embedding_dim=16,
        encoder_n_convolution=2, encoder_kernel_size=3, decoder_rnn_dim=16, attention_rnn_dim=16,
        attention_hidden_dim=8, attention_location_n_filter=4, attention_location_kernel_size=3,
        prenet_dim=8, postnet_n_convolution=3, postnet_kernel_size=3, postnet_embedding_dim=16,
    )  # fmt: skip
    randomise_norms(model, gen)
    zero_random_groups(model, 0.3, gen)
    tokens = torch.randint(1, 30, (2, 7), generator=gen)
    inputs = (tokens, torch.tensor([7, 5]), torch.randn(2, 12, 5, generator=gen), torch.tensor([5, 3]))
    small, report = slim(model, inputs, repeats=1)
    post, post0 = small.postnet.convolutions, model.postnet.convolutions
    assert post[1][0].out_channels == 16 - zero_count(post0[2][0].weight) < 16
    assert report.traced_in_pieces  # the decoder loop is shrunk part by part
    listed = {u.tensor: u.reason for u in report.unshrunk}
    assert "LSTM" in listed["decoder.attention_rnn.weight_hh"]
    assert "LSTMCell" in listed["decoder.decoder_rnn.weight_ih"]
    with torch.no_grad():
        torch.manual_seed(0)  # the pre-net's dropout is always on: same seed, same masks
        a = model.eval()(*inputs)[1]
        torch.manual_seed(0)
        b = small(*inputs)[1]
    assert torch.allclose(a, b, atol=1e-5 * float(a.abs().max()))


# ------------------------------------------------------------------------------------ run directories
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_trainer_export_and_cli_on_a_digits_run(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable, "train.py", f"hydra.run.dir={run}", "optimizer=proxsgd", "regularizer.lam=0.05",
        "trainer.epochs=1", "trainer.milestones=[]", "trainer.export=true", "trainer.progress=lines",
        "task.max_train_batches=3",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert 0 < summary["slim"]["flops_kept"] <= 1 and set(summary["slim"]["speedup"]) == {"batch1", "batch32"}
    assert "slim model: FLOPs kept" in done.stdout

    # zero some groups in the checkpoint, as a sparser run would have, then export with the CLI
    ckpt_path = run / "checkpoint.pt"
    state = torch.load(ckpt_path, weights_only=False)
    state["model"]["features.3.weight"][:, :10] = 0.0
    torch.save(state, ckpt_path)
    (run / "slim.json").unlink()
    cli = [sys.executable, "-m", "ramda.export", str(run), "--batch", "8", "--repeats", "2"]
    done = subprocess.run(cli, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FLOPs:" in done.stdout
    report = json.loads((run / "slim.json").read_text())
    assert report["channels_removed"] >= 10 and report["rel_diff"] <= 1e-5
    assert set(report["latency_after"]) == {"batch1", "batch8"}
    small = torch.load(run / "slim.pt", weights_only=False)["model"]
    assert small.features[0].out_channels <= 6

    from ramda.export.run import load_run

    _, model = load_run(run)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), small(x), atol=1e-5)


def test_cli_bad_run_dir(tmp_path):
    (tmp_path / "config.yaml").write_text("task: {name: digits}\n")
    cli = [sys.executable, "-m", "ramda.export", str(tmp_path)]
    done = subprocess.run(cli, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'checkpoint.pt'}: missing")
    assert not (tmp_path / "slim.json").exists() and not (tmp_path / "slim.pt").exists()
