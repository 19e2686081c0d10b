"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher with three changes (docs/cluster.md).

1. Before submitting, the request is checked against the partition (``sinfo``); one that no node can ever
   satisfy is refused with one line (exit 2) instead of pending forever.
2. The batch script forwards USR1/TERM to the run; a run stopped by one of them (checkpoint saved) requeues
   its own job, at most ``max_requeues`` times; the time-limit signal is USR1 ``signal_delay_s`` before the
   limit, so a run that outlives ``timeout_min`` comes back by itself and resumes.
3. The submitter waits by polling ``squeue`` every ``poll_s`` seconds, reports each job that ended without a
   result (cancelled, failed, timed out) with its log, and exits 1 once every job has ended.
"""

import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)

# Launcher keys of this class only (not sbatch options): removed before submitit sees the parameters.
OWN_KEYS = ("max_requeues", "poll_s", "check_resources", "task_resources")


@dataclass
class RamdaSlurmConf(SlurmQueueConf):
    """hydra-submitit-launcher's SLURM options plus: ``max_requeues`` (how often a job requeues itself after a
    stop signal), ``poll_s`` (seconds between the submitter's ``squeue`` calls), ``check_resources`` (refuse a
    request no node of the partition can satisfy), ``task_resources`` (per task name: the resource keys a run
    of that task needs; read by the interpolations in configs/hydra/launcher/slurm.yaml)."""

    _target_: str = "hydra_plugins.ramda_slurm_launcher._launcher.RamdaSlurmLauncher"
    max_requeues: int = 20
    poll_s: float = 10.0
    check_resources: bool = True
    task_resources: dict[str, dict[str, Any]] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/launcher", name="ramda_submitit_slurm", node=RamdaSlurmConf, provider="ramda"
)


def _executor(folder: str, max_num_timeout: int) -> Any:
    """A submitit SLURM executor whose batch script forwards USR1/TERM to the run (ramda.cluster)."""
    import submitit.slurm.slurm as submitit_slurm

    from ramda.cluster import forwarding_script

    class ForwardingExecutor(submitit_slurm.SlurmExecutor):
        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return forwarding_script(super()._make_submission_file_text(command, uid))

        def _internal_process_submissions(self, delayed_submissions: list[Any]) -> list[Any]:
            # submitit writes a job array's script through a new module-level SlurmExecutor: make it this one
            plain = submitit_slurm.SlurmExecutor
            submitit_slurm.SlurmExecutor = ForwardingExecutor
            try:
                return super()._internal_process_submissions(delayed_submissions)
            finally:
                submitit_slurm.SlurmExecutor = plain

    return ForwardingExecutor(folder=folder, max_num_timeout=max_num_timeout)


def submitit_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The launcher's parameters as submitit's SLURM executor takes them: sbatch names (``mem_gb`` → ``mem``
    and the like), without this launcher's own keys, and USR1 as the time-limit signal ``signal_delay_s``
    seconds before the limit (unless ``additional_parameters`` sets ``signal``)."""
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem

    names = SlurmExecutor._equivalence_dict()
    skip = (*OWN_KEYS, "_target_", "submitit_folder", "max_num_timeout")
    out = {names.get(k, k): v for k, v in params.items() if k not in skip}
    if out.get("mem") is not None:
        out["mem"] = _convert_mem(out["mem"])
    extra = dict(out.get("additional_parameters") or {})
    extra.setdefault("signal", f"USR1@{out.get('signal_delay_s', 120)}")
    out["additional_parameters"] = extra
    return out


class RamdaSlurmLauncher(SlurmLauncher):
    """See the module docstring."""

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        """One run, inside its SLURM job. A run that stopped on USR1/TERM (checkpoint saved, exit 128 + signum)
        requeues its job before exiting. Outside the training loop (which saves a checkpoint first) the same
        signals end the process at once with that exit status: the last checkpoint is the one to resume from."""
        from ramda.cluster import PREEMPT_EXIT_CODES, PREEMPT_SIGNALS, requeue_self

        def stop(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        for sig in PREEMPT_SIGNALS:
            signal.signal(sig, stop)
        try:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        except SystemExit as exit_:
            if exit_.code in PREEMPT_EXIT_CODES:
                for sig in PREEMPT_SIGNALS:  # SLURM's TERM after the requeue: let the process end as it is
                    signal.signal(sig, signal.SIG_IGN)
                sweep_dir = str(self.config.hydra.sweep.dir) if self.config is not None else "<sweep dir>"
                requeue_self(int(self.params.get("max_requeues", 0)), sweep_dir=sweep_dir)
            raise

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from ramda.cluster import (
            ClusterError,
            Request,
            Tracked,
            Waiter,
            check_request,
            read_partitions,
            scancel_hint,
        )

        assert self.config is not None
        params = self.params
        if params.get("check_resources", True):
            try:
                problem = check_request(Request.of(params), read_partitions())
            except ClusterError as err:
                problem = f"hydra.launcher: {err}"
            if problem:
                print(f"error: {problem}", file=sys.stderr, flush=True)
                sys.exit(2)
        executor = _executor(params["submitit_folder"], int(params.get("max_num_timeout") or 0))
        executor.update_parameters(**submitit_parameters(params))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        labels, job_params = [], []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            text = " ".join(filter_overrides(overrides))
            log.info(f"\t#{idx} : {text}")
            labels.append(f"#{idx}: {text}")
            job_params.append(
                (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
            )
        jobs = executor.map_array(self, *zip(*job_params))
        tracked = [Tracked(job, label) for job, label in zip(jobs, labels)]
        print(
            f"submitted {len(jobs)} job(s): {', '.join(j.job_id for j in jobs)}", file=sys.stderr, flush=True
        )
        try:
            failed = Waiter(poll_s=float(params.get("poll_s", 10.0))).wait(tracked)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted; the jobs keep running ({scancel_hint(tracked)} to stop them)",
                file=sys.stderr,
            )
            sys.exit(130)
        if failed:
            print(
                f"error: {failed} of {len(jobs)} job(s) ended without a result (see above)", file=sys.stderr
            )
            sys.exit(1)
        return [job.results()[0] for job in jobs]
