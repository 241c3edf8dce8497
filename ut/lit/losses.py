"""Label-smoothed cross-entropy over masked positions (Szegedy et al. 2016; Vaswani et al. 2017 §5.4, eps 0.1).

With smoothing eps over V classes the target distribution is ``(1 - eps) * onehot + eps / V`` (the uniform part
includes the true class), so the loss per position is

    (1 - eps) * (-log p_y) + eps * mean_v(-log p_v)

exactly what ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)`` computes; it is written out here so
that the formula is visible and so that the unsmoothed NLL (for perplexity) comes from the same log-softmax.
tensor2tensor spreads eps over the V - 1 wrong classes instead (a 1/V difference; named, not copied).

:func:`expected_smoothed_cross_entropy` is the same loss in expectation over a halting distribution (PonderNet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SmoothedLoss:
    loss: Tensor  # scalar: mean smoothed cross-entropy over counted positions (what is optimised)
    nll: Tensor  # scalar: mean unsmoothed negative log-likelihood (nats; perplexity = exp(nll))
    count: Tensor  # scalar Long: counted positions


def smoothed_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor | None = None,
                           smoothing: float = 0.1) -> SmoothedLoss:
    """logits Float[..., V], target Long[...], mask Bool[...] (True = counts) -> :class:`SmoothedLoss`, computed in
    at least float32 (float64 logits stay float64)."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (..., V)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (...)
    smooth = -logp.mean(-1)  # (...)
    per_pos = (1 - smoothing) * nll + smoothing * smooth
    return _masked_means(per_pos, nll, target, mask, "smoothed_cross_entropy")


def _masked_means(per_pos: Tensor, nll: Tensor, target: Tensor, mask: Tensor | None, who: str) -> SmoothedLoss:
    """The means of the per-position loss and NLL over the counted positions (``mask``; None: all)."""
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    count = mask.sum()
    if int(count) == 0:
        raise ValueError(f"{who}: the mask selects no position")
    denom = count.to(per_pos.dtype)
    return SmoothedLoss((per_pos * mask).sum() / denom, (nll * mask).sum() / denom, count)


def expected_smoothed_cross_entropy(step_logits: Tensor, step_weights: Tensor, target: Tensor,
                                    mask: Tensor | None = None, smoothing: float = 0.1) -> SmoothedLoss:
    """PonderNet's reconstruction loss (Banino et al. 2021, eq. 5): the expectation over the halting step n of the
    smoothed cross-entropy of the prediction y_n, ``sum_n p_n L(y_n)`` at every counted position, then the mean over
    them (the NLL likewise).

    step_logits Float[N, ..., V] (y_n of every step), step_weights Float[N, ...] (p_n, summing to 1 over n), target
    Long[...], mask Bool[...] (True = counts) -> :class:`SmoothedLoss`. Computed in at least float32.

    Memory: ``step_logits`` and its log-softmax are N times a plain cross-entropy's logits (N x tokens x V each,
    plus their gradients), e.g. N = 8, 8192 tokens and V = 32k: 8.4 GB per float32 copy. This bounds PonderNet's
    per-token expectation to small vocabularies (the algorithmic and bAbI tasks); nothing here chunks it.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    if step_logits.shape[:-1] != step_weights.shape or step_weights.shape[1:] != target.shape:
        raise ValueError(f"expected_smoothed_cross_entropy: step_logits {tuple(step_logits.shape)} must be "
                         f"(N, *target, V) and step_weights {tuple(step_weights.shape)} (N, *target) for target "
                         f"{tuple(target.shape)}")
    logp = F.log_softmax(step_logits.to(torch.promote_types(step_logits.dtype, torch.float32)), dim=-1)
    nll = -logp.gather(-1, target.expand(step_logits.shape[0], *target.shape).unsqueeze(-1)).squeeze(-1)  # (N, ...)
    per_step = (1 - smoothing) * nll + smoothing * -logp.mean(-1)
    w = step_weights.to(per_step.dtype)
    return _masked_means((w * per_step).sum(0), (w * nll).sum(0), target, mask, "expected_smoothed_cross_entropy")
