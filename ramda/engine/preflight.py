"""Check a command line before Hydra creates any directory: compose every run it names and validate it.

Hydra reports composition errors over several lines after it has created the output directory; running the
same composition first lets the runner turn each into one line naming the key and what is valid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from ramda.config import UNAVAILABLE_TASKS
from ramda.engine.errors import ConfigError
from ramda.engine.rundir import check_job_dir
from ramda.engine.validate import validate

# Hydra flags after which the application does not run (help, config printing, completion).
NO_RUN_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "-sc",
    "--shell-completion",
    "-p",
    "--package",
    "--resolve",
)
MAX_JOBS = 256
# Config groups every run needs one option of (``~group`` would remove it).
REQUIRED_GROUPS = ("task", "optimizer", "regularizer", "logger", "trainer")


def _split_argv(argv: Sequence[str]) -> tuple[list[str], bool, bool]:
    """(overrides, multirun, runs at all) from a ``train.py`` command line."""
    overrides, multirun, runs = [], False, True
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in NO_RUN_FLAGS or arg.startswith(("--cfg=", "--info=", "--shell-completion=")):
            runs = False
        elif arg in ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir"):
            runs = False  # a different config tree: leave it all to Hydra
            skip_next = True
        elif arg.startswith("-"):
            runs = False
        else:
            overrides.append(arg)
    return overrides, multirun, runs


def _explain(err: Exception, overrides: Sequence[str]) -> ConfigError:
    """One-line version of a Hydra/OmegaConf composition error."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, value = err.missing_cfg_file.rpartition("/")
        options = list(err.options or [])
        problem = f"unknown value '{value}'"
        if group == "task" and value in UNAVAILABLE_TASKS:
            problem = f"task '{value}' is not available on this install ({UNAVAILABLE_TASKS[value]})"
        return ConfigError(group, problem, "valid: " + ", ".join(options))
    if isinstance(err, OverrideParseException):
        return ConfigError(
            err.override or "override",
            err.message.splitlines()[0],
            "valid: key=value, group=option, or +key=value to add a key",
        )
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = cause.full_key
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        if isinstance(cause, ConfigKeyError | ConfigAttributeError):
            return ConfigError(key, "unknown key", _valid_keys(key, overrides))
        if isinstance(cause, ValidationError):
            _, _, wanted = msg.rpartition(" converted to ")
            return ConfigError(key, msg, "valid: a value of type " + (wanted or "the key's type"))
        return ConfigError(key, msg, "see python train.py --cfg job")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError("config", first, "see python train.py --help")


def _valid_keys(full_key: str, overrides: Sequence[str]) -> str:
    """The keys that exist beside ``full_key`` (from a composition without the offending override)."""
    parent, _, _ = full_key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != full_key]
    try:
        cfg = compose("train", overrides=rest)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return "valid keys here: " + ", ".join(str(k) for k in node)
    except (HydraException, OmegaConfBaseException):
        return "see python train.py --cfg job"


def _check_overrides(overrides: Sequence[str]) -> None:
    """Every override names a key, and one that picks a config group's option gives an option's name: Hydra
    itself raises a ``ValueError`` with a traceback for ``=3``, ``optimizer=1`` or ``optimizer=null``."""
    loader = GlobalHydra.instance().config_loader()
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if not key:
            raise ConfigError(
                o.input_line, "no key before '='", "valid: key=value, group=option, or +key=value"
            )
        options = loader.get_group_options(key) if loader.repository.group_exists(key) else []
        if not options:
            continue
        if o.is_delete() and key in REQUIRED_GROUPS:
            raise ConfigError(key, "cannot be removed", "valid: " + ", ".join(options))
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        for value in values:
            if not isinstance(value, str):
                shown = "null" if value is None else repr(value)
                raise ConfigError(key, f"{shown} is not an option", "valid: " + ", ".join(options))


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job: one for a single run, the sweep's cartesian product with ``-m``."""
    if not multirun:
        return [overrides]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    first = [
        f"{o.get_key_element()}={next(iter(o.sweep_iterator()))}" if o.is_sweep_override() else o.input_line
        for o in parsed
    ]
    cfg = compose("train", overrides=first, return_hydra_config=True)
    node = cfg.hydra.sweeper.get("params")
    params = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else {}
    given = {o.get_key_element() for o in parsed}
    lines = [f"{k}={v}" for k, v in params.items() if k not in given] + overrides
    axes = []
    for o in parser.parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(combo) for combo in itertools.islice(itertools.product(*axes), MAX_JOBS)]


def preflight(argv: Sequence[str], config_dir: str, tasks: Sequence[str]) -> None:
    """Compose and :func:`~ramda.engine.validate.validate` every run of ``argv``; raise ``ConfigError``."""
    overrides, multirun, runs = _split_argv(argv)
    if not runs:
        return
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir, version_base="1.3"):
        _check_overrides(overrides)
        try:
            jobs = _jobs(overrides, multirun)
        except (HydraException, OmegaConfBaseException, ValueError) as err:
            raise _explain(err, overrides) from err
        for i, job in enumerate(jobs):
            _check_overrides(job)
            try:
                cfg = compose("train", overrides=job)
            except (HydraException, OmegaConfBaseException, ValueError) as err:
                raise _explain(err, job) from err
            if i == 0:
                first = compose("train", overrides=job, return_hydra_config=True)
                # A cluster launcher runs the jobs on other machines: train.py checks their GPUs there.
                here = not multirun or "BasicLauncher" in str(first.hydra.launcher.get("_target_", ""))
            validate(cfg, tasks, here)
        check_job_dir(first, multirun)
    GlobalHydra.instance().clear()
