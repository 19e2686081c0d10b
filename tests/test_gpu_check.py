"""scripts/gpu_check.sh on a machine without a GPU: its dry run lists every step without running or writing
anything, and bad command lines are one-line errors with exit status 2."""

import shlex
import subprocess
import sys
from pathlib import Path

import torch

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
    assert "scripts/profile_step.py --device cuda --model resnet50" in text
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
        ((str(tmp_path / "a"), "--only"), "--only needs a regular expression"),
        ((str(tmp_path / "a"), "--only", "nomatch", "--dry-run"), "--only 'nomatch' matches no step"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert (full / "keep.txt").read_text() == "x"


def test_train_steps_fit_the_fixtures(tmp_path: Path, hydra_ctx: None):
    """Each train step of the script, on the CPU instead of CUDA: its overrides compose and validate (schedule
    inside 30 steps), and the task builds on the fixture the script makes (batch ≤ the data, cutoffs < the
    vocabulary). The GPU run is what trains; this is the part a CPU can check."""
    from hydra import compose
    from omegaconf import OmegaConf

    from ramda.config import register_configs
    from ramda.engine.validate import validate
    from ramda.fixtures import make
    from ramda.tasks import RunEnv, task_module

    tasks = register_configs()
    out = tmp_path / "gc"
    proc = run(str(out), "--dry-run")
    commands = [
        line.split("): ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("step: train.py")
    ]
    assert len(commands) == 3
    for name in ("imagenet", "wikitext103", "ljspeech"):
        make(name, out / "fixtures")
    for command in commands:
        args = shlex.split(command)
        overrides = [a for a in args[args.index("train.py") + 1 :] if not a.startswith("hydra.")]
        assert "trainer.device=cuda" in overrides and "trainer.max_steps=30" in overrides
        cfg = compose("train", overrides=[a.replace("=cuda", "=cpu") for a in overrides])
        validate(cfg, tasks)
        task = task_module(cfg.task.name).TASK(OmegaConf.to_object(cfg.task), RunEnv(torch.device("cpu")))
        assert sum(p.numel() for p in task.build_model().parameters()) > 0


def test_profile_step_on_the_cpu():
    """The script's profile step runs on the CPU too: a row per optimizer, AdamW fused first, host times > 0;
    a bad --steps is an argparse error."""
    script = SCRIPT.parent / "profile_step.py"
    args = [
        sys.executable,
        str(script),
        "--model",
        "resnet50",
        "--only",
        "ProxSGD",
        "--steps",
        "1",
        "--warmup",
        "1",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [
        line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ") and "ms" not in line
    ]
    assert [r[0] for r in rows] == ["| AdamW fused", "| ProxSGD"]
    assert all(float(r[1]) > 0 and float(r[2]) >= float(r[1]) * 0.5 for r in rows)
    assert all(int(r[3]) > 0 for r in rows)  # torch operations dispatched per step
    bad = subprocess.run([*args[:2], "--steps", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--steps must be >= 1" in bad.stderr


def test_only_runs_the_matching_steps(tmp_path: Path):
    proc = run(str(tmp_path / "a"), "--dry-run", "--only", "fixtures|train")
    names = [line.split(" (at most")[0] for line in proc.stdout.splitlines() if line.startswith("step: ")]
    assert proc.returncode == 0 and names[0] == "step: fixtures" and len(names) == 4
    assert all(n.startswith("step: train.py") for n in names[1:])
