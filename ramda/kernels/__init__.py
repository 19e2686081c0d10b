"""Fused optimizer-step kernels: Triton on CUDA (:mod:`ramda.kernels.gpu`), numba on the CPU
(:mod:`ramda.kernels.cpu`). Each has a plain-torch twin in :mod:`ramda.solver` that computes the same thing, and
tests comparing the two (the Triton one on the CPU under ``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import functools
import importlib.util
import warnings

import torch
from torch import Tensor


def same_layout(a: Tensor, b: Tensor) -> bool:
    """Same shape and the same strides along every axis longer than 1 (the stride of an axis of length 1 never
    moves an address: autograd may hand such a gradient over as it is, e.g. a channels-last 1×1 convolution's)."""
    return a.shape == b.shape and all(n == 1 or x == y for n, x, y in zip(a.shape, a.stride(), b.stride()))


def channels_last(t: Tensor) -> bool:
    """Whether ``t`` is dense in channels-last order: a 4-d ``channels_last`` or 5-d ``channels_last_3d`` tensor."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
    return fmt is not None and t.is_contiguous(memory_format=fmt)


def _loads(backend: str, module: str, hint: str) -> bool:
    """Whether ``module`` (a kernel module needing ``backend``) imports. ``backend`` missing is silent; present but
    failing to import (a broken install, a version that does not match torch's…) warns once, naming the error,
    and the optimizers use the plain-torch path."""
    if importlib.util.find_spec(backend) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure of a third-party JIT to load must not stop training
        warnings.warn(
            f"ramda: the {backend} kernels failed to load ({type(exc).__name__}: {exc}); using the plain-torch "
            f"path{hint}",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


@functools.cache
def triton_available() -> bool:
    """Whether the Triton GPU kernels load (see :func:`_loads`)."""
    return _loads("triton", "ramda.kernels._triton", "")


@functools.cache
def numba_available() -> bool:
    """Whether the numba CPU kernels load (see :func:`_loads`)."""
    return _loads(
        "numba",
        "ramda.kernels.cpu",
        " (set NUMBA_CACHE_DIR to a writable directory if the error is about caching)",
    )
