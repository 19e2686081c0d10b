"""scripts/bench_step_overhead.py runs on the CPU and times AdamW's own Python (its kernel a no-op) beside ours."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_step_overhead.py"


def test_prints_a_row_per_optimizer_and_adamw_fused():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "RMDA", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\| (RMDA|AdamW fused) \| ([0-9.]+) \| ([0-9.]+) \|$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["RMDA", "AdamW fused"], proc.stdout
    assert all(float(warm) > 0 and float(cold) > 0 for _, warm, cold in rows)
