"""ramda.optim.memory: large CPU state tensors on memory advised for transparent huge pages, equal in every other
respect to torch's own (values, strides, saved bytes), and the optimizers' results unchanged by it."""

import copy
import io
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from ramda import RAMDA, RMDA, ProxGen, ProxSGD, param_groups
from ramda.optim import memory

BIG = (512, 512, 3, 3)  # 9 MiB of float32: over HUGE_MIN


def vm_flags(address: int) -> list[str]:
    """The VmFlags of this process's mapping that holds ``address`` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.fixture
def no_thp(monkeypatch):
    """THP switched off (as on a kernel with ``never``)."""
    monkeypatch.setattr(memory, "_THP_MODES", memory.Path("/nonexistent/enabled"))
    memory.huge_pages_available.cache_clear()
    yield
    memory.huge_pages_available.cache_clear()


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_state_tensor_is_torchs_on_huge_page_memory(fmt):
    p = torch.randn(BIG).contiguous(memory_format=fmt)
    for made, want in ((memory.zeros_like(p), torch.zeros_like(p)), (memory.clone(p), p)):
        assert made.shape == want.shape and made.stride() == p.stride() and made.dtype == p.dtype
        assert torch.equal(made, want)
        assert made.untyped_storage().nbytes() == p.numel() * 4
    if not memory.huge_pages_available():
        pytest.skip("this kernel's THP mode is never: nothing to advise")
    assert made.data_ptr() % memory.HUGE_PAGE == 0
    assert "hg" in vm_flags(made.data_ptr()), "the memory should be advised MADV_HUGEPAGE"


def test_without_thp_the_state_is_torchs_allocation(no_thp):
    p = torch.randn(BIG)
    assert not memory.huge_pages_available() and not memory._applies(p)
    z = memory.zeros_like(p)
    assert torch.equal(z, torch.zeros_like(p)) and z.untyped_storage().nbytes() == p.numel() * 4


def test_ramda_huge_pages_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("RAMDA_HUGE_PAGES", "0")
    memory.huge_pages_available.cache_clear()
    try:
        assert not memory.huge_pages_available() and not memory._applies(torch.randn(BIG))
    finally:
        monkeypatch.undo()
        memory.huge_pages_available.cache_clear()


def test_small_and_strided_tensors_are_left_to_torch():
    small = torch.randn(64, 64)
    assert memory.zeros_like(small).untyped_storage().nbytes() == small.numel() * 4
    strided = torch.randn(2048, 2048)[:, ::2]  # not dense: its state must keep the same strides
    z = memory.zeros_like(strided)
    assert z.stride() == torch.zeros_like(strided, memory_format=torch.preserve_format).stride()
    assert not memory._applies(strided) and not memory._applies(small)


@pytest.mark.parametrize("cls", [RAMDA, RMDA, ProxGen, ProxSGD])
def test_results_do_not_depend_on_where_the_state_lives(cls, monkeypatch):
    """Three steps of each optimizer with large tensors, state on huge-page memory and on torch's: bit-identical
    weights and states."""
    outs = []
    for thp in (True, False):
        memory.huge_pages_available.cache_clear()
        if not thp:
            monkeypatch.setattr(memory, "_THP_MODES", memory.Path("/nonexistent/enabled"))
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(512, 512, 3), nn.Linear(3, 1100))
        opt = cls(param_groups(net, 1e-4), lr=0.01)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in net.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        outs.append(
            [p.detach().clone() for p in net.parameters()]
            + [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        )
    monkeypatch.undo()
    memory.huge_pages_available.cache_clear()
    assert len(outs[0]) == len(outs[1])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_saved_state_holds_its_bytes_and_loads_back_onto_huge_pages():
    net = nn.Conv2d(512, 512, 3)
    opt = RAMDA(param_groups(net, 1e-4), lr=0.01)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    state_bytes = sum(t.numel() * 4 for st in opt.state.values() for t in st.values() if torch.is_tensor(t))
    assert state_bytes <= buf.tell() < state_bytes + (1 << 20)  # no 2 MiB alignment slack in the file
    buf.seek(0)
    again = RAMDA(param_groups(net, 1e-4), lr=0.01)
    again.load_state_dict(torch.load(buf, weights_only=True))
    for st, st2 in zip(opt.state.values(), again.state.values()):
        for key, value in st.items():
            if torch.is_tensor(value):
                assert torch.equal(value, st2[key]) and value.stride() == st2[key].stride()
                if memory.huge_pages_available() and memory._applies(value):
                    assert st2[key].data_ptr() % memory.HUGE_PAGE == 0, key
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        for st, st2 in zip(opt.state.values(), clone.state.values()):
            assert all(torch.equal(v, st2[k]) for k, v in st.items() if torch.is_tensor(v))
