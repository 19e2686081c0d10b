"""The model → group structure (docs/math.md#group-structure), decided by module type, and the sparsity metrics.

Regularised (input-wise groups, axis 1 of the weight):
- convolutions (``nn.Conv1d/2d/3d``): one group per input channel, ``W[:, c, ...]``;
- ``nn.Linear`` (and subclasses, e.g. attention output projections), ``nn.MultiheadAttention``'s packed
  ``in_proj_weight``/``q/k/v_proj_weight``: one group per input column;
- ``nn.LSTM``/``nn.GRU``/``nn.RNN`` and their cells: ``weight_ih*``/``weight_hh*``, one group per input column.
Everything else (biases, norms, embeddings, transposed convolutions) is unregularised, and so is every module
under an ``nn.AdaptiveLogSoftmaxWithLoss`` (an output head) or a module with ``ramda_unregularized = True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ramda.regularizers import check_lam

_RNN_TYPES = (nn.RNNBase, nn.RNNCellBase)
_EXCLUDED_SUBTREES = (nn.AdaptiveLogSoftmaxWithLoss,)


def _own_structured(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    if (isinstance(module, nn.modules.conv._ConvNd) and not module.transposed) or isinstance(
        module, nn.Linear
    ):
        yield "weight", module.weight
    elif isinstance(module, nn.MultiheadAttention):
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            p = getattr(module, name, None)
            if p is not None:
                yield name, p
    elif isinstance(module, _RNN_TYPES):
        for name, p in module.named_parameters(recurse=False):
            if name.startswith(("weight_ih", "weight_hh")):
                yield name, p


def structured_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(qualified name, parameter) of every tensor the paper's layout regularises, in model order."""
    found: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()

    def visit(module: nn.Module, prefix: str) -> None:
        if isinstance(module, _EXCLUDED_SUBTREES) or getattr(module, "ramda_unregularized", False):
            return
        for name, p in _own_structured(module):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                found.append((f"{prefix}{name}", p))
        for child_name, child in module.named_children():
            visit(child, f"{prefix}{child_name}.")

    visit(model, "")
    return found


def param_groups(
    model: nn.Module, lam: float, regularizer: str | None = "group_lasso"
) -> list[dict[str, Any]]:
    """Optimizer param groups with the paper's layout: the structured tensors with ``lam`` and ``regularizer``,
    then every other trainable parameter with ``lam = 0``. Usable by any ``torch.optim`` optimizer too."""
    check_lam(lam)
    structured = [p for _, p in structured_parameters(model)]
    ids = {id(p) for p in structured}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = []
    if structured:
        groups.append({"params": structured, "lam": float(lam), "regularizer": regularizer})
    if rest:
        groups.append({"params": rest, "lam": 0.0, "regularizer": None})
    return groups


@torch.no_grad()
def group_counts(model: nn.Module) -> tuple[int, int, int, int]:
    """(groups, nonzero groups, entries in all groups, entries in nonzero groups) over the structured tensors.
    A group is nonzero if any of its entries is ≠ 0.0."""
    groups = nonzero = entries = nonzero_entries = 0
    for _, p in structured_parameters(model):
        dims = (0, *range(2, p.dim()))
        nz = int(torch.count_nonzero(torch.amax(p.detach().abs(), dim=dims)))
        size = p.numel() // p.shape[1]
        groups += p.shape[1]
        nonzero += nz
        entries += p.numel()
        nonzero_entries += nz * size
    return groups, nonzero, entries, nonzero_entries


def _group_sparsities(model: nn.Module) -> tuple[float, float]:
    """(weighted, unweighted) group sparsity over the structured tensors."""
    groups, nonzero, entries, nonzero_entries = group_counts(model)
    weighted = 1.0 - nonzero_entries / entries if entries else 0.0
    return weighted, 1.0 - nonzero / groups if groups else 0.0


def weighted_group_sparsity(model: nn.Module) -> float:
    """1 − Σ(#nonzero groups·|g|) / Σ(#groups·|g|) over the structured tensors (the tables' "Sparsity")."""
    return _group_sparsities(model)[0]


@torch.no_grad()
def unstructured_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over all parameters."""
    total = zeros = 0
    for p in model.parameters():
        total += p.numel()
        zeros += p.numel() - int(torch.count_nonzero(p))
    return zeros / total if total else 0.0


def sparsity_report(model: nn.Module) -> dict[str, float]:
    """All sparsities of docs/math.md#sparsity-metrics as fractions in [0, 1]."""
    weighted, grouped = _group_sparsities(model)
    return {
        "weighted_group_sparsity": weighted,
        "group_sparsity": grouped,
        "unstructured_sparsity": unstructured_sparsity(model),
    }
