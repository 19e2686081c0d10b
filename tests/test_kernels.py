"""The fused Triton kernels (ramda.kernels.gpu) against the plain-torch path, on the CPU under
TRITON_INTERPRET=1 (the checks themselves: tests/triton_kernel_checks.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(300)
@pytest.mark.parametrize("optimizer", ["ramda", "proxgen"])
def test_fused_kernel_matches_torch_path_in_interpreter(optimizer: str):
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(HERE.parent)}
    script = str(HERE / "triton_kernel_checks.py")
    out = subprocess.run(
        [sys.executable, script, optimizer], env=env, capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
