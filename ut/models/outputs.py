"""Typed model outputs, the same for every model (so training modules treat them alike)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    logits: Tensor  # (B, L, V) token logits, or (B, C) class logits for classifiers
    # scalar added to the task loss (ACT ponder loss, MoE balancing loss), already weighted
    aux_loss: Tensor | None = None
    # attention maps when asked for: name ("encoder", "decoder_self", "decoder_cross") -> one (B, H, Lq, Lk) per
    # executed layer (for the Universal Transformer: per executed step)
    attentions: dict[str, list[Tensor]] = field(default_factory=dict)
    # ACT: name ("encoder", "decoder") -> ponder time n + r per position (B, L), 0 on padding
    ponder_time: dict[str, Tensor] = field(default_factory=dict)
    # ACT: name -> number of updates n per position (B, L)
    n_updates: dict[str, Tensor] = field(default_factory=dict)
