"""Transformer-XL against naive references: relative attention, recurrence memory, adaptive softmax, size."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ramda.models.transformer_xl import (
    AdaptiveLogSoftmax,
    RelPartialLearnableAttention,
    TransformerXL,
    sinusoid,
)
from ramda.structure import param_groups, structured_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(n_token: int = 97, **kw) -> TransformerXL:
    args = dict(
        n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=24, dropout=0.0, mem_len=6, cutoffs=[20, 50]
    )
    args.update(kw)
    return TransformerXL(n_token, **args).double().eval()


def naive_attention(
    layer: RelPartialLearnableAttention, w: torch.Tensor, mem: torch.Tensor, u: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """Score of query i on key j ≤ m+i, one head and one sequence at a time, with R of distance m+i−j."""
    n_head, d_head = u.shape
    hd = n_head * d_head
    qlen, bsz, d_model = w.shape
    mlen = mem.shape[0]
    cat = torch.cat([mem, w], 0)
    wq, wk, wv = layer.qkv_net.weight.split(hd, 0)
    out = torch.zeros(qlen, bsz, hd, dtype=w.dtype)
    for b in range(bsz):
        for h in range(n_head):
            rows = slice(h * d_head, (h + 1) * d_head)
            for i in range(qlen):
                q = wq[rows] @ w[i, b]
                scores, values = [], []
                for j in range(mlen + i + 1):
                    k = wk[rows] @ cat[j, b]
                    dist = torch.tensor([float(mlen + i - j)], dtype=w.dtype)
                    rk = layer.r_net.weight[rows] @ sinusoid(dist, d_model)[0].to(w.dtype)
                    scores.append(((q + u[h]) @ k + (q + v[h]) @ rk) / math.sqrt(d_head))
                    values.append(wv[rows] @ cat[j, b])
                prob = torch.softmax(torch.stack(scores), 0)
                out[i, b, rows] = sum(p * val for p, val in zip(prob, values))
    return layer.layer_norm(w + layer.o_net(out))


@pytest.mark.parametrize("mlen", [0, 4])
def test_relative_attention_matches_naive_reference(mlen: int) -> None:
    torch.manual_seed(mlen)
    d_model, n_head, d_head, qlen, bsz = 12, 3, 5, 5, 2
    layer = RelPartialLearnableAttention(d_model, n_head, d_head, dropout=0.0, dropatt=0.0).double().eval()
    for p in layer.parameters():
        nn.init.normal_(p, 0.0, 0.5)
    u, v = torch.randn(n_head, d_head, dtype=torch.double), torch.randn(n_head, d_head, dtype=torch.double)
    w = torch.randn(qlen, bsz, d_model, dtype=torch.double)
    mem = torch.randn(mlen, bsz, d_model, dtype=torch.double)
    klen = mlen + qlen
    r = sinusoid(torch.arange(klen - 1, -1, -1.0), d_model).double()
    mask = torch.triu(torch.ones(qlen, klen, dtype=torch.bool), diagonal=1 + mlen)
    got = layer(w, r, u, v, mask, mem if mlen else None)
    torch.testing.assert_close(got, naive_attention(layer, w, mem, u, v), rtol=1e-10, atol=1e-10)


def test_memory_equals_attending_to_the_previous_segment() -> None:
    """With mem_len ≥ segment length, segment 2 with segment 1's memory = one pass over both segments."""
    torch.manual_seed(0)
    model = tiny_model(mem_len=7)
    data = torch.randint(0, 97, (15, 3))
    seg1, seg2 = data[:7], data[7:14]
    full, _ = model(data[:14], data[1:15], mem_len=0)
    nll1, mems = model(seg1, data[1:8])
    nll2, new_mems = model(seg2, data[8:15], mems)
    torch.testing.assert_close(torch.cat([nll1, nll2]), full, rtol=1e-10, atol=1e-10)
    alone, _ = model(seg2, data[8:15])
    assert (alone - nll2).abs().max() > 1e-3  # the memory really changes the next segment
    assert len(mems) == model.n_layer + 1
    assert all(m.shape == (7, 3, 16) and not m.requires_grad for m in new_mems)
    # The memory holds the last 7 states of the stream: the layer inputs of segment 2.
    torch.testing.assert_close(new_mems[0], model.word_emb(seg2))


def test_memory_is_detached_and_keeps_the_last_mem_len_states() -> None:
    torch.manual_seed(1)
    model = tiny_model(mem_len=5).train()
    data = torch.randint(0, 97, (4, 2))
    _, mems = model(data, data)
    assert [m.shape[0] for m in mems] == [4] * 3
    nll, mems2 = model(data, data, mems)
    nll.mean().backward()  # no graph through the previous segment: backward succeeds once
    assert [m.shape[0] for m in mems2] == [5] * 3 and not any(m.requires_grad for m in mems2)


def test_causal_mask_hides_the_future() -> None:
    torch.manual_seed(2)
    model = tiny_model()
    data = torch.randint(0, 97, (9, 2))
    target = torch.randint(0, 97, (9, 2))
    _, mems = model(torch.randint(0, 97, (6, 2)), target[:6])
    before, _ = model(data, target, mems)
    changed = data.clone()
    changed[5] = (changed[5] + 1) % 97
    after, _ = model(changed, target, mems)
    torch.testing.assert_close(after[:5], before[:5], rtol=0, atol=0)
    assert (after[5:] - before[5:]).abs().min() > 0


