"""Run outputs: the run directory's files, Weights & Biases, and console progress (bars on a terminal)."""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from pathlib import Path
from typing import Any

from ramda.files import atomic_write


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class RunFiles:
    """``config.yaml``, ``metrics.jsonl`` (one line per epoch), ``summary.json`` and ``checkpoint.pt`` of a run.

    Only the main process writes (``enabled``); every write of a whole file is atomic.
    """

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.dir = run_dir
        self.enabled = enabled
        self.config = run_dir / "config.yaml"
        self.metrics = run_dir / "metrics.jsonl"
        self.summary = run_dir / "summary.json"
        self.checkpoint = run_dir / "checkpoint.pt"

    def write_config(self, yaml_text: str) -> None:
        if self.enabled:
            atomic_write(self.config, lambda f: f.write(yaml_text.encode()))

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """Make ``metrics.jsonl`` hold exactly ``history`` (heals a line written after the last checkpoint)."""
        if self.enabled:
            text = "".join(json.dumps(_clean(r)) + "\n" for r in history)
            atomic_write(self.metrics, lambda f: f.write(text.encode()))

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(_clean(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            text = json.dumps(_clean(summary), indent=2) + "\n"
            atomic_write(self.summary, lambda f: f.write(text.encode()))


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
        self.run.log(_clean({k: v for k, v in record.items() if v is not None}), step=record["epoch"])

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
