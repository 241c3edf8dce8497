"""Causal blockwise local self-attention of T-DMCA.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences", §4.2.2, and tensor2tensor
(``common_attention.masked_local_attention_1d``). :class:`LocalAttention` has
:class:`~ut.nn.attention.MultiHeadAttention`'s Q/K/V/O projections (:class:`~ut.nn.attention.HeadProjections`: the
same parameter names) and its call signature ``forward(x, memory=None, *, mask, causal, cache, need_weights) ->
AttentionOutput``, so a decoder layer takes it in place of full attention; as a self-attention of a decoder, it
rejects ``memory`` and ``causal=False`` (ut/nn/long_attention_common.py). Its attention of projected heads runs
through :func:`ut.nn.attend.attend` (the mask, the empty-row guard, the softmax precision).

The sequence is split into blocks of ``block_size`` tokens (256 in the paper) and attention is computed per block,
causally; cost O(L * block) in time and memory -- there is never an L x L score matrix. Two variants:

- ``look_back=False`` -- the paper's: "attention is performed in each block independently" (a query sees the
  earlier tokens of its own block only);
- ``look_back=True`` -- t2t's ``local_mask_right`` (what t2t's ``"locm"`` layers actually run): a query sees its
  own block up to itself plus the whole previous block.

Attention dropout is passed to SDPA per block (``attend(..., chunk_dropout=False)``: the math path is then quadratic
in the block only, i.e. linear in L).

Masks: only key-padding masks (broadcastable to ``[B, 1, 1, Lk]``, True = real token) are accepted -- the local
structure is the module's own. Blocks are counted from index 0 of the given tensor, so with left padding a row's
block boundaries follow its padded layout.

Incremental decoding: the module takes the :class:`~ut.nn.long_attention_common.LongAttentionCache` a decoder layer
builds through ``cache_factory``; ``cache.k`` / ``cache.v`` hold the raw keys / values of the current block
(``look_back=True``: of the previous and current blocks) -- never more than 2 blocks.

Shape legend: B batch, H heads, L length, n new positions, D width, Dh = D / H head width, W local block size,
Nw = ceil(L / W) local blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ut.nn.attend import attend
from ut.nn.attention import AttentionOutput, HeadProjections, KVCache
from ut.nn.long_attention_common import (
    LongAttentionCache,
    check_self_attention_call,
    key_padding_from_mask,
    tokens_seen,
)
from ut.nn.masks import causal_mask


def local_attention_mask(q_len: int, block_size: int, look_back: bool, k_len: int | None = None,
                         device=None) -> Tensor:
    """``Bool[Lq, Lk]``: the dense mask equivalent to local attention (the manual path; tests use their own).

    Query i (the i-th of the LAST Lq of Lk positions) may attend to key j iff ``j <= i`` and ``j`` lies in i's block
    (``look_back=True``: or in the block before it).
    """
    k_len = q_len if k_len is None else k_len
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    first = ((i // block_size) - int(look_back)).clamp(min=0) * block_size
    return causal_mask(q_len, k_len, device=device) & (j >= first)


def blockwise_local_attention(q: Tensor, k: Tensor, v: Tensor, block_size: int, look_back: bool,
                              q_offset: int = 0, key_ok: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Causal local attention computed block by block (SDPA per block): never an L x L matrix.

    Args:
        q: (B, H, n, Dh) queries at positions ``q_offset .. q_offset + n - 1`` of the keys.
        k, v: (B, H, m, Dh) keys / values at positions 0 .. m - 1, with m = q_offset + n; position 0 lies on a block
            boundary.
        key_ok: Bool[B or 1, m], True on real keys.
    Returns: (B, n, H*Dh), heads merged (ready for the output projection).
    """
    m, n = k.shape[2], q.shape[2]
    if m != q_offset + n:
        raise ValueError(f"keys ({m}) must end with the queries (q_offset {q_offset} + {n})")
    if q_offset:  # incremental decoding: dummy queries for the cached positions (at most two blocks)
        q = F.pad(q, (0, 0, q_offset, 0))
    parts = blockwise_local_attention_parts(q, k, v, block_size, look_back, key_ok, dropout_p)
    out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0].contiguous()  # (B, q_offset + n, H*Dh)
    return out[:, q_offset:]


def blockwise_local_attention_parts(q: Tensor, k: Tensor, v: Tensor, block_size: int, look_back: bool,
                                    key_ok: Tensor | None = None, dropout_p: float = 0.0) -> list[Tensor]:
    """:func:`blockwise_local_attention` for aligned queries (q_offset = 0) as consecutive pieces (B, l_i, H*Dh):
    views of SDPA's outputs (the whole blocks, then the shorter last block), so that a caller projecting each
    piece saves a (B, L, D) copy and the memory that would keep it for backward."""
    m = k.shape[2]
    if key_ok is not None:
        key_ok = key_ok.expand(q.shape[0], -1)
    w = block_size
    full = m // w  # whole blocks are reshaped views (no copies); a shorter last block is its own call
    parts = []
    if full * w == m:
        return [_local_whole_blocks(q, k, v, w, look_back, key_ok, dropout_p).flatten(2)]
    # split (not slice): the backward of a split is one concatenation, that of two slices two zero-filled copies
    sizes = [full * w, m - full * w]
    (qf, qt), (kf, kt), (vf, vt) = (t.split(sizes, dim=2) for t in (q, k, v))
    if full:
        parts.append(_local_whole_blocks(qf, kf, vf, w, look_back, None if key_ok is None else key_ok[:, : full * w],
                                         dropout_p))
    if m > full * w:
        lo = (full - 1) * w if look_back and full else full * w  # keys of the last block (and of the one before)
        if lo < full * w:
            kt, vt = k[:, :, lo:], v[:, :, lo:]
        mask = None if key_ok is None else key_ok[:, None, None, lo:]
        parts.append(rearrange(_causal_attend(qt, kt, vt, mask, dropout_p), "b h l d -> b l h d"))
    return [part.flatten(2) for part in parts]


