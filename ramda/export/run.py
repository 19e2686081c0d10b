"""Export a run: ``python -m ramda.export <run dir>`` writes ``slim.pt`` and ``slim.json`` beside its checkpoint.

The model is rebuilt from the run's ``config.yaml`` and loaded from ``checkpoint.pt``; the example inputs are
what the task itself feeds the model for one training batch (captured at the model's ``forward``), at batch 1
and at ``--batch``. ``slim.pt`` holds the slim module (``torch.load(path, weights_only=False)["model"]``),
``slim.json`` the report (:class:`ramda.export.SlimReport`). Bad input: one line naming the path, exit 2,
nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ramda.export import measure
from ramda.export.slim import SlimError, SlimReport, slim

SLIM_PT = "slim.pt"
SLIM_JSON = "slim.json"
LATENCY_BATCH = 32


class ExportError(ValueError):
    """Bad input to ``python -m ramda.export``: names the path and what would be valid."""


class _Captured(Exception):
    def __init__(self, inputs: measure.Args) -> None:
        self.inputs = inputs


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def model_inputs(task: Any, model: nn.Module) -> measure.Args:
    """The arguments ``task.loss`` passes to ``model`` for the first training batch (the forward is cut short
    once they are captured)."""

    def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Captured(measure.Args(_detach(args), _detach(kwargs)))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            task.loss(model, next(iter(task.train_batches(0))))
    except _Captured as got:
        return got.inputs
    finally:
        handle.remove()
    raise ExportError(f"task {type(task).__name__}: loss() never called the model")


def _task(cfg: Any, batch: int, device: torch.device) -> Any:
    """The run's task with a global batch of ``batch`` (one process, no loader workers)."""
    from ramda.tasks import RunEnv, task_module

    module = task_module(cfg.task.name)
    task_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(module.Config), cfg.task))
    task_cfg = dataclasses.replace(task_cfg, batch_size=batch, num_workers=0)
    return module.TASK(task_cfg, RunEnv(device=device, seed=int(cfg.seed)))


def export_model(
    cfg: Any, model: nn.Module, run_dir: Path, batch: int = LATENCY_BATCH, repeats: int = 20
) -> SlimReport:
    """Slim ``model`` (a model of the run configured by ``cfg``) on the CPU, timed at batch 1 and ``batch``,
    and write ``slim.pt`` / ``slim.json`` into ``run_dir`` (atomically). The model itself is not changed."""
    from ramda.files import atomic_write

    cpu = torch.device("cpu")
    model = _cpu_copy(model)
    inputs = {n: model_inputs(_task(cfg, n, cpu), model) for n in sorted({1, batch})}
    small, report = slim(model, inputs[max(inputs)], latency_inputs=inputs, repeats=repeats)
    config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    atomic_write(run_dir / SLIM_PT, lambda f: torch.save({"model": small, "report": report.to_dict()}, f))
    text = json.dumps({"config": config, **report.to_dict()}, indent=2)
    atomic_write(run_dir / SLIM_JSON, lambda f: f.write(text.encode()))
    return report


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu").eval()


def load_run(run_dir: Path) -> tuple[Any, nn.Module]:
    """The run's config and its model with the checkpoint's weights (on the CPU)."""
    from ramda.engine import checkpoint as ckpt

    config_path, checkpoint = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: not a directory (expected a run directory holding config.yaml)")
    for path in (config_path, checkpoint):
        if not path.is_file():
            raise ExportError(f"{path}: missing (expected a finished run: config.yaml and checkpoint.pt)")
    cfg = OmegaConf.load(config_path)
    try:
        state = ckpt.load(checkpoint)
        model = _task(cfg, 1, torch.device("cpu")).build_model()
        model.load_state_dict(state["model"])
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as err:
        raise ExportError(f"{run_dir}: cannot rebuild the model ({err})") from err
    return cfg, model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ramda.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + checkpoint.pt)")
    parser.add_argument(
        "--batch", type=int, default=LATENCY_BATCH, help="the larger batch timed (and compared)"
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes per model and batch")
    args = parser.parse_args(argv)
    try:
        if args.batch < 1 or args.repeats < 1:
            raise ExportError(
                f"--batch {args.batch} --repeats {args.repeats}: both must be positive integers"
            )
        summary = args.run_dir / "summary.json"
        if summary.is_file() and json.loads(summary.read_text()).get("status") != "completed":
            print(
                f"warning: {summary}: the run has not completed; exporting its last checkpoint",
                file=sys.stderr,
            )
        cfg, model = load_run(args.run_dir)
        report = export_model(cfg, model, args.run_dir, args.batch, args.repeats)
    except (ExportError, SlimError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    print(f"wrote {args.run_dir / SLIM_PT}, {args.run_dir / SLIM_JSON}", file=sys.stderr)
    return 0
