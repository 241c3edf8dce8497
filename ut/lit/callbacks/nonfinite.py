"""Training that refuses NaN: stop (or skip the step) on a non-finite loss, never checkpoint non-finite weights.

A diverged run (learning rate far too high, an overflow) otherwise goes on "training" on NaN, exits 0, and its
``last.ckpt`` ends up holding NaN weights over the last good ones. :class:`NonFiniteLossGuard` checks the training
loss of every step BEFORE its backward pass, so the weights are still those of the last good step:

- ``mode="stop"`` (default): raise :class:`NonFiniteLossError` naming the global step, the epoch and the loss value
  (the run exits non-zero; no optimiser step ran on the bad loss);
- ``mode="skip"``: drop the step's gradients before the optimiser step (every parameter's ``grad`` is set to None,
  so Adam updates nothing, its moments included; with gradient accumulation, the whole accumulated step), count it,
  log the count as ``train/nonfinite_skipped``, and stop with the same error after ``max_consecutive_skips`` bad
  steps in a row (weights that are themselves non-finite never recover).

Either way, :meth:`on_save_checkpoint` refuses to write a checkpoint whose weights are non-finite (it raises before
Lightning writes the file), so that ``last.ckpt`` keeps the last good weights.

Cost: one ``isfinite`` on the scalar loss and one read of it per step (with several processes, one all-reduce of
the decision so that every rank stops or skips together); a pass over the weights only when a checkpoint is saved.
Lightning's ``detect_anomaly`` checks every backward op instead and is far slower.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

MODES = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """The training loss (or the weights about to be checkpointed) is NaN or infinite."""


def non_finite_parameters(module: torch.nn.Module, limit: int = 3) -> tuple[int, list[str]]:
    """(number of parameters with a NaN / inf entry, the first ``limit`` of their names)."""
    names = [name for name, p in module.named_parameters() if p.is_floating_point() and not bool(p.isfinite().all())]
    return len(names), names[:limit]


class NonFiniteLossGuard(Callback):
    """Stop or skip on a non-finite training loss; refuse to checkpoint non-finite weights (module docstring).

    Args:
        mode: ``"stop"`` (raise on the first non-finite loss) or ``"skip"`` (skip the step, count it).
        max_consecutive_skips: ``mode="skip"``: raise after this many non-finite steps in a row.
    """

    def __init__(self, mode: str = "stop", max_consecutive_skips: int = 20):
        if mode not in MODES:
            raise ValueError(f"NonFiniteLossGuard mode={mode!r} is not one of {MODES}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.mode, self.max_consecutive_skips = mode, max_consecutive_skips
        self.skipped = 0  # non-finite steps skipped over the whole run (kept in the checkpoint)
        self.consecutive = 0
        self._skip_pending = False

    # ------------------------------------------------------------------ the per-step check
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)  # any rank bad: every rank acts alike
        if not bad:
            self.consecutive = 0
            return
        value = float(loss.detach().float().reshape(-1)[0]) if loss.numel() else math.nan
        where = f"global step {trainer.global_step} (epoch {trainer.current_epoch})"
        if self.mode == "stop":
            raise NonFiniteLossError(
                f"training loss is {value} at {where}: stopping before the optimiser step, so the weights (and any "
                f"checkpoint) are those of the last finite step. Lower the learning rate, clip gradients, or use "
                f"NonFiniteLossGuard(mode='skip') to skip such steps")
        self.skipped += 1
        self.consecutive += 1
        self._skip_pending = True
        if self.consecutive >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"training loss is {value} at {where}, the {self.consecutive}th non-finite step in a row "
                f"({self.skipped} skipped in all): stopping (max_consecutive_skips={self.max_consecutive_skips})")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self._skip_pending:  # no gradient: the optimiser step updates nothing (Adam's moments included)
            optimizer.zero_grad(set_to_none=True)
            self._skip_pending = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.mode == "skip":
            pl_module.log("train/nonfinite_skipped", float(self.skipped), on_step=True, on_epoch=False,
                          batch_size=1)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        n_bad, names = non_finite_parameters(pl_module)
        if n_bad:
            raise NonFiniteLossError(
                f"refusing to save a checkpoint at global step {trainer.global_step}: {n_bad} parameter tensors hold "
                f"NaN / inf (first: {', '.join(names)}); the checkpoints already written are kept")

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))
