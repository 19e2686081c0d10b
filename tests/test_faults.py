"""Fault injection: kills, signals, thread counts, a second process, bad run directories, a full disk, corrupt data
and checkpoints, non-finite values. Real ``train.py`` processes on the digits task (fused CPU kernels on), real
mounts (a read-only and a tiny tmpfs, when the test runs as root), real corrupt files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import imagenet_smoke, read_metrics, train_cmd, without_time

ROOT = Path(__file__).resolve().parents[1]
# Fused RAMDA with group LASSO: the kernels whose first call used to change torch's thread count.
SMALL = [
    "task=digits",
    "optimizer=ramda",
    "optimizer.fused=true",
    "optimizer.lr=0.01",
    "regularizer.lam=0.01",
    "trainer.epochs=3",
    "trainer.milestones=[]",
    "trainer.momentum_start_epoch=null",
    "task.max_train_batches=6",
    "trainer.threads=1",
    "trainer.progress=lines",
    "trainer.log_every_steps=1",
    "seed=7",
]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    out.update(extra)
    return out


def train(run_dir: Path | str, *overrides: str, prefix: tuple[str, ...] = (), **extra: str) -> Any:
    return subprocess.run(
        [*prefix, *train_cmd(run_dir, *overrides)],
        cwd=ROOT,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line(proc: Any, code: int, start: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith(start), (
        proc.returncode,
        proc.stderr[-2000:],
    )
    return lines[0]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [without_time(r) for r in read_metrics(run_dir)]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {**state["model"], **{f"opt.{k}": v for k, v in _flat(state["optimizer"]["state"]).items()}}


def _flat(node: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
    elif isinstance(node, torch.Tensor):
        out[prefix] = node
    return out


def assert_identical(run_dir: Path, reference: Path) -> None:
    assert metrics(run_dir) == metrics(reference)
    a, b = final_weights(run_dir), final_weights(reference)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("faults") / "baseline"
    proc = train(run_dir, *SMALL)
    assert proc.returncode == 0, proc.stderr
    return run_dir


# ----------------------------------------------------------------------------------------------- threads
THREADS_PROBE = """
import sys, torch
from ramda.engine.env import make_env
from ramda.optim import RAMDA, ProxGen

make_env("cpu", 0, threads=int(sys.argv[1]))
torch.manual_seed(0)
out = {}
for cls, kw in ((RAMDA, {"lr": 0.1, "momentum": 0.1}), (ProxGen, {"lr": 0.01})):
    params = [torch.randn(24, 37, 3, 3, requires_grad=True), torch.randn(19, 64, requires_grad=True)]
    opt = cls(params, lam=0.05, fused=True, **kw)
    for step in range(4):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    assert torch.get_num_threads() == int(sys.argv[1]), torch.get_num_threads()
    out[cls.__name__] = [p.detach().clone() for p in params]
