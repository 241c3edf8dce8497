"""Typed model outputs, the same for every model (so training modules treat them alike).

:func:`model_output` builds one from the model's named stacks (:class:`ut.nn.stack.StackOutput`): ``"encoder"``
and / or ``"decoder"``.

Shape legend: B batch, L length, V vocabulary, C classes, H heads, Lq queries, Lk keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ut.nn.stack import StackOutput


@dataclass
class ModelOutput:
    # (B, L, V) token logits, or (B, C) class logits for classifiers; None when the model was asked for its final
    # states instead (``project_output=False``: the fused output loss of training, ut/lit/linear_cross_entropy.py)
    logits: Tensor | None
    # scalar added to the task loss: ponder_loss + moe_loss (those present), already weighted
    aux_loss: Tensor | None = None
    # attention maps when asked for: name ("encoder", "decoder_self", "decoder_cross") -> one (B, H, Lq, Lk) per
    # executed layer (for the Universal Transformer: per executed step)
    attentions: dict[str, list[Tensor]] = field(default_factory=dict)
    # dynamic halting: name ("encoder", "decoder") -> ponder time per position (B, L), 0 on padding (ACT: n + r;
    # PonderNet: the expected halting step; stick-breaking: the expected depth)
    ponder_time: dict[str, Tensor] = field(default_factory=dict)
    # dynamic halting: name -> number of executed steps n per position (B, L)
    n_updates: dict[str, Tensor] = field(default_factory=dict)
    # the halting regulariser, already weighted, summed over the stacks: ACT act_loss_weight * mean(n + r);
    # PonderNet beta * KL(p || truncated geometric); stick-breaking loss_weight * mean expected depth
    ponder_loss: Tensor | None = None
    moe_loss: Tensor | None = None  # mixture of experts: the summed load-balancing losses (weighted per layer)
    # PonderNet / stick-breaking: "<stream>_kl" / "<stream>_expected_depth" -> the unweighted regulariser (scalar)
    halting_regularizers: dict[str, Tensor] = field(default_factory=dict)
    # PonderNet in training: the prediction y_n from the state after every step n, (N, B, L, V) or (N, B, C), and
    # its halting probability p_n, (N, B, L) or (N, B); the task loss is then sum_n p_n L(y_n) (ut/lit/losses.py).
    # Materialised whole: N times the logits' memory (and as much again for the loss's log-softmax and for their
    # gradients), e.g. N = 8, 8192 target tokens, V = 32k: 8.4 GB per float32 copy -- PonderNet's per-token
    # expectation is for small vocabularies (the algorithmic and bAbI tasks)
    step_logits: Tensor | None = None
    step_weights: Tensor | None = None
    # token-predicting models with ``project_output=False``: the final states (B, L, D) the output layer would
    # project to ``logits`` (which is then None)
    final_states: Tensor | None = None


def final_states(stack: StackOutput, project_output: bool) -> Tensor | None:
    """A model's ``ModelOutput.final_states``: the stack's final states where the logits were not computed."""
    return None if project_output else stack.output


def model_output(logits: Tensor | None, stacks: dict[str, StackOutput], act_loss_weight: float = 0.0,
                 step_head: Callable[[Tensor], Tensor] | None = None,
                 final_states: Tensor | None = None) -> ModelOutput:
    """``ModelOutput`` of ``logits`` and the model's stacks by name ("encoder", "decoder"): their attention maps
    (an encoder's as ``"encoder"``, a decoder's as ``"decoder_self"`` / ``"decoder_cross"``; empty lists left out),
    ponder time and update counts (any halting loop), ``ponder_loss`` = ``act_loss_weight`` * the sum of their ACT
    ponder costs, or the sum of their PonderNet / stick-breaking losses (each already weighted), their unweighted
    regularisers by name, ``moe_loss`` their summed MoE losses, and ``aux_loss = moe_loss + ponder_loss`` of those
    present. ``step_head`` (the model's prediction from final states, e.g. the output softmax's logits) turns a
    stack's per-step states (PonderNet in training) into ``step_logits``, with ``step_weights`` its p_n.
    ``final_states``: given instead of ``logits`` (None) by a model asked not to project its output."""
    if (logits is None) == (final_states is None):
        raise ValueError("model_output: give exactly one of logits and final_states")
    out = ModelOutput(logits, final_states=final_states)
    for name, stack in stacks.items():
        maps = ({"encoder": stack.self_attentions} if name == "encoder" else
                {f"{name}_self": stack.self_attentions, f"{name}_cross": stack.cross_attentions})
        out.attentions.update({k: v for k, v in maps.items() if v})
        if stack.halting is not None:
            out.ponder_time[name] = stack.halting.ponder_time
            out.n_updates[name] = stack.halting.n_updates
            out.halting_regularizers.update({f"{name}_{k}": v for k, v in stack.halting_regularizers().items()})
        if stack.step_states is not None and step_head is not None:
            out.step_logits = torch.stack([step_head(h) for h in stack.step_states])
            out.step_weights = stack.step_weights
    costs = [c for c in (stack.ponder_cost() for stack in stacks.values()) if c is not None]
    if costs:
        out.ponder_loss = act_loss_weight * sum(costs)
    losses = [h for h in (stack.halting_loss() for stack in stacks.values()) if h is not None]
    if losses:
        out.ponder_loss = sum(losses) if out.ponder_loss is None else out.ponder_loss + sum(losses)
    moe = [s.moe_loss for s in stacks.values() if s.moe_loss is not None]
    if moe:
        out.moe_loss = sum(moe)
    present = [a for a in (out.moe_loss, out.ponder_loss) if a is not None]
    if present:
        out.aux_loss = sum(present)
    return out
