"""Run outputs: the run directory's files, Weights & Biases, and console progress (bars on a terminal)."""

from __future__ import annotations

import contextlib
import json
import math
import netrc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ramda.engine import checkpoint as ckpt
from ramda.engine.errors import OutputError
from ramda.files import atomic_write, fsync_dir


def _clean(value: Any) -> Any:
    """JSON-safe: a non-finite float becomes the string ``"nan"``, ``"inf"`` or ``"-inf"`` (strict JSON has no
    NaN), so that it is recorded as what it was."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failed write (disk full, read-only file system) into one :class:`OutputError` line."""
    try:
        yield
    except OSError as err:
        raise OutputError(
            str(path),
            f"cannot write ({err.strerror or err})",
            "the last checkpoint is kept: free space or fix the file system, then run the same command to resume",
        ) from None


class RunFiles:
    """``config.yaml``, ``metrics.jsonl`` (one line per epoch), ``summary.json`` and ``checkpoint.pt`` of a run.

    Only the main process writes (``enabled``); every write of a whole file is atomic. A checkpoint is first
    written as ``.checkpoint.next.pt`` and becomes ``checkpoint.pt`` (:meth:`promote`) once its parameters are
    known to be good, so ``checkpoint.pt`` is always the last good one.
    """

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.dir = run_dir
        self.enabled = enabled
        self.config = run_dir / "config.yaml"
        self.metrics = run_dir / "metrics.jsonl"
        self.summary = run_dir / "summary.json"
        self.checkpoint = run_dir / "checkpoint.pt"
        self.pending = run_dir / ".checkpoint.next.pt"

    def write_config(self, yaml_text: str) -> None:
        if self.enabled:
            with _writing(self.config):
                atomic_write(self.config, lambda f: f.write(yaml_text.encode()))

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """Make ``metrics.jsonl`` hold exactly ``history`` (heals a line written after the last checkpoint)."""
        if self.enabled:
            text = "".join(json.dumps(_clean(r)) + "\n" for r in history)
            with _writing(self.metrics):
                atomic_write(self.metrics, lambda f: f.write(text.encode()))

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with _writing(self.metrics), open(self.metrics, "a") as f:
                f.write(json.dumps(_clean(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            text = json.dumps(_clean(summary), indent=2) + "\n"
            with _writing(self.summary):
                atomic_write(self.summary, lambda f: f.write(text.encode()))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``state`` as the pending checkpoint (see :meth:`promote`)."""
        if self.enabled:
            with _writing(self.checkpoint):
                ckpt.save(state, self.pending)

    def promote(self) -> None:
        """The pending checkpoint becomes ``checkpoint.pt`` (one rename)."""
        if self.enabled and self.pending.is_file():
            with _writing(self.checkpoint):
                os.replace(self.pending, self.checkpoint)
                fsync_dir(self.dir)

    def discard(self) -> None:
        """Drop the pending checkpoint (its parameters gave a non-finite loss)."""
        if self.enabled:
            self.pending.unlink(missing_ok=True)


def wandb_mode(mode: str) -> str:
    """``auto``: ``WANDB_MODE`` if set, else online when an API key is configured, else offline."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc()
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"
    return "online" if rc.authenticators("api.wandb.ai") else "offline"


class WandbLogger:
    """Logs the config, every epoch's figures and the final summary to one W&B run kept across resumes."""

    def __init__(
        self, logger_cfg: Any, run_dir: Path, config: dict[str, Any], name: str, run_id: str | None
    ) -> None:
        import wandb

        self.mode = wandb_mode(logger_cfg.mode)
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.entity,
            name=name,
            tags=list(logger_cfg.tags),
            config=config,
            dir=str(run_dir),
            mode=self.mode,
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(console="off", init_timeout=60),
        )

    @property
    def id(self) -> str:
        return self.run.id

    def log(self, record: dict[str, Any]) -> None:
        finite = {k: v for k, v in record.items() if v is not None and not _nonfinite(v)}
        self.run.log(finite, step=record["epoch"])

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        for key, value in _clean(summary).items():
            if value is not None:
                self.run.summary[key] = value
        self.run.finish(exit_code=exit_code)


class Console:
    """Progress on epochs and steps: tqdm bars when attached to a terminal (``auto``/``bar``), else lines."""

    def __init__(self, mode: str, enabled: bool, epochs: int) -> None:
        bars = mode == "bar" or (mode == "auto" and sys.stdout.isatty())
        self.enabled = enabled and mode != "none"
        self.bars = self.enabled and bars
        self._epochs = None
        self._steps = None
        if self.bars:
            from tqdm import tqdm

            self._tqdm = tqdm
            self._epochs = tqdm(total=epochs, desc="epochs", unit="ep", dynamic_ncols=True)

    def start(self, epochs_done: int) -> None:
        if self._epochs is not None:
            self._epochs.n = epochs_done
            self._epochs.refresh()

    def start_epoch(self, epoch: int, total_steps: int, done: int) -> None:
        if self.bars:
            self._steps = self._tqdm(
                total=total_steps,
                initial=done,
                desc=f"epoch {epoch + 1}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
            )

    def step(self, loss: float) -> None:
        if self._steps is not None:
            self._steps.update(1)
            self._steps.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self._epochs is not None:
            self._epochs.update(1)

    def print(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bars:
            self._tqdm.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        for bar in (self._steps, self._epochs):
            if bar is not None:
                bar.close()