torch.save(out, sys.argv[2])
"""


def test_fused_kernels_keep_the_thread_count_and_do_not_depend_on_numba_threads(tmp_path: Path) -> None:
    """torch's count stays ``trainer.threads`` after the first fused step, and RAMDA/ProxGen's fused results are
    the same bits with 1 and 2 numba threads."""
    results = []
    for numba_threads in ("1", "2"):
        out = tmp_path / f"numba{numba_threads}.pt"
        proc = subprocess.run(
            [sys.executable, "-c", THREADS_PROBE, "2", str(out)],
            cwd=ROOT,
            env=env(NUMBA_NUM_THREADS=numba_threads),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(torch.load(out, weights_only=True))
    for name in results[0]:
        for a, b in zip(results[0][name], results[1][name], strict=True):
            assert torch.equal(a, b), name
    probe = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE, "1", str(tmp_path / "one.pt")],
        cwd=ROOT,
        env=env(NUMBA_NUM_THREADS="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr  # asserts torch.get_num_threads() == 1 after the fused steps


@pytest.mark.skipif(
    shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="needs taskset, 2 cores"
)
def test_threads_1_gives_the_same_figures_on_one_and_two_cores(baseline: Path, tmp_path: Path) -> None:
    one_core = train(tmp_path / "one", *SMALL, prefix=("taskset", "-c", "0"))
    assert one_core.returncode == 0, one_core.stderr
    assert_identical(tmp_path / "one", baseline)
    numba_one = train(tmp_path / "numba1", *SMALL, NUMBA_NUM_THREADS="1")
    assert numba_one.returncode == 0, numba_one.stderr
    assert_identical(tmp_path / "numba1", baseline)


# ------------------------------------------------------------------------------------------ kill / resume
def start(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        train_cmd(run_dir, *SMALL, *extra),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], prefix: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(
        f"the run ended before printing '{prefix}': {proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
def test_stopped_mid_epoch_then_resumed_is_bit_identical(baseline: Path, tmp_path: Path, sig: int) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "trainer.checkpoint_every_steps=2")
    wait_for_line(proc, "epoch 2 step 3/")
    if sig == signal.SIGTERM:  # while it runs (paused): a second process on the directory is refused
        proc.send_signal(signal.SIGSTOP)
        try:
            second = train(run_dir, *SMALL, "seed=8")
        finally:
            proc.send_signal(signal.SIGCONT)
        line = one_line(second, 2, f"error: hydra.run.dir: {run_dir} is in use by another run")
        assert f"(pid {proc.pid})" in line
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 6 <= saved["global_step"] < 18
    stale = run_dir / f".checkpoint.pt.{proc.pid}.0badc0de.tmp"  # as a write killed half-way leaves it
    stale.write_bytes(b"half a checkpoint")
    resumed = train(run_dir, *SMALL, "trainer.checkpoint_every_steps=2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert not stale.exists()
    assert_identical(run_dir, baseline)


def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(
    baseline: Path, tmp_path: Path
) -> None:
    """Killed while a checkpoint's temporary file exists (every step writes one): the last checkpoint loads, the
    temporary file is removed on the next start, and the resumed run is bit-identical."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, "trainer.checkpoint_every_steps=1")
    caught = None
    deadline = time.monotonic() + 240
    while caught is None and proc.poll() is None and time.monotonic() < deadline:
        if run_dir.is_dir():
            names = [e.name for e in os.scandir(run_dir)]
            if any(n.endswith(".tmp") and "checkpoint" in n for n in names) and "checkpoint.pt" in names:
                proc.kill()
                caught = names
    proc.communicate(timeout=120)
    if caught is None:
        pytest.fail("the run ended before a checkpoint write could be caught")
    assert proc.returncode == -signal.SIGKILL
    torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the previous checkpoint is whole
    resumed = train(run_dir, *SMALL, "trainer.checkpoint_every_steps=1")
    assert resumed.returncode == 0, resumed.stderr
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert_identical(run_dir, baseline)


# ---------------------------------------------------------------------------------------- run directories
def test_run_directory_errors_are_one_line_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    cases = {
        str(a_file / "run"): f"error: hydra.run.dir: {a_file / 'run'} is under {a_file}, which is a file",
        str(a_file): f"error: hydra.run.dir: {a_file} is a file, not a directory",
        str(tmp_path / ("x" * 300)): "error: hydra.run.dir: the name 'xxxx",
        "": "error: hydra.run.dir: is empty",
    }
    for run_dir, expected in cases.items():
        proc = train(run_dir, *SMALL)
        one_line(proc, 2, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert not (ROOT / "metrics.jsonl").exists()


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); needs root")


