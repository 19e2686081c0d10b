"""The paper's tables as data: for each table, the task, the optimizers, the seeds, the metric and the paper's
reported numbers. ``make tables`` reads these to label, order and annotate the generated tables.

The definitions are the files ``experiments/<table>.py`` of the repository (beside ``configs/``), each binding
``EXPERIMENT`` to an :class:`Experiment`. They are the tables' data, loaded from their path: the project
installs no top-level ``experiments`` package. The optimizer *settings* (lr, momentum, λ, schedule) live once,
in the preset configs ``configs/preset/<task>/<optimizer>.yaml``; :meth:`Experiment.settings` reads them from
there (the authors' released values they must hold, with their files: ``experiments/released.py``). The
multirun grid of ``python train.py -m experiment=<table>`` lives once, in ``configs/experiment/<table>.yaml``:
:func:`grid` reads a table's task, optimizers and seeds from there.
Optimizer names and row order come from the optimizer registry, :data:`ramda.config.OPTIMIZERS`.
"""

from __future__ import annotations

import functools
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
EXPERIMENTS_DIR = REPO / "experiments"
# The paper's order of its tables (the demo first); tables defined beyond these follow by name.
TABLE_ORDER = ("demo", "vision", "language", "speech")


def display_name(optimizer: str) -> str:
    """The name a table prints for optimizer config ``optimizer`` (unknown names are printed as given)."""
    from ramda.config import OPTIMIZERS

    spec = OPTIMIZERS.get(optimizer)
    return spec.display if spec is not None else optimizer


def order_key(optimizer: str) -> tuple[int, str]:
    """Sort key: the registry's order (RAMDA, RMDA, ProxSGD, ProxGen, then MSGD, Adam, AdamW), then the rest by
    name."""
    from ramda.config import OPTIMIZERS

    order = list(OPTIMIZERS)
    return (order.index(optimizer), "") if optimizer in order else (len(order), optimizer)


@dataclass(frozen=True)
class Stat:
    """A reported number, mean ± standard deviation over seeds."""

    mean: float
    std: float


@dataclass(frozen=True)
class PaperRow:
    """The paper's numbers for one optimizer: task metric, weighted group sparsity (%) and time/epoch (s).
    ``None`` where the paper does not report the quantity."""

    metric: Stat
    sparsity: Stat | None = None
    time_per_epoch: Stat | None = None


@dataclass(frozen=True)
class Experiment:
    """One table. ``metric`` is the key of the task's evaluation results (``summary.json``'s ``metric``);
    the ``*_digits`` give the decimals printed for our numbers and the paper's (as the paper reports them)."""

    name: str
    title: str
    task: str
    optimizers: tuple[str, ...]
    metric: str
    metric_label: str
    higher_is_better: bool
    seeds: tuple[int, ...] = (1, 2, 3)
    metric_digits: int = 2
    sparsity_digits: int = 2
    time_digits: int = 1
    paper: Mapping[str, PaperRow] = field(default_factory=dict)
    notes: str = ""

    def preset(self, optimizer: str) -> Path:
        """The preset config holding the paper's setting of ``optimizer`` on this table's task."""
        return CONFIG_DIR / "preset" / self.task / f"{optimizer}.yaml"

    def settings(self, optimizer: str) -> dict[str, Any]:
        """The preset's contents (``optimizer``, ``regularizer``, ``trainer``, ``task`` entries) as a dict,
        unresolved; ``FileNotFoundError`` naming the path if the preset does not exist."""
        from omegaconf import OmegaConf

        path = self.preset(optimizer)
        if not path.is_file():
            raise FileNotFoundError(f"no preset {path} for table '{self.name}', optimizer '{optimizer}'")
        conf = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        assert isinstance(conf, dict)
        conf.pop("defaults", None)
        return conf

    def overrides(self, optimizer: str, seed: int) -> list[str]:
        """The command-line overrides of one run of this table: ``train.py <these>`` runs that cell."""
        return [f"experiment={self.name}", f"optimizer={optimizer}", f"seed={seed}"]


def grid(table: str) -> dict[str, Any]:
    """``task``, ``optimizers`` and ``seeds`` of ``configs/experiment/<table>.yaml``: its task override and
    its sweeper's ``optimizer`` and ``seed`` lists, read as plain YAML."""
    import yaml

    conf = yaml.safe_load((CONFIG_DIR / "experiment" / f"{table}.yaml").read_text(encoding="utf-8"))
    task = next(
        d["override /task"] for d in conf["defaults"] if isinstance(d, dict) and "override /task" in d
    )
    params = conf["hydra"]["sweeper"]["params"]
    return {
        "task": task,
        "optimizers": tuple(str(params["optimizer"]).split(",")),
        "seeds": tuple(int(seed) for seed in str(params["seed"]).split(",")),
    }


@functools.cache
def _registry() -> dict[str, Experiment]:
    """Every ``EXPERIMENT`` of ``experiments/*.py`` by table name, in :data:`TABLE_ORDER`, then by name."""
    found: dict[str, Experiment] = {}
    for path in sorted(EXPERIMENTS_DIR.glob("*.py")):
        exp = runpy.run_path(str(path)).get("EXPERIMENT")
        if isinstance(exp, Experiment):
            found[exp.name] = exp

    def rank(name: str) -> tuple[int, str]:
        return (TABLE_ORDER.index(name), "") if name in TABLE_ORDER else (len(TABLE_ORDER), name)

    return {name: found[name] for name in sorted(found, key=rank)}


def names() -> list[str]:
    """The tables with a definition, in the paper's order (demo first)."""
    return list(_registry())


def get(name: str) -> Experiment:
    """The definition of table ``name``; ``KeyError`` naming the valid tables otherwise."""
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown table '{name}'; defined tables: {', '.join(registry)}")
    return registry[name]
