"""Transformer-XL (Dai et al., 2019) for word-level language modeling, written for this project.

The network of the original WikiText-103 recipe: a tied adaptive input embedding, ``n_layer`` post-norm
decoder layers with relative positional attention and segment-level recurrence, and a tied adaptive softmax.

Relative attention of query ``i`` (absolute position ``m + i`` after ``m`` memory states) on key ``j``:

    score(i, j) = [(q_i + u)·k_j + (q_i + v)·(W_r R_{m+i-j})] / √d_head,   j ≤ m + i

with ``R_d`` the sinusoid of distance ``d`` and ``u``, ``v`` learned biases shared by all layers. The memory
of layer ``l`` is the last ``mem_len`` inputs of layer ``l`` from the previous segments, detached.

Structure: every ``nn.Linear`` here is a regularised weight (input-wise groups): the fused q/k/v projection,
the relative-position projection ``r_net``, the attention output ``o_net`` and both feed-forward weights. The
embedding and the adaptive softmax hold plain parameters (no ``nn.Linear``) and are marked
``ramda_unregularized``, so the structure code leaves them unregularised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Mems = list[Tensor] | None


def _wide(x: Tensor) -> Tensor:
    """``x`` in float32 when it is a 16-bit float (softmax and log-softmax run at least in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def rel_shift(x: Tensor) -> Tensor:
    """Re-index scores ``x[..., i, r]`` computed against the distances ``klen-1-r`` (r = 0..klen-1) so that
    ``out[..., i, j] = x[..., i, j + qlen - 1 - i]``, the score at distance ``(klen - qlen + i) - j``.
    Entries with ``j > klen - qlen + i`` (future keys) are garbage and must be masked."""
    *lead, qlen, klen = x.shape
    padded = F.pad(x, (1, 0)).reshape(*lead, klen + 1, qlen)
    return padded[..., 1:, :].reshape(*lead, qlen, klen)


def sinusoid(pos: Tensor, d_model: int) -> Tensor:
    """``[len(pos), d_model]`` embedding ``[sin(p ω_k), cos(p ω_k)]`` with ``ω_k = 10000^(-2k/d_model)``."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d_model, 2.0, device=pos.device) / d_model))
    angles = torch.outer(pos.float(), inv_freq)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class AdaptiveEmbedding(nn.Module):
    """Token embedding with frequency clusters ``[0, c_1), [c_1, c_2), …``: cluster ``i`` has width
    ``d_embed // div_val**i`` and is projected to ``d_proj``; the result is scaled by √d_proj. With
    ``div_val == 1`` it is one table (projected only when ``d_embed != d_proj``)."""

    ramda_unregularized = True  # an embedding: never structured (see ramda.structure)

    def __init__(self, n_token: int, d_embed: int, d_proj: int, cutoffs: Sequence[int], div_val: int = 1):
        super().__init__()
        self.n_token, self.d_embed, self.d_proj, self.div_val = n_token, d_embed, d_proj, div_val
        self.cutoff_ends = [0, *cutoffs, n_token]
        self.scale = d_proj**0.5
        self.emb_layers = nn.ModuleList()
        self.emb_projs = nn.ParameterList()
        if div_val == 1:
            self.emb_layers.append(nn.Embedding(n_token, d_embed))
            if d_proj != d_embed:
                self.emb_projs.append(nn.Parameter(torch.empty(d_proj, d_embed)))
        else:
            for i, (lo, hi) in enumerate(zip(self.cutoff_ends[:-1], self.cutoff_ends[1:])):
                d_emb_i = d_embed // div_val**i
                self.emb_layers.append(nn.Embedding(hi - lo, d_emb_i))
                self.emb_projs.append(nn.Parameter(torch.empty(d_proj, d_emb_i)))

    def forward(self, tokens: Tensor) -> Tensor:
        if self.div_val == 1:
            emb = self.emb_layers[0](tokens)
            if len(self.emb_projs):
                emb = F.linear(emb, self.emb_projs[0])
            return emb * self.scale
        flat = tokens.reshape(-1)
        out = torch.zeros(flat.numel(), self.d_proj, dtype=self.emb_projs[0].dtype, device=flat.device)
        for i, (lo, hi) in enumerate(zip(self.cutoff_ends[:-1], self.cutoff_ends[1:])):
            idx = ((flat >= lo) & (flat < hi)).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            emb_i = F.linear(self.emb_layers[i](flat.index_select(0, idx) - lo), self.emb_projs[i])
            out.index_copy_(0, idx, emb_i.to(out.dtype))
        return out.view(*tokens.shape, self.d_proj) * self.scale


class AdaptiveLogSoftmax(nn.Module):
    """Adaptive softmax (Grave et al., 2017) over a frequency-sorted vocabulary.

    The head scores the shortlist ``[0, c_1)`` plus one logit per tail cluster; a token ``t`` of cluster
    ``i ≥ 1`` has ``log p(t) = log p_head(cluster i) + log p_i(t)``. Cluster ``i`` projects the hidden state
    to its width before its logits when ``d_proj`` differs from it. Output weights and the tail clusters'
    projections can be shared with an :class:`AdaptiveEmbedding` (``tie_to``, ``tie_projs``), as in the
    original WikiText-103 recipe.
    """

    ramda_unregularized = True  # an output head: never structured (see ramda.structure)

    def __init__(
        self,
        n_token: int,
        d_embed: int,
        d_proj: int,
        cutoffs: Sequence[int],
        div_val: int = 1,
        tie_to: AdaptiveEmbedding | None = None,
        tie_projs: Sequence[bool] = (),
    ):
        super().__init__()
        self.n_token, self.d_embed, self.d_proj, self.div_val = n_token, d_embed, d_proj, div_val
        self.cutoff_ends = [0, *cutoffs, n_token]
        self.shortlist = self.cutoff_ends[1]
        self.n_clusters = len(cutoffs)
        if self.n_clusters:
            self.cluster_weight = nn.Parameter(torch.empty(self.n_clusters, d_embed))
            self.cluster_bias = nn.Parameter(torch.empty(self.n_clusters))
        spans = list(zip(self.cutoff_ends[:-1], self.cutoff_ends[1:]))
        self.out_weights = nn.ParameterList()
        self.out_biases = nn.ParameterList()
        self.out_projs = (
            nn.ParameterList()
        )  # one per cluster, or none when div_val == 1 and d_proj == d_embed
        if div_val == 1:
            self.out_weights.append(nn.Parameter(torch.empty(n_token, d_embed)))
            self.out_biases.append(nn.Parameter(torch.empty(n_token)))
            if d_proj != d_embed:
                for _ in spans:
                    self.out_projs.append(nn.Parameter(torch.empty(d_proj, d_embed)))
        else:
            for i, (lo, hi) in enumerate(spans):
                d_emb_i = d_embed // div_val**i
                self.out_weights.append(nn.Parameter(torch.empty(hi - lo, d_emb_i)))
                self.out_biases.append(nn.Parameter(torch.empty(hi - lo)))
                self.out_projs.append(nn.Parameter(torch.empty(d_proj, d_emb_i)))
        if tie_to is not None:
            for i, layer in enumerate(tie_to.emb_layers):
                self.out_weights[i] = layer.weight
            if len(tie_to.emb_projs):
                for i in range(len(self.out_projs)):
                    if i < len(tie_projs) and tie_projs[i]:
                        self.out_projs[i] = tie_to.emb_projs[0 if div_val == 1 else i]

    def _cluster(self, i: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """Weight, bias and input projection of cluster ``i`` (0 = shortlist, without the cluster logits)."""
        proj = self.out_projs[i] if len(self.out_projs) else None
        if self.div_val == 1:
            lo, hi = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            return self.out_weights[0][lo:hi], self.out_biases[0][lo:hi], proj
        return self.out_weights[i], self.out_biases[i], proj

    @staticmethod
    def _logits(hidden: Tensor, weight: Tensor, bias: Tensor, proj: Tensor | None) -> Tensor:
        if proj is not None:
            hidden = F.linear(hidden, proj.t())
        return F.linear(hidden, weight, bias)

    def _head_log_prob(self, hidden: Tensor) -> Tensor:
        weight, bias, proj = self._cluster(0)
        if self.n_clusters:
            weight = torch.cat([weight, self.cluster_weight], 0)
            bias = torch.cat([bias, self.cluster_bias], 0)
        return F.log_softmax(_wide(self._logits(hidden, weight, bias, proj)), dim=-1)

    def forward(self, hidden: Tensor, target: Tensor) -> Tensor:
        """Per-token negative log-likelihood ``-log p(target | hidden)`` (at least float32), for ``hidden [N, d_proj]``
        and ``target [N]``."""
        head_lp = self._head_log_prob(hidden)
        if not self.n_clusters:
            return -head_lp.gather(1, target[:, None]).squeeze(1)
        nll = torch.zeros(target.shape, dtype=head_lp.dtype, device=hidden.device)
        for i in range(self.n_clusters + 1):
            lo, hi = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            idx = ((target >= lo) & (target < hi)).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            target_i = target.index_select(0, idx) - lo
            head_i = head_lp.index_select(0, idx)
            if i == 0:
                lp = head_i.gather(1, target_i[:, None]).squeeze(1)
            else:
                tail = self._logits(hidden.index_select(0, idx), *self._cluster(i))
                tail_lp = F.log_softmax(_wide(tail), dim=-1)
                lp = head_i[:, self.shortlist + i - 1] + tail_lp.gather(1, target_i[:, None]).squeeze(1)
            nll.index_copy_(0, idx, -lp)
        return nll

    def log_prob(self, hidden: Tensor) -> Tensor:
        """Log-probabilities of every token, ``[N, n_token]`` (at least float32)."""
        head_lp = self._head_log_prob(hidden)
        parts = [head_lp[:, : self.shortlist]]
        for i in range(1, self.n_clusters + 1):
            tail_lp = F.log_softmax(_wide(self._logits(hidden, *self._cluster(i))), dim=-1)
            parts.append(head_lp[:, self.shortlist + i - 1, None] + tail_lp)
        return torch.cat(parts, dim=1)


class RelPartialLearnableAttention(nn.Module):
    """Multi-head attention with relative positions and learned global biases ``u`` (content) and ``v``
    (position), over ``[memory; input]`` with a causal mask; post-norm residual by default."""

    def __init__(
        self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float, pre_lnorm: bool = False
    ):
        super().__init__()
        self.n_head, self.d_head, self.pre_lnorm = n_head, d_head, pre_lnorm
        self.qkv_net = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.o_net = nn.Linear(n_head * d_head, d_model, bias=False)
        self.layer_norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.dropatt = nn.Dropout(dropatt)
        self.scale = 1.0 / math.sqrt(d_head)

    def forward(self, w: Tensor, r: Tensor, u: Tensor, v: Tensor, mask: Tensor, mem: Tensor | None) -> Tensor:
        """``w [qlen, B, d]``, ``r [klen, d]`` (distances klen-1 … 0), ``mask [qlen, klen]`` (True = hidden),
        ``mem [mlen, B, d]`` or None; returns ``[qlen, B, d]``."""
        qlen, bsz = w.shape[:2]
        cat = w if mem is None or mem.numel() == 0 else torch.cat([mem.to(w.dtype), w], 0)
        klen = cat.size(0)
        if self.pre_lnorm:
            cat = self.layer_norm(cat)
        hd = self.n_head * self.d_head
        weight = self.qkv_net.weight
        # Queries only for the current segment; keys and values for memory + segment (same math as one
        # fused projection of [mem; w] followed by dropping the memory queries).
        q = F.linear(cat[-qlen:], weight[:hd]).view(qlen, bsz, self.n_head, self.d_head)
        k, val = F.linear(cat, weight[hd:]).view(klen, bsz, 2, self.n_head, self.d_head).unbind(2)
        rk = self.r_net(r).view(klen, self.n_head, self.d_head)
        content = torch.einsum("ibnd,jbnd->bnij", q + u, k)
        position = rel_shift(torch.einsum("ibnd,jnd->bnij", q + v, rk))
        score = (content + position) * self.scale
        score = _wide(score).masked_fill(mask, float("-inf"))
        prob = self.dropatt(torch.softmax(score, dim=-1).to(val.dtype))
        out = torch.einsum("bnij,jbnd->ibnd", prob, val).reshape(qlen, bsz, hd)
        out = self.drop(self.o_net(out))
        return w + out if self.pre_lnorm else self.layer_norm(w + out)


class PositionwiseFF(nn.Module):
    """``LayerNorm(x + Dropout(W_2 Dropout(ReLU(W_1 x + b_1)) + b_2))`` (post-norm by default)."""

    def __init__(self, d_model: int, d_inner: int, dropout: float, pre_lnorm: bool = False):
        super().__init__()
        self.pre_lnorm = pre_lnorm
        self.core = nn.Sequential(
            nn.Linear(d_model, d_inner),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(d_inner, d_model),
            nn.Dropout(dropout),
        )
        self.layer_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        if self.pre_lnorm:
            return x + self.core(self.layer_norm(x))
        return self.layer_norm(x + self.core(x))


class DecoderLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_head: int,
        d_head: int,
        d_inner: int,
        dropout: float,
        dropatt: float,
        pre_lnorm: bool,
    ):
        super().__init__()
        self.attn = RelPartialLearnableAttention(d_model, n_head, d_head, dropout, dropatt, pre_lnorm)
        self.ff = PositionwiseFF(d_model, d_inner, dropout, pre_lnorm)

    def forward(self, x: Tensor, r: Tensor, u: Tensor, v: Tensor, mask: Tensor, mem: Tensor | None) -> Tensor:
        return self.ff(self.attn(x, r, u, v, mask, mem))


class TransformerXL(nn.Module):
    """Transformer-XL language model; defaults are NVIDIA's WikiText-103 base configuration, the authors'
    (192M parameters with the 267,735-word vocabulary). ``tie_projs[i]``: cluster i of the softmax shares the
    embedding's projection (only with projections: ``div_val > 1`` or ``d_embed != d_model``); None: the
    recipe's ``[False, True, …]`` (the tail clusters tied, the head not).

    ``forward(data, target, mems)`` takes token ids ``[qlen, B]`` and returns the per-token negative
    log-likelihood ``[qlen, B]`` and the new memory: ``n_layer + 1`` detached tensors ``[≤ mem_len, B, d]``
    (the inputs of every layer and the last output), or None when ``mem_len == 0``.
    """

    def __init__(
        self,
        n_token: int,
        n_layer: int = 16,
        d_model: int = 512,
        n_head: int = 8,
        d_head: int = 64,
        d_inner: int = 2048,
        dropout: float = 0.1,
        dropatt: float = 0.0,
        mem_len: int = 192,
        cutoffs: Sequence[int] = (19997, 39997, 199997),
        div_val: int = 1,
        d_embed: int | None = None,
        tie_weight: bool = True,
        tie_projs: Sequence[bool] | None = None,
        clamp_len: int = -1,
        same_length: bool = False,
        pre_lnorm: bool = False,
    ):
        super().__init__()
        cutoffs = list(cutoffs)
        if any(b <= a for a, b in zip([0, *cutoffs], [*cutoffs, n_token])):
            raise ValueError(
                f"cutoffs={cutoffs} must be strictly increasing, positive and below the vocabulary size "
                f"{n_token}"
            )
        if div_val < 1:
            raise ValueError(f"div_val={div_val} must be >= 1")
        if mem_len < 0:
            raise ValueError(f"mem_len={mem_len} must be >= 0")
        if tie_projs is None:
            tie_projs = [False] + [True] * len(cutoffs)
        if len(tie_projs) != len(cutoffs) + 1:
            raise ValueError(f"tie_projs={list(tie_projs)} needs one entry per cluster ({len(cutoffs) + 1})")
        d_embed = d_embed or d_model
        self.n_token, self.n_layer, self.d_model = n_token, n_layer, d_model
        self.mem_len, self.clamp_len, self.same_length = mem_len, clamp_len, same_length
        self.word_emb = AdaptiveEmbedding(n_token, d_embed, d_model, cutoffs, div_val)
        self.drop = nn.Dropout(dropout)
        self.r_w_bias = nn.Parameter(torch.empty(n_head, d_head))
        self.r_r_bias = nn.Parameter(torch.empty(n_head, d_head))
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_head, d_head, d_inner, dropout, dropatt, pre_lnorm)
            for _ in range(n_layer)
        )
        self.crit = AdaptiveLogSoftmax(
            n_token,
            d_embed,
            d_model,
            cutoffs,
            div_val,
            tie_to=self.word_emb if tie_weight else None,
            tie_projs=list(tie_projs),
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02, proj_std: float = 0.01) -> None:
        """The recipe's initialisation: weights, embeddings and u/v ~ N(0, std²); projections
        ~ N(0, proj_std²); biases 0; LayerNorm gains ~ N(1, std²)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.normal_(module.weight, 1.0, std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
        for proj in [*self.word_emb.emb_projs, *self.crit.out_projs]:
            nn.init.normal_(proj, 0.0, proj_std)
        for weight in self.crit.out_weights:
            if not any(weight is layer.weight for layer in self.word_emb.emb_layers):
                nn.init.normal_(weight, 0.0, std)
        for bias in self.crit.out_biases:
            nn.init.zeros_(bias)
        if self.crit.n_clusters:
            nn.init.normal_(self.crit.cluster_weight, 0.0, std)
            nn.init.zeros_(self.crit.cluster_bias)
        nn.init.normal_(self.r_w_bias, 0.0, std)
        nn.init.normal_(self.r_r_bias, 0.0, std)

    def attention_mask(self, qlen: int, mlen: int, device: torch.device, same_length: bool) -> Tensor:
        """``[qlen, mlen + qlen]`` boolean mask, True where query ``i`` may not see key ``j``: the future
        (``j > mlen + i``) and, with ``same_length``, keys further back than ``mem_len`` + ``i`` positions."""
        klen = mlen + qlen
        ones = torch.ones(qlen, klen, dtype=torch.bool, device=device)
        mask = torch.triu(ones, diagonal=1 + mlen)
        if same_length:
            mask_len = klen - self.mem_len
            shift = qlen - mask_len if mask_len > 0 else qlen
            mask = mask | torch.tril(ones, diagonal=-shift)
        return mask

    def hidden_states(
        self,
        data: Tensor,
        mems: Mems = None,
        mem_len: int | None = None,
        same_length: bool | None = None,
        clamp_len: int | None = None,
    ) -> tuple[Tensor, Mems]:
        """Last-layer states ``[qlen, B, d]`` for tokens ``data [qlen, B]`` and the updated memory."""
        mem_len = self.mem_len if mem_len is None else mem_len
        same_length = self.same_length if same_length is None else same_length
        clamp_len = self.clamp_len if clamp_len is None else clamp_len
        qlen = data.size(0)
        mlen = mems[0].size(0) if mems else 0
        klen = mlen + qlen
        mask = self.attention_mask(qlen, mlen, data.device, same_length)
        pos = torch.arange(klen - 1, -1, -1, device=data.device)
        if clamp_len > 0:
            pos = pos.clamp(max=clamp_len)
        core = self.drop(self.word_emb(data))
        r = self.drop(sinusoid(pos, self.d_model).to(core.dtype))
        hids = [core]
        for i, layer in enumerate(self.layers):
            core = layer(core, r, self.r_w_bias, self.r_r_bias, mask, mems[i] if mems else None)
            hids.append(core)
        return self.drop(core), self._update_mems(hids, mems, mem_len)

    @staticmethod
    def _update_mems(hids: list[Tensor], mems: Mems, mem_len: int) -> Mems:
        if mem_len == 0:
            return None
        with torch.no_grad():
            if not mems:
                return [h[-mem_len:].detach() for h in hids]
            return [torch.cat([m.to(h.dtype), h], 0)[-mem_len:].detach() for m, h in zip(mems, hids)]

    def forward(
        self,
        data: Tensor,
        target: Tensor,
        mems: Mems = None,
        mem_len: int | None = None,
        same_length: bool | None = None,
        clamp_len: int | None = None,
    ) -> tuple[Tensor, Mems]:
        hidden, new_mems = self.hidden_states(data, mems, mem_len, same_length, clamp_len)
        nll = self.crit(hidden.reshape(-1, hidden.size(-1)), target.reshape(-1))
        return nll.view_as(target), new_mems
