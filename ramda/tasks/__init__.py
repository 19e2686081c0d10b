"""Task registry: ``task=<name>`` resolves to module ``ramda.tasks.<module>`` holding ``Config`` and ``TASK``."""

from __future__ import annotations

import importlib
from types import ModuleType

from ramda.tasks.base import RunEnv, Task, TaskConfig, per_process_batch

TASKS: dict[str, str] = {
    "digits": "ramda.tasks.digits",
    "imagenet": "ramda.tasks.imagenet",
    "wikitext103": "ramda.tasks.wikitext103",
    "ljspeech": "ramda.tasks.ljspeech",
}


def task_module(name: str) -> ModuleType:
    """The module implementing task ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; valid: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])


__all__ = ["TASKS", "RunEnv", "Task", "TaskConfig", "per_process_batch", "task_module"]
