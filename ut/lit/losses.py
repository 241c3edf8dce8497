"""Label-smoothed cross-entropy over masked positions (Szegedy et al. 2016; Vaswani et al. 2017 §5.4, eps 0.1).

With smoothing eps over V classes the target distribution is ``(1 - eps) * onehot + eps / V`` (the uniform part
includes the true class), so the loss per position is

    (1 - eps) * (-log p_y) + eps * mean_v(-log p_v)

exactly what ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)`` computes; it is written out here so
that the formula is visible and so that the unsmoothed NLL (for perplexity) comes from the same log-softmax.
tensor2tensor spreads eps over the V - 1 wrong classes instead (a 1/V difference; named, not copied).
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
    """logits Float[..., V], target Long[...], mask Bool[...] (True = counts) -> :class:`SmoothedLoss`."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (...)
    smooth = -logp.mean(-1)  # (...)
    per_pos = (1 - smoothing) * nll + smoothing * smooth
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    count = mask.sum()
    if int(count) == 0:
        raise ValueError("smoothed_cross_entropy: the mask selects no position")
    denom = count.to(per_pos.dtype)
    return SmoothedLoss((per_pos * mask).sum() / denom, (nll * mask).sum() / denom, count)
