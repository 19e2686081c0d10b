"""Hydra's plugin scanner imports this module: it registers ``hydra/launcher=slurm``'s launcher (in
``_launcher``, which the scanner skips) when the ``slurm`` extra (hydra-submitit-launcher) is installed, and
does nothing otherwise, so that runs without the extra see no import warning."""

from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra_plugins.ramda_slurm_launcher._launcher import RamdaSlurmConf, RamdaSlurmLauncher

    __all__ = ["RamdaSlurmConf", "RamdaSlurmLauncher"]
