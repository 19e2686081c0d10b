"""The experiment runner behind ``train.py``.

- :mod:`~ramda.engine.preflight`: compose and validate a command line before anything is written;
- :mod:`~ramda.engine.validate`: semantic checks of a composed config (one-line :class:`ConfigError`);
- :mod:`~ramda.engine.trainer`: the loop (steps, evaluation, schedules, sparsity, resume);
- :mod:`~ramda.engine.build`: optimizer and schedules from the config;
- :mod:`~ramda.engine.checkpoint`: checkpoint format and validation, RNG state (atomic writes: :mod:`ramda.files`);
- :mod:`~ramda.engine.logging`: run-directory files, Weights & Biases, console progress;
- :mod:`~ramda.engine.rundir`: run-directory checks before Hydra creates it, the one-process lock, stale writes;
- :mod:`~ramda.engine.signals`: SIGTERM/SIGUSR1 → checkpoint and stop;
- :mod:`~ramda.engine.env`: device and seeding;
- :mod:`~ramda.engine.distributed`: torchrun/srun process groups, DDP wrapping, agreed stop flags, all-reduces.
"""
