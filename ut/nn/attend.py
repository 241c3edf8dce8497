"""``attend``: scaled dot-product attention of projected heads, the one function every attention module calls.

Vaswani et al. 2017, §3.2.1: A = softmax(Q K^T / sqrt(Dh) + M) V, with M = 0 where a query may attend to a key and
-inf elsewhere. :func:`attend` is called by :class:`ut.nn.attention.MultiHeadAttention` and by the local and
memory-compressed attentions (ut/nn/local_attention.py, ut/nn/memory_compressed_attention.py). It owns, once for
all of them:

- the mask: its shape is checked, a CPU mask that allows everything is dropped (:func:`ut.nn.masks.elide_mask`),
  and the causal constraint is added (the queries are the last Lq of the Lk key positions, as with a KV cache);
- rows with no allowed key: zeros, not NaN (:func:`ut.nn.masks.guard_empty_rows`);
- the softmax precision of the paths that softmax themselves (:func:`ut.nn.masks.softmax_dtype`);
- the choice of back end. All three give the same outputs (tests/ut/nn/test_attend.py):

  - SDPA, ``torch.nn.functional.scaled_dot_product_attention`` (flash-style kernels on CPU and CUDA, O(L) memory):
    the default; ``is_causal=True`` when the causal constraint is the only mask (SDPA then skips the masked tiles);
  - manual, :func:`manual_attention`: the readable softmax(Q K^T / sqrt(Dh)) V that also returns the weights
    (attention maps; ``need_weights=True``);
  - chunked, :func:`ut.nn.chunked_dropout_attention.dropout_attention`: CPU training with attention dropout, where
    SDPA would run its quadratic-memory math path (that file's docstring). CUDA's SDPA has fused dropout.

Shape legend: B batch, H heads, Lq / Lk query / key length, Dh head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ut.nn.chunked_dropout_attention import dropout_attention
from ut.nn.dropout import dropout as apply_dropout
from ut.nn.masks import causal_mask, check_mask_shape, combine_masks, elide_mask, guard_empty_rows, masked_softmax


def attend(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    need_weights: bool = False, chunk_dropout: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T / sqrt(Dh)) v -> (out (B, H, Lq, Dh), weights (B, H, Lq, Lk) when ``need_weights`` else None).

    Args:
        q, k, v: (B, H, Lq, Dh), (B, H, Lk, Dh), (B, H, Lk, Dh).
        mask: boolean, True = may attend, broadcastable to (B, H, Lq, Lk); None = every key.
        causal: add the causal constraint (query i, the i-th of the last Lq positions, sees keys up to its own).
        dropout_p: dropout on the attention weights (the caller passes 0 outside training).
        need_weights: run the manual back end and return the weights (before dropout).
        chunk_dropout: on CPU with ``dropout_p > 0``, run the chunked back end (memory O(chunk x Lk)); False keeps
            SDPA's math path, whose (Lq x Lk) matrix is harmless when Lq and Lk are short (one local block).
    """
    check_mask_shape(mask, q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    mask = elide_mask(mask)
    causal = causal and q.shape[2] > 1  # one query is the last position: it sees every key
    if need_weights:
        return manual_attention(q, k, v, _with_causal(mask, causal, q, k), dropout_p, training=True)
    if dropout_p > 0 and chunk_dropout and q.device.type == "cpu":
        return dropout_attention(q, k, v, mask, causal, dropout_p), None
    return sdpa_attention(q, k, v, mask, causal, dropout_p), None


def _with_causal(mask: Tensor | None, causal: bool, q: Tensor, k: Tensor) -> Tensor | None:
    return combine_masks(mask, causal_mask(q.shape[2], k.shape[2], device=q.device) if causal else None)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout_p: float) -> Tensor:
    """The SDPA back end: ``is_causal`` when causality is the whole mask, else a boolean mask with empty rows zeroed."""
    if causal and mask is None and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    mask = _with_causal(mask, causal, q, k)
    row_ok = None
    if mask is not None:
        mask, row_ok = guard_empty_rows(mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return out if row_ok is None else out * row_ok.to(out.dtype)


def manual_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0, training: bool = False
) -> tuple[Tensor, Tensor]:
    """The manual back end: softmax(q k^T / sqrt(Dh)) v with a boolean mask -> (out, weights before dropout)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Lq, Lk)
    weights = masked_softmax(scores, mask, q.dtype)
    attn = apply_dropout(weights, dropout_p, training) if dropout_p > 0 else weights
    return torch.matmul(attn, v), weights
