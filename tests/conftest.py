"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test: the small models here are chains of tiny ops, several times faster on
    one thread than on two busy cores; the previous count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def hydra_ctx() -> Iterator[None]:
    """The project's config tree (``configs/``) initialised for Hydra's ``compose``."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        yield
    GlobalHydra.instance().clear()
