"""Optimizer state on transparent huge pages (Linux, CPU tensors of at least :data:`HUGE_MIN` bytes).

A fused CPU step streams every state tensor once per step, several at a time. With 4 KiB pages each stream
crosses a page, and needs a new TLB entry, every 1024 floats. On 2 MiB pages that happens 512 times less often.
On the development machine, an RMDA kernel on ten [512, 512, 3, 3] weights took 22–24 ms with its data on huge
pages and 31–40 ms on 4 KiB pages (docs/benchmarks.md). torch allocates from the C heap, which may hand back memory that
is already touched and so already mapped to 4 KiB pages. A large state tensor is therefore placed in fresh
anonymous memory (``mmap``), aligned to 2 MiB and advised ``MADV_HUGEPAGE`` before its first touch. Whether the
kernel then backs it with huge pages is up to its THP settings (``/sys/kernel/mm/transparent_hugepage``): with
``never``, or with ``RAMDA_HUGE_PAGES=0`` in the environment, nothing is advised and the state is an ordinary
tensor.

Only where the memory lives changes: values, strides, dtype and device are those of ``torch.zeros_like(p,
memory_format=torch.preserve_format)``. A saved state holds its own bytes and nothing more, since the tensor's
storage is exactly its entries, and it loads like any other.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ramda.kernels import channels_last

#: Bytes of a huge page on x86-64 and arm64 Linux (the THP size).
HUGE_PAGE = 1 << 21
#: Smallest state tensor placed on huge pages. The at most one partly used page at its end then wastes less than
#: half the tensor's size; for a [512, 512, 3, 3] weight (9 MiB) 1 MiB.
HUGE_MIN = 2 * HUGE_PAGE
_MADV_HUGEPAGE = 14
_THP_MODES = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@functools.cache
def huge_pages_available() -> bool:
    """Whether this process asks for transparent huge pages: Linux with THP in mode ``always`` or ``madvise``,
    unless the environment sets ``RAMDA_HUGE_PAGES=0``."""
    if not sys.platform.startswith("linux") or os.environ.get("RAMDA_HUGE_PAGES", "1") == "0":
        return False
    try:
        modes = _THP_MODES.read_text()
    except OSError:
        return False
    return "[never]" not in modes


@functools.cache
def _madvise() -> Callable[[int, int, int], int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc.madvise


def _applies(p: Tensor) -> bool:
    """Whether a state tensor like ``p`` goes on huge pages: a dense CPU tensor of at least :data:`HUGE_MIN`
    bytes, where THP is available."""
    return (
        p.is_cpu
        and p.layout == torch.strided
        and p.numel() * p.element_size() >= HUGE_MIN
        and (p.is_contiguous() or channels_last(p))  # dense: p's strides can be laid over a flat buffer
        and huge_pages_available()
    )


def zeros_like(p: Tensor) -> Tensor:
    """``torch.zeros_like(p, memory_format=torch.preserve_format)``, on huge pages where that applies (see the
    module docstring)."""
    if not _applies(p):
        return torch.zeros_like(p, memory_format=torch.preserve_format)
    nbytes = p.numel() * p.element_size()
    buf = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = torch.frombuffer(buf, dtype=torch.uint8, count=1).data_ptr()
    offset = -start % HUGE_PAGE
    length = -(-nbytes // HUGE_PAGE) * HUGE_PAGE
    _madvise()(start + offset, length, _MADV_HUGEPAGE)  # a refusal (EINVAL…) leaves ordinary pages
    flat = torch.frombuffer(buf, dtype=p.dtype, count=p.numel(), offset=offset)
    return flat.as_strided(p.shape, p.stride())  # fresh anonymous memory reads as zeros


def clone(p: Tensor) -> Tensor:
    """``p.detach().clone(memory_format=torch.preserve_format)``, on huge pages where that applies."""
    if not _applies(p):
        return p.detach().clone(memory_format=torch.preserve_format)
    return zeros_like(p).copy_(p.detach())


def rehome(state: dict) -> None:
    """Move the CPU tensors of one parameter's ``state`` (as loaded from a checkpoint) to huge pages where that
    applies; equal values, the same strides."""
    for key, value in state.items():
        if isinstance(value, Tensor) and _applies(value):
            state[key] = clone(value)
