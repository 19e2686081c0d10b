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


class DataError(ConfigError):
    """A data file that cannot be read (corrupt, truncated, empty): exit status 2, naming the file.

    Raised in a DataLoader worker, it reaches the main process rebuilt from one string, torch's formatted
    traceback, whose last line holds the message."""

    def __init__(self, key: str, problem: str | None = None, valid: str = "") -> None:
        if problem is None:
            last = key.strip().splitlines()[-1] if key.strip() else key
            _, _, message = last.partition("DataError: ")
            key, _, rest = (message or last).partition(": ")
            problem, _, valid = rest.partition("; ")
        super().__init__(key, problem, valid)


class OutputError(RunError):
    """A run file could not be written (disk full, file system gone read-only): exit status 1; the last
    checkpoint is kept."""


class NonFiniteLossError(RunError):
    """The training loss, a weight (``model.<name>``, checked before every checkpoint) or an evaluation metric
    became NaN or infinite; the run stops, marked failed, and its last good checkpoint (finite weights that gave a
    finite loss) is kept."""

    def __init__(
        self,
        epoch: int,
        step: int,
        global_step: int,
        value: float,
        checkpoint: str,
        key: str = "train_loss",
        precision: str = "fp32",
    ) -> None:
        kept = (
            f"the last good checkpoint is kept at {checkpoint}" if checkpoint else "no checkpoint was saved"
        )
        where = f"at epoch {epoch} step {step} (global step {global_step})"
        if key != "train_loss" and not key.startswith("model."):
            where = f"in the evaluation after epoch {epoch} (global step {global_step})"
        fixes = "lower optimizer.lr or set task.grad_clip"
        if precision != "fp32":
            fixes = "lower optimizer.lr, set task.grad_clip, or use trainer.precision=fp32"
        what = "loss" if key == "train_loss" else "weight" if key.startswith("model.") else "value"
        super().__init__(key, f"non-finite {what} ({value}) {where}", f"{kept}; {fixes}")
        self.epoch, self.step, self.global_step = epoch, step, global_step


class Preempted(Exception):
    """A termination signal arrived; a checkpoint was saved and the process should exit ``128 + signum``."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(signum, checkpoint)
        self.signum, self.checkpoint = signum, checkpoint
