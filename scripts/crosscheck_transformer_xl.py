"""Cross-check ramda's TransformerXL against Hugging Face's TransfoXL, a port of the original code that
transformers 4.35 still ships (removed since). Not a test: it needs that old release, e.g.

    python -m venv --system-site-packages /tmp/hfvenv && /tmp/hfvenv/bin/pip install transformers==4.35.2
    /tmp/hfvenv/bin/python scripts/crosscheck_transformer_xl.py

Copies random weights into both models and compares hidden states, memories and the adaptive softmax's
log-probabilities over three consecutive segments, for several configurations: small ones exercising the
options, and the authors' dimensions (NVIDIA's WikiText-103 base: d_model 512, 8 heads of 64, d_inner 2048,
memory 192, div_val 1, tail projections tied) with 2 of the 16 layers and a 2,000-word vocabulary. Then prints
both implementations' parameter counts of the full model (16 layers, 267,735 words) beside the authors' 192 M.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda.models.transformer_xl import TransformerXL

SMALL = {
    "V": 500,
    "L": 3,
    "D": 24,
    "H": 3,
    "DH": 8,
    "DI": 40,
    "MEM": 7,
    "cut": [60, 200],
    "std": 0.3,
    "T": 10,
}
BASE = {"V": 2000, "L": 2, "D": 512, "H": 8, "DH": 64, "DI": 2048, "MEM": 192, "cut": [200, 400, 1000]}
BASE |= {"std": 0.03, "T": 96}


def hf_config(vocab_size: int, **settings: object) -> TransfoXLConfig:
    """HF's configuration of ``TransformerXL(vocab_size, **settings)``: the same keywords, dropout off, the
    original's shared relative-position biases, adaptive softmax with every projection but the first tied."""
    return TransfoXLConfig(
        vocab_size=vocab_size,
        **settings,
        dropout=0.0,
        dropatt=0.0,
        untie_r=False,
        adaptive=True,
        proj_share_all_but_first=True,
    )


def check(div_val: int, d_embed: int, same_length: bool, clamp_len: int, dims: dict = SMALL) -> None:
    torch.manual_seed(0)
    V, L, D, H, DH, DI, MEM, cut = (dims[k] for k in ("V", "L", "D", "H", "DH", "DI", "MEM", "cut"))
    settings = dict(
        n_layer=L, d_model=D, n_head=H, d_head=DH, d_inner=DI, mem_len=MEM, cutoffs=cut, div_val=div_val,
        d_embed=d_embed, same_length=same_length, clamp_len=clamp_len,
    )  # fmt: skip
    mine = TransformerXL(V, dropout=0.0, **settings).eval()
    with torch.no_grad():
        for p in mine.parameters():
            p.normal_(0, dims["std"])
    hf = TransfoXLLMHeadModel(hf_config(V, **settings)).eval()
    sd, ms = hf.state_dict(), mine.state_dict()
    new = {"transformer.r_w_bias": ms["r_w_bias"], "transformer.r_r_bias": ms["r_r_bias"]}
    for k, v in ms.items():
        if k.startswith("word_emb."):
            new["transformer." + k] = v
        elif k.startswith("crit.out_weights."):
            new[k.replace("out_weights.", "out_layers.") + ".weight"] = v
        elif k.startswith("crit.out_biases."):
            new[k.replace("out_biases.", "out_layers.") + ".bias"] = v
        elif k.startswith("crit."):
            new[k] = v
        elif k.startswith("layers."):
            hk = "transformer." + k.replace(".attn.", ".dec_attn.").replace(
                ".ff.core.", ".pos_ff.CoreNet."
            ).replace(".ff.layer_norm", ".pos_ff.layer_norm")
            new[hk] = v
    for i in range(L):
        new[f"transformer.layers.{i}.dec_attn.r_w_bias"] = ms["r_w_bias"]
        new[f"transformer.layers.{i}.dec_attn.r_r_bias"] = ms["r_r_bias"]
    assert set(new) <= set(sd), set(new) - set(sd)
    assert set(sd) - set(new) <= {"transformer.pos_emb.inv_freq"}, set(sd) - set(new)
    hf.load_state_dict({**sd, **new}, strict=True)
    T = dims["T"]
    x = torch.randint(0, V, (3 * T, 2))
    with torch.no_grad():
        m = None
        hm = [
            torch.zeros(0, 2, D) for _ in range(L)
        ]  # the original starts from an empty memory; HF from zeros
        worst = 0.0
        for s in range(3):
            seg = x[T * s : T * s + T]
            h, m = mine.hidden_states(seg, m)
            o = hf.transformer(input_ids=seg.t(), mems=hm)
            hm = o.mems
            worst = max(worst, (o.last_hidden_state.transpose(0, 1) - h).abs().max().item())
            worst = max(worst, max((a - b).abs().max().item() for a, b in zip(m, hm)))
            flat = h.reshape(-1, D)
            worst = max(worst, (hf.crit(flat) - mine.crit.log_prob(flat)).abs().max().item())
    n_mine = sum(p.numel() for p in mine.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    print(
        f"d_model={D} n_layer={L} div_val={div_val} d_embed={d_embed} same_length={same_length} "
        f"clamp_len={clamp_len}: "
        f"max |difference| {worst:.2e} (hidden states, memories, log-probs over 3 segments); params {n_mine} vs {n_hf}"
    )


def full_size() -> None:
    """Parameter counts of the full model, both built on the meta device (no memory)."""
    base = dict(
        n_layer=16, d_model=512, n_head=8, d_head=64, d_inner=2048, mem_len=192, cutoffs=[19997, 39997, 199997],
        div_val=1, d_embed=512, same_length=False, clamp_len=-1,
    )  # fmt: skip
    with torch.device("meta"):
        mine = TransformerXL(267_735, **base)
        hf = TransfoXLLMHeadModel(hf_config(267_735, **base))
    n_mine = sum(p.numel() for p in mine.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    print(
        f"full base model: {n_mine:,} parameters here, {n_hf:,} in HF's TransfoXL; the authors report 192 M"
    )


if __name__ == "__main__":
    for args in [(1, 24, False, -1), (1, 16, False, -1), (2, 32, False, -1), (1, 24, True, 3)]:
        check(*args)
    check(1, 512, False, -1, BASE)
    full_size()