@pytest.mark.parametrize(("qlen", "mlen"), [(4, 0), (4, 3), (4, 6), (9, 6)])
def test_attention_mask_is_causal_and_same_length_sees_mem_len_keys(qlen: int, mlen: int) -> None:
    model = tiny_model(mem_len=6)
    causal = model.attention_mask(qlen, mlen, torch.device("cpu"), same_length=False)
    same = model.attention_mask(qlen, mlen, torch.device("cpu"), same_length=True)
    klen = qlen + mlen
    for i in range(qlen):
        assert [j for j in range(klen) if not causal[i, j]] == list(range(mlen + i + 1))
        # same_length: a window of mem_len keys ending at the query (or the causal one if shorter)
        first = max(0, mlen + i + 1 - 6) if klen > 6 else 0
        assert [j for j in range(klen) if not same[i, j]] == list(range(first, mlen + i + 1))


@pytest.mark.parametrize(("div_val", "d_embed"), [(1, 16), (2, 12)])
def test_adaptive_softmax_is_a_distribution(div_val: int, d_embed: int) -> None:
    torch.manual_seed(div_val)
    n_token, d_proj = 61, 16
    crit = AdaptiveLogSoftmax(n_token, d_embed, d_proj, [10, 30], div_val).double()
    for p in crit.parameters():
        nn.init.normal_(p, 0.0, 0.3)
    hidden = torch.randn(5, d_proj, dtype=torch.double)
    log_prob = crit.log_prob(hidden)
    assert log_prob.shape == (5, n_token)
    torch.testing.assert_close(log_prob.exp().sum(1), torch.ones(5, dtype=torch.double), rtol=0, atol=1e-12)
    # forward's NLL of every possible target is -log p of that target
    targets = torch.arange(n_token).repeat(5)
    nll = crit(hidden.repeat_interleave(n_token, 0), targets)
    torch.testing.assert_close(nll, -log_prob.reshape(-1), rtol=1e-12, atol=1e-12)


def test_adaptive_softmax_matches_two_level_softmax() -> None:
    """p(t) = softmax(head)[t] in the shortlist, softmax(head)[cluster] · softmax(tail)[t] in a tail."""
    torch.manual_seed(3)
    n_token, d, cutoffs = 40, 8, [10, 25]
    crit = AdaptiveLogSoftmax(n_token, d, d, cutoffs).double()
    for p in crit.parameters():
        nn.init.normal_(p, 0.0, 0.5)
    h = torch.randn(3, d, dtype=torch.double)
    weight, bias = crit.out_weights[0], crit.out_biases[0]
    head = torch.softmax(
        torch.cat([h @ weight[:10].T + bias[:10], h @ crit.cluster_weight.T + crit.cluster_bias], 1), 1
    )
    tails = [torch.softmax(h @ weight[lo:hi].T + bias[lo:hi], 1) for lo, hi in [(10, 25), (25, 40)]]
    prob = torch.cat([head[:, :10], head[:, 10:11] * tails[0], head[:, 11:12] * tails[1]], 1)
    torch.testing.assert_close(crit.log_prob(h).exp(), prob, rtol=1e-12, atol=1e-12)


def test_weights_are_tied_and_only_linear_layers_are_structured() -> None:
    model = tiny_model(n_layer=3)
    assert model.crit.out_weights[0] is model.word_emb.emb_layers[0].weight
    names = {name for name, _ in structured_parameters(model)}
    expected = {
        f"layers.{i}.{m}.weight"
        for i in range(3)
        for m in ("attn.qkv_net", "attn.r_net", "attn.o_net", "ff.core.0", "ff.core.3")
    }
    assert names == expected
    groups = param_groups(model, lam=1e-3)
    unregularized = {id(p) for g in groups if g["lam"] == 0.0 for p in g["params"]}
    for p in [*model.word_emb.parameters(), *model.crit.parameters(), model.r_w_bias, model.r_r_bias]:
        assert id(p) in unregularized


@pytest.mark.parametrize("div_val", [1, 2])
def test_projection_tying_follows_the_recipe(div_val: int) -> None:
    """Tail clusters share the embedding's projections; the head's projection is its own."""
    model = tiny_model(d_embed=32, div_val=div_val)
    emb, crit = model.word_emb.emb_projs, model.crit.out_projs
    assert len(crit) == 3 and all(crit[0] is not p for p in emb)
    assert crit[1] is emb[0 if div_val == 1 else 1] and crit[2] is emb[0 if div_val == 1 else 2]


def test_base_configuration_has_the_authors_size() -> None:
    """NVIDIA's WikiText-103 base, the authors' model: 16 layers, d 512, 8×64 heads, d_inner 2048, the tied
    267,735-word adaptive softmax without projections (div_val 1): 192M parameters, as the authors report."""
    vocab, d, hd, d_inner, n_layer = 267_735, 512, 512, 2048, 16
    with torch.device("meta"):
        model = TransformerXL(vocab)
    per_layer = 3 * hd * d + hd * d + hd * d + 2 * 2 * d + (d * d_inner + d_inner) + (d_inner * d + d)
    expected = vocab * d + vocab + 3 * d + 3 + n_layer * per_layer + 2 * hd
    assert sum(p.numel() for p in model.parameters()) == expected
    assert round(expected / 1e6) == 192
    assert not len(model.crit.out_projs) and not len(model.word_emb.emb_projs)


def test_bad_cutoffs_are_rejected() -> None:
    with pytest.raises(ValueError, match="cutoffs"):
        TransformerXL(100, n_layer=1, d_model=8, n_head=1, d_head=8, d_inner=8, cutoffs=[50, 100])


def test_training_reduces_loss_on_a_repeating_sequence() -> None:
    torch.manual_seed(4)
    model = tiny_model().float().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.arange(8).repeat(4)[:, None] % 97
    losses = []
    for _ in range(30):
        nll, _ = model(data[:-1], data[1:])
        loss = nll.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