def test_read_only_file_system_is_one_line(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "ro,size=1m")
    try:
        proc = train(mnt / "run", *SMALL)
        one_line(proc, 2, f"error: hydra.run.dir: {mnt / 'run'} is on a read-only file system")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    """As another user (a forked child that drops to uid 65534; root is never refused): the check that runs
    before Hydra creates the directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    import tempfile

    from ramda.engine.errors import ConfigError
    from ramda.engine.rundir import check_run_dir

    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp tree is not searchable by other users
    try:
        top.chmod(0o755)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            message = "no error"
            try:
                os.close(read)
                os.setgid(65534)
                os.setuid(65534)
                check_run_dir(str(locked / "run"))
            except ConfigError as err:
                message = str(err)
            except BaseException as err:
                message = f"unexpected {type(err).__name__}: {err}"
            finally:
                os.write(write, message.encode())
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as f:
            message = f.read()
    finally:
        shutil.rmtree(top)
    assert message.startswith(f"hydra.run.dir: {locked} is not writable by this user"), message


def test_disk_full_keeps_the_last_checkpoint_and_is_one_line(tmp_path: Path) -> None:
    """A 1 MiB tmpfs holds two digits checkpoints but not a third write: one line, exit 1, the previous
    checkpoint whole, ``summary.json`` failed."""
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "size=1m")
    try:
        run_dir = mnt / "run"
        proc = train(run_dir, *SMALL, "trainer.checkpoint_every_steps=1")
        line = one_line(proc, 1, "error: ")
        assert "No space left on device" in line and "the last checkpoint is kept" in line
        saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
        assert saved["global_step"] >= 1
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "failed" and "No space left" in summary["error"]
        assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ------------------------------------------------------------------------------------------- checkpoints
def test_files_get_the_mode_of_a_normal_file(baseline: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.pt", "config.yaml", "summary.json", "metrics.jsonl"):
        assert (baseline / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_checkpoint_keys_and_shapes_are_validated(baseline: Path, tmp_path: Path) -> None:
    from ramda.engine import checkpoint as ckpt
    from ramda.engine.errors import ConfigError

    state = torch.load(baseline / "checkpoint.pt", weights_only=True)
    for key in ("scaler", "rng", "partial"):
        broken = {k: v for k, v in state.items() if k != key}
        torch.save(broken, tmp_path / "c.pt")
        with pytest.raises(ConfigError, match=f"an incomplete checkpoint \\(missing {key}\\)"):
            ckpt.load(tmp_path / "c.pt")
    broken = {**state, "rng": {k: v for k, v in state["rng"].items() if k != "torch"}}
    torch.save(broken, tmp_path / "c.pt")
    with pytest.raises(ConfigError, match=r"missing rng\.torch"):
        ckpt.load(tmp_path / "c.pt")

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    name = next(k for k, v in state["model"].items() if v.dim() == 4)
    wrong = {**state, "model": {**state["model"], name: torch.zeros(1, 1, 1, 1)}}
    torch.save(wrong, run_dir / "checkpoint.pt")
    before = (run_dir / "checkpoint.pt").read_bytes()
    proc = train(run_dir, *SMALL)
    line = one_line(proc, 2, f"error: {run_dir / 'checkpoint.pt'}: does not fit the model and optimizer")
    assert name in line
    assert (run_dir / "checkpoint.pt").read_bytes() == before


# -------------------------------------------------------------------------------------------- non-finite
def test_a_diverging_run_keeps_a_checkpoint_of_finite_weights(tmp_path: Path) -> None:
    """lr=1000 diverges in epoch 2 (weights ~1e16, a BatchNorm running variance overflows before the loss does):
    the run stops at the first non-finite weight or loss, and checkpoint.pt holds only finite tensors."""
    run_dir = tmp_path / "run"
    proc = train(
        run_dir,
        "optimizer=msgd",
        "optimizer.lr=1000",
        "trainer.epochs=3",
        "trainer.milestones=[]",
        "trainer.checkpoint_every_steps=1",
        "task.max_train_batches=8",
        "trainer.threads=1",
    )
    line = one_line(proc, 1, "error: ")
    assert "non-finite" in line and "the last good checkpoint is kept at" in line
    assert "precision=fp32" not in line  # the run is fp32 already
    failing = int(line.split("(global step ")[1].split(")")[0])
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 0 < saved["global_step"] < failing
    assert all(bool(torch.isfinite(v).all()) for v in saved["model"].values() if v.is_floating_point())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / ".checkpoint.next.pt").exists()


def test_a_non_finite_evaluation_metric_is_recorded_and_fails_the_run(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """In process, with the digits task's evaluation returning an overflowed metric (as a perplexity can)."""
    from hydra import compose, initialize_config_dir

    from ramda.config import register_configs
    from ramda.engine.errors import NonFiniteLossError
    from ramda.engine.trainer import Trainer
    from ramda.tasks import digits

    real = digits.TASK.evaluate

    def overflowing(self: Any, model: Any) -> dict[str, float]:
        return {**real(self, model), "accuracy": float("inf")}

    monkeypatch.setattr(digits.TASK, "evaluate", overflowing)
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*SMALL, "trainer.progress=none"])
    threads = torch.get_num_threads()
    try:
        with pytest.raises(NonFiniteLossError, match="accuracy: non-finite value \\(inf\\)"):
            Trainer(cfg, tmp_path).run()
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["metric_value"] == "inf"
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["accuracy"] == "inf"
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"]) == (0, 6)  # the epoch's training, saved before evaluation


