"""What a model costs: parameters, FLOPs, bytes on disk and inference latency, and how far two models' outputs
are apart. Used by :func:`ramda.export.slim` to report before/after figures."""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

Inputs = Any  # a tensor, a tuple of positional arguments, a dict of keyword arguments, or Args


@dataclass(frozen=True)
class Args:
    """Positional and keyword arguments of one call."""

    args: tuple
    kwargs: dict


def call(model: nn.Module, inputs: Inputs) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple/list, ``model(*a, **kw)`` for
    :class:`Args`, else ``model(inputs)``."""
    if isinstance(inputs, Args):
        return model(*inputs.args, **inputs.kwargs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def tensors(output: Any) -> Iterator[torch.Tensor]:
    """The tensors of a (nested) output, depth first: tuples, lists and dict values in order."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, Args):
        yield from tensors(output.args)
        yield from tensors(output.kwargs)
    elif isinstance(output, Mapping):
        for v in output.values():
            yield from tensors(v)
    elif isinstance(output, tuple | list):
        for v in output:
            yield from tensors(v)


def output_difference(reference: Any, other: Any) -> tuple[float, float]:
    """``(max |a − b|, max |a − b| / max |a|)`` over every floating tensor of two outputs of the same shape
    (integer tensors must be equal: any difference there counts as infinite)."""
    ref, out = list(tensors(reference)), list(tensors(other))
    if len(ref) != len(out):
        raise ValueError(f"the outputs hold {len(ref)} and {len(out)} tensors")
    diff, scale = 0.0, 0.0
    for a, b in zip(ref, out):
        if a.shape != b.shape:
            raise ValueError(f"output shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return math.inf, math.inf
            continue
        if a.numel():
            diff = max(diff, float((a.double() - b.double()).abs().max()))
            scale = max(scale, float(a.double().abs().max()))
    return diff, (diff / scale if scale > 0 else diff)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter entries (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.no_grad()
def count_flops(model: nn.Module, inputs: Inputs) -> int:
    """FLOPs of one forward pass on ``inputs`` as counted by ``torch.utils.flop_counter.FlopCounterMode``
    (a multiply-add is 2 FLOPs; matrix products and convolutions only)."""
    counter = FlopCounterMode(display=False)
    with counter:
        call(model, inputs)
    return int(counter.get_total_flops())


def state_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size of the weights on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _timed(model: nn.Module, inputs: Inputs, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    tick = time.perf_counter()
    call(model, inputs)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - tick


@torch.inference_mode()
def latencies(
    models: Sequence[nn.Module],
    batches: Mapping[int, Inputs],
    repeats: int = 20,
    min_seconds: float = 1.0,
    warmup: int = 3,
) -> list[dict[str, float]]:
    """Per model, ``{"batch<N>": median seconds of one forward pass}`` for every batch size of ``batches``.

    Each model runs at least ``repeats`` times and, for fast models, as often as fills ``min_seconds`` (at most
    2000 times): the median of a few milliseconds' worth of runs moves by several × on a busy machine. The
    models run in turn within each repeat (paired runs), so load from other processes slows them alike; CUDA
    work is synchronised before and after each pass."""
    out: list[dict[str, float]] = [{} for _ in models]
    for n, inputs in sorted(batches.items()):
        cuda = any(t.is_cuda for t in tensors(inputs))
        first = []
        for model in models:
            for _ in range(warmup):
                call(model, inputs)
            first.append(_timed(model, inputs, cuda))
        count = max(repeats, min(2000, math.ceil(min_seconds / max(max(first), 1e-9))))
        times: list[list[float]] = [[] for _ in models]
        for _ in range(count):
            for i, model in enumerate(models):
                times[i].append(_timed(model, inputs, cuda))
        for i in range(len(models)):
            out[i][f"batch{n}"] = statistics.median(times[i])
    return out


def cost(model: nn.Module, inputs: Inputs) -> dict[str, int]:
    """Parameters, FLOPs on ``inputs`` and bytes on disk."""
    return {
        "params": count_parameters(model),
        "flops": count_flops(model, inputs),
        "bytes": state_bytes(model),
    }


def ratio(after: float, before: float) -> float | None:
    """``after / before``, None when ``before`` is 0."""
    return after / before if before else None


__all__: Sequence[str] = (
    "Args",
    "call",
    "cost",
    "count_flops",
    "count_parameters",
    "latencies",
    "output_difference",
    "ratio",
    "state_bytes",
    "tensors",
)
