"""Accuracy, perplexity and bAbI error metrics as the UT paper reports them (Dehghani et al. 2019).

Pure functions over tensors. Masks follow CONTRIBUTING.md: Bool, True = a real position that counts.
`preds` may be ids `Long[B, T]` or logits `Float[B, T, V]` (argmax taken).

- token / character accuracy: share of masked positions predicted right. The algorithmic tasks' "char-acc"
  counts every target position of `tgt_out` under `tgt_mask`, EOS included (as t2t's padded accuracy does).
- sequence accuracy: share of sequences whose every masked position is right ("seq-acc").
- perplexity: exp(mean NLL per token).
- bAbI: per-task error = 1 - accuracy on that task's questions; a task fails when its error > 5%
  (Weston et al. 2015, used by the paper's "failed tasks" column).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

BABI_FAIL_THRESHOLD = 0.05


def _ids(preds: torch.Tensor) -> torch.Tensor:
    return preds.argmax(-1) if preds.is_floating_point() else preds


def token_accuracy(
    preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of masked positions with `preds == target`. preds Long[B,T] or Float[B,T,V]; target Long[B,T]."""
    correct = _ids(preds) == target  # (B, T)
    if mask is None:
        return correct.float().mean()
    n = mask.sum()
    if n == 0:
        raise ValueError("token_accuracy: the mask selects no position")
    return (correct & mask).sum().float() / n


char_accuracy = token_accuracy  # the algorithmic tasks' "char-acc" (EOS position included, see above)


def sequence_accuracy(
    preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of sequences right at every masked position; sequences with an empty mask are not counted."""
    correct = _ids(preds) == target  # (B, T)
    if mask is None:
        return correct.all(-1).float().mean()
    has = mask.any(-1)  # (B,)
    if not has.any():
        raise ValueError("sequence_accuracy: the mask selects no sequence")
    return (correct | ~mask).all(-1)[has].float().mean()


def masked_nll(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood (nats) over masked positions. logits Float[B,T,V], target Long[B,T]."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, T)
    if mask is None:
        return nll.mean()
    return nll[mask].mean()


def perplexity(mean_nll: float | torch.Tensor) -> float:
    """exp(mean NLL per token)."""
    return math.exp(float(mean_nll))


def babi_task_errors(preds: torch.Tensor, labels: torch.Tensor, tasks: torch.Tensor) -> dict[int, float]:
    """{task: error rate}; preds Long[N] (or logits Float[N, C]), labels Long[N], tasks Long[N]."""
    wrong = _ids(preds) != labels  # (N,)
    return {int(t): wrong[tasks == t].float().mean().item() for t in torch.unique(tasks).tolist()}


def babi_failed_tasks(errors: Mapping[int, float], threshold: float = BABI_FAIL_THRESHOLD) -> int:
    """How many tasks have error > threshold (5%: the bAbI "failed task" criterion)."""
    return sum(1 for e in errors.values() if e > threshold)


def babi_summary(errors: Mapping[int, float], threshold: float = BABI_FAIL_THRESHOLD) -> dict[str, float]:
    """Mean error over tasks (the paper's "avg error") and the failed-task count."""
    if not errors:
        raise ValueError("babi_summary: no task errors")
    return {
        "mean_error": sum(errors.values()) / len(errors),
        "failed_tasks": babi_failed_tasks(errors, threshold),
        "n_tasks": len(errors),
    }
