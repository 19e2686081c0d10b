"""Train one configuration, or a grid with ``-m``: ``python train.py [group=option ...] [key=value ...]``.

With no arguments: the digits demo (scikit-learn's handwritten digits, a small CNN, RAMDA + group LASSO, CPU).
``python train.py task=imagenet optimizer=ramda seed=1`` runs the paper's setting (``configs/preset/``);
``python train.py -m experiment=vision`` runs a whole table. See docs/running.md.

Bad input (an unknown option or key, a value out of range, a missing path, a corrupt checkpoint) is reported
as one line ``error: <key or path>: <problem>; <what is valid>`` with exit status 2, before anything is written.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ramda.config import register_configs
from ramda.engine.errors import ConfigError, NonFiniteLossError, OutputError, Preempted
from ramda.engine.preflight import preflight

CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
TASKS = register_configs()


def _fail(err: Exception, code: int) -> None:
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """One run in ``hydra.run.dir`` (or the sweep's job directory); returns the task metric."""
    from hydra.core.hydra_config import HydraConfig

    from ramda.engine.trainer import Trainer
    from ramda.engine.validate import validate

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    fresh = not any(run_dir.iterdir())
    try:
        validate(cfg, TASKS)
        summary = Trainer(cfg, run_dir).run()
    except ConfigError as err:
        with contextlib.suppress(OSError):  # another process of a distributed run may remove it first
            if fresh and not any(run_dir.iterdir()):
                run_dir.rmdir()  # the empty directory Hydra made for this rejected run
        _fail(err, 2)
    except (NonFiniteLossError, OutputError) as err:
        _fail(err, 1)
    except Preempted as stop:
        print(
            f"stopped by signal {stop.signum}: checkpoint saved to {stop.checkpoint}; "
            f"run the same command with hydra.run.dir={run_dir} to resume",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + stop.signum)
    return summary["metric_value"]


if __name__ == "__main__":
    try:
        preflight(sys.argv[1:], CONFIG_DIR, TASKS)
    except ConfigError as error:
        _fail(error, 2)
    main()
