"""Run records: one :class:`RunRecord` per run, read from run directories (``summary.json`` +
``metrics.jsonl``) or from a W&B project."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .experiments import get as get_experiment

STATUSES = ("completed", "failed", "running")
SUMMARY_KEYS = ("status", "table", "task", "optimizer", "seed", "metric")
# ``table`` and ``task`` become file names under --out: a plain name, never a path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


class TablesError(ValueError):
    """Bad input to ``make tables``: the message names the path or key and what would be valid."""


@dataclass
class RunRecord:
    """One run, whatever its source. Sparsities are fractions, ``time_per_epoch`` is seconds; ``history``
    holds the per-epoch records (``metrics.jsonl`` lines) in epoch order. ``lam`` is the run's λ; the export
    figures (``summary.json``'s ``slim``, present with ``trainer.export=true``) are the fractions of FLOPs and
    parameters the slim model keeps and its CPU speedup at the largest batch timed."""

    source: str
    status: str
    table: str
    task: str
    optimizer: str
    seed: int
    metric: str
    metric_value: float | None = None
    higher_is_better: bool | None = None
    weighted_group_sparsity: float | None = None
    group_sparsity: float | None = None
    unstructured_sparsity: float | None = None
    time_per_epoch: float | None = None
    epochs_completed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    order: float = 0.0
    lam: float | None = None
    flops_kept: float | None = None
    params_kept: float | None = None
    speedup: float | None = None


def _number(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TablesError(f"{where}: '{key}' must be a number or null, got {value!r}")
    if not math.isfinite(value):
        raise TablesError(f"{where}: '{key}' is {value}; a number (or null) is needed")
    return float(value)


def warm_time_per_epoch(history: Sequence[Mapping[str, Any]]) -> float | None:
    """The median of the epochs' ``time_per_epoch`` leaving out the first epoch (its one-off warm-up: kernel
    compilation, ``torch.compile``) unless it is the only one; ``None`` if no epoch has a time."""
    times = [
        float(h["time_per_epoch"])
        for h in history
        if isinstance(h.get("time_per_epoch"), int | float)
        and not isinstance(h.get("time_per_epoch"), bool)
        and math.isfinite(h["time_per_epoch"])
    ]
    if not times:
        return None
    return statistics.median(times[1:] or times)


def record_from_summary(
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    source: str,
    order: float = 0.0,
    where: str | None = None,
) -> RunRecord:
    """A :class:`RunRecord` from a ``summary.json`` dict; ``TablesError`` naming ``where`` (default:
    ``source``) and the key if a required key is missing or has the wrong type."""
    loc = where or source
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise TablesError(f"{loc}: missing key(s) {', '.join(missing)} (required: {', '.join(SUMMARY_KEYS)})")
    status = summary["status"]
    if status not in STATUSES:
        raise TablesError(f"{loc}: 'status' is {status!r}; valid: {', '.join(STATUSES)}")
    seed = summary["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TablesError(f"{loc}: 'seed' must be an integer, got {seed!r}")
    for key in ("table", "task", "optimizer", "metric"):
        if not isinstance(summary[key], str) or not summary[key]:
            raise TablesError(f"{loc}: '{key}' must be a non-empty string, got {summary[key]!r}")
    for key in ("table", "task"):
        if not NAME.fullmatch(summary[key]):
            raise TablesError(
                f"{loc}: '{key}' is {summary[key]!r}; it names files under --out, so it must be a plain name "
                "(letters, digits, _ . + -; at most 100 characters)"
            )
    hib = summary.get("higher_is_better")
    if hib is not None and not isinstance(hib, bool):
        raise TablesError(f"{loc}: 'higher_is_better' must be true or false, got {hib!r}")
    epochs = summary.get("epochs_completed", len(history))
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise TablesError(f"{loc}: 'epochs_completed' must be an integer, got {epochs!r}")
    metric_value = _number(summary.get("metric_value"), loc, "metric_value")
    if status == "completed" and metric_value is None:
        raise TablesError(f"{loc}: a completed run needs a numeric 'metric_value'")
    epochs_sorted = sorted((dict(h) for h in history if "epoch" in h), key=lambda h: h["epoch"])
    time_per_epoch = _number(summary.get("time_per_epoch"), loc, "time_per_epoch")
    warm = warm_time_per_epoch(epochs_sorted)
    slim = _slim_figures(summary.get("slim"), loc)
    return RunRecord(
        source=source,
        status=status,
        table=summary["table"],
        task=summary["task"],
        optimizer=summary["optimizer"],
        seed=seed,
        metric=summary["metric"],
        metric_value=metric_value,
        higher_is_better=hib,
        weighted_group_sparsity=_number(
            summary.get("weighted_group_sparsity"), loc, "weighted_group_sparsity"
        ),
        group_sparsity=_number(summary.get("group_sparsity"), loc, "group_sparsity"),
        unstructured_sparsity=_number(summary.get("unstructured_sparsity"), loc, "unstructured_sparsity"),
        time_per_epoch=time_per_epoch if warm is None else warm,
        epochs_completed=epochs,
        history=epochs_sorted,
        order=order,
        lam=_number(summary.get("lam"), loc, "lam"),
        **slim,
    )


def _slim_figures(slim: Any, loc: str) -> dict[str, float | None]:
    """``flops_kept``, ``params_kept`` and ``speedup`` (at the largest batch timed) from a summary's ``slim``;
    all None without one, or when the export failed (it then holds only ``error``)."""
    out: dict[str, float | None] = {"flops_kept": None, "params_kept": None, "speedup": None}
    if slim is None or (isinstance(slim, Mapping) and "error" in slim):
        return out
    if not isinstance(slim, Mapping):
        raise TablesError(f"{loc}: 'slim' must be an object, got {slim!r}")
    out["flops_kept"] = _number(slim.get("flops_kept"), loc, "slim.flops_kept")
    out["params_kept"] = _number(slim.get("params_kept"), loc, "slim.params_kept")
    speedups = slim.get("speedup") or {}
    if not isinstance(speedups, Mapping):
        raise TablesError(f"{loc}: 'slim.speedup' must be an object (batch → speedup), got {speedups!r}")
    batches = {int(k.removeprefix("batch")): k for k in speedups if k.removeprefix("batch").isdigit()}
    if batches:
        out["speedup"] = _number(speedups[batches[max(batches)]], loc, "slim.speedup")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_json(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` (Python writes them; JSON has no such numbers)."""
    return json.loads(text, parse_constant=_reject_constant)


