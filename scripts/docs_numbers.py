"""Rerun the commands whose output the documentation quotes and rewrite those blocks (``make docs-numbers``).

A quoted block sits in a Markdown file between two markers,

    <!-- docs-numbers:NAME -->
    ...
    <!-- /docs-numbers:NAME -->

and says the command, the machine it ran on and what it printed. The commands run in a temporary directory; a
block is rewritten only once all of its commands succeeded, so a failed command leaves its block as it was.
``--only NAME`` reruns one block.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the content between the ``docs-numbers:NAME`` markers replaced by ``body``."""
    pattern = re.compile(
        rf"(<!-- docs-numbers:{re.escape(name)} -->\n).*?(<!-- /docs-numbers:{re.escape(name)} -->)", re.S
    )
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"expected exactly one block docs-numbers:{name} (opening and closing marker)")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def machine() -> str:
    """One line naming the machine: CPU, cores, GPU, torch, and how busy it was when the commands started."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}{load}"


def commit() -> str:
    """The checked-out commit, marked when the work tree has uncommitted changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return f"{head or 'unknown'}{' with local changes' if dirty.stdout.strip() else ''}"


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``cmd`` in the repository; its stdout and wall seconds. A failure stops everything with its output."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(
            f"error: `{' '.join(cmd)}` failed with exit status {proc.returncode}; docs unchanged"
        )
    return proc.stdout, wall


def last_epoch_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    if not lines:
        raise SystemExit("error: the run printed no epoch line; docs unchanged")
    return lines[-1]


def table_of(output: str) -> str:
    """The Markdown table rows of ``python -m ramda.tables --print``."""
    return "\n".join(line for line in output.splitlines() if line.startswith("|"))


def demo(tmp: Path, header: str) -> tuple[str, dict[Path, Path]]:
    """``make demo``: the four structured optimizers on digits, seed 1, and their table."""
    runs = tmp / "demo"
    _, wall = run([sys.executable, "train.py", "-m", "experiment=demo", f"hydra.sweep.dir={runs}"])
    tables = [sys.executable, "-m", "ramda.tables", "--runs", str(runs), "--out", str(tmp / "t1")]
    out, _ = run([*tables, "--table", "demo", "--print", "--no-figures"])
    body = (
        f"{header}: `make demo SKIP_INSTALL=1` trained the four runs in {wall:.0f} s wall and printed\n\n"
        f"{table_of(out)}\n"
    )
    return body, {}


def demo_seeds(tmp: Path, header: str) -> tuple[str, dict[Path, Path]]:
    """The demo table over seeds 1, 2, 3, with its figure (copied to docs/figures/demo.png)."""
    runs = tmp / "seeds"
    sweep = [sys.executable, "train.py", "-m", "experiment=demo", "seed=1,2,3", f"hydra.sweep.dir={runs}"]
    _, wall = run(sweep)
    tables = [sys.executable, "-m", "ramda.tables", "--runs", str(runs), "--out", str(tmp / "t3")]
    tables += ["--figures", str(tmp / "fig"), "--table", "demo", "--print"]
    out, _ = run(tables)
    body = (
        f"{header}:\n\n```bash\npython train.py -m experiment=demo seed=1,2,3 hydra.sweep.dir=DIR   # {wall:.0f} s wall\n"
        "python -m ramda.tables --runs DIR --table demo --print\n```\n\n"
        f"{table_of(out)}\n\n"
        "![demo curves: accuracy and weighted group sparsity against epoch, mean ± std over 3 seeds]"
        "(figures/demo.png)\n"
    )
    return body, {tmp / "fig" / "demo.png": REPO / "docs" / "figures" / "demo.png"}


def demo_ddp(tmp: Path, header: str) -> tuple[str, dict[Path, Path]]:
    """The default demo run on two gloo processes and on one: their last epoch lines."""
    env = {"OMP_NUM_THREADS": "1"}
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py"]
    out2, wall2 = run([*two, f"hydra.run.dir={tmp / 'ddp2'}"], env)
    out1, wall1 = run([sys.executable, "train.py", f"hydra.run.dir={tmp / 'ddp1'}"], env)
    body = (
        f"{header}:\n\n```text\n"
        f"$ OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 train.py   # {wall2:.0f} s wall\n"
        f"{last_epoch_line(out2)}\n"
        f"$ OMP_NUM_THREADS=1 python train.py   # {wall1:.0f} s wall\n"
        f"{last_epoch_line(out1)}\n```\n"
    )
    return body, {}


#: Block name → (the Markdown file holding it, the function that reruns its commands and returns the new block
#: body and the files to copy into the repository).
BLOCKS: dict[str, tuple[str, Callable[[Path, str], tuple[str, dict[Path, Path]]]]] = {
    "demo": ("README.md", demo),
    "demo-seeds": ("docs/cluster.md", demo_seeds),
    "demo-ddp": ("docs/cluster.md", demo_ddp),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(BLOCKS), action="append", help="rerun only this block")
    args = parser.parse_args(argv)
    names = args.only or list(BLOCKS)
    for name in names:  # every marker is there before anything runs
        replace_block((REPO / BLOCKS[name][0]).read_text(encoding="utf-8"), name, "")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    header = f"Measured by `make docs-numbers` on {date} at commit {commit()}, {machine()}"
    with tempfile.TemporaryDirectory(prefix="docs-numbers-") as tmp:
        for name in names:
            print(f"docs-numbers: {name} ...", flush=True)
            (Path(tmp) / name).mkdir()
            body, files = BLOCKS[name][1](Path(tmp) / name, header)
            path = REPO / BLOCKS[name][0]  # read now, not at the start: it may have been edited meanwhile
            text = replace_block(path.read_text(encoding="utf-8"), name, body)
            for src, dest in files.items():
                shutil.copyfile(src, dest)
            path.write_text(text, encoding="utf-8")
            print(f"docs-numbers: rewrote the {name} block of {path.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
