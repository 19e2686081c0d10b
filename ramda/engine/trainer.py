"""The training loop: epochs of optimizer steps, evaluation, sparsity, checkpoints, logs and resume.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``summary.json`` and ``checkpoint.pt``. The checkpoint
holds everything the loop depends on (model, optimizer, schedules, grad scaler, every RNG, the position in the
epoch and the figures so far) and the data order depends only on (seed, epoch), so a run resumed from any
checkpoint — at an epoch end or mid-epoch — produces exactly the numbers of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ramda.config import OPTIMIZERS
from ramda.engine import checkpoint as ckpt
from ramda.engine import distributed
from ramda.engine.build import build_optimizer, build_schedules
from ramda.engine.env import seed_everything
from ramda.engine.errors import ConfigError, NonFiniteLossError, OutputError, Preempted
from ramda.engine.logging import Console, RunFiles, WandbLogger
from ramda.engine.rundir import RunLock, remove_stale_writes
from ramda.engine.signals import StopRequest
from ramda.files import atomic_write
from ramda.optim.schedules import StageWiseLR
from ramda.structure import sparsity_report
from ramda.tasks import task_module

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Settings that may change when a run is resumed: they do not change the numbers it produces.
RESUMABLE_CHANGES = (
    "resume",
    "logger",
    "trainer.epochs",
    "trainer.progress",
    "trainer.log_every_steps",
    "trainer.checkpoint_every_steps",
    "task.num_workers",
    "trainer.dump_replicas",
    "trainer.export",
)


@dataclass
class EpochTally:
    """Running sums of the current epoch (saved in mid-epoch checkpoints)."""

    loss_sum: float = 0.0
    batches: int = 0
    train_time: float = 0.0
    solver_sum: float = 0.0
    solver_steps: int = 0


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first setting (other than :data:`RESUMABLE_CHANGES`) that differs, as ``key: saved != current``."""
    a, b = _flatten(saved), _flatten(current)
    for key in sorted(set(a) | set(b)):
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            return f"{key}: {a.get(key, '<absent>')} != {b.get(key, '<absent>')}"
    return None


def _momentum(optimizer: torch.optim.Optimizer) -> float | None:
    group = optimizer.param_groups[0]
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``ValueError`` when a loaded per-parameter state tensor does not have its parameter's shape
    (``load_state_dict`` checks only the number of parameters)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(
                        f"size mismatch for optimizer state '{key}': {tuple(value.shape)} != {tuple(p.shape)}"
                    )


