"""The project's SLURM launcher for Hydra: ``hydra/launcher=slurm`` (see docs/cluster.md)."""
