"""The run environment: which device a ``trainer.device`` string names."""

import pytest
import torch

from ramda.engine.env import make_env, resolve_device


def test_cpu_and_auto_without_cuda():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_without_an_index_is_the_current_device():
    for name in ("cuda", "auto"):
        env = make_env(name, seed=0)
        assert env.device == torch.device("cuda", torch.cuda.current_device())
    assert make_env("cuda:0", seed=0).device == torch.device("cuda", 0)