# ------------------------------------------------------------------------------------------ corrupt data
def test_corrupt_wav_files_name_the_file(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    soundfile = pytest.importorskip("soundfile")
    from ramda.engine.errors import DataError
    from ramda.tasks.ljspeech import load_wav

    good = tmp_path / "good.wav"
    soundfile.write(good, np.zeros(2205, dtype=np.float32), 22050, subtype="PCM_16")
    data = good.read_bytes()
    cases = {
        "garbage.wav": (b"RIFF garbage" * 9, "not a readable WAV file"),
        "empty.wav": (b"", "not a readable WAV file"),
        "truncated.wav": (data[: len(data) // 2], "a truncated WAV file"),
        "header_only.wav": (data[:44], "a truncated WAV file (0 of its 4410 data bytes)"),
    }
    soundfile.write(tmp_path / "silent.wav", np.zeros(0, dtype=np.float32), 22050, subtype="PCM_16")
    with pytest.raises(DataError, match="a WAV file with no samples"):
        load_wav(tmp_path / "silent.wav", 22050)
    assert load_wav(good, 22050).shape == (2205,)
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError) as info:
            load_wav(tmp_path / name, 22050)
        assert str(info.value).startswith(f"{tmp_path / name}: {problem}"), str(info.value)


def test_corrupt_token_cache_names_the_file(tmp_path: Path) -> None:
    from ramda.engine.errors import DataError
    from ramda.tasks.wikitext103 import SPLITS, _read_cache

    for s in SPLITS:
        torch.save(torch.arange(5, dtype=torch.int32), tmp_path / f"{s}.pt")
    (tmp_path / "vocab.txt").write_text("a\nb")
    assert _read_cache(tmp_path, tmp_path / "vocab.txt")[0] == ["a", "b"]
    (tmp_path / "valid.pt").write_bytes((tmp_path / "valid.pt").read_bytes()[:40])
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'valid.pt'}: a corrupt token cache")):
        _read_cache(tmp_path, tmp_path / "vocab.txt")


def test_a_truncated_jpeg_stops_the_run_with_one_line_and_keeps_the_epoch(tmp_path: Path) -> None:
    """A truncated validation JPEG read in a DataLoader worker: exit 2, one line naming it; the epoch's training
    was saved before the evaluation."""
    from ramda.fixtures import imagenet as fixture

    root = fixture.make(tmp_path / "data")
    bad = sorted((root / "val").rglob("*.JPEG"))[0]
    bad.write_bytes(bad.read_bytes()[:300])
    run_dir = tmp_path / "run"
    proc = train(
        run_dir,
        "task=imagenet",
        "task.model=resnet18",
        *imagenet_smoke(root, tmp_path / "init"),
        "trainer.epochs=1",
        "trainer.milestones=[]",
        "optimizer=msgd",
    )
    one_line(proc, 2, f"error: {bad}: not a readable image")
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (0, 1, 1)