def _read_text(path: Path) -> str:
    """The UTF-8 text of a regular file; ``TablesError`` naming it otherwise."""
    if not path.is_file():
        raise TablesError(f"{path}: not a regular file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise TablesError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise TablesError(f"{path}: cannot be read ({e.strerror})") from None


def _read_jsonl(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The JSON lines of ``path``; a truncated last line (a run killed mid-write) is ignored. A bad line
    elsewhere raises ``TablesError``, or with ``problems`` is reported there and the lines before it kept."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    try:
        lines = _read_text(path).splitlines()
    except TablesError as e:
        if problems is None:
            raise
        problems.append(f"{e}; its epoch history is left out")
        return rows
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = _read_json(line)
        except ValueError as e:
            if i == len(lines) - 1:
                break
            message = (
                f"{path}:{i + 1}: not valid JSON ({e.msg if isinstance(e, json.JSONDecodeError) else e})"
            )
        else:
            if isinstance(row, dict):
                rows.append(row)
                continue
            message = f"{path}:{i + 1}: each line must be a JSON object"
        if problems is None:
            raise TablesError(message)
        problems.append(f"{message}; the epochs from there on are left out")
        break
    return rows


def read_summary(path: Path) -> dict[str, Any]:
    """A ``summary.json`` as a dict; ``TablesError`` naming the file if it is not a readable UTF-8 file
    holding one JSON object (a directory of that name, invalid bytes, ``NaN``, a truncated write)."""
    text = _read_text(path)
    try:
        summary = _read_json(text)
    except json.JSONDecodeError as e:
        raise TablesError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:
        raise TablesError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise TablesError(f"{path}: must hold a JSON object")
    return summary


def load_local(runs: Path, warnings: list[str] | None = None) -> list[RunRecord]:
    """Every run under ``runs``: each directory holding a ``summary.json`` (searched recursively). A run that
    cannot be read raises ``TablesError`` naming the file; with a ``warnings`` list it is reported there
    instead, skipped, and the other runs are read."""
    if not runs.is_dir():
        raise TablesError(f"--runs {runs}: not a directory (expected the runs directory, e.g. results/runs)")
    records = []
    for path in sorted(runs.rglob("summary.json")):
        try:
            summary = read_summary(path)
            problems: list[str] | None = None if warnings is None else []
            history = _read_jsonl(path.parent / "metrics.jsonl", problems)
            record = record_from_summary(summary, history, str(path.parent), path.stat().st_mtime, str(path))
        except TablesError as e:
            if warnings is None:
                raise
            warnings.append(f"{e}; run skipped")
            continue
        if problems:
            warnings.extend(problems)
        records.append(record)
    return records


WANDB_STATES = {"finished": "completed", "running": "running", "crashed": "failed", "failed": "failed"}


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """``config['a']['b']`` for ``'a.b'``, also accepting W&B's flattened ``config['a.b']``."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def record_from_wandb(
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    state: str,
    history: Iterable[Mapping[str, Any]],
    source: str,
) -> RunRecord:
    """A :class:`RunRecord` from a W&B run's ``config`` (the resolved run config), ``summary``, ``state``
    and logged rows. Rows with an ``epoch`` key are the per-epoch records; step-level rows are ignored. The
    summary fields of ``summary.json`` are used where the run logged them, else derived: status from the run
    state (finished → completed, crashed/failed → failed, running → running), the metric's final value from
    the last epoch row. Time/epoch comes from the rows as for run directories (:func:`warm_time_per_epoch`)."""
    epochs = [dict(h) for h in history if h.get("epoch") is not None]
    epochs.sort(key=lambda h: h["epoch"])
    table = summary.get("table") or _get(config, "table")
    merged: dict[str, Any] = {
        "table": table,
        "task": summary.get("task") or _get(config, "task.name"),
        "optimizer": summary.get("optimizer") or _get(config, "optimizer.name"),
        "seed": summary.get("seed", _get(config, "seed")),
        "status": summary.get("status") or WANDB_STATES.get(state, "failed"),
        "lam": summary.get("lam", _get(config, "regularizer.lam")),
        "slim": summary.get("slim"),
    }
    metric = summary.get("metric")
    if metric is None and isinstance(table, str):
        try:
            metric = get_experiment(table).metric
        except KeyError:
            metric = None
    merged["metric"] = metric
    last = epochs[-1] if epochs else {}
    for key in ("weighted_group_sparsity", "group_sparsity", "unstructured_sparsity"):
        merged[key] = summary.get(key, last.get(key))
    merged["metric_value"] = summary.get("metric_value", last.get(metric) if metric else None)
    merged["time_per_epoch"] = summary.get("time_per_epoch")
    merged["epochs_completed"] = summary.get("epochs_completed", len(epochs))
    if "higher_is_better" in summary:
        merged["higher_is_better"] = summary["higher_is_better"]
    if merged["status"] == "completed" and merged["metric_value"] is None:
        merged["status"] = "failed"
    return record_from_summary(merged, epochs, source)


def load_wandb(project: str, table: str | None = None, warnings: list[str] | None = None) -> list[RunRecord]:
    """Every run of W&B project ``[entity/]project`` through the public API (needs network and a login),
    optionally only those whose config has ``table``. A run that cannot be converted raises ``TablesError``,
    or with a ``warnings`` list is reported there and skipped (as in :func:`load_local`)."""
    import wandb

    filters = {"config.table": table} if table else None
    records = []
    try:
        api = wandb.Api()
        for i, run in enumerate(api.runs(project, filters=filters, order="+created_at")):  # oldest first
            history = [row for row in run.scan_history() if row.get("epoch") is not None]
            try:
                record = record_from_wandb(dict(run.config), dict(run.summary), run.state, history, run.url)
            except TablesError as e:
                if warnings is None:
                    raise
                warnings.append(f"{e}; run skipped")
                continue
            record.order = float(i)
            records.append(record)
    except (wandb.errors.Error, ValueError, OSError) as err:
        if isinstance(err, TablesError):
            raise
        raise TablesError(f"--wandb-project {project}: {str(err).strip().splitlines()[0]}") from None
    return records
