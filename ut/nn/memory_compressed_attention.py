"""Causal memory-compressed self-attention of T-DMCA.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences", §4.2.2, and tensor2tensor
(``common_attention.multihead_self_attention_reduced``). :class:`MemoryCompressedAttention` has
:class:`~ut.nn.attention.MultiHeadAttention`'s Q/K/V/O projections (:class:`~ut.nn.attention.HeadProjections`: the
same parameter names) and its call signature ``forward(x, memory=None, *, mask, causal, cache, need_weights) ->
AttentionOutput``, so a decoder layer takes it in place of full attention; as a self-attention of a decoder, it
rejects ``memory`` and ``causal=False`` (ut/nn/long_attention_common.py). Its manual path runs through
:func:`ut.nn.attend.attend` (the mask, the empty-row guard, the softmax precision); its fast path is one grouped-query
SDPA call whose causal mask is top-left aligned over query groups (below).

Keys and values are shortened by a strided convolution, kernel = stride = ``compression`` (3 in the paper), so each
compressed key summarises one block of ``c`` consecutive tokens. A strided convolution with kernel == stride is a
linear map of each non-overlapping block ``[x_{bc}; ...; x_{bc+c-1}]`` (c*D values) to D values; it is implemented
as exactly that (a ``Linear(c*D, D)`` on the reshaped blocks, tested against ``F.conv1d``). Two orders:

- ``order="project_compress"`` (default; the paper: "after projecting the tokens into the query, key, and value
  embeddings, we reduce the number of keys and values by using a strided convolution"): one convolution for the
  keys and one for the values, applied to the projected K and V;
- ``order="compress_project"`` (t2t ``multihead_self_attention_reduced``): one convolution over the layer input,
  then the usual K and V projections of the compressed sequence.

Causality (our design; the paper only says the layer is masked): a compressed key mixes c tokens, so a query may see
it only once its block has ENDED -- otherwise it would read the future. A query at position i, in block g = i // c,
sees

- the compressed keys of the blocks b < g (every block that ended before i's own block began), and
- the raw (uncompressed) keys of its own block up to itself: positions g*c .. i (1 to c tokens).

So every earlier token is seen exactly once, far ones compressed, the nearest 0..c-1 exactly, and no query has an
empty row. t2t differs: it prepends the raw first token ``x_0`` as an always-visible key and shows a query the
blocks that ended before it, but no raw recent tokens (a query sees neither itself nor the rest of its block).

Fast path (``need_weights=False``): the two key sets share one softmax. The raw own-block part (at most c keys per
query) is computed directly: its output ``o_raw`` and its log-normaliser ``log Z_raw``. The compressed part runs in
one ``F.scaled_dot_product_attention`` call with ``is_causal=True`` by grouping queries by block: queries are laid
out as ``(B, H*c, G, Dh)`` (position-in-block r moves into the head axis; grouped-query attention shares each head's
compressed keys across its c query heads), and the compressed keys are preceded by one *sentinel* key, so that
top-left causal masking lets query group g see the sentinel plus blocks 0..g-1 -- exactly the rule above, with
SDPA's O(L) memory and its skipping of masked tiles. The sentinel has score ``log Z_raw`` (an extra query channel)
and value ``e_{Dh+1}`` (an extra value channel), so SDPA returns ``o_c = N_c / (Z_c + Z_raw)`` and, in the extra
channel, ``p = Z_raw / (Z_c + Z_raw)``: the exact joint softmax is ``o_c + p * o_raw`` (gradients flow through
``log Z_raw`` too). The manual path (``need_weights=True``) is the readable dense version over the keys
``[compressed blocks; raw tokens]`` with an explicit mask; the two agree, and equal a direct per-query float64
reference (tested).

Attention dropout: none (the sentinel trick needs exact softmax weights); ``dropout > 0`` is rejected.

Masks: only key-padding masks (broadcastable to ``[B, 1, 1, Lk]``, True = real token) are accepted -- the causal
structure is the module's own. Blocks are counted from index 0 of the given tensor, so with left padding a row's
block boundaries follow its padded layout. Padding tokens are zeroed before compression, and a compressed block with
no real token is not attended.

Incremental decoding: the module takes the :class:`~ut.nn.long_attention_common.LongAttentionCache` a decoder layer
builds through ``cache_factory``: ``cache.k`` = compressed keys of the finished blocks followed by the *layer input*
of the unfinished block (< c tokens, as heads), ``cache.v`` = compressed values. The unfinished block's raw keys and
values are recomputed from that input at each call (at most c - 1 tokens).

Shape legend: B batch, H heads, L length, n new positions, D width, Dh = D / H head width, c compression
(kernel = stride), G = ceil(L / c) query groups, Nb = L // c finished blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ut.nn.attend import attend
from ut.nn.attention import AttentionOutput, HeadProjections, KVCache
from ut.nn.long_attention_common import (
    LongAttentionCache,
    check_self_attention_call,
    key_padding_from_mask,
    tokens_seen,
)
from ut.nn.masks import causal_mask

COMPRESSION_ORDERS = ("project_compress", "compress_project")


def memory_compressed_mask(q_len: int, compression: int, q_start: int = 0, device=None) -> tuple[Tensor, Tensor]:
    """Dense masks of memory-compressed attention (the manual path; the tests build their own).

    Queries at positions ``q_start .. q_start + Lq - 1``. Returns ``(compressed Bool[Lq, Nb], raw Bool[Lq, Lk])``
    with Nb = (q_start + Lq) // c finished blocks and Lk = q_start + Lq raw positions: query i sees block b iff
    ``b < i // c`` and raw key j iff ``(i // c) * c <= j <= i``.
    """
    c = compression
    k_len = q_start + q_len
    i = torch.arange(q_start, k_len, device=device)[:, None]
    blocks = torch.arange(k_len // c, device=device)[None, :]
    j = torch.arange(k_len, device=device)[None, :]
    return blocks < i // c, causal_mask(q_len, k_len, device=device) & (j >= (i // c) * c)


def compressed_attention(q: Tensor, kc: Tensor, vc: Tensor, k_raw: Tensor, v_raw: Tensor, compression: int, *,
                         q_offset: int = 0, block_offset: int = 0, kc_ok: Tensor | None = None,
                         raw_ok: Tensor | None = None) -> Tensor:
    """The fast path of memory-compressed attention (grouped-query SDPA + sentinel; see the module docstring).

    Args:
        q: (B, H, n, Dh) queries at absolute positions ``P + q_offset + i``, with P = ``block_offset * c``.
        kc, vc: (B, H, Nb, Dh) compressed keys / values of blocks 0 .. Nb - 1 (absolute block indices).
        k_raw, v_raw: (B, H, m, Dh) raw keys / values at positions P .. P + m - 1, m = q_offset + n.
        kc_ok: Bool[B or 1, Nb], False for blocks with no real token; raw_ok: Bool[B or 1, m] real raw keys.
    Returns: (B, n, H*Dh), heads merged (ready for the output projection). Queries that see no key get zeros.
    """
    c = compression
    bsz, n_heads, n, dh = q.shape
    m = k_raw.shape[2]
    if m != q_offset + n:
        raise ValueError(f"raw keys ({m}) must end with the queries (q_offset {q_offset} + {n})")
    n_groups = -(-m // c)
    pad = n_groups * c - m
    scale = dh**-0.5
    if q_offset or pad:  # dummy queries before (cached positions) and after (to whole groups)
        q = F.pad(q, (0, 0, q_offset, pad))
    if pad:
        k_raw, v_raw = F.pad(k_raw, (0, 0, 0, pad)), F.pad(v_raw, (0, 0, 0, pad))
    q_hr = rearrange(q, "b h (g r) d -> b h r g d", r=c)  # (B, H, c, G, Dh): position-in-block r beside the head
    kg, vg = (rearrange(t, "b h (g j) d -> b h g j d", j=c) for t in (k_raw, v_raw))  # (B, H, G, c, Dh)

    # raw own-block part: query r of a group sees raw keys 0..r of its group (c keys at most, computed directly)
    s_raw = torch.einsum("bhrgd,bhgjd->bhrgj", q_hr, kg) * scale  # (B, H, c, G, c)
    allowed = causal_mask(c, device=q.device)[:, None, :]  # (c, 1, c): [r, g, j]
    if raw_ok is not None:
        ok = torch.cat([raw_ok, raw_ok.new_zeros(raw_ok.shape[0], pad)], dim=1) if pad else raw_ok
        allowed = allowed & rearrange(ok, "b (g j) -> b 1 1 g j", j=c)
    # a large finite negative (not -inf): a query with no raw key then keeps finite values and a zero share
    s_raw = s_raw.masked_fill(~allowed, -1.0e4)
    lse_raw = torch.logsumexp(s_raw, dim=-1, keepdim=True)  # (B, H, c, G, 1) log of the raw normaliser Z_raw
    o_raw = torch.einsum("bhrgj,bhgjd->bhrgd", torch.softmax(s_raw, dim=-1), vg)  # (B, H, c, G, Dh)

    # compressed part, [sentinel; blocks] with one extra channel: the sentinel's score is log Z_raw and its value
    # e_{Dh+1}, so SDPA returns o_c = N_c / (Z_c + Z_raw) and p = Z_raw / (Z_c + Z_raw) in the extra channel
    q_ext = torch.cat([q_hr, lse_raw / scale], dim=-1).view(bsz, n_heads * c, n_groups, dh + 1)
    k_ext, v_ext = F.pad(kc, (0, 1, 1, 0)), F.pad(vc, (0, 1, 1, 0))  # (B, H, 1 + Nb, Dh + 1)
    k_ext[:, :, 0, dh] = 1.0
    v_ext[:, :, 0, dh] = 1.0
    n_blocks = kc.shape[2]
    if block_offset == 0 and kc_ok is None and n_blocks + 1 >= n_groups:
        # query group g sees keys 0..g = the sentinel and blocks 0..g-1: top-left causal, no mask
        o = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, is_causal=True, scale=scale, enable_gqa=True)
    else:
        g = torch.arange(n_groups, device=q.device)[:, None] + block_offset
        visible = torch.arange(n_blocks + 1, device=q.device)[None, :] <= g  # (G, 1 + Nb)
        if kc_ok is not None:
            visible = visible & torch.cat([kc_ok.new_ones(kc_ok.shape[0], 1), kc_ok], dim=1)[:, None, None, :]
        o = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, attn_mask=visible, scale=scale, enable_gqa=True)
    o = o.view(bsz, n_heads, c, n_groups, dh + 1)
    out = torch.addcmul(o[..., :dh], o[..., dh:], o_raw)  # (N_c + N_raw) / (Z_c + Z_raw)
    if raw_ok is not None:
        out = out * allowed.any(-1, keepdim=True).to(out.dtype)  # padding queries (nothing visible): zeros
    return rearrange(out, "b h r g d -> b (g r) (h d)")[:, q_offset : q_offset + n]


class MemoryCompressedAttention(HeadProjections):
    """Causal memory-compressed self-attention (Liu et al. 2018, §4.2.2; t2t ``multihead_self_attention_reduced``).

    Args:
        d_model, n_heads, bias: as :class:`~ut.nn.attention.MultiHeadAttention`.
        compression: kernel = stride c of the compressing convolution (paper: 3).
        order: ``"project_compress"`` (the paper, default) or ``"compress_project"`` (t2t); see the module docstring.
        dropout: must be 0 (see the module docstring).
    """

    cache_factory = LongAttentionCache  # DecoderLayer builds this module's decoding cache with it

    def __init__(self, d_model: int, n_heads: int, compression: int = 3, order: str = "project_compress",
                 dropout: float = 0.0, bias: bool = True):
        if dropout:
            raise ValueError("memory-compressed attention has no attention dropout (set attention_dropout=0)")
        if order not in COMPRESSION_ORDERS:
            raise ValueError(f"order={order!r} is not one of {COMPRESSION_ORDERS}")
        if compression < 1:
            raise ValueError(f"compression must be >= 1, got {compression}")
        super().__init__(d_model, n_heads, bias)
        self.compression, self.order, self.dropout = compression, order, dropout
        if order == "project_compress":
            self.compress_k = nn.Linear(compression * d_model, d_model, bias=bias)  # the strided conv over K
            self.compress_v = nn.Linear(compression * d_model, d_model, bias=bias)  # ... and over V
        else:
            self.compress = nn.Linear(compression * d_model, d_model, bias=bias)  # the strided conv over the input

    def blocks(self, x: Tensor) -> Tensor:
        """(B, Nb*c, D) -> (B, Nb, c*D): the receptive fields of the strided convolution."""
        return rearrange(x, "b (n c) d -> b n (c d)", c=self.compression)

    def compressed_kv(self, x: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Compressed keys / values (B, H, Nb, Dh) of whole blocks: input x, projected k, v all (B, Nb*c, D)."""
        if self.order == "project_compress":
            return self.split_heads(self.compress_k(self.blocks(k))), self.split_heads(self.compress_v(self.blocks(v)))
        return self.project_kv(self.compress(self.blocks(x)))

    def extend_compressed(self, kc: Tensor | None, vc: Tensor | None, x: Tensor, k: Tensor, v: Tensor,
                          raw_ok: Tensor | None) -> tuple[Tensor, Tensor]:
        """The cached compressed keys / values ``kc``, ``vc`` (B, H, done, Dh; None without a cache) followed by
        those of the blocks that finished since: x, k, v (B, Nb_new*c, D) from the first unfinished cached block on,
        padding tokens (``raw_ok`` False) zeroed before compression. Returns (B, H, Nb, Dh) twice."""
        ends = x.shape[1]
        zero_pad = (lambda z: z) if raw_ok is None else (lambda z: z * raw_ok[:, :ends, None].to(z.dtype))
        kc_new, vc_new = self.compressed_kv(zero_pad(x), zero_pad(k), zero_pad(v))
        if kc is not None:
            kc_new, vc_new = torch.cat([kc, kc_new], dim=2), torch.cat([vc, vc_new], dim=2)
        return kc_new, vc_new

    def dense_attention(self, q: Tensor, kc: Tensor, vc: Tensor, k_raw: Tensor, v_raw: Tensor,
                        kc_ok: Tensor | None, raw_ok: Tensor | None) -> tuple[Tensor, Tensor]:
        """The manual path of a whole sequence: q, k_raw, v_raw (B, H, n, Dh), kc, vc (B, H, Nb, Dh) ->
        (out (B, n, D) before the output projection, weights (B, H, n, Nb + n) over ``[compressed; raw]``)."""
        n = q.shape[2]
        comp_mask, raw_mask = memory_compressed_mask(n, self.compression, device=q.device)  # (n, Nb), (n, n)
        comp_mask, raw_mask = comp_mask[None, None], raw_mask[None, None]
        if raw_ok is not None:
            comp_mask = comp_mask & kc_ok[:, None, None, :]
            raw_mask = raw_mask & raw_ok[:, None, None, :]
        lead = torch.broadcast_shapes(comp_mask.shape[:-1], raw_mask.shape[:-1])
        dense = torch.cat([comp_mask.expand(*lead, -1), raw_mask.expand(*lead, -1)], dim=-1)  # (B|1, 1, n, Nb+n)
        out, weights = attend(q, torch.cat([kc, k_raw], 2), torch.cat([vc, v_raw], 2), dense, need_weights=True)
        return self.merge_heads(out), weights

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None, causal: bool = True,
                cache: KVCache | None = None, need_weights: bool = False) -> AttentionOutput:
        """x (B, n, D), the n newest positions when a cache is given -> AttentionOutput (B, n, D).

        With ``need_weights`` the weights are (B, H, n, Nb + n) over the keys ``[compressed blocks; raw tokens]``.
        """
        check_self_attention_call(memory, causal)
        c = self.compression
        t = tokens_seen(cache)
        n = x.shape[1]
        key_ok = key_padding_from_mask(mask, t + n)  # (B|1, t + n)
        done = t // c  # blocks finished before this call
        start = done * c  # first position of the unfinished block: raw keys are needed from here on
        kc = vc = None
        if cache is not None and cache.k is not None:
            kc, vc = cache.k[:, :, :done], cache.v
            x = torch.cat([rearrange(cache.k[:, :, done:], "b h l d -> b l (h d)"), x], dim=1)
        m = x.shape[1]  # positions start .. t + n - 1
        ends = (m // c) * c  # the finished blocks end here
        pad = 0 if need_weights else -m % c  # fast path: pad the INPUT to whole blocks (no copies of q, k, v later)
        xp = F.pad(x, (0, 0, 0, pad)) if pad else x
        q = self.split_heads(self.q_proj(xp if m == n else xp[:, m - n :]))  # (B, H, n + pad, Dh)
        kf, vf = self.k_proj(xp), self.v_proj(xp)  # (B, m + pad, D)
        raw_ok = None if key_ok is None else key_ok[:, start:]
        if t == 0 and raw_ok is None and not need_weights:
            # training fast path: compress every block of the padded input without slicing (a slice's backward
            # allocates a zero-filled copy); the last, padded block is seen by no query (group g sees blocks < g)
            kc, vc = self.compressed_kv(xp, kf, vf)
        else:
            kc, vc = self.extend_compressed(kc, vc, x[:, :ends], kf[:, :ends], vf[:, :ends], raw_ok)
        n_blocks = kc.shape[2]
        kc_ok = None if key_ok is None else key_ok[:, : n_blocks * c].unflatten(1, (n_blocks, c)).any(-1)  # (B, Nb)
        k_raw, v_raw = self.split_heads(kf), self.split_heads(vf)
        weights = None
        if need_weights:
            if t:
                raise ValueError("need_weights is for whole-sequence calls, not incremental decoding")
            out, weights = self.dense_attention(q, kc, vc, k_raw, v_raw, kc_ok, raw_ok)
        else:
            if raw_ok is not None and pad:
                raw_ok = torch.cat([raw_ok, raw_ok.new_zeros(raw_ok.shape[0], pad)], dim=1)
            out = compressed_attention(q, kc, vc, k_raw, v_raw, c, q_offset=t - start, block_offset=done,
                                       kc_ok=kc_ok, raw_ok=raw_ok)[:, :n]
        if cache is not None:
            tail = rearrange(x[:, ends:m], "b l (h dh) -> b h l dh", h=self.n_heads)
            done_now = (t + n) // c
            cache.k, cache.v = torch.cat([kc[:, :, :done_now], tail], dim=2), vc[:, :, :done_now]
            cache.n_seen = t + n
        return AttentionOutput(self.out_proj(out), weights)
