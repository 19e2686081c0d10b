"""Turn a group-sparse network into the smaller dense network that computes the same function.

The regularised groups are input-wise (docs/math.md#group-structure): a zero group is a column ``W[:, c]``
that a layer never reads. A channel ``c`` produced by some layer can go when *every* layer that reads it
ignores it; then the producer's output channel ``c`` (its bias entry, the BatchNorm channel after it, the
per-channel operations in between) and every reader's column ``c`` are removed together. Which layers are
coupled — through residual additions, concatenations, flattening, depthwise convolutions — is the dependency
graph that ``torch-pruning`` (``DependencyGraph``, ``get_pruning_group``) traces from one forward pass; this
module only decides, per coupled group, which channels every reader ignores.

A group is left whole (its zero columns are listed in the report with the reason) when a channel reaches the
model's output, is read by an operation that mixes channels (LayerNorm, GroupNorm, an embedding, an attention
module, a free parameter), is an LSTM's hidden unit (torch-pruning cannot shrink LSTM outputs), or — the last
safeguard — when removing it would change the output on the example inputs (a coupling the graph misses).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ramda.export import measure
from ramda.structure import structured_parameters

RTOL = 1e-5
"""The largest output change ``slim`` accepts: max |Δ output| / max |output| on the example inputs."""


_TRACE_ERRORS = (RuntimeError, ValueError, TypeError, AssertionError, KeyError, IndexError, AttributeError)
"""What torch-pruning raises on a model or group it cannot handle."""


class SlimError(RuntimeError):
    """The slim model does not compute the original function (or the model cannot be traced)."""


@dataclass
class Removal:
    """One coupled group: its root (the first producing layer), the channels removed and every layer touched."""

    root: str
    channels: int
    of: int
    layers: list[str]


@dataclass
class Unshrunk:
    """A regularised tensor whose zero groups (input columns) are still there after ``slim``, and why."""

    tensor: str
    zero_groups: int
    groups: int
    reason: str


@dataclass
class SlimReport:
    """Before/after figures of :func:`slim`. ``latency_*`` are median seconds per forward pass keyed by batch
    (``batch<N>``) on ``device``; ``max_abs_diff`` / ``rel_diff`` compare the outputs on the example inputs."""

    before: dict[str, int]
    after: dict[str, int]
    latency_before: dict[str, float]
    latency_after: dict[str, float]
    device: str
    threads: int
    channels_removed: int
    zero_groups_before: int
    zero_groups_after: int
    max_abs_diff: float
    rel_diff: float
    removals: list[Removal] = field(default_factory=list)
    unshrunk: list[Unshrunk] = field(default_factory=list)
    checked_per_group: bool = False
    traced_in_pieces: list[str] = field(default_factory=list)

    @property
    def params_kept(self) -> float:
        return measure.ratio(self.after["params"], self.before["params"]) or 1.0

    @property
    def flops_kept(self) -> float:
        return measure.ratio(self.after["flops"], self.before["flops"]) or 1.0

    @property
    def bytes_kept(self) -> float:
        return measure.ratio(self.after["bytes"], self.before["bytes"]) or 1.0

    @property
    def speedup(self) -> dict[str, float]:
        """Latency before / after per batch (> 1: the slim model is faster)."""
        return {
            k: self.latency_before[k] / self.latency_after[k]
            for k in self.latency_before
            if self.latency_after.get(k)
        }

    def figures(self) -> dict[str, Any]:
        """The headline numbers (what ``summary.json``'s ``slim`` holds): fractions kept and speedups."""
        return {
            "params_kept": self.params_kept,
            "flops_kept": self.flops_kept,
            "bytes_kept": self.bytes_kept,
            "speedup": self.speedup,
            "device": self.device,
            "channels_removed": self.channels_removed,
            "max_abs_diff": self.max_abs_diff,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["figures"] = self.figures()
        return out

    def lines(self) -> list[str]:
        """A human summary, one figure per line."""
        b, a = self.before, self.after
        out = [
            f"channels removed: {self.channels_removed} "
            f"(zero groups {self.zero_groups_before} -> {self.zero_groups_after})",
            f"params: {b['params']:,} -> {a['params']:,} ({100 * self.params_kept:.1f}% kept)",
            f"FLOPs:  {b['flops']:,} -> {a['flops']:,} ({100 * self.flops_kept:.1f}% kept)",
            f"bytes:  {b['bytes']:,} -> {a['bytes']:,} ({100 * self.bytes_kept:.1f}% kept)",
        ]
        for k, s in self.speedup.items():
            out.append(
                f"latency {k} ({self.device}, {self.threads} threads): {1e3 * self.latency_before[k]:.3f} ms -> "
                f"{1e3 * self.latency_after[k]:.3f} ms (speedup {s:.2f}x)"
            )
        out.append(f"max |output difference|: {self.max_abs_diff:.3g} (relative {self.rel_diff:.3g})")
        for u in self.unshrunk:
            out.append(f"not shrunk: {u.tensor}: {u.zero_groups}/{u.groups} zero groups kept ({u.reason})")
        return out


# ----------------------------------------------------------------------------------------- the surgery
def _tp() -> Any:
    try:
        import torch_pruning
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "ramda.export needs torch-pruning: pip install 'ramda[export]' (or pip install torch-pruning)"
        ) from err
    return torch_pruning


def _inplace_off(model: nn.Module) -> list[str]:
    """Turn off ``inplace`` activations (an in-place op on a view hides the producing layer from autograd's
    graph, which the dependency graph is traced from); returns their names, to turn them back on."""
    names = []
    for name, module in model.named_modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
            names.append(name)
    return names


def _graph(model: nn.Module, inputs: measure.Inputs) -> Any:
    tp = _tp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes about unwrapped parameters and reused modules
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=inputs, forward_fn=measure.call, verbose=False
            )


