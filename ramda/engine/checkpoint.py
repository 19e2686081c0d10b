"""Atomic checkpoints and the random-number state that makes a resumed run identical to an uninterrupted one."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ramda.engine.errors import ConfigError
from ramda.files import atomic_write

FORMAT = "ramda-checkpoint-1"
REQUIRED = (
    "format",
    "model",
    "optimizer",
    "lr_schedule",
    "scaler",
    "rng",
    "epoch",
    "step_in_epoch",
    "global_step",
    "partial",
    "history",
    "config",
)
# Keys inside the nested entries (the epoch's running sums and each RNG state).
NESTED = {
    "partial": ("loss_sum", "batches", "train_time", "solver_sum", "solver_steps"),
    "rng": ("python", "python_version", "numpy", "torch"),
}


def save(state: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically (``torch.save`` of plain containers and tensors only)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; anything else is a :class:`ConfigError` naming the path.

    Loads with ``weights_only=True``: a checkpoint can hold only tensors and plain containers.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(str(path), f"not a readable checkpoint ({reason[:160]})", _fix_hint(path)) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(str(path), f"not a {FORMAT} file (no 'format': '{FORMAT}')", _fix_hint(path))
    missing = [k for k in REQUIRED if k not in state]
    for key, inner in NESTED.items():
        if key in state:
            entry = state[key]
            missing += [f"{key}.{k}" for k in inner if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise ConfigError(
            str(path), f"an incomplete checkpoint (missing {', '.join(missing)})", _fix_hint(path)
        )
    return state


def misfit(path: Path, err: Exception) -> ConfigError:
    """The error for a checkpoint whose tensors do not fit the model or optimizer built from the config."""
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in lines if "size mismatch" in line or "Missing key" in line), None)
    reason = (detail or (lines[0] if lines else type(err).__name__))[:200]
    return ConfigError(
        str(path), f"does not fit the model and optimizer of this config ({reason})", _fix_hint(path)
    )


def _fix_hint(path: Path) -> str:
    return (
        f"it is left untouched: move it away to start over, or pick another hydra.run.dir (not {path.parent})"
    )


def rng_state(device: torch.device) -> dict[str, Any]:
    """The state of every random generator a run on ``device`` touches, as tensors and plain containers (of
    the GPUs, only ``device``'s: a resumed job may see another number of them)."""
    np_state = np.random.get_state()
    py_version, py_keys, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [*py_keys, py_gauss],
        "python_version": py_version,
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` captured, the GPU generator into ``device``'s."""
    python = state["python"]
    random.setstate((state["python_version"], tuple(python[:-1]), python[-1]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, list):  # checkpoints written before 2026-11-30: one state per GPU the job saw
        cuda = cuda[device.index] if device.type == "cuda" and device.index < len(cuda) else None
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