def _causal_attend(q: Tensor, k: Tensor, v: Tensor, key_ok: Tensor | None, dropout_p: float) -> Tensor:
    """Causal attention of one window (the queries are its last keys), dropout through SDPA: (B, H, Lq, Dh)."""
    return attend(q, k, v, key_ok, causal=True, dropout_p=dropout_p, chunk_dropout=False)[0]


def _local_whole_blocks(q: Tensor, k: Tensor, v: Tensor, w: int, look_back: bool, ok: Tensor | None,
                        dropout_p: float) -> Tensor:
    """Local attention over a whole number Nw of blocks: (B, H, Nw*W, Dh) -> (B, Nw*W, H, Dh) (a view)."""
    bsz = q.shape[0]
    flat = lambda t: rearrange(t, "b h (n w) d -> (b n) h w d", w=w)  # a view of the projections' memory
    unflat = lambda t: rearrange(t, "(b n) h w d -> b (n w) h d", b=bsz)
    ok_b = None if ok is None else rearrange(ok, "b (n w) -> b n w", w=w)  # (B, Nw, W)
    if not look_back:  # the paper's: each block alone, causal
        mask = None if ok_b is None else rearrange(ok_b, "b n k -> (b n) 1 1 k")
        return unflat(_causal_attend(flat(q), flat(k), flat(v), mask, dropout_p))
    # t2t local_mask_right: block 0 alone; block n >= 1 sees the window [block n - 1; block n], query r keys <= W + r
    first_mask = None if ok_b is None else ok_b[:, None, None, 0, :]
    parts = [rearrange(_causal_attend(q[:, :, :w], k[:, :, :w], v[:, :, :w], first_mask, dropout_p),
                       "b h w d -> b w h d")]
    if q.shape[2] > w:
        window = lambda t: torch.cat([flat(t[:, :, :-w]), flat(t[:, :, w:])], dim=2)  # (B*(Nw-1), H, 2W, Dh)
        mask = None
        if ok_b is not None:
            ok_w = torch.cat([ok_b[:, :-1], ok_b[:, 1:]], dim=2)  # (B, Nw-1, 2W)
            mask = rearrange(ok_w, "b n k -> (b n) 1 1 k")
        parts.append(unflat(_causal_attend(flat(q[:, :, w:]), window(k), window(v), mask, dropout_p)))
    return torch.cat(parts, dim=1)


class LocalAttention(HeadProjections):
    """Causal blockwise local self-attention (Liu et al. 2018, §4.2.2; t2t ``local_mask_right`` with look_back).

    Args:
        d_model, n_heads, bias: as :class:`~ut.nn.attention.MultiHeadAttention`.
        block_size: tokens per block W (paper: 256).
        look_back: False = attend within the own block only (the paper); True = own block + previous block (t2t's
            ``local_mask_right``, the attention t2t's ``"locm"`` layers run).
        dropout: attention-weight dropout, applied per block (memory stays linear in L).
    """

    cache_factory = LongAttentionCache  # DecoderLayer builds this module's decoding cache with it

    def __init__(self, d_model: int, n_heads: int, block_size: int = 256, look_back: bool = False,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__(d_model, n_heads, bias)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size, self.look_back, self.dropout = block_size, look_back, dropout

    def window_start(self, position: int) -> int:
        """First key position the query at ``position`` may see: the start of its block (or of the previous)."""
        return max(position // self.block_size - int(self.look_back), 0) * self.block_size

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None, causal: bool = True,
                cache: KVCache | None = None, need_weights: bool = False) -> AttentionOutput:
        """x (B, n, D), the n newest positions when a cache is given -> AttentionOutput (B, n, D)."""
        check_self_attention_call(memory, causal)
        t = tokens_seen(cache)
        n = x.shape[1]
        key_ok = key_padding_from_mask(mask, t + n)  # (B|1, t + n)
        q = self.split_heads(self.q_proj(x))  # (B, H, n, Dh)
        k, v = self.project_kv(x)
        start = self.window_start(t)  # keys from `start` (a block boundary) on are needed
        if cache is not None and cache.k is not None:
            k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)  # positions start .. t + n - 1
        ok = None if key_ok is None else key_ok[:, start:]
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            if t:
                raise ValueError("need_weights is for whole-sequence calls, not incremental decoding")
            dense = local_attention_mask(n, self.block_size, self.look_back, device=x.device)
            dense = dense if ok is None else dense & ok[:, None, None, :]
            out, weights = attend(q, k, v, dense, dropout_p=dropout_p, need_weights=True)
            out = self.merge_heads(out)
        elif t == 0:  # project each piece: no concatenated copy of the attention output
            parts = blockwise_local_attention_parts(q, k, v, self.block_size, self.look_back, ok, dropout_p)
            out = [self.out_proj(part) for part in parts]
        else:
            out = blockwise_local_attention(q, k, v, self.block_size, self.look_back, t - start, ok, dropout_p)
        if cache is not None:
            keep = self.window_start(t + n) - start
            cache.k, cache.v = k[:, :, keep:], v[:, :, keep:]
            cache.n_seen = t + n
        out = torch.cat(out, dim=1) if isinstance(out, list) else self.out_proj(out)
        return AttentionOutput(out, weights)
