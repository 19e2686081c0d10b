"""scripts/gpu_check.sh on a machine without a GPU: its dry run lists every step without running or writing
anything, and bad command lines are one-line errors with exit status 2."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_dry_run_lists_every_step_and_writes_nothing(tmp_path: Path):
    out = tmp_path / "report"
    proc = run(str(out), "--dry-run", "--wheels", str(tmp_path / "wheels"))
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step: ")]
    text = "\n".join(steps)
    assert "CUDA-only tests" in text and "scripts/gpu_kernel_check.py" in text
    for model in ("resnet50", "txl"):
        assert f"bench_optim.py --device cuda --model {model}" in text
    assert "--iteration --batch 256 --amp bf16" in text
    for task in ("imagenet", "wikitext103", "ljspeech"):
        assert f"train.py task={task}, 30 steps" in text and "trainer.device=cuda" in text
    assert f"--find-links {tmp_path / 'wheels'}" in proc.stdout
    assert not out.exists()


def test_bad_command_lines_are_one_line_errors(tmp_path: Path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    for args, message in [
        ((), "OUT_DIR missing"),
        ((str(tmp_path / "a"), "--bogus"), "unknown option --bogus"),
        ((str(tmp_path / "a"), str(tmp_path / "b")), "one OUT_DIR expected"),
        ((str(full),), "exists and is not empty"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert (full / "keep.txt").read_text() == "x"
