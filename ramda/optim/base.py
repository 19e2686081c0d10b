"""Shared machinery of the regularised optimizers: per-group λ and regulariser, validation, solver statistics."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from ramda.kernels import numba_available, triton_available
from ramda.kernels.gpu import fused_supported as gpu_supported
from ramda.optim import memory
from ramda.regularizers import Regularizer, check_lam, get_regularizer
from ramda.solver import STOP_MODES, default_stop


def _check_momentum(value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"momentum must be in (0, 1], got {value}")


#: The kind of a fused kernel for tensors without a structure term (λ = 0); the others are regulariser names.
PLAIN = "plain"

#: A fused kernel as an optimizer lists it: ``kernel(optimizer, group, states, data)`` updates tensors and their
#: state in place and returns the inner solver iterations it took (``None`` when it runs no solver). On CUDA it
#: takes one tensor (``states``: its state dict, ``data``: the tensors); on the CPU every tensor of the group
#: that it handles at once (``states``: their state dicts, ``data``: ``(plan, pointers)``, the
#: :class:`ramda.kernels.cpu.Plan` of their layouts and their pointer table) and returns one count per tensor.
FusedKernel = Callable[[Any, dict[str, Any], dict[str, Any], Any], "int | Tensor | None"]


class RegularizedOptimizer(Optimizer):
    """A ``torch.optim.Optimizer`` whose param groups may carry ``lam`` (λ ≥ 0) and ``regularizer`` (a name of
    :data:`ramda.regularizers.REGULARIZERS`, or ``None``). A group with ``lam == 0`` or no regulariser is trained
    without the structure term.

    Subclasses implement :meth:`_group_step` and may list fused kernels in :attr:`fused_kernels`; :meth:`step`
    hands each group's tensors to the kernels through :meth:`_fused_steps` and the rest to the plain-torch code.
    """

    #: Whether the structure term is solved by :mod:`ramda.solver` (its ``stop`` modes apply).
    uses_solver: ClassVar[bool] = False
    #: The fused kernels, by (device type, kind): kind is :data:`PLAIN` or a regulariser's name. A kernel of a
    #: solver-based optimizer is the exact solver, so it takes only tensors whose ``stop`` is ``"exact"``.
    fused_kernels: ClassVar[dict[tuple[str, str], FusedKernel]] = {}
    #: The state entries a fused kernel takes after the parameter and its gradient, in its argument order.
    fused_state: ClassVar[tuple[str, ...]] = ()
    #: The numba kernel of :data:`CPU_KERNELS`: the name of its ``kind`` constant in :mod:`ramda.kernels.cpu`
    #: (a name, so that numba loads only when a kernel runs).
    cpu_kind: ClassVar[str] = ""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        defaults.setdefault("lam", 0.0)
        defaults.setdefault("regularizer", "group_lasso")
        self._validate_hyper(defaults)
        super().__init__(params, defaults)
        self._init_transient()

    def _init_transient(self) -> None:
        """Per-process bookkeeping that is not optimizer state (not saved, rebuilt on unpickling)."""
        self._solver_iters: Tensor | None = None
        self._solver_calls = 0
        self._workspace: Any = None
        self._threads: int | None = None
        self._cpu_batches: dict[int, _CpuBatch] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling and ``load_state_dict`` land here with the new param groups: options added since the
        state was saved take their defaults, and the groups are checked before anything is replaced."""
        defaults = state.get("defaults") or self.defaults
        for index, group in enumerate(state["param_groups"]):
            for key, value in defaults.items():
                group.setdefault(key, value)
            self._check_group(group, index)
        super().__setstate__(state)
        for param_state in self.state.values():
            memory.rehome(param_state)
        self._init_transient()

    def _validate_hyper(self, group: dict[str, Any]) -> None:
        lr = group["lr"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError(f"lr as a tensor must have exactly one element, got shape {tuple(lr.shape)}")
        if not lr >= 0.0:  # NaN fails this too
            raise ValueError(f"lr must be >= 0, got {float(lr)}")
        check_lam(group["lam"])
        if "momentum" in group:
            _check_momentum(group["momentum"])
        if "eps" in group and not group["eps"] >= 0.0:
            raise ValueError(f"eps must be >= 0, got {group['eps']}")
        if "stop" in group and group["stop"] is not None and group["stop"] not in STOP_MODES:
            raise ValueError(f"stop must be one of {', '.join(STOP_MODES)} or None, got '{group['stop']}'")
        if "max_iters" in group and group["max_iters"] < 1:
            raise ValueError(f"max_iters must be >= 1, got {group['max_iters']}")
        get_regularizer(group["regularizer"], "regularizer")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, then this optimizer's checks; a group that fails them is not kept."""
        super().add_param_group(param_group)
        try:
            self._check_group(self.param_groups[-1], len(self.param_groups) - 1)
        except ValueError:
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict[str, Any], index: int) -> None:
        self._validate_hyper(group)
        reg = self.regularizer_of(group)
        if reg is not None:
            for i, p in enumerate(group["params"]):
                reg.check(p, where=f"param group {index} tensor {i}")
            if self.uses_solver and group.get("stop") == "exact" and not reg.has_exact:
                raise ValueError(f"stop='exact' is not available for regularizer '{reg.name}'")
        self._check_complex(group, reg, index)

    @staticmethod
    def _check_complex(group: dict[str, Any], reg: Regularizer | None, index: int) -> None:
        """Complex tensors train as torch.optim trains them (real and imaginary parts as two real coordinates),
        but only without a structure term: which entries form a group of a complex weight is not defined."""
        if reg is not None and any(p.is_complex() for p in group["params"]):
            raise ValueError(
                f"param group {index} has complex tensors and regularizer '{reg.name}' with lam > 0: complex "
                "weights are supported only in groups with lam = 0 (or regularizer None)"
            )

    @staticmethod
    def regularizer_of(group: dict[str, Any]) -> Regularizer | None:
        """The group's regulariser, or ``None`` when it has no structure term (λ = 0)."""
        if group["lam"] == 0.0:
            return None
        return get_regularizer(group["regularizer"])

    @staticmethod
    def stop_of(group: dict[str, Any], reg: Regularizer) -> str:
        return group.get("stop") or default_stop(reg)

    def restart(self, eps_scale: float = 1.0) -> None:
        """Dual-averaging restart at a learning-rate milestone; a no-op for optimizers without dual averaging
        (ProxSGD, ProxGen). ``eps_scale`` multiplies RAMDA's ε."""

    def _fused_kind(self, group: dict[str, Any], reg: Regularizer | None) -> str | None:
        """The kernel kind a tensor of ``group`` needs: :data:`PLAIN`, the regulariser's name, or ``None`` when no
        kernel can compute its step (an inexact ``stop`` mode of the solver)."""
        if reg is None:
            return PLAIN
        if self.uses_solver and self.stop_of(group, reg) != "exact":
            return None
        return reg.name

    def _fused_steps(
        self,
        group: dict[str, Any],
        reg: Regularizer | None,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
    ) -> list[int]:
        """Run a fused kernel on each tensor one applies to; returns the indices of the others, which the caller
        steps on the plain-torch path. ``fused=False`` sends every tensor there; with ``fused=True`` a kernel
        whose backend (Triton on CUDA, numba on the CPU) is missing raises."""
        kind = None if group.get("fused") is False else self._fused_kind(group, reg)
        if kind is None or not self.fused_kernels:
            return list(range(len(params)))
        on_cpu = [i for i, p in enumerate(params) if p.is_cpu]
        rest = self._cpu_fused_steps(group, kind, on_cpu, params, grads, states) if on_cpu else []
        if len(on_cpu) == len(params):
            return rest
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            if p.is_cpu:
                continue
            kernel = self.fused_kernels.get((p.device.type, kind))
            data = None if kernel is None else self._kernel_data(group, [p, g, *self._state_of(state)])
            if data is None:
                rest.append(i)
                continue
            iters = kernel(self, group, state, data)
            if iters is not None:
                self._record_iters(iters, p.device)
            # The kernels write through raw pointers: tell autograd that W and the state changed in place.
            torch.autograd.graph.increment_version([p, *self._state_of(state)])
        return sorted(rest)

    def _cpu_fused_steps(
        self,
        group: dict[str, Any],
        kind: str,
        index: list[int],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
    ) -> list[int]:
        """One numba call for the group's CPU tensors ``index`` that the kernel takes (their :class:`_CpuBatch`
        is kept across steps while it still describes them); returns the indices of the others."""
        kernel = self.fused_kernels.get(("cpu", kind))
        if kernel is None or not self._backend_ready(group, "numba", numba_available):
            return index
        held = [[params[i], *self._state_of(states[i])] for i in index]
        cpu_grads = [grads[i] for i in index]
        threads = self._cpu_threads()
        key = id(group["params"])
        batch = self._cpu_batches.get(key)
        ptrs = None if batch is None else batch.pointers(kind, held, cpu_grads, threads)
        if ptrs is None:
            batch = _CpuBatch(kind, held, cpu_grads, threads)
            self._cpu_batches[key] = batch
            ptrs = batch.ptrs
        if batch.taken:
            iters = kernel(self, group, [states[index[j]] for j in batch.taken], (batch.plan, ptrs))
            if iters is not None:
                self._record_iters(int(sum(iters)), params[index[0]].device, calls=len(iters))
            # The kernels write through raw pointers: tell autograd that W and the state changed in place.
            torch.autograd.graph.increment_version([t for j in batch.taken for t in held[j]])
        return [index[j] for j in batch.rest]

    def _cpu_step(self, group: dict[str, Any], states: list[dict], data: Any) -> Any:
        """One numba call of kernel :attr:`cpu_kind` over the group's CPU tensors ``data`` (a
        :class:`ramda.kernels.cpu.Plan` and the tensors' pointers), each tensor with its :meth:`_cpu_scalars`;
        returns the Newton iterations per tensor for an optimizer with a solver (``None`` without)."""
        cpu = _cpu_kernels()
        plan, ptrs = data
        scalars = [self._cpu_scalars(group, state, root) for state, root in zip(states, plan.root_sizes)]
        iters = plan.run(getattr(cpu, self.cpu_kind), ptrs, scalars, self._cpu_workspace())
        return iters if self.uses_solver and plan.grouped else None

    def _cpu_scalars(
        self, group: dict[str, Any], state: dict[str, Any], root_size: float
    ) -> tuple[float, ...]:
        """The CPU kernel's scalars for one tensor, in the order the kernel of ``cpu_kind`` in
        :mod:`ramda.kernels.cpu` reads them, for a tensor whose groups have √|g| = ``root_size``: the structure
        threshold among them is c = t·√|g|, t the prox threshold."""
        raise NotImplementedError

    def _state_of(self, state: dict[str, Any]) -> list[Tensor]:
        return [state[name] for name in self.fused_state]

    def _kernel_data(self, group: dict[str, Any], tensors: list[Tensor]) -> Any:
        """What a CUDA kernel for ``tensors`` (the parameter, its gradient, then the state) takes, or ``None``
        when it cannot take them (dtype, layout, size, Triton not installed)."""
        ok = (
            tensors[0].is_cuda
            and gpu_supported(tensors)
            and self._backend_ready(group, "triton", triton_available)
        )
        return tensors if ok else None

    @staticmethod
    def _backend_ready(group: dict[str, Any], name: str, available: Callable[[], bool]) -> bool:
        """Whether the fused kernels' backend ``name`` is installed; with ``fused=True`` a missing one raises."""
        if available():
            return True
        if group.get("fused"):
            raise RuntimeError(
                f"fused=True needs {name} for this tensor's device: install it (pip install {name}) or pass "
                "fused=None to fall back to the plain-torch path"
            )
        return False

    def _cpu_workspace(self) -> Any:
        """The CPU kernels' scratch arrays (:class:`ramda.kernels.cpu.Workspace`), made on first use."""
        if self._workspace is None:
            self._workspace = _cpu_kernels().Workspace()
        return self._workspace

    def _cpu_threads(self) -> int:
        """Threads for the CPU kernels: torch's thread count, read once per step."""
        if self._threads is None:
            self._threads = _cpu_kernels().set_threads()
        return self._threads

    def _record_iters(self, iters: Tensor | int, device: torch.device, calls: int = 1) -> None:
        """Add ``iters`` inner iterations taken over ``calls`` tensor steps."""
        if self._solver_iters is None:
            self._solver_iters = torch.zeros((), dtype=torch.int64, device=device)
        self._solver_iters += iters
        self._solver_calls += calls

    def solver_iterations(self) -> float:
        """Mean inner solver iterations per tensor and step since the last call (nan where no solver ran, and
        always for optimizers without a solver). Reads one number from the device."""
        if self._solver_iters is None or self._solver_calls == 0:
            return math.nan
        mean = float(self._solver_iters) / self._solver_calls
        self._solver_iters.zero_()
        self._solver_calls = 0
        return mean

    @torch.no_grad()
    def step(self, closure: Any = None) -> Tensor | None:
        """One optimizer step over every param group (``closure`` re-evaluates the loss, as in torch.optim).
        Tensors without a gradient are skipped; complex ones are stepped as real views (torch's rule); a
        one-element tensor ``lr`` is read as a number."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._threads = None
        for index, group in enumerate(self.param_groups):
            params, grads = self._with_grads(group)
            if not params:
                continue
            states = [self.state[p] for p in params]
            if any(map(torch.is_complex, params)):
                self._check_complex(group, self.regularizer_of(group), index)
                grads = [_real(g) for g in grads]
                params = [_real(p) for p in params]
            if isinstance(group["lr"], Tensor):
                group = {**group, "lr": group["lr"].item()}
            self._group_step(group, params, grads, states)
        if len(self._cpu_batches) > len(self.param_groups):
            # A group was removed or given a new params list: its batch (which holds its tensors) goes too.
            live = {id(group["params"]) for group in self.param_groups}
            self._cpu_batches = {key: b for key, b in self._cpu_batches.items() if key in live}
        return loss

    def _group_step(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]]
    ) -> None:
        """Update the tensors of one param group that have gradients (``states``: each one's state dict)."""
        raise NotImplementedError

    def _restart_dual_averaging(self, sums: tuple[str, ...]) -> None:
        """Dual-averaging restart (docs/math.md#restarts): W⁰ ← W; the running ``sums``, α and k ← 0."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    state["step"] = 0
                    state["alpha"] = 0.0
                    state["w0"].copy_(_real(p.detach()))
                    for name in sums:
                        state[name].zero_()

    @staticmethod
    def _with_grads(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        """The group's tensors that have a gradient and entries (an empty one has nothing to do), and their
        gradients."""
        params, grads = [], []
        for p in group["params"]:
            g = p.grad
            if g is not None and p.numel() > 0:
                if g.is_sparse:
                    raise RuntimeError("sparse gradients are not supported")
                params.append(p)
                grads.append(g)
        return params, grads


#: The CPU kernels of an optimizer with a :attr:`~RegularizedOptimizer.cpu_kind` and its
#: :meth:`~RegularizedOptimizer._cpu_scalars`: group LASSO and unregularised.
CPU_KERNELS: dict[tuple[str, str], FusedKernel] = {
    ("cpu", "group_lasso"): RegularizedOptimizer._cpu_step,
    ("cpu", PLAIN): RegularizedOptimizer._cpu_step,
}


def _cpu_kernels() -> Any:
    """:mod:`ramda.kernels.cpu`, imported on first use (numba loads only when a CPU kernel runs)."""
    from ramda.kernels import cpu

    return cpu


class _CpuBatch:
    """A param group's CPU tensors as one numba call takes them, kept across steps: which ones the kernel takes
    (``taken``: float32, one :func:`ramda.kernels.cpu.layout` for W, its gradient and its state) and which it
    leaves to the plain-torch path (``rest``), and the call's :class:`ramda.kernels.cpu.Plan`.

    It stays valid while W and the state are the same tensor objects with the same addresses and strides, the
    gradients keep the dtype, shape and strides they had, and the kernel kind and the thread count are the same:
    then only the gradients' pointers are new. Anything else (a tensor replaced, ``p.data`` reassigned, a view
    changed in place, a gradient of another layout, a new state after ``load_state_dict``) builds a new batch,
    with every layout checked again. (W's shape cannot change alone: torch gives a gradient W's shape.)"""

    def __init__(self, kind: str, held: list[list[Tensor]], grads: list[Tensor], threads: int) -> None:
        cpu = _cpu_kernels()
        self.kind, self.threads = kind, threads
        self.held = [t for ts in held for t in ts]
        self.grad_meta = _grad_meta(grads)
        self.taken, self.rest, shapes = [], [], []
        for j, (ts, g) in enumerate(zip(held, grads)):
            shape = cpu.layout(_kernel_row(ts, g), grouped=kind != PLAIN)
            if shape is None:
                self.rest.append(j)
            else:
                self.taken.append(j)
                shapes.append(shape)
        self.plan = cpu.Plan(shapes, kind != PLAIN, threads) if shapes else None
        self.ptrs, self.strides = self._table(held, grads)

    def _table(
        self, held: list[list[Tensor]], grads: list[Tensor]
    ) -> tuple[np.ndarray, list[tuple[int, ...]]]:
        """The kernel's pointer table (a row per taken tensor: W, G, the state) and the strides of W and the
        state."""
        ptrs = _cpu_kernels().pointers([_kernel_row(held[j], grads[j]) for j in self.taken])
        return ptrs, list(map(Tensor.stride, (t for j in self.taken for t in held[j])))

    def pointers(self, kind: str, held: list[list[Tensor]], grads: list[Tensor], threads: int) -> Any:
        """The call's pointer table for this step, or ``None`` when the batch no longer describes the tensors."""
        flat = [t for ts in held for t in ts]
        if kind != self.kind or threads != self.threads or len(flat) != len(self.held):
            return None
        if not all(map(operator.is_, flat, self.held)) or _grad_meta(grads) != self.grad_meta:
            return None
        if not self.taken:
            return self.ptrs
        ptrs, strides = self._table(held, grads)
        fixed = np.ones(ptrs.shape[1], bool)
        fixed[1] = False  # the gradients' column: new tensors every step after zero_grad()
        if strides != self.strides or not np.array_equal(ptrs[:, fixed], self.ptrs[:, fixed]):
            return None
        return ptrs