def _name(dg: Any, node: Any) -> str:
    module = node.module
    return dg._module2name.get(module, node.name) if isinstance(module, nn.Module) else node.name


def _unread(module: nn.Module) -> torch.Tensor | None:
    """Per input channel: True where every weight reading it is exactly zero; None if the layer's input
    channels cannot be read this way (a grouped convolution)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            return None
        w = module.weight.detach()
        return w.abs().amax(dim=(0, *range(2, w.dim()))) == 0
    if isinstance(module, nn.Linear):
        return module.weight.detach().abs().amax(dim=0) == 0
    if isinstance(module, nn.LSTM):
        ws = [
            p.detach() for n, p in module.named_parameters() if n in ("weight_ih_l0", "weight_ih_l0_reverse")
        ]
        return torch.stack([w.abs().amax(dim=0) for w in ws]).amax(dim=0) == 0
    return None


@dataclass
class _Decision:
    """The channels ``remove`` of the ``channels`` output channels of the group rooted at ``root_name``."""

    root_name: str
    remove: list[int]
    channels: int
    layers: list[str]


def _decide(dg: Any, group: Any, reasons: dict[str, str]) -> _Decision | None:
    """The root channels of ``group`` that every reader ignores; records in ``reasons`` (reader name →
    why) the readers whose zero columns must stay."""
    tp = _tp()
    optype = tp.ops.OPTYPE
    through = {
        optype.BN,
        optype.PRELU,
        optype.ELEMENTWISE,
        optype.RESHAPE,
        optype.CONCAT,
        optype.SPLIT,
        optype.SLICE,
        optype.UNBIND,
        optype.EXPAND,
        optype.DEPTHWISE_CONV,
    }
    root = group[0].dep.target.module
    channels = dg.get_out_channels(root)
    readers: list[tuple[str, list[int], list[int], torch.Tensor]] = []  # name, columns, root idxs, unread
    block: str | None = None
    layers: list[str] = []
    for item in group.items:
        dep, node = item.dep, item.dep.target
        name = _name(dg, node)
        module = node.module
        if isinstance(module, nn.Module) and name not in layers and not name.startswith("_"):
            layers.append(name)
        pruner = dg.get_pruner_of_module(module) if isinstance(module, nn.Module) else None
        reads = pruner is not None and dep.handler == pruner.prune_in_channels
        if node.type in (optype.CONV, optype.LINEAR, optype.LSTM) and reads:
            unread = _unread(module)
            if unread is None:
                block = block or f"read by {name}, a grouped convolution"
            else:
                readers.append((name, list(item.idxs), list(item.root_idxs), unread))
            continue
        if node.type == optype.LSTM:
            block = block or f"hidden units of {name} (torch-pruning cannot shrink LSTM outputs)"
        elif node.type not in through and node.type not in (optype.CONV, optype.LINEAR):
            block = block or f"read by {name} ({node.type.name}), which mixes channels"
        elif not node.outputs:
            block = block or f"reaches the model output through {name}"
    if not readers:
        return None
    if block is not None:
        for name, *_ in readers:
            reasons.setdefault(name, block)
        return None
    ignored = torch.ones(channels, dtype=torch.bool)
    for _, cols, roots, unread in readers:
        for col, r in zip(cols, roots):
            if not unread[col]:
                ignored[r] = False
    remove = torch.nonzero(ignored).flatten().tolist()
    for name, cols, roots, unread in readers:
        if any(unread[c] and not ignored[r] for c, r in zip(cols, roots)):
            users = sorted({n for n, cs, rs, u in readers if n != name and any(not u[c] for c in cs)})
            if users:
                reasons.setdefault(name, "the channel is also read by " + ", ".join(users[:3]))
            else:
                reasons.setdefault(name, "other columns of the same channel (e.g. after flattening) are read")
    if len(remove) == channels:  # a layer cannot have zero width: keep one channel
        remove = remove[1:]
        for name, *_ in readers:
            reasons.setdefault(name, "no reader uses any channel; one is kept (a layer cannot be empty)")
    if not remove:
        return None
    return _Decision(dg._module2name.get(root, str(root)), remove, channels, layers)


def _plan(model: nn.Module, inputs: measure.Inputs, reasons: dict[str, str]) -> list[_Decision]:
    """One decision per coupled group, rooted at each convolution / linear layer not yet in a group (as
    ``DependencyGraph.get_all_groups``; a root whose group the library cannot build is skipped and noted)."""
    dg = _graph(model, inputs)
    decisions, visited = [], set()
    for module in list(dg.module2node):
        if not isinstance(module, nn.modules.conv._ConvNd | nn.Linear) or module in visited:
            continue
        pruner = dg.get_pruner_of_module(module)
        try:
            group = dg.get_pruning_group(
                module, pruner.prune_out_channels, list(range(pruner.get_out_channels(module)))
            )
        except _TRACE_ERRORS as err:
            name = dg._module2name.get(module, str(module))
            reasons.setdefault(name, f"torch-pruning cannot follow its output ({type(err).__name__}: {err})")
            continue
        visited.update(
            item.dep.target.module for item in group.items if dg.is_out_channel_pruning_fn(item.dep.handler)
        )
        decision = _decide(dg, group, reasons)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _apply(model: nn.Module, inputs: measure.Inputs, decisions: list[_Decision]) -> None:
    """Remove the decided channels from ``model`` (in place); decisions name modules of ``model``."""
    dg = _graph(model, inputs)
    modules = dict(model.named_modules())
    for d in decisions:
        root = modules[d.root_name]
        dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, d.remove).prune()


@torch.no_grad()
def _outputs(model: nn.Module, inputs: measure.Inputs) -> Any:
    """The outputs with the random generator seeded alike for every call (a model may sample, e.g.
    Tacotron2's always-on pre-net dropout)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return measure.call(model, inputs)


@dataclass
class _Work:
    """What the recursive :func:`_shrink` gathers: the removals (names in the whole model) and, per layer,
    why some of its zero columns stay."""

    rtol: float
    removals: list[Removal] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    per_group: bool = False
    pieces: list[str] = field(default_factory=list)


def _child_inputs(module: nn.Module, inputs: measure.Inputs) -> dict[str, measure.Args]:
    """The arguments of each direct child's first call in one forward pass of ``module``."""
    seen: dict[str, measure.Args] = {}
    hooks = []
    for name, child in module.named_children():

        def hook(_: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
            seen.setdefault(name, measure.Args(args, kwargs))

        hooks.append(child.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        _outputs(module, inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _shrink(module: nn.Module, inputs: measure.Inputs, work: _Work, prefix: str = "") -> nn.Module:
    """The slim copy of ``module`` (eval mode, in-place activations off). A module torch-pruning cannot trace is
    shrunk piece by piece: each child on the arguments it receives, its own outputs kept whole."""
    reference = _outputs(module, inputs)
    reasons: dict[str, str] = {}
    try:
        decisions = _plan(copy.deepcopy(module), inputs, reasons)
        small = copy.deepcopy(module)
        _apply(small, inputs, decisions)
        rel = measure.output_difference(reference, _outputs(small.eval(), inputs))[1]
    except _TRACE_ERRORS as err:
        children = list(module.named_children())
        if not children:
            work.reasons.setdefault(prefix.rstrip("."), f"torch-pruning cannot trace it ({err})")
            return module
        work.pieces.append(prefix.rstrip(".") or type(module).__name__)
        called = _child_inputs(module, inputs)
        module = copy.deepcopy(module)
        for name, child in children:
            if name in called:
                setattr(module, name, _shrink(child, called[name], work, f"{prefix}{name}."))
        return module
    if (
        rel > work.rtol
    ):  # a coupling the graph does not model: keep only the groups that leave the output alone
        work.per_group = True
        small, kept = copy.deepcopy(module), []
        for d in decisions:
            trial = copy.deepcopy(small)
            try:
                _apply(trial, inputs, [d])
                ok = measure.output_difference(reference, _outputs(trial.eval(), inputs))[1] <= work.rtol
            except _TRACE_ERRORS:
                ok = False
            if ok:
                small = trial
                kept.append(d)
            else:
                for layer in d.layers:
                    reasons.setdefault(layer, "removing its zero channels changed the output (refused)")
        decisions = kept
    for name, why in reasons.items():
        work.reasons.setdefault(prefix + name, why)
    work.removals += [
        Removal(prefix + d.root_name, len(d.remove), d.channels, [prefix + n for n in d.layers])
        for d in decisions
    ]
    return small.eval()


def _zero_groups(model: nn.Module) -> dict[str, tuple[int, int]]:
    out = {}
    for name, p in structured_parameters(model):
        dims = (0, *range(2, p.dim()))
        zero = int((p.detach().abs().amax(dim=dims) == 0).sum())
        out[name] = (zero, p.shape[1])
    return out


def _unshrunk(model: nn.Module, reasons: Mapping[str, str]) -> list[Unshrunk]:
    modules = dict(model.named_modules())
    out = []
    for tensor, (zero, groups) in _zero_groups(model).items():
        if not zero:
            continue
        owner, _, pname = tensor.rpartition(".")
        if pname.startswith("weight_hh"):
            reason = "recurrent columns: LSTM/RNN hidden units cannot be removed"
        elif owner in reasons:
            reason = reasons[owner]
        elif isinstance(modules.get(owner), nn.RNNCellBase | nn.RNNBase) and not isinstance(
            modules.get(owner), nn.LSTM
        ):
            reason = f"{type(modules[owner]).__name__} layers are not supported by torch-pruning"
        else:
            reason = "its input is not produced by a layer that can shrink (the network input, an embedding, "
            reason += "a recurrent state, or an operation the dependency graph does not follow)"
        out.append(Unshrunk(tensor, zero, groups, reason))
    return out


def slim(
    model: nn.Module,
    example_inputs: measure.Inputs,
    latency_inputs: Mapping[int, measure.Inputs] | None = None,
    repeats: int = 20,
    rtol: float = RTOL,
) -> tuple[nn.Module, SlimReport]:
    """The smaller dense copy of ``model`` (in eval mode; ``model`` itself is not changed) and its report.

    ``example_inputs`` (a tensor, a tuple of arguments or a dict of keyword arguments) are traced and used to
    compare the outputs: ``SlimError`` if max |Δ| / max |output| > ``rtol``. ``latency_inputs`` maps batch
    sizes to inputs to time (default: the example inputs, keyed by 0); medians of ``repeats`` runs.
    """
    original = copy.deepcopy(model).eval()
    inplace = _inplace_off(original)
    reference = _outputs(original, example_inputs)
    work = _Work(rtol)
    small = _shrink(original, example_inputs, work)
    modules = dict(small.named_modules())
    for name in inplace:
        if hasattr(modules.get(name), "inplace"):
            modules[name].inplace = True
    diff, rel = measure.output_difference(reference, _outputs(small, example_inputs))
    if rel > rtol:
        raise SlimError(
            f"the slim model's outputs differ by {rel:.3g} relative (max |Δ| {diff:.3g}) > {rtol}"
        )
    batches = dict(latency_inputs) if latency_inputs is not None else {0: example_inputs}
    device = next((t.device.type for t in measure.tensors(example_inputs)), "cpu")
    latency_before, latency_after = measure.latencies([original, small], batches, repeats)
    zero_before = sum(z for z, _ in _zero_groups(original).values())
    zero_after = sum(z for z, _ in _zero_groups(small).values())
    report = SlimReport(
        before=measure.cost(original, example_inputs),
        after=measure.cost(small, example_inputs),
        latency_before=latency_before,
        latency_after=latency_after,
        device=device,
        threads=torch.get_num_threads(),
        channels_removed=sum(r.channels for r in work.removals),
        zero_groups_before=zero_before,
        zero_groups_after=zero_after,
        max_abs_diff=diff,
        rel_diff=rel,
        removals=work.removals,
        unshrunk=_unshrunk(small, work.reasons),
        checked_per_group=work.per_group,
        traced_in_pieces=work.pieces,
    )
    for p in small.parameters():
        p.grad = None
    return small, report
