"""Print the jobs a sweep would run, without running or submitting anything.

    python scripts/sweep_plan.py experiment=vision hydra/launcher=slurm [more overrides] [--json]

takes the overrides of ``python train.py -m ...`` and expands them exactly as Hydra does: the config is
composed in multirun mode, the grid (``hydra.sweeper.params`` plus command-line sweeps such as ``seed=1,2``)
is expanded by Hydra's own BasicSweeper, and each job's config is composed the way the launcher composes it
inside the job (so a job whose config is invalid is reported here, before anything is submitted). For each
job it prints the overrides, the resolved task/optimizer/lr/λ/seed/epochs and the run directory; with
``hydra/launcher=slurm`` it also prints the SLURM resources and the ``#SBATCH`` header that submitit would
write for the job array.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG_NAME = "train"
SLURM_KEYS = (
    "partition",
    "account",
    "qos",
    "timeout_min",
    "nodes",
    "gpus_per_node",
    "tasks_per_node",
    "cpus_per_task",
    "mem_gb",
    "signal_delay_s",
    "max_requeues",
    "poll_s",
    "check_resources",
    "array_parallelism",
    "additional_parameters",
    "setup",
)


class PlanError(ValueError):
    """An override or config that Hydra rejects; the message is Hydra's, naming the key."""


def plan(overrides: list[str]) -> dict[str, Any]:
    """The sweep ``python train.py -m <overrides>`` would run: ``jobs`` (overrides, resolved settings and
    run directory per job), ``launcher`` (its ``_target_``), and for SLURM ``slurm`` and ``sbatch``."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ramda.config import register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3", job_name="train"):
            loader = GlobalHydra.instance().config_loader()
            master = loader.load_configuration(CONFIG_NAME, overrides, run_mode=RunMode.MULTIRUN)
            sweeper = master.hydra.sweeper
            if sweeper._target_ != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
                raise PlanError(
                    f"hydra/sweeper: only Hydra's basic sweeper can be planned, not {sweeper._target_}"
                )
            params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()]
            arguments = params + list(master.hydra.overrides.task)
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
            (batch,) = BasicSweeper.split_arguments(parsed, None)
            # Resolving the sweep directory first caches ${now:...} in the master config, as Hydra's sweeper
            # does: every job then gets the same timestamp.
            sweep_dir = str(master.hydra.sweep.dir)
            jobs = []
            for num, job_overrides in enumerate(batch):
                cfg = loader.load_sweep_config(master, job_overrides)
                run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
                opt = OmegaConf.to_container(cfg.optimizer, resolve=True)
                assert isinstance(opt, dict)
                jobs.append(
                    {
                        "num": num,
                        "overrides": job_overrides,
                        "table": cfg.table,
                        "task": cfg.task.name,
                        "optimizer": opt["name"],
                        "lr": opt["lr"],
                        "momentum": opt.get("momentum", opt.get("betas")),
                        "regularizer": cfg.regularizer.name,
                        "lam": cfg.regularizer.lam,
                        "seed": cfg.seed,
                        "epochs": cfg.trainer.epochs,
                        "run_dir": str(run_dir),
                    }
                )
            launcher = OmegaConf.to_container(master.hydra.launcher, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise PlanError(_one_line(err)) from None
    assert isinstance(launcher, dict)
    result: dict[str, Any] = {"launcher": launcher["_target_"], "sweep_dir": sweep_dir, "jobs": jobs}
    if launcher["_target_"].endswith("SlurmLauncher"):
        result["slurm"] = {k: launcher.get(k) for k in SLURM_KEYS}
        result["sbatch"] = sbatch_header(launcher, len(jobs))
        result["warnings"] = resource_warnings(launcher)
    return result


def resource_warnings(launcher: dict[str, Any]) -> list[str]:
    """What the launcher would refuse: the request against the partition as ``sinfo`` reports it (the
    same check as ``hydra/launcher=slurm`` makes before submitting), or why it could not be checked."""
    from ramda.cluster import ClusterError, Request, check_request, read_partitions

    try:
        problem = check_request(Request.of(launcher), read_partitions())
    except ClusterError as err:
        return [f"resources not checked: {err}"]
    return [problem] if problem else []


def _one_line(err: BaseException) -> str:
    """Hydra's message (and its cause's) on one line, without the config search path listing."""
    parts = []
    for e in (err, err.__cause__):
        if e is None:
            continue
        for line in str(e).strip().splitlines():
            if line.startswith("Config search path"):
                break
            if line.strip() and line.strip() not in parts:
                parts.append(line.strip())
    return "; ".join(parts)


def sbatch_header(launcher: dict[str, Any], n_jobs: int) -> str:
    """The ``#SBATCH`` lines of the job array, made by submitit's own sbatch writer from the parameters the
    launcher passes it (base names → sbatch names, USR1 as the time-limit signal)."""
    from submitit.slurm.slurm import _make_sbatch_string

    from hydra_plugins.ramda_slurm_launcher._launcher import submitit_parameters

    params = submitit_parameters(launcher)
    folder = launcher["submitit_folder"]
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(folder)}"
    text = _make_sbatch_string(command=command, folder=folder, map_count=n_jobs, **params)
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))


def render(p: dict[str, Any]) -> str:
    lines = [f"{len(p['jobs'])} job(s), sweep directory {p['sweep_dir']}, launcher {p['launcher']}"]
    for j in p["jobs"]:
        lines.append(f"#{j['num']}: {' '.join(o for o in j['overrides'] if not o.startswith('hydra.'))}")
        lines.append(
            f"    task={j['task']} optimizer={j['optimizer']} lr={j['lr']} momentum={j['momentum']} "
            f"regularizer={j['regularizer']} lam={j['lam']} seed={j['seed']} epochs={j['epochs']} "
            f"table={j['table']}"
        )
        lines.append(f"    run dir: {j['run_dir']}")
    if "slurm" in p:
        lines.append("SLURM resources per job:")
        lines += [f"    {k}: {v}" for k, v in p["slurm"].items()]
        lines.append("sbatch header (one job array):")
        lines += [f"    {line}" for line in p["sbatch"].splitlines()]
        lines += [f"warning: {w}" for w in p["warnings"]]
    else:
        lines.append("(runs locally, one after another; add hydra/launcher=slurm to submit to SLURM)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/sweep_plan.py", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("overrides", nargs="*", help="the overrides of `python train.py -m ...`")
    args = parser.parse_args(argv)
    try:
        p = plan(args.overrides)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(p, indent=2) if args.json else render(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
