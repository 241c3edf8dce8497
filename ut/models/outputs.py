"""Typed model outputs, the same for every model (so training modules treat them alike).

:func:`model_output` builds one from the model's named stacks (:class:`ut.nn.stack.StackOutput`): ``"encoder"``
and / or ``"decoder"``.

Shape legend: B batch, L length, V vocabulary, C classes, H heads, Lq queries, Lk keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ut.nn.stack import StackOutput


@dataclass
class ModelOutput:
    logits: Tensor  # (B, L, V) token logits, or (B, C) class logits for classifiers
    # scalar added to the task loss: ponder_loss + moe_loss (those present), already weighted
    aux_loss: Tensor | None = None
    # attention maps when asked for: name ("encoder", "decoder_self", "decoder_cross") -> one (B, H, Lq, Lk) per
    # executed layer (for the Universal Transformer: per executed step)
    attentions: dict[str, list[Tensor]] = field(default_factory=dict)
    # ACT: name ("encoder", "decoder") -> ponder time n + r per position (B, L), 0 on padding
    ponder_time: dict[str, Tensor] = field(default_factory=dict)
    # ACT: name -> number of updates n per position (B, L)
    n_updates: dict[str, Tensor] = field(default_factory=dict)
    ponder_loss: Tensor | None = None  # ACT: act_loss_weight * the summed mean ponder times of the stacks
    moe_loss: Tensor | None = None  # mixture of experts: the summed load-balancing losses (weighted per layer)


def model_output(logits: Tensor, stacks: dict[str, StackOutput], act_loss_weight: float = 0.0) -> ModelOutput:
    """``ModelOutput`` of ``logits`` and the model's stacks by name ("encoder", "decoder"): their attention maps
    (an encoder's as ``"encoder"``, a decoder's as ``"decoder_self"`` / ``"decoder_cross"``; empty lists left out),
    ponder time and update counts (ACT), ``ponder_loss = act_loss_weight * sum of their ponder costs``,
    ``moe_loss`` their summed MoE losses, and ``aux_loss = moe_loss + ponder_loss`` of those present."""
    out = ModelOutput(logits)
    for name, stack in stacks.items():
        maps = ({"encoder": stack.self_attentions} if name == "encoder" else
                {f"{name}_self": stack.self_attentions, f"{name}_cross": stack.cross_attentions})
        out.attentions.update({k: v for k, v in maps.items() if v})
        if stack.act is not None:
            out.ponder_time[name] = stack.act.ponder_time
            out.n_updates[name] = stack.act.n_updates
    costs = [c for c in (stack.ponder_cost() for stack in stacks.values()) if c is not None]
    if costs:
        out.ponder_loss = act_loss_weight * sum(costs)
    moe = [s.moe_loss for s in stacks.values() if s.moe_loss is not None]
    if moe:
        out.moe_loss = sum(moe)
    present = [a for a in (out.moe_loss, out.ponder_loss) if a is not None]
    if present:
        out.aux_loss = sum(present)
    return out
