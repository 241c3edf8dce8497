"""Attention with dropout on the weights in O(chunk x Lk) memory: the back end of :func:`ut.nn.attend.attend` for
CPU training with attention dropout > 0.

Why: on CPU, ``F.scaled_dot_product_attention`` with ``dropout_p > 0`` runs its math path, which materialises and
keeps the whole (B, H, Lq, Lk) weight matrix for backward (about 20 GB at L = 11000; ``sdpa_dropout`` in
benchmarks/attention_dropout_memory.py). Here the queries are processed in chunks of at most ``max_scores`` score
elements, and the backward pass recomputes each chunk's weights and regenerates its dropout mask instead of storing
them, as FlashAttention does (Dao et al. 2022; softmax backward as in FlashAttention-2, Dao 2023), so neither pass
holds more than one chunk. Causal chunks read only the keys they may see (the masked upper blocks are skipped).

Dropout masks come from :func:`ut.nn.dropout.keep_mask` (the distribution of ``F.dropout``), one generator per chunk
seeded from ONE draw of the global generator: results are reproducible under ``torch.manual_seed``. With
``dropout_p = 0`` the output and gradients equal :func:`ut.nn.attend.manual_attention` with the same mask (tested).

Shape legend: B batch, H heads, Lq / Lk query / key length, Dh head width, c query rows of one chunk, n keys a
chunk sees (Lk, or fewer under the causal constraint).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ut.nn.dropout import keep_mask, realised_drop_probability
from ut.nn.masks import causal_mask, masked_softmax

# most score elements (B * H * c * Lk) one chunk materialises: 1M floats = 4 MB
DROPOUT_ATTENTION_MAX_SCORES = 1 << 20


class _ChunkPlan:
    """Query chunks of a (possibly causal, possibly masked) attention, and each chunk's keys and mask."""

    def __init__(self, q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, max_scores: int):
        b, h, self.lq, _ = q.shape
        self.lk, self.mask, self.causal, self.device = k.shape[2], mask, causal, q.device
        self.size = max(1, max_scores // max(1, b * h * self.lk))

    def __iter__(self):
        """Yields (index, query slice, keys visible to the chunk, boolean mask or None, causal block or None).

        Without a user mask, the causal constraint only bites in the chunk's last (c x c) block of keys: it comes
        as that block's causal mask alone, so the other keys are never masked."""
        lq, lk = self.lq, self.lk
        for index, start in enumerate(range(0, lq, self.size)):
            stop = min(lq, start + self.size)
            # causal: the chunk's queries are the last (stop - start) of the first n_keys positions
            n_keys = min(lk, stop + lk - lq) if self.causal else lk
            chunk_mask, causal_block = None, None
            if self.mask is not None:
                chunk_mask = self.mask[..., start:stop, :] if self.mask.shape[-2] > 1 else self.mask
                chunk_mask = chunk_mask[..., :n_keys] if chunk_mask.shape[-1] > 1 else chunk_mask
                if self.causal:
                    chunk_mask = chunk_mask & causal_mask(stop - start, n_keys, device=self.device)
            elif self.causal:
                causal_block = causal_mask(stop - start, device=self.device)
            yield index, slice(start, stop), n_keys, chunk_mask, causal_block


def _chunk_weights(q_scaled: Tensor, k: Tensor, mask: Tensor | None, causal_block: Tensor | None) -> Tensor:
    """softmax(q k^T) over the allowed keys (q already scaled by 1/sqrt(Dh)): (B, H, c, n)."""
    scores = torch.matmul(q_scaled, k.transpose(-2, -1))  # (B, H, c, n)
    if causal_block is not None:
        c = causal_block.shape[0]
        scores[..., -c:].masked_fill_(~causal_block, float("-inf"))
    return masked_softmax(scores, mask, q_scaled.dtype, inplace=True)


def _drop_mask(shape, dropout_p: float, device, generator) -> Tensor:
    return ~keep_mask(shape, dropout_p, device=device, generator=generator)


class _ChunkedDropoutAttention(torch.autograd.Function):
    """Flash-style attention with weight dropout at query-chunk granularity; backward recomputes each chunk.

    Nothing of size Lq x Lk is saved. Softmax backward as in FlashAttention-2: dS = P * (dP - D) with
    D = rowsum(dO * O) (equal to rowsum(dP * P), but over Dh instead of Lk columns).
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
    """Exact attention with dropout on the weights, computed in query chunks (the module docstring): (B, H, Lq, Dh).

    q, k, v: (B, H, L, Dh); mask: boolean, broadcastable to (B, H, Lq, Lk), or None; causal: the queries are the
    last Lq of the Lk key positions and see keys up to their own. Rows with no allowed key give zeros.
    """
    return _ChunkedDropoutAttention.apply(q, k, v, mask, causal, dropout_p, max_scores)