class Trainer:
    """One run of one config in one run directory. :meth:`run` returns the summary it wrote."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.files = RunFiles(run_dir)
        self.config_dict: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    # ----------------------------------------------------------------------------------------- resume
    def _resume_state(self) -> dict[str, Any] | None:
        """The checkpoint to continue from, or None for a fresh start (raises ConfigError on a conflict)."""
        mode = self.cfg.resume
        existing = self.files.checkpoint.is_file()
        if mode == "never" and existing:
            raise ConfigError(
                "hydra.run.dir",
                f"{self.run_dir} already holds a checkpoint and resume=never",
                "valid: resume=auto to continue it, or another hydra.run.dir",
            )
        if mode not in ("auto", "never") and existing:
            raise ConfigError(
                "resume",
                f"{self.run_dir} already holds a checkpoint, so resume={mode} would overwrite it",
                "valid: another hydra.run.dir, or resume=auto to continue the run there",
            )
        if mode == "never" or (mode == "auto" and not existing):
            return None
        path = self.files.checkpoint if mode == "auto" else Path(mode)
        self.resume_path = path
        state = ckpt.load(path)
        mismatch = _config_mismatch(state.get("config", {}), self.config_dict)
        if mismatch:
            raise ConfigError(
                str(path),
                f"holds a run with different settings ({mismatch})",
                "valid: resume with the same settings, or another hydra.run.dir",
            )
        return state

    # ------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Join the process group when launched by torchrun/srun, train, leave it (every rank together)."""
        self.env = distributed.setup(self.cfg.trainer.device, self.cfg.seed, self.cfg.trainer.threads)
        self.lock: RunLock | None = None
        self.started = False  # past the checks: the run writes its directory
        together = False
        try:
            summary = self._run()
            together = True
            return summary
        except (NonFiniteLossError, Preempted):
            together = True  # every rank raises at the same step (see distributed.agree)
            raise
        finally:
            distributed.close(self.env, wait=together)
            if self.lock is not None:
                self.lock.release(remove=self.started)

    def _run(self) -> dict[str, Any]:
        state = self._open_run_dir()
        self._build()
        self._restore(state)
        self._open_outputs(state)
        return self._train_and_report()

    def _open_run_dir(self) -> dict[str, Any] | None:
        """Rank 0's run directory for every rank, and the checkpoint to continue from (the same on every rank)."""
        env = self.env
        self.run_dir = distributed.rank0_run_dir(self.run_dir, env)
        self.files = RunFiles(self.run_dir, enabled=env.is_main)
        error = None
        if env.is_main:  # one process per run directory, from before the checkpoint is read to the end
            try:
                self.lock = RunLock(self.run_dir)
                remove_stale_writes(self.run_dir)
            except ConfigError as err:
                error = err
        errors = [e for e in distributed.all_gather(error, env) if e is not None]
        if errors:
            raise errors[0]
        state = self._resume_state()
        steps = distributed.all_gather(-1 if state is None else state["global_step"], env)
        if len(set(steps)) > 1:
            raise ConfigError(
                "hydra.run.dir",
                f"the processes see different checkpoints in {self.run_dir} (global step by rank: {steps})",
                "valid: a run directory on a file system that every node shares",
            )
        return state

    def _build(self) -> None:
        """The task, model, optimizer, schedules, grad scaler and the (compiled, data-parallel) step model."""
        cfg, env = self.cfg, self.env
        seed_everything(cfg.seed)
        module = task_module(cfg.task.name)
        task_cfg = OmegaConf.to_object(cfg.task)
        try:
            self.task = module.TASK(task_cfg, env)
            model = self.task.build_model()
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(
                f"task={cfg.task.name}", str(err), "see the task's config keys: task.*"
            ) from err
        self.model = model
        if cfg.trainer.channels_last and env.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, model)
        self.lr_schedule, self.momentum_schedule = build_schedules(cfg, self.optimizer, self._total_steps())
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.trainer.precision == "fp16")
        parallel = distributed.wrap(model, env, cfg.trainer.sync_batchnorm)
        self.step_model = torch.compile(parallel) if cfg.trainer.compile else parallel
        # Evaluation runs on every rank over the whole validation set, outside DDP (no collectives).
        self.eval_model = self.step_model
        if parallel is not model:
            self.eval_model = torch.compile(model) if cfg.trainer.compile else model
        if env.rank > 0:
            seed_everything(distributed.rank_seed(cfg.seed, env.rank))

    def _restore(self, state: dict[str, Any] | None) -> None:
        """The loop's position and every state from the checkpoint ``state`` (or a fresh start)."""
        env = self.env
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.tally = EpochTally()
        self.wandb_id: str | None = None
        if state is None:
            return
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            _check_optimizer_shapes(self.optimizer)
            self.lr_schedule.load_state_dict(state["lr_schedule"])
            if self.momentum_schedule is not None and state.get("momentum_schedule"):
                self.momentum_schedule.load_state_dict(state["momentum_schedule"])
            self.scaler.load_state_dict(state["scaler"])
            self.task.load_state_dict(state.get("task_ranks") or [{}])
            rngs = state.get("rng_ranks") or [state["rng"]]
            if env.rank < len(rngs):
                ckpt.set_rng_state(rngs[env.rank], env.device)
            else:  # a rank the saving run did not have (resumed on more processes)
                seed_everything(distributed.rank_seed(self.cfg.seed + state["global_step"], env.rank))
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise ckpt.misfit(self.resume_path, err) from None
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.history = state["global_step"], list(state["history"])
        self.tally = EpochTally(**state["partial"])  # per global step: the same on every rank
        self.wandb_id = state.get("wandb_id")
        self.files.rewrite_metrics(self.history)

    def _open_outputs(self, state: dict[str, Any] | None) -> None:
        """``config.yaml``, the console, W&B and the ``running`` summary."""
        cfg, env = self.cfg, self.env
        self.started = True
        self.files.write_config(OmegaConf.to_yaml(self.config_dict))
        epochs = cfg.trainer.epochs
        if cfg.trainer.max_steps > 0:  # the epochs a step-counted run reaches into
            epochs = math.ceil(cfg.trainer.max_steps / self.task.num_train_batches())
        self.console = Console(cfg.trainer.progress, env.is_main, epochs)
        self.wandb = None
        if cfg.logger.name == "wandb" and env.is_main:
            name = f"{cfg.task.name}-{cfg.optimizer.name}-seed{cfg.seed}"
            self.wandb = WandbLogger(cfg.logger, self.run_dir, self.config_dict, name, self.wandb_id)
        if state is not None:
            self.console.print(
                f"resuming {self.run_dir} at epoch {self.epoch + 1} step {self.step_in_epoch} "
                f"(global step {self.global_step})"
            )
        else:
            self.console.print(f"run directory: {self.run_dir}")
        if self.cfg.trainer.precision == "fp16" and self.env.device.type == "cpu" and self.env.is_main:
            # Once the run has started: bad input stays one error line.
            print(
                "warning: trainer.precision=fp16 on the CPU: torch's float16 CPU kernels are slow (2 steps of the "
                "ImageNet preset took 6x as long as in fp32); use trainer.precision=fp32 or bf16 on the CPU",
                file=sys.stderr,
                flush=True,
            )
        self.files.write_summary(self.summary("running"))

    def _train_and_report(self) -> dict[str, Any]:
        """Train to the end; the summary records how the run ended (and W&B is closed) whatever happens."""
        try:
            with StopRequest() as stop:
                self._train(stop)
            self._promote()
        except NonFiniteLossError as err:
            if err.key == "train_loss":
                self.files.discard()  # its weights gave the non-finite loss
            else:
                self._promote()  # finite weights (an evaluation metric overflowed): the epoch's training
            self._fail(str(err))
            raise
        except Preempted:
            self._finish(self.summary("running"), exit_code=1)
            raise
        except OutputError as err:  # disk full: the last checkpoint stays; record the failure if possible
            with contextlib.suppress(OutputError):
                self._fail(str(err))
            raise
        except Exception as err:  # any other failure: keep what was trained, record it, re-raise
            with contextlib.suppress(OutputError):
                self._promote()
            self._fail(f"{type(err).__name__}: {err}")
            raise
        finally:
            self.console.close()
        summary = self.summary("completed")
        if self.cfg.trainer.export and self.env.is_main:
            summary["slim"] = self._export()
        self.files.write_summary(summary)
        self._finish(summary)
        if self.cfg.trainer.dump_replicas:
            replica = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
            path = self.run_dir / f"replica_rank{self.env.rank}.pt"
            atomic_write(path, lambda f: torch.save(replica, f))
        return summary

    def _export(self) -> dict[str, Any]:
        """``trainer.export``: the smaller dense model in ``slim.pt`` / ``slim.json`` and its headline figures
        for ``summary.json`` (an export that fails is recorded there; the run itself has completed)."""
        from ramda.export.run import ExportError, export_model
        from ramda.export.slim import SlimError

        try:
            report = export_model(self.cfg, self.model, self.run_dir)
        except (ExportError, SlimError, ModuleNotFoundError) as err:
            self.console.print(f"export failed: {err}")
            return {"error": str(err)}
        figures = report.figures()
        speedup = ", ".join(f"{v:.2f}x at {k}" for k, v in figures["speedup"].items())
        self.console.print(
            f"slim model: FLOPs kept {100 * figures['flops_kept']:.1f}%, params kept "
            f"{100 * figures['params_kept']:.1f}%, CPU speedup {speedup} ({self.run_dir / 'slim.pt'})"
        )
        return figures

    def _fail(self, error: str) -> None:
        summary = self.summary("failed", error=error)
        try:
            self.files.write_summary(summary)
        finally:
            self._finish(summary, exit_code=1)

    def _finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        if self.wandb is not None:
            self.wandb.finish(summary, exit_code)
            self.wandb = None

    # ---------------------------------------------------------------------------------------- loop
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = AUTOCAST_DTYPES.get(self.cfg.trainer.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=dtype)

    def _total_steps(self) -> int:
        """The run's optimizer steps: ``trainer.max_steps``, or epochs × batches per epoch."""
        tr = self.cfg.trainer
        return tr.max_steps if tr.max_steps > 0 else tr.epochs * self.task.num_train_batches()

    def _finished(self) -> bool:
        tr = self.cfg.trainer
        return self.global_step >= tr.max_steps if tr.max_steps > 0 else self.epoch >= tr.epochs

    def _train(self, stop: StopRequest) -> None:
        cfg = self.cfg
        every = cfg.trainer.checkpoint_every_steps
        log_every = cfg.trainer.log_every_steps
        eval_every = cfg.trainer.eval_every_steps
        by_steps = cfg.trainer.max_steps > 0
        n_batches = self.task.num_train_batches()
        if by_steps and n_batches == 0:
            raise RuntimeError(
                f"task {cfg.task.name} has no training batches: trainer.max_steps cannot be reached"
            )
        self.signum: int | None = None
        self.console.start(self.epoch)
        while not self._finished():
            epoch = self.epoch
            self.task.on_epoch_start(epoch)
            self.step_model.train()
            self.console.start_epoch(epoch, n_batches, self.step_in_epoch)
            batches = itertools.islice(self.task.train_batches(epoch), self.step_in_epoch, None)
            tick = time.perf_counter()
            for batch in batches:
                loss = self._step(batch, stop)
                self.tally.train_time += time.perf_counter() - tick
                self.console.step(loss)
                if log_every and self.global_step % log_every == 0 and not self.console.bars:
                    self.console.print(
                        f"epoch {epoch + 1} step {self.step_in_epoch}/{n_batches} | loss {loss:.4f}"
                    )
                if self.signum is not None:
                    self._save()
                    self._promote()
                    raise Preempted(self.signum, str(self.files.checkpoint))
                last = self._finished()
                periodic = eval_every and self.global_step % eval_every == 0
                if (periodic and (by_steps or self.step_in_epoch < n_batches)) or (by_steps and last):
                    self._save()  # the training is kept even if the evaluation fails
                    self._record(epoch_end=False)
                elif every and self.global_step % every == 0 and self.step_in_epoch < n_batches:
                    self._save()
                if last:
                    break
                tick = time.perf_counter()
            if self.step_in_epoch == n_batches and n_batches > 0:
                self._save()  # the epoch's training is kept even if its evaluation fails
            if self.step_in_epoch >= n_batches:
                self._end_epoch(record=not by_steps)
            _, self.signum = distributed.agree(False, stop.signum, self.env)
            if self.signum is not None:
                self._promote()
                raise Preempted(self.signum, str(self.files.checkpoint))

    def _step(self, batch: Any, stop: StopRequest) -> float:
        """One optimizer step; returns this rank's batch loss (raises on a non-finite loss on any rank before
        stepping). Sets ``signum`` to the stop signal any rank has received, for every rank alike."""
        opt = self.optimizer
        with self._autocast():
            loss = self.task.loss(self.step_model, batch)
        value = float(loss.detach())
        nonfinite, self.signum = distributed.agree(not math.isfinite(value), stop.signum, self.env)
        if nonfinite:
            checkpoint = str(self.files.checkpoint) if self.files.checkpoint.is_file() else ""
            raise NonFiniteLossError(
                self.epoch + 1,
                self.step_in_epoch + 1,
                self.global_step + 1,
                value,
                checkpoint,
                precision=self.cfg.trainer.precision,
            )
        self.files.promote()  # the pending checkpoint's parameters just gave a finite loss
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.task.cfg.grad_clip > 0:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.task.cfg.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        if OPTIMIZERS[self.cfg.optimizer.name].solver:
            iters = opt.solver_iterations()
            if math.isfinite(iters):
                self.tally.solver_sum += iters
                self.tally.solver_steps += 1
        self.tally.loss_sum += value
        self.tally.batches += 1
        self.step_in_epoch += 1
        self.global_step += 1
        self._schedule_step()
        return value

    def _schedule_step(self) -> None:
        """After every optimizer step: the momentum schedule and, when counted in steps, the lr schedule,
        with the tick the authors' scripts pass (the epoch, or the number of steps taken; see
        :mod:`ramda.optim.schedules`). A cosine schedule steps here in every mode."""
        by_steps = self.cfg.trainer.max_steps > 0
        tick = self.global_step if by_steps else self.epoch
        if self.momentum_schedule is not None:
            self.momentum_schedule.step(tick)
        if isinstance(self.lr_schedule, StageWiseLR):
            if by_steps:
                self.lr_schedule.step(tick)
        else:
            self.lr_schedule.step()

    def _end_epoch(self, record: bool) -> None:
        """The epoch's last step was taken: a metrics row (epoch-counted runs) or just the move to the next
        epoch (its checkpoint is written)."""
        if record:
            self._record(epoch_end=True)
            return
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self._save()
        self.console.end_epoch()

    def _record(self, epoch_end: bool) -> None:
        """Evaluate (in full precision, whatever ``trainer.precision`` trains in), append a metrics row for the
        steps since the previous one, checkpoint. At an epoch end of an epoch-counted run, also the lr
        schedule's tick and the move to the next epoch."""
        epoch = self.epoch
        self.step_model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(self.eval_model)
        self.step_model.train()
        if self.task.metric not in metrics:
            raise RuntimeError(f"task {self.cfg.task.name}: evaluate() did not return '{self.task.metric}'")
        value = float(metrics[self.task.metric])
        tally = self._global_tally()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.global_step,
            "train_loss": tally.loss_sum / max(tally.batches, 1),
            **{k: float(v) for k, v in metrics.items()},
            **sparsity_report(self.model),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "momentum": _momentum(self.optimizer),
            "solver_iters": tally.solver_sum / tally.solver_steps if tally.solver_steps else None,
            "time_per_epoch": self._epoch_time(tally, epoch_end),
        }
        self.history.append(record)
        self.tally = EpochTally()
        if epoch_end:
            if isinstance(self.lr_schedule, StageWiseLR):
                self.lr_schedule.step(epoch)
            self.epoch, self.step_in_epoch = epoch + 1, 0
        if math.isfinite(value):
            self._save()
        self.files.append_metrics(record)
        if self.wandb is not None:
            self.wandb.log(record)
        if epoch_end:
            self.console.end_epoch()
        self.console.print(self._epoch_line(record))
        if not math.isfinite(
            value
        ):  # recorded as such; the run fails, keeping the epoch's trained checkpoint
            raise NonFiniteLossError(
                epoch + 1,
                0 if epoch_end else self.step_in_epoch,
                self.global_step,
                value,
                str(self.files.checkpoint),
                key=self.task.metric,
                precision=self.cfg.trainer.precision,
            )
        self.files.write_summary(self.summary("running"))

    def _epoch_time(self, tally: EpochTally, epoch_end: bool) -> float:
        """The training time of an epoch: the measured one at an epoch end, else the period's time scaled
        to an epoch's steps (rows of step-counted runs, comparable with the papers' time per epoch)."""
        if epoch_end or not tally.batches:
            return tally.train_time
        return tally.train_time * self.task.num_train_batches() / tally.batches

    def _epoch_line(self, r: dict[str, Any]) -> str:
        metric = self.task.metric
        solver = f" | solver it {r['solver_iters']:.1f}" if r["solver_iters"] is not None else ""
        tr = self.cfg.trainer
        where = f"epoch {r['epoch']}/{tr.epochs}"
        if tr.max_steps > 0 or tr.eval_every_steps > 0:
            where = f"epoch {r['epoch']} step {r['step']}" + (f"/{tr.max_steps}" if tr.max_steps > 0 else "")
        return (
            f"{where} | loss {r['train_loss']:.4f} | {metric} "
            f"{r[metric]:.2f} | sparsity {100 * r['weighted_group_sparsity']:.2f}% (groups "
            f"{100 * r['group_sparsity']:.2f}%, entries {100 * r['unstructured_sparsity']:.2f}%) | "
            f"lr {r['lr']:.3g}{solver} | {r['time_per_epoch']:.2f} s/epoch"
        )

    # ------------------------------------------------------------------------------------ outputs
    def _global_tally(self) -> EpochTally:
        """The epoch's running sums per global step, whatever the number of processes: the mean over the ranks
        of their sums (every rank takes the same number of steps, so ``loss_sum`` is the sum of the global
        batches' losses); ``train_time`` is the slowest rank's. A resumed run gives every rank the saved tally,
        which the mean keeps once."""
        t, world = self.tally, self.env.world_size
        loss_sum, batches, solver_sum, solver_steps = distributed.all_reduce(
            [t.loss_sum, t.batches, t.solver_sum, t.solver_steps], "sum", self.env
        )
        (train_time,) = distributed.all_reduce([t.train_time], "max", self.env)
        return EpochTally(
            loss_sum / world,
            round(batches / world),
            train_time,
            solver_sum / world,
            round(solver_steps / world),
        )

    def _promote(self) -> None:
        """The pending checkpoint (finite weights, see :meth:`_save`) becomes ``checkpoint.pt``."""
        self.files.promote()

    def _check_finite_weights(self) -> None:
        """Raise :class:`NonFiniteLossError` naming the first parameter or buffer that is NaN or infinite."""
        for name, t in self.model.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                value = float(t[~torch.isfinite(t)].flatten()[0])
                checkpoint = str(self.files.checkpoint) if self.files.checkpoint.is_file() else ""
                raise NonFiniteLossError(
                    self.epoch + 1,
                    self.step_in_epoch,
                    self.global_step,
                    value,
                    checkpoint,
                    key=f"model.{name}",
                    precision=self.cfg.trainer.precision,
                )

    def _save(self) -> None:
        """Write the pending checkpoint (rank 0); every rank takes part (the epoch's tally and each rank's RNG
        state). Non-finite weights are never written; a checkpoint becomes ``checkpoint.pt`` once its weights have
        given a finite loss (:meth:`_step`)."""
        self._check_finite_weights()
        partial = asdict(self._global_tally())
        rngs = distributed.all_gather(ckpt.rng_state(self.env.device), self.env)
        tasks = distributed.all_gather(self.task.state_dict(), self.env)
        if not self.env.is_main:
            return
        self.files.save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(),
                "momentum_schedule": self.momentum_schedule.state_dict() if self.momentum_schedule else None,
                "task_ranks": tasks,
                "scaler": self.scaler.state_dict(),
                "rng": rngs[0],
                **({"rng_ranks": rngs} if self.env.distributed else {}),
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "partial": partial,
                "history": self.history,
                "config": self.config_dict,
                "wandb_id": self.wandb.id if self.wandb is not None else None,
            }
        )

    def summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        """``summary.json``: the last epoch's figures; time fields (``time_*``) are kept apart."""
        cfg = self.cfg
        last = self.history[-1] if self.history else {}
        final = {k: v for k, v in last.items() if k not in ("epoch", "step", "time_per_epoch")}
        times = [r["time_per_epoch"] for r in self.history]
        out: dict[str, Any] = {
            "status": status,
            "table": cfg.table,
            "task": cfg.task.name,
            "optimizer": cfg.optimizer.name,
            "regularizer": cfg.regularizer.name,
            "lam": float(cfg.regularizer.lam) * float(cfg.regularizer.scale),
            "seed": cfg.seed,
            "metric": self.task.metric,
            "metric_value": last.get(self.task.metric),
            "higher_is_better": self.task.higher_is_better,
            "weighted_group_sparsity": last.get("weighted_group_sparsity"),
            "group_sparsity": last.get("group_sparsity"),
            "unstructured_sparsity": last.get("unstructured_sparsity"),
            "epochs_completed": len(self.history),
            "global_step": self.global_step,
            "final": final,
            "time_per_epoch": sum(times) / len(times) if times else None,
            "time_total": sum(times),
        }
        if error is not None:
            out["error"] = error
        return out
