"""The optimizer registry: one entry is all a new optimizer needs to be validated, built, scheduled, trained and
tabulated by the runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose
from hydra.core.config_store import ConfigStore

from ramda.config import OPTIMIZERS, OptimizerConfig, OptimizerSpec, register_configs, register_optimizer
from ramda.engine.errors import ConfigError
from ramda.engine.preflight import preflight
from ramda.engine.validate import validate
from ramda.optim import RegularizedOptimizer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


class ToySGD(RegularizedOptimizer):
    """W ← W − lr·g (no structure term), counting the calls of ``restart`` (to see that milestones reach it)."""

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.5, **kw) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, **kw})
        self.restarts = 0

    def _group_step(self, group, params, grads, states) -> None:
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def restart(self, eps_scale: float = 1.0) -> None:
        self.restarts += 1


class ToySolver(ToySGD):
    uses_solver = True


@dataclass
class ToyConfig(OptimizerConfig):
    name: str = "toy"
    lr: float = 0.05
    momentum: float = 0.5


@pytest.fixture
def toy() -> Iterator[list[str]]:
    """The one registry entry of a new optimizer; the task names Hydra knows."""
    register_optimizer(OptimizerSpec("toy", ToySGD, ToyConfig, "Toy", momentum="average"))
    tasks = register_configs()
    yield tasks
    del OPTIMIZERS["toy"]
    ConfigStore.instance().repo["optimizer"].pop("toy.yaml")


def test_a_registered_toy_optimizer_is_validated_built_and_trained(toy, hydra_ctx, tmp_path: Path):
    from ramda.engine.trainer import Trainer

    overrides = [
        "optimizer=toy",
        "regularizer.lam=0.001",
        "trainer.epochs=2",
        "trainer.milestones=[1]",
        "trainer.momentum_start_epoch=1",
        "task.max_train_batches=3",
        "task.max_eval_batches=1",
        "trainer.progress=none",
        "trainer.threads=1",
    ]
    cfg = compose("train", overrides=overrides)
    validate(cfg, toy)
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.run()
    assert isinstance(trainer.optimizer, ToySGD) and trainer.optimizer.restarts == 1  # the milestone
    assert trainer.momentum_schedule is not None  # it restarts: the momentum schedule applies
    assert trainer.optimizer.param_groups[0]["momentum"] > 0.5  # ... and has started at epoch 1
    assert summary["status"] == "completed" and summary["optimizer"] == "toy"
    assert trainer.optimizer.param_groups[0]["lam"] == 0.001  # regularised: λ reaches its param group
    assert json.loads((tmp_path / "summary.json").read_text())["epochs_completed"] == 2

    from ramda.tables.experiments import display_name

    assert display_name("toy") == "Toy"


def test_the_registry_entry_drives_validation(toy):
    preflight(["optimizer=toy", "regularizer=none", "optimizer.momentum=1.0"], CONFIGS, toy)
    with pytest.raises(
        ConfigError, match=r"^optimizer.momentum: 1.5 is out of range; valid: a number in \(0, 1\]"
    ):
        preflight(["optimizer=toy", "regularizer=none", "optimizer.momentum=1.5"], CONFIGS, toy)
    with pytest.raises(ConfigError, match=r"^optimizer: unknown value 'nope'; valid: .*\btoy\b"):
        preflight(["optimizer=nope"], CONFIGS, toy)


def test_an_entry_whose_config_lacks_a_capabilitys_keys_is_refused():
    with pytest.raises(ValueError, match=r"lacks 'max_iters'.*lacks 'rtol'.*lacks 'stop'.*lacks 'tol'"):
        register_optimizer(OptimizerSpec("toy2", ToySolver, ToyConfig, "Toy"))
    with pytest.raises(ValueError, match="has name 'toy'"):
        register_optimizer(OptimizerSpec("toy2", ToySGD, ToyConfig, "Toy"))
    assert "toy2" not in OPTIMIZERS


def test_every_registered_config_builds_its_class(hydra_ctx):
    from ramda.engine.build import build_optimizer

    register_configs()
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    for name, spec in OPTIMIZERS.items():
        lam = "regularizer.lam=0.01" if spec.regularized else "regularizer=none"
        cfg = compose("train", overrides=[f"optimizer={name}", lam])
        opt = build_optimizer(cfg, model)
        assert type(opt) is spec.cls
        assert ("momentum" in opt.param_groups[0]) == bool(spec.momentum)
