"""Multi-head attention: the project's ONE attention entry point (self- and cross-attention).

Vaswani et al. 2017, "Attention Is All You Need", §3.2: A = softmax(Q K^T / sqrt(d_k)) V, with h heads, each with
its own projections, concatenated and projected by W_o. All positions are computed at once as matrix products.

Three paths give the same outputs (tested):
- fast: ``torch.nn.functional.scaled_dot_product_attention`` (flash-style kernels on CPU and CUDA, O(L) memory);
- manual: the readable softmax(QK^T/sqrt(d))V, which also returns the attention weights (for attention maps);
- dropout (CPU training with attention dropout > 0): query chunks whose weights and dropout masks the backward pass
  recomputes (:func:`dropout_attention`), so that attention dropout never forces SDPA's quadratic-memory math path.

Mask convention (the whole project, written down once): boolean, ``True`` = "may attend", broadcastable to
``[B, H, Lq, Lk]`` -- the same convention as SDPA's boolean ``attn_mask``. Helpers below build key-padding and causal
masks. A query row with no key it may attend to (e.g. an all-padding sequence) returns zeros instead of NaN.

Incremental decoding: a :class:`KVCache` per attention *call site and executed step* (see :class:`DecodingCache`),
so that weight-shared layers (Universal Transformer) cache each application separately.

Shape legend: B batch, H heads, Lq / Lk query / key length, D model width, Dh = D / H head width.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ut.nn.dropout import dropout as apply_dropout
from ut.nn.dropout import keep_mask, realised_drop_probability

# ----------------------------------------------------------------------------------------------------------------
# masks (True = may attend)


def key_padding_mask(token_mask: Tensor) -> Tensor:
    """``Bool[B, Lk]`` (True on real tokens) -> attention mask ``Bool[B, 1, 1, Lk]``."""
    return token_mask[:, None, None, :].bool()


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> Tensor:
    """``Bool[Lq, Lk]``: query i (the i-th of the LAST Lq positions of Lk) may attend to keys j <= its position.

    With a KV cache, the Lq new queries sit at absolute positions Lk-Lq .. Lk-1.
    """
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of the given (broadcastable) masks; None entries are ignored; None when all are None."""
    out = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else out & m
    return out


def check_mask_shape(mask: Tensor | None, batch: int, heads: int, q_len: int, k_len: int) -> None:
    """Raise unless ``mask`` is None or broadcastable to ``[B, H, Lq, Lk]`` (shapes only: no device read).

    Runs before :func:`elide_mask`, so that a mask of the wrong length is an error even when it allows everything.
    """
    if mask is None:
        return
    want = (batch, heads, q_len, k_len)
    if mask.dim() > 4 or any(m not in (1, w) for m, w in zip(reversed(mask.shape), reversed(want))):
        raise ValueError(f"attention mask of shape {tuple(mask.shape)} is not broadcastable to [B, H, Lq, Lk] = "
                         f"{list(want)} (key-padding masks: Bool[B, 1, 1, Lk], see key_padding_mask)")


def _is_cpu_and_all_true(mask: Tensor) -> bool:
    # CPU only: on an accelerator, reading the answer back would stall the queue for a small gain; not under
    # torch.compile either (a data-dependent branch would break the graph)
    if torch.compiler.is_compiling():
        return False
    return mask.device.type == "cpu" and bool(mask.all())


def elide_mask(mask: Tensor | None) -> Tensor | None:
    """None for a CPU mask that allows everything (e.g. a key-padding mask of a batch without padding), else mask.

    The same result either way; without a mask SDPA skips reading mask blocks, and no row can be empty (so the
    NaN-guard passes are skipped too). HF models drop all-ones padding masks the same way.
    """
    return None if mask is not None and _is_cpu_and_all_true(mask) else mask


# ----------------------------------------------------------------------------------------------------------------
# caches


