"""scripts/bench_ab.sh: another commit and this tree run the same script in turn, and its worktree is gone after."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/bench_ab.sh", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _worktrees() -> str:
    return subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout


def test_runs_both_trees_in_turn_and_removes_its_worktree():
    before = _worktrees()
    out = _run("HEAD", "scripts/docs_numbers.py", "--help")
    assert out.returncode == 0, out.stderr
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    rounds = [line for line in out.stdout.splitlines() if line.startswith("== round")]
    assert [r.split(" (")[0] for r in rounds] == [
        f"== round 1: {head.stdout.strip()}",
        "== round 1: this tree",
        f"== round 2: {head.stdout.strip()}",
        "== round 2: this tree",
    ]
    assert out.stdout.count("usage: docs_numbers.py") == 4
    assert _worktrees() == before


def test_bad_commit_or_script_is_one_line_and_exit_2():
    for args, word in ((("no-such-commit", "scripts/docs_numbers.py"), "not a commit"),
                       (("HEAD", "scripts/no_such.py"), "no script")):  # fmt: skip
        out = _run(*args)
        assert out.returncode == 2
        assert word in out.stderr and len(out.stderr.strip().splitlines()) == 1
