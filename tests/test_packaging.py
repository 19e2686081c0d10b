"""The optimizer library stands alone: ``pip install ramda`` gives ``from ramda import RAMDA`` with torch (and
numba for the fused CPU kernels) only; the experiment framework's dependencies are the ``run`` extra, and the
project installs no package but ``ramda`` (and its SLURM launcher in Hydra's plugin namespace)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import setuptools
from packaging.requirements import Requirement
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = ("hydra", "omegaconf", "sklearn", "tqdm", "torchvision", "matplotlib", "wandb", "experiments")

# Imports the optimizers with every framework dependency made unimportable (a ``None`` in ``sys.modules`` makes
# ``import`` raise ModuleNotFoundError and ``find_spec`` answer "absent", as for an uninstalled package), then
# trains a step with each.
CORE_ONLY = f"""
import sys

for name in {FRAMEWORK!r}:
    sys.modules[name] = None
import torch
from ramda import RAMDA, ProxGen, param_groups
from ramda.optim import RMDA, ProxSGD, StageWiseLR

model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
for cls in (RAMDA, ProxGen, RMDA, ProxSGD):
    opt = cls(param_groups(model, lam=1e-3))
    model(torch.randn(4, 6)).square().sum().backward()
    opt.step()
    StageWiseLR(opt, [1]).step()
print("trained")
"""


def pyproject() -> dict:
    return read_configuration(ROOT / "pyproject.toml", expand=False)


def test_the_optimizers_need_none_of_the_framework():
    proc = subprocess.run(
        [sys.executable, "-c", CORE_ONLY], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "trained"


def test_core_dependencies_are_torch_and_numba_and_the_framework_is_an_extra():
    project = pyproject()["project"]
    core = {Requirement(r).name for r in project["dependencies"]}
    assert core == {"torch", "numpy", "numba"}
    extras = project["optional-dependencies"]
    run = {Requirement(r).name for r in extras["run"]}
    assert {"hydra-core", "omegaconf", "scikit-learn", "tqdm"} <= run
    for extra in ("demo", "dev"):  # make demo, make test
        (own,) = [Requirement(r) for r in extras[extra] if Requirement(r).name == "ramda"]
        assert {"run", "tables"} <= own.extras


def test_only_the_ramda_package_is_installed():
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = setuptools.find_namespace_packages(where=str(ROOT), include=include)  # pyproject's default
    assert {p.split(".")[0] for p in packages} == {"ramda", "hydra_plugins"}
    plugins = sorted(p for p in packages if p.startswith("hydra_plugins"))
    assert plugins == ["hydra_plugins", "hydra_plugins.ramda_slurm_launcher"]
    assert {"ramda.optim", "ramda.tables", "ramda.engine", "ramda.tasks", "ramda.kernels"} <= set(packages)
    assert (ROOT / "experiments").is_dir() and not (ROOT / "experiments" / "__init__.py").exists()


def test_the_tables_find_their_definitions_from_any_directory(tmp_path: Path):
    code = "from ramda.tables import experiments; print(experiments.names())"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "['demo', 'vision', 'language', 'speech']"