def _kernel_row(held: list[Tensor], grad: Tensor) -> list[Tensor]:
    """A tensor as the kernels take it: W (``held[0]``), its gradient, then its state (``held[1:]``)."""
    return [held[0], grad, *held[1:]]


def _grad_meta(grads: list[Tensor]) -> tuple[list[Any], ...]:
    """The gradients' dtypes, shapes and strides (what decides whether the kernel can take them)."""
    return (
        list(map(operator.attrgetter("dtype"), grads)),
        list(map(Tensor.size, grads)),
        list(map(Tensor.stride, grads)),
    )


def _real(t: Tensor) -> Tensor:
    """A complex tensor as a real view with a trailing axis of 2 (``torch.view_as_real``); others unchanged."""
    return torch.view_as_real(t) if t.is_complex() else t


def dual_averaging_state(state: dict[str, Any], p: Tensor, sums: tuple[str, ...]) -> dict[str, Any]:
    """Lazily create the dual-averaging state: step k, α, the centre W⁰ and zeroed running sums."""
    if not state:
        state["step"] = 0
        state["alpha"] = 0.0
        state["w0"] = memory.clone(p)
        for name in sums:
            state[name] = memory.zeros_like(p)
    return state


def add_scaled(
    acc: list[Tensor], values: list[Tensor], scales: list[float], times: list[Tensor] | None = None
) -> None:
    """acc_i ← acc_i + scales_i·values_i (⊙ times_i when given); one foreach call when the scales agree, as
    they do within a group."""
    if all(s == scales[0] for s in scales):
        if times is None:
            torch._foreach_add_(acc, values, alpha=scales[0])
        else:
            torch._foreach_addcmul_(acc, values, times, value=scales[0])
        return
    for i, (a, x, s) in enumerate(zip(acc, values, scales)):
        if times is None:
            a.add_(x, alpha=s)
        else:
            a.addcmul_(x, times[i], value=s)


def scaled_sum(a: list[Tensor], b: list[Tensor], scales: list[float]) -> list[Tensor]:
    """New tensors a_i + scales_i·b_i; one foreach call when the scales agree, as they do within a group."""
    if all(s == scales[0] for s in scales):
        return torch._foreach_add(a, b, alpha=scales[0])
    return [x.add(y, alpha=s) for x, y, s in zip(a, b, scales)]


def mix(params: list[Tensor], targets: list[Tensor], c: float) -> None:
    """W ← (1 − c)·W + c·W̃ (exactly W̃ when c = 1, so zero groups stay exactly zero)."""
    if c == 1.0:
        torch._foreach_copy_(params, targets)
    else:
        torch._foreach_lerp_(params, targets, c)
