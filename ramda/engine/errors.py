"""Errors the runner reports as one line: ``error: <key or path>: <what is wrong>; <what is valid>``."""

from __future__ import annotations


class RunError(Exception):
    """A failure the user can act on: ``key`` (a config key or a path), ``problem`` and what is ``valid``."""

    def __init__(self, key: str, problem: str, valid: str = "") -> None:
        super().__init__(key, problem, valid)
        self.key, self.problem, self.valid = key, problem, valid

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}" + (f"; {self.valid}" if self.valid else "")


class ConfigError(RunError):
    """Bad input (a config value, a path, a checkpoint): exit status 2, nothing written."""


class NonFiniteLossError(RunError):
    """The training loss became NaN or infinite; the run stops and its last good checkpoint is kept."""

    def __init__(self, epoch: int, step: int, global_step: int, value: float, checkpoint: str) -> None:
        kept = (
            f"the last good checkpoint is kept at {checkpoint}" if checkpoint else "no checkpoint was saved"
        )
        super().__init__(
            "train_loss",
            f"non-finite loss ({value}) at epoch {epoch} step {step} (global step {global_step})",
            f"{kept}; lower optimizer.lr, set task.grad_clip, or use trainer.precision=fp32",
        )
        self.epoch, self.step, self.global_step = epoch, step, global_step


class Preempted(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A termination signal arrived; a checkpoint was saved and the process should exit ``128 + signum``."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(signum, checkpoint)
        self.signum, self.checkpoint = signum, checkpoint