class KVCache:
    """Keys and values of one attention call site at one executed step, grown one chunk at a time.

    ``static=True`` marks a cross-attention cache: keys/values are computed once from the encoder memory.
    """

    def __init__(self, static: bool = False):
        self.static = static
        self.k: Tensor | None = None  # (B, H, T, Dh)
        self.v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reorder_(self, index: Tensor) -> None:
        """Select / reorder batch rows (beam search)."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class DecodingCache:
    """All per-site caches of one decoding run, keyed by (site, executed step).

    Keys are anything hashable, e.g. ``("dec", layer_index, "self")`` for a Transformer or
    ``("dec", step, "self")`` for a Universal Transformer (one shared layer, one cache per executed step: a cache
    keyed by module would mix the steps). Values are any object with ``reorder_(index)`` (KVCache, the convolution
    caches of the separable-conv transition, the long-attention caches).
    """

    def __init__(self):
        self.sites: dict[Hashable, object] = {}

    def get(self, key: Hashable, factory=KVCache):
        if key not in self.sites:
            self.sites[key] = factory()
        return self.sites[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self.sites

    def reorder_(self, index: Tensor) -> None:
        for site in self.sites.values():
            site.reorder_(index)


@dataclass
class AttentionOutput:
    out: Tensor  # (B, Lq, D)
    weights: Tensor | None  # (B, H, Lq, Lk) when asked for, else None


# ----------------------------------------------------------------------------------------------------------------
# the module


def manual_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0, training: bool = False
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(Dh)) v with a boolean mask; returns (out, weights). q,k,v: (B, H, L, Dh)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(q.dtype)
    if mask is not None:  # rows with no allowed key: zeros instead of NaN
        weights = weights.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    attn = apply_dropout(weights, dropout_p, training) if dropout_p > 0 else weights
    return torch.matmul(attn, v), weights


# most score elements (B * H * query-chunk * Lk) one chunk of :func:`dropout_attention` materialises: 1M floats = 4 MB
DROPOUT_ATTENTION_MAX_SCORES = 1 << 20


class _ChunkPlan:
    """Query chunks of a (possibly causal, possibly masked) attention, and each chunk's keys and mask."""

    def __init__(self, q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, max_scores: int):
        b, h, self.lq, _ = q.shape
        self.lk, self.mask, self.causal, self.device = k.shape[2], mask, causal, q.device
        self.size = max(1, max_scores // max(1, b * h * self.lk))

    def __iter__(self):
        """Yields (index, query slice, keys visible to the chunk, boolean mask or None, causal block or None).

        Without a user mask, the causal constraint only bites in the chunk's last (rows x rows) block of keys:
        it comes as that block's lower-triangular mask alone, so the other keys are never masked."""
        lq, lk = self.lq, self.lk
        for index, start in enumerate(range(0, lq, self.size)):
            stop = min(lq, start + self.size)
            n_keys = min(lk, stop + lk - lq) if self.causal else lk  # causal: later keys are masked for the chunk
            chunk_mask, causal_block = None, None
            if self.mask is not None:
                chunk_mask = self.mask[..., start:stop, :] if self.mask.shape[-2] > 1 else self.mask
                chunk_mask = chunk_mask[..., :n_keys] if chunk_mask.shape[-1] > 1 else chunk_mask
                if self.causal:
                    rows = torch.arange(start + lk - lq, stop + lk - lq, device=self.device)[:, None]
                    chunk_mask = combine_masks(chunk_mask, torch.arange(n_keys, device=self.device)[None, :] <= rows)
            elif self.causal:
                causal_block = causal_mask(stop - start, device=self.device)
            yield index, slice(start, stop), n_keys, chunk_mask, causal_block


def _chunk_weights(q_scaled: Tensor, k: Tensor, mask: Tensor | None, causal_block: Tensor | None) -> Tensor:
    """softmax(q k^T) over the allowed keys (q already scaled by 1/sqrt(Dh)); zeros on rows with no allowed key;
    float32 softmax for 16-bit inputs."""
    scores = torch.matmul(q_scaled, k.transpose(-2, -1))  # (B, H, c, n)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    if causal_block is not None:
        c = causal_block.shape[0]
        scores[..., -c:].masked_fill_(~causal_block, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32 if scores.dtype in (torch.float16, torch.bfloat16)
                            else None).to(q_scaled.dtype)
    if mask is not None:
        weights.masked_fill_(~mask.any(-1, keepdim=True), 0.0)
    return weights


def _drop_mask(shape, dropout_p: float, device, generator) -> Tensor:
    return ~keep_mask(shape, dropout_p, device=device, generator=generator)


class _ChunkedDropoutAttention(torch.autograd.Function):
    """Flash-style attention with weight dropout at query-chunk granularity; backward recomputes each chunk.

    Nothing of size Lq x Lk is saved: the backward pass recomputes a chunk's weights from q, k and regenerates its
    dropout mask from a per-chunk generator seeded (in forward) from ONE draw of the global generator, so results
    are reproducible under ``torch.manual_seed``. Softmax backward as in FlashAttention-2:
    dS = P * (dP - D) with D = rowsum(dO * O) (equal to rowsum(dP * P), but over Dh instead of Lk columns).
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, dropout_p, max_scores):
        plan = _ChunkPlan(q, k, mask, causal, max_scores)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        scale = 1.0 / (1.0 - realised_drop_probability(dropout_p))
        q_scaled = q * (1.0 / math.sqrt(q.shape[-1]))
        out = q.new_empty(q.shape[:3] + (v.shape[-1],))
        gen = torch.Generator(device=q.device)
        for index, rows, n_keys, chunk_mask, causal_block in plan:
            weights = _chunk_weights(q_scaled[:, :, rows], k[:, :, :n_keys], chunk_mask, causal_block)
            gen.manual_seed(seed + index)
            weights.masked_fill_(_drop_mask(weights.shape, dropout_p, q.device, gen), 0.0)
            out[:, :, rows] = torch.matmul(weights, v[:, :, :n_keys]).mul_(scale)
        ctx.save_for_backward(q, k, v, out, mask if mask is not None else torch.empty(0))
        ctx.has_mask, ctx.causal, ctx.dropout_p, ctx.max_scores, ctx.seed = (
            mask is not None, causal, dropout_p, max_scores, seed)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, mask = ctx.saved_tensors
        mask = mask if ctx.has_mask else None
        plan = _ChunkPlan(q, k, mask, ctx.causal, ctx.max_scores)
        scale = 1.0 / (1.0 - realised_drop_probability(ctx.dropout_p))
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
        q_scaled = q * sm_scale
        grad_out = grad_out.contiguous()
        row_dot = (grad_out * out).sum(-1, keepdim=True)  # D = rowsum(dO * O) (B, H, Lq, 1)
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        gen = torch.Generator(device=q.device)
        for index, rows, n_keys, chunk_mask, causal_block in plan:
            q_c, k_c, v_c = q_scaled[:, :, rows], k[:, :, :n_keys], v[:, :, :n_keys]
            g_c = grad_out[:, :, rows] * scale
            weights = _chunk_weights(q_c, k_c, chunk_mask, causal_block)  # P (B, H, c, n)
            gen.manual_seed(ctx.seed + index)
            drop = _drop_mask(weights.shape, ctx.dropout_p, q.device, gen)
            grad_v[:, :, :n_keys] += torch.matmul(weights.masked_fill(drop, 0.0).transpose(-2, -1), g_c)
            grad_p = torch.matmul(g_c, v_c.transpose(-2, -1)).masked_fill_(drop, 0.0)  # dL/dP
            grad_s = grad_p.sub_(row_dot[:, :, rows]).mul_(weights)  # softmax backward
            grad_q[:, :, rows] = torch.matmul(grad_s, k_c).mul_(sm_scale)
            grad_k[:, :, :n_keys] += torch.matmul(grad_s.transpose(-2, -1), q_c)  # q_c carries sm_scale
        return grad_q, grad_k, grad_v, None, None, None, None


def dropout_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout_p: float,
    max_scores: int = DROPOUT_ATTENTION_MAX_SCORES,
) -> Tensor:
    """Exact attention with dropout on the weights in O(chunk x Lk) memory: the "dropout never forces the
    quadratic path" path (CPU).

    On CPU, SDPA with ``dropout_p > 0`` silently runs its math path, which materialises and keeps the whole
    (B, H, Lq, Lk) matrix for backward (20 GB at L = 11000; REFERENCE.md §4). Here queries are processed in chunks
    of at most ``max_scores`` score elements, and the backward pass recomputes each chunk's weights and dropout
    mask (flash-attention style) instead of storing them, so neither pass holds more than one chunk. Causal chunks
    read only the keys they may see (the masked upper blocks are skipped). With ``dropout_p = 0`` it equals
    :func:`manual_attention` with the same mask (tested, gradients too); masks come from
    :func:`ut.nn.dropout.keep_mask` (same distribution as ``F.dropout``).
    q, k, v: (B, H, L, Dh); mask: boolean, broadcastable to (B, H, Lq, Lk); causal: queries are the last Lq of Lk.
    """
    return _ChunkedDropoutAttention.apply(q, k, v, mask, causal, dropout_p, max_scores)


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention with an SDPA fast path and a manual path that returns weights.

    Args:
        d_model: model width D.
        n_heads: number of heads H (D must divide by H).
        dropout: dropout on the attention weights (Vaswani: 0.1 inside "residual dropout" only; t2t's
            ``attention_dropout``). Default 0. With dropout > 0 in training, attention runs
            :func:`dropout_attention` on CPU (query chunks recomputed in backward): memory stays linear in Lq
            instead of SDPA's quadratic math path (REFERENCE.md §4).
        bias: bias in the Q/K/V/O projections.
        kv_dim: width of the key/value input when it differs from D (cross-attention over another width).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, kv_dim: int | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        kv_dim = kv_dim or d_model
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.v_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        return rearrange(x, "b l (h d) -> b h l d", h=self.n_heads)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``x`` (B, L, kv_dim) -> two (B, H, L, Dh)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``x`` (B, Lq, D) to ``memory`` (cross-attention) or to ``x`` itself (self-attention).

        Args:
            mask: boolean, True = may attend, broadcastable to (B, H, Lq, Lk) where Lk counts cached keys too.
            causal: add the causal constraint (query i sees keys up to its own position; with a cache the queries
                are the last Lq positions).
            cache: a KVCache to read and extend (self-attention) or to fill once and then read (static,
                cross-attention).
            need_weights: use the manual path and return the weights (B, H, Lq, Lk).
        """
        q = self.split_heads(self.q_proj(x))  # (B, H, Lq, Dh)
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            k, v = self.project_kv(x if memory is None else memory)  # (B, H, Lk, Dh)
            if cache is not None:
                k, v = cache.append(k, v)
        lq, lk = q.shape[2], k.shape[2]
        dropout_p = self.dropout if self.training else 0.0
        check_mask_shape(mask, q.shape[0], self.n_heads, lq, lk)
        mask = elide_mask(mask)

        if dropout_p > 0 and not need_weights and q.device.type == "cpu":  # CUDA: SDPA has fused dropout
            out = dropout_attention(q, k, v, mask, causal and lq > 1, dropout_p)
            weights = None
        elif causal and mask is None and lq == lk and not need_weights:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            weights = None
        else:
            if causal and lq > 1:
                mask = combine_masks(mask, causal_mask(lq, lk, device=q.device))
            if need_weights:
                out, weights = manual_attention(q, k, v, mask, dropout_p, self.training)
            else:
                weights = None
                row_ok = None
                if mask is not None:
                    row_ok = mask.any(-1, keepdim=True)  # queries with at least one allowed key
                    if _is_cpu_and_all_true(row_ok):
                        row_ok = None  # no empty row: nothing to zero (saves a pass over the output)
                    else:
                        mask = mask | ~row_ok  # SDPA would give NaN on empty rows; zero them below instead
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
                if row_ok is not None:
                    out = out * row_ok.to(out.dtype)
        out = self.out_proj(rearrange(out, "b h l d -> b l (h d)"))
        return AttentionOutput(out, weights)
