"""Config composition (real Hydra), the one-line bad-input errors, and the loop's precision modes, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose
from omegaconf import OmegaConf

from ramda.config import OPTIMIZERS, register_configs
from ramda.engine.build import build_optimizer
from ramda.engine.errors import ConfigError
from ramda.engine.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
TASKS = register_configs()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_is_the_digits_ramda_demo(hydra_ctx):
    cfg = compose("train")
    assert (cfg.task.name, cfg.optimizer.name, cfg.regularizer.name, cfg.logger.name) == (
        "digits",
        "ramda",
        "group_lasso",
        "local",
    )
    preset = OmegaConf.load(ROOT / "configs/preset/digits/ramda.yaml")
    assert cfg.optimizer.lr == preset.optimizer.lr and cfg.regularizer.lam == preset.regularizer.lam
    assert cfg.trainer.epochs == preset.trainer.epochs and cfg.regularizer.lam > 0


def test_command_line_wins_over_the_preset(hydra_ctx):
    cfg = compose(
        "train", overrides=["optimizer.lr=0.123", "regularizer.lam=0.5", "trainer.epochs=3", "seed=7"]
    )
    assert (cfg.optimizer.lr, cfg.regularizer.lam, cfg.trainer.epochs, cfg.seed) == (0.123, 0.5, 3, 7)


@pytest.mark.parametrize("name", ["ramda", "rmda", "proxsgd", "proxgen", "msgd", "adam"])
def test_every_optimizer_has_a_digits_preset(hydra_ctx, name: str):
    cfg = compose("train", overrides=[f"optimizer={name}"])
    preset = OmegaConf.load(ROOT / f"configs/preset/digits/{name}.yaml")
    assert cfg.optimizer.name == name and cfg.optimizer.lr == preset.optimizer.lr
    assert type(build_optimizer(cfg, torch.nn.Linear(2, 2))) is OPTIMIZERS[name].cls


def test_demo_experiment_sets_the_table_and_grid(hydra_ctx):
    cfg = compose("train", overrides=["experiment=demo"], return_hydra_config=True)
    assert cfg.table == "demo" and cfg.task.name == "digits"
    params = cfg.hydra.sweeper.params
    assert params.optimizer.split(",") == ["ramda", "rmda", "proxsgd", "proxgen"] and str(params.seed) == "1"


def test_run_directory_layout(hydra_ctx):
    cfg = compose("train", overrides=["seed=3", "optimizer=rmda"], return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith("results/runs/adhoc/digits/rmda/seed3/20")
    assert cfg.hydra.output_subdir is None  # the runner writes config.yaml itself


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        (["task=nope"], "task: unknown value 'nope'; valid: "),
        (
            ["optimizer=nope"],
            "optimizer: unknown value 'nope'; valid: adam, adamw, msgd, proxgen, proxsgd, ramda",
        ),
        (
            ["regularizer=nope"],
            "regularizer: unknown value 'nope'; valid: binary, group_lasso, l1, none, nuclear",
        ),
        (["optimizer.lr=-1"], "optimizer.lr: -1.0 is out of range; valid: a number in (0, inf)"),
        (["optimizer.lr=abc"], "optimizer.lr: Value 'abc' of type 'str' could not be converted to Float"),
        (["regularizer.lam=-0.1"], "regularizer.lam: -0.1 is out of range; valid: a finite number >= 0"),
        (["optimizer.momentum=1.5"], "optimizer.momentum: 1.5 is out of range; valid: a number in (0, 1]"),
        (["optimizer.momentum=0"], "optimizer.momentum: 0.0 is out of range; valid: a number in (0, 1]"),
        (
            ["optimizer=msgd", "optimizer.momentum=1.0"],
            "optimizer.momentum: 1.0 is out of range; valid: a number in [0, 1)",
        ),
        (
            ["optimizer=msgd", "regularizer.lam=0.1"],
            "regularizer.lam: optimizer msgd does not support a regularizer",
        ),
        (["regularizer=none", "regularizer.lam=0.1"], "regularizer.lam: 0.1 with regularizer=none"),
        (
            ["optimizer.momentom=0.1"],
            "optimizer.momentom: unknown key; valid keys here: name, lr, momentum",
        ),
        # Holes the schema alone leaves: keys added with +, group options that are not names, _target_.
        (["=3"], "=3: no key before '='"),
        (["optimizer=1"], "optimizer: 1 is not an option; valid: adam, adamw, msgd, proxgen, proxsgd, ramda"),
        (["optimizer=null"], "optimizer: null is not an option; valid: adam, adamw"),
        (["-m", "optimizer=ramda,2"], "optimizer: 2 is not an option"),
        (["~optimizer"], "optimizer: cannot be removed; valid: adam, adamw"),
        (["+trainer.foo=1"], "trainer.foo: unknown key; valid keys here: epochs, milestones"),
        (["+optimizer.foo=1"], "optimizer.foo: unknown key; valid keys here: name, lr, momentum, eps, stop"),
        (["+task.data.foo=1"], "task.data.foo: unknown key; valid keys here: root, val_fraction, split_seed"),
        (["+optimizer._target_=torch.optim.SGD"], "optimizer._target_: unknown key"),
        (["optimizer._target_=torch.optim.SGD"], "optimizer._target_: unknown key"),
        (["optimizer.name=rmda"], "optimizer.eps: unknown key"),
        (["optimizer.name=sgd"], "optimizer.name: unknown value 'sgd'; valid: ramda, rmda"),
        (["regularizer.lam=nan"], "regularizer.lam: nan is out of range"),
        (
            ["trainer.epochs=5"],
            "trainer.milestones: [12, 17] reaches beyond the run's 5 epochs (a milestone m acts after epoch m); "
            "valid: epochs in [1, 4]; for a short run: trainer.milestones=[] trainer.momentum_start_epoch=null",
        ),
        (
            ["trainer.epochs=1", "trainer.milestones=[1]"],
            "trainer.milestones: [1] reaches beyond the run's 1",
        ),
        (
            ["optimizer=rmda", "trainer.momentum_start_epoch=20"],
            "trainer.momentum_start_epoch: the momentum schedule would start at epoch 20, after the run's 20",
        ),
        (["+epochs=3"], "epochs: unknown top-level key"),
        (["trainer.epochs=0"], "trainer.epochs: 0 is out of range"),
        (["trainer.milestones=[5,3]"], "trainer.milestones: [5, 3] is not valid"),
        (["trainer.precision=fp8"], "trainer.precision: unknown value 'fp8'; valid: fp32, bf16, fp16"),
        (["trainer.device=tpu"], "trainer.device: unknown value 'tpu'"),
        (["task.data.root=/no/such/dir"], "task.data.root: directory '/no/such/dir' does not exist"),
        (["resume=/no/such.pt"], "resume: checkpoint '/no/such.pt' does not exist"),
        (["-m", "optimizer=ramda,nope"], "optimizer: unknown value 'nope'"),
        (["-m", "experiment=demo", "seed=1,-2"], "seed: -2 is out of range"),
        (["logger=slack"], "logger: unknown value 'slack'; valid: local, wandb"),
    ],
)
def test_bad_input_names_the_key_and_what_is_valid(argv: list[str], prefix: str):
    with pytest.raises(ConfigError) as info:
        preflight(argv, CONFIGS, TASKS)
    assert str(info.value).startswith(prefix)
    assert "\n" not in str(info.value)


def test_good_input_passes_preflight():
    preflight(["optimizer=proxgen", "regularizer=l1", "regularizer.lam=1e-4", "seed=2"], CONFIGS, TASKS)
    # A momentum schedule that never starts is fine where the optimizer has none.
    preflight(["optimizer=proxsgd", "trainer.momentum_start_epoch=30"], CONFIGS, TASKS)
    preflight(
        ["optimizer=ramda", "trainer.momentum_schedule=false", "trainer.momentum_start_epoch=30"],
        CONFIGS,
        TASKS,
    )
    preflight(
        ["trainer.epochs=2", "trainer.milestones=[]", "trainer.momentum_start_epoch=null"], CONFIGS, TASKS
    )
    preflight(["-m", "experiment=demo"], CONFIGS, TASKS)
    preflight(["--help"], CONFIGS, TASKS)  # Hydra's own flags are left to Hydra


def test_gpus_are_checked_where_the_run_executes():
    """A run on this machine needs its CUDA device here; a sweep sent to SLURM from a login node without GPUs
    does not (train.py checks the GPU on the node), but the device string is still checked."""
    absent = f"cuda:{torch.cuda.device_count()}"
    for argv in (["trainer.device=" + absent], ["-m", "trainer.device=" + absent]):
        with pytest.raises(ConfigError, match=r"^trainer\.device: .* is not available"):
            preflight(argv, CONFIGS, TASKS)
    preflight(["-m", "trainer.device=" + absent, "hydra/launcher=slurm"], CONFIGS, TASKS)
    with pytest.raises(ConfigError, match=r"^trainer\.device: unknown value 'gpu'"):
        preflight(["-m", "trainer.device=gpu", "hydra/launcher=slurm"], CONFIGS, TASKS)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_grad_clipping_on_cpu(hydra_ctx, tmp_path: Path, precision: str, capsys):
    from ramda.engine.trainer import Trainer

    cfg = compose(
        "train",
        overrides=[
            f"trainer.precision={precision}",
            "trainer.epochs=1",
            "task.max_train_batches=3",
            "task.grad_clip=1.0",
            "task.max_eval_batches=1",
            "task.eval_batch_size=32",
            "trainer.progress=none",
            "trainer.threads=1",
        ],
    )
    summary = Trainer(cfg, tmp_path).run()
    assert summary["status"] == "completed" and 0 <= summary["metric_value"] <= 100
    slow = "warning: trainer.precision=fp16 on the CPU: torch's float16 CPU kernels are slow"
    assert (slow in capsys.readouterr().err) == (precision == "fp16")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert bool(state["scaler"]) == (precision == "fp16")  # GradScaler only for fp16
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
