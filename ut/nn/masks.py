"""Attention masks (the project's one convention) and the masked softmax every attention back end shares.

Convention (CONTRIBUTING.md, "One mask convention"): boolean, ``True`` = "may attend", broadcastable to
``[B, H, Lq, Lk]`` -- SDPA's boolean ``attn_mask``. The Lq queries are the LAST Lq of the Lk key positions (a KV
cache holds the earlier ones), so a causal mask is aligned bottom-right.

A query row with no allowed key (an all-padding sequence; a left-padding position under a causal mask) has no
softmax: written naively it is NaN. :func:`guard_empty_rows` is the one place that handles it: the row is opened
(every key allowed, so all values stay finite) and the multiplier it returns zeroes that row's weights or output
afterwards. Such a query attends to nothing: its attention output is zeros (its gradient too).

Softmax precision, one rule (:func:`softmax_dtype`): at least float32, never below the input (float64 stays
float64, 16-bit inputs are softmaxed in float32); the weights come back in the dtype of the queries.

Shape legend: B batch, H heads, Lq / Lk query / key length.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    empty-row guard is skipped too). HF models drop all-ones padding masks the same way.
    """
    return None if mask is not None and _is_cpu_and_all_true(mask) else mask


def guard_empty_rows(mask: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(mask with its empty rows opened, Bool[..., Lq, 1] True on rows that had an allowed key)``.

    Multiply the weights or the attention output by the second value to zero the empty rows. It is None when no
    row is empty, which is only known without a device read on CPU (there the pass over the output is saved).
    """
    row_ok = mask.any(-1, keepdim=True)
    if _is_cpu_and_all_true(row_ok):
        return mask, None
    return mask | ~row_ok, row_ok


def softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype attention softmaxes in: at least float32, never below the input (the module docstring)."""
    return torch.promote_types(dtype, torch.float32)


def masked_softmax(scores: Tensor, mask: Tensor | None, dtype: torch.dtype, *, inplace: bool = False) -> Tensor:
    """Softmax of ``scores`` (.., Lq, Lk) over the allowed keys, returned in ``dtype``; zeros on empty rows.

    ``inplace=True`` overwrites ``scores`` (and the weights' own buffer) to save two allocations: only for
    callers outside autograd (the backward pass of ut/nn/chunked_dropout_attention.py recomputes its weights).
    """
    row_ok = None
    if mask is not None:
        mask, row_ok = guard_empty_rows(mask)
        scores = scores.masked_fill_(~mask, float("-inf")) if inplace else scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=softmax_dtype(scores.dtype)).to(dtype)
    if row_ok is not None:
        weights = weights.mul_(row_ok) if inplace else weights * row_ok
    return weights
