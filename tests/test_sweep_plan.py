"""`scripts/sweep_plan.py`: the jobs of `train.py -m experiment=<table>` and their SLURM resources, without
submitting. Expected grids come from the experiment YAML files read as plain YAML and from
`experiments/<table>.py`, not from Hydra."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ramda.tables import experiments

ROOT = Path(__file__).resolve().parents[1]


_spec = importlib.util.spec_from_file_location("sweep_plan", ROOT / "scripts" / "sweep_plan.py")
assert _spec is not None and _spec.loader is not None
sweep_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep_plan)


def plan_json(*overrides: str) -> dict:
    return sweep_plan.plan(list(overrides))


def grid(table: str) -> list[tuple[str, int]]:
    """(optimizer, seed) pairs of configs/experiment/<table>.yaml, read as plain YAML."""
    params = yaml.safe_load((ROOT / "configs" / "experiment" / f"{table}.yaml").read_text())["hydra"][
        "sweeper"
    ]
    opts = str(params["params"]["optimizer"]).split(",")
    seeds = [int(s) for s in str(params["params"]["seed"]).split(",")]
    return list(itertools.product(opts, seeds))


def test_slurm_plan_of_demo_table() -> None:
    p = plan_json("experiment=demo", "hydra/launcher=slurm")
    expected = grid("demo")
    assert [(j["optimizer"], j["seed"]) for j in p["jobs"]] == expected
    assert {j["table"] for j in p["jobs"]} == {"demo"} and {j["task"] for j in p["jobs"]} == {"digits"}
    run_dirs = [j["run_dir"] for j in p["jobs"]]
    assert len(set(run_dirs)) == len(expected)
    assert all(d.startswith(p["sweep_dir"] + "/") for d in run_dirs)  # one timestamp for the whole sweep
    assert p["launcher"].endswith("SlurmLauncher")
    # A digits run asks for what it needs (1 CPU, 4 GB, no GPU, 1 h), whatever the cluster.
    assert {k: p["slurm"][k] for k in ("cpus_per_task", "mem_gb", "gpus_per_node", "timeout_min")} == {
        "cpus_per_task": 1,
        "mem_gb": 4,
        "gpus_per_node": None,
        "timeout_min": 60,
    }
    n = len(expected)
    sbatch = p["sbatch"].splitlines()
    for line in (
        f"#SBATCH --array=0-{n - 1}%{n}",
        "#SBATCH --time=60",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4GB",
        f"#SBATCH --signal=USR1@{p['slurm']['signal_delay_s']}",
        "#SBATCH --nodes=1",
    ):
        assert line in sbatch, line
    assert not any(s.startswith(("#SBATCH --partition", "#SBATCH --gpus")) for s in sbatch)


def test_paper_tables_keep_their_gpu_request() -> None:
    p = plan_json("experiment=vision", "hydra/launcher=slurm")
    sbatch = p["sbatch"].splitlines()
    for line in ("--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB", "--time=2880", "--signal=USR1@120"):
        assert f"#SBATCH {line}" in sbatch, line


def test_command_line_wins_over_the_grid_and_the_launcher_defaults() -> None:
    p = plan_json(
        "experiment=demo",
        "hydra/launcher=slurm",
        "seed=7,8",
        "trainer.epochs=3",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.tasks_per_node=4",
        "hydra.launcher.nodes=2",
        "+hydra.launcher.additional_parameters.constraint=a100",
    )
    optimizers = list(dict.fromkeys(o for o, _ in grid("demo")))
    assert [(j["optimizer"], j["seed"]) for j in p["jobs"]] == list(itertools.product(optimizers, [7, 8]))
    assert {j["epochs"] for j in p["jobs"]} == {3}
    sbatch = p["sbatch"].splitlines()
    for line in (
        "--partition=gpu",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--nodes=2",
        "--constraint=a100",
    ):
        assert f"#SBATCH {line}" in sbatch, line
    assert p["slurm"]["additional_parameters"] == {"constraint": "a100"}


def test_local_plan_and_text_output(capsys: pytest.CaptureFixture) -> None:
    assert sweep_plan.main(["experiment=demo", "seed=1,2", "optimizer=ramda"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("2 job(s), sweep directory results/runs/demo/multirun/")
    assert "#0: optimizer=ramda seed=1 experiment=demo" in out and "#1: optimizer=ramda seed=2" in out
    assert "runs locally, one after another" in out and "#SBATCH" not in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("experiment=nope", "Could not find 'experiment/nope'; Available options in 'experiment'"),
        ("hydra.launcher.timeout_min=soon", "'soon' of type 'str' could not be converted to Integer"),
        ("optimizer.lr=fast", "full_key: optimizer.lr"),
    ],
)
def test_bad_override_is_one_line(override: str, message: str, capsys: pytest.CaptureFixture) -> None:
    assert sweep_plan.main(["experiment=demo", "hydra/launcher=slurm", override]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_command_line_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/sweep_plan.py", "--json", "experiment=demo", "hydra/launcher=slurm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"launcher": "hydra_plugins.ramda_slurm_launcher._launcher.RamdaSlurmLauncher"' in proc.stdout


@pytest.mark.parametrize("table", experiments.names())
def test_definition_matches_task_and_presets(table: str) -> None:
    """The table's metric is its task's metric, and each of its optimizers has a preset for its task."""
    from ramda.tasks import task_module

    exp = experiments.get(table)
    try:
        task = task_module(exp.task).TASK
    except ModuleNotFoundError as err:  # an optional dependency of the task (e.g. the speech extra)
        pytest.skip(f"task '{exp.task}' needs a package not installed here ({err})")
    assert (task.metric, task.higher_is_better) == (exp.metric, exp.higher_is_better)
    for opt in exp.optimizers:
        assert exp.preset(opt).is_file(), exp.preset(opt)
        settings = exp.settings(opt)
        raw = yaml.safe_load(exp.preset(opt).read_text())
        assert set(settings) == set(raw) - {"defaults"} and {"optimizer", "regularizer"} & set(settings)
        assert isinstance(settings.get("regularizer", {}).get("lam", 0.0), float)
