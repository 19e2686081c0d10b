"""Fused optimizer-step kernels: Triton on CUDA (:mod:`ramda.kernels.gpu`), numba on the CPU
(:mod:`ramda.kernels.cpu`). Each has a plain-torch twin in :mod:`ramda.solver` that computes the same thing, and
tests comparing the two (the Triton one on the CPU under ``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None
