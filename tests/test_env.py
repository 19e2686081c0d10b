"""The run environment: which device a ``trainer.device`` string names, and the random generators a checkpoint
saves and restores for it."""

import random

import pytest
import torch

from ramda.engine.checkpoint import rng_state, set_rng_state
from ramda.engine.env import make_env, resolve_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cpu_and_auto_without_cuda():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@CUDA
def test_cuda_without_an_index_is_the_current_device():
    for name in ("cuda", "auto"):
        env = make_env(name, seed=0)
        assert env.device == torch.device("cuda", torch.cuda.current_device())
    assert make_env("cuda:0", seed=0).device == torch.device("cuda", 0)


def test_rng_round_trip_on_the_cpu_ignores_gpu_states():
    """A CPU run saves no GPU generator, and restores a checkpoint that holds one per GPU (as written before
    2026-11-30) without touching them."""
    state = rng_state(torch.device("cpu"))
    assert "cuda" not in state
    expected = (random.random(), torch.rand(3))
    set_rng_state({**state, "cuda": [torch.zeros(8, dtype=torch.uint8)] * 3}, torch.device("cpu"))
    got = (random.random(), torch.rand(3))
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])


@CUDA
def test_rng_round_trip_on_a_gpu_saves_only_its_generator():
    device = make_env("cuda", seed=0).device
    state = rng_state(device)
    assert isinstance(state["cuda"], torch.Tensor)
    expected = torch.rand(4, device=device)
    set_rng_state(state, device)
    assert torch.equal(torch.rand(4, device=device), expected)
    set_rng_state({**state, "cuda": [state["cuda"]] * (device.index + 1)}, device)  # the older layout
    assert torch.equal(torch.rand(4, device=device), expected)
