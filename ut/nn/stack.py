"""One function runs every stack of layers in this repository: :func:`run_stack`.

A stack is a *block* of layers applied ``n_steps`` times:

- the Transformer (Vaswani et al. 2017) and T-D / T-DMCA (Liu et al. 2018): a block of N distinct layers, once;
- the Universal Transformer (Dehghani et al. 2019, §2): a block of ONE shared layer, T times (``n_steps``), with
  ``step_input`` adding the position and timestep signals before every application (``x_t = H + P + S_t``), or
  under a halting loop (``act``) until every position halted: Adaptive Computation Time (:mod:`ut.nn.act`),
  PonderNet (:mod:`ut.nn.pondernet`) or stick-breaking halting (:mod:`ut.nn.stick_breaking`), all three over the
  step-function protocol of :mod:`ut.nn.act`;
- UT-DMCA (``ut/models/universal_decoder_only.py``): a block of a short pattern of shared layers, T times.

Under ACT with ``skip_halted`` (a one-layer block with full attention and a position-wise transition), the layer
runs only on the positions still running, through its ``queries`` argument (:mod:`ut.nn.layers`): keys and values
still come from every position, so the outputs are those of the full computation.

Under a halting loop, the LAST layer of the block also gets the running positions as ``active``, so that a
mixture-of-experts transition there routes only them (a halted position runs no step: no expert slot, no part in
the balancing loss), with or without ``skip_halted``. The earlier layers of a pattern (UT-DMCA) route every real
position: there the states of halted positions at step t are the keys and values of the pattern's later layers,
so they are computed in full (their outputs at the end of the step are discarded).

What comes back is a :class:`StackOutput`: the final states, the attention maps of every executed layer
application, and the auxiliary quantities kept apart -- the summed mixture-of-experts balancing losses
(``moe_loss``, already weighted by each MoE layer) and the halting loop's bookkeeping (``halting``; ``act`` is
ACT's, from which the ponder cost). A PonderNet loop in training also gives the state after every step, final-normed
(``step_states``, what the prediction y_n of the expected loss reads), with its halting distribution
(``step_weights``).

Incremental decoding: layer j of executed step t keeps its caches in a :class:`ut.nn.attention.DecodingCache`
under ``cache_key(t, j)``: :func:`key_by_layer` for a stack of distinct layers, :func:`key_by_step` for one shared
layer (one cache per executed step, not per module: every step runs the same module), :func:`key_by_step_and_layer`
for a shared pattern.

Shape legend: B batch, L length, D width, H heads, Lk keys, S memory length, La running positions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ut.nn.act import ACTOutput, AdaptiveComputationTime, pack_active
from ut.nn.attention import DecodingCache
from ut.nn.layers import LayerOutput
from ut.nn.pondernet import PonderNet, PonderNetOutput
from ut.nn.stick_breaking import StickBreakingHalting, StickBreakingOutput

CacheKey = Callable[[int, int], Hashable]
HaltingLoop = AdaptiveComputationTime | PonderNet | StickBreakingHalting
HaltingOutput = ACTOutput | PonderNetOutput | StickBreakingOutput


def key_by_layer(step: int, index: int) -> Hashable:
    """Cache key of layer ``index`` of a stack of distinct layers."""
    return ("dec", index)


def key_by_step(step: int, index: int) -> Hashable:
    """Cache key of the one shared layer at executed step ``step``."""
    return ("dec", step)


def key_by_step_and_layer(step: int, index: int) -> Hashable:
    """Cache key of layer ``index`` of a shared pattern at executed step ``step``."""
    return ("dec", step, index)


@dataclass
class StackOutput:
    output: Tensor  # (B, L, D) final states (ACT: the ACT combination), final-normed under pre-norm
    token_mask: Tensor | None = None  # Bool[B, L] the real tokens the stack ran over (None: all)
    # one map per executed layer application, when asked for: self (B, H, L, Lk), cross (B, H, L, S)
    self_attentions: list[Tensor | None] = field(default_factory=list)
    cross_attentions: list[Tensor] = field(default_factory=list)
    moe_loss: Tensor | None = None  # summed MoE load-balancing losses of every layer application, already weighted
    halting: HaltingOutput | None = None  # the halting loop's bookkeeping (ponder time, updates, final state)
    step_states: Tensor | None = None  # (N, B, L, D) PonderNet in training: final-normed state after every step

    @property
    def act(self) -> ACTOutput | None:
        """ACT's bookkeeping; None at fixed depth or under another halting mechanism."""
        return self.halting if isinstance(self.halting, ACTOutput) else None

    @property
    def step_weights(self) -> Tensor | None:
        """The halting distribution over ``step_states``: (N, B, L), or (N, B) per example."""
        return None if self.step_states is None else self.halting.step_weights

    def ponder_cost(self) -> Tensor | None:
        """Mean ponder time n + r over the real positions (ACT; unweighted), None at fixed depth."""
        return None if self.act is None else self.act.ponder_cost(self.token_mask)

    def halting_loss(self) -> Tensor | None:
        """PonderNet's beta * KL or stick-breaking's weighted expected depth (already weighted); None otherwise."""
        return None if self.halting is None or self.act is not None else self.halting.loss

    def halting_regularizers(self) -> dict[str, Tensor]:
        """The unweighted regularisers of PonderNet ("kl") or stick-breaking ("expected_depth"); {} otherwise."""
        return {} if self.halting is None or self.act is not None else self.halting.regularizers()

    def record(self, o: LayerOutput, need_weights: bool) -> Tensor:
        """Keep the attention maps and the aux loss of one layer application; return its states."""
        if need_weights:
            self.self_attentions.append(o.self_weights)
            if o.cross_weights is not None:
                self.cross_attentions.append(o.cross_weights)
        if o.aux_loss is not None:
            self.moe_loss = o.aux_loss if self.moe_loss is None else self.moe_loss + o.aux_loss
        return o.x


def apply_layers(layers: Sequence[nn.Module], x: Tensor, into: StackOutput, *, step: int = 0,
                 cache: DecodingCache | None = None, cache_key: CacheKey = key_by_layer, need_weights: bool = False,
                 active: Tensor | None = None, **layer_inputs) -> Tensor:
    """``x`` through ``layers`` in order, once (one block application at executed step ``step``); attention maps
    and aux losses go into ``into``. ``layer_inputs``: the layers' keyword inputs (token_mask, self_mask, memory,
    memory_mask, queries); ``active`` Bool[B, L], a halting loop's running positions, goes to the last layer only
    (module docstring)."""
    for j, layer in enumerate(layers):
        if cache is not None:
            layer_inputs.update(cache=cache, cache_key=cache_key(step, j))
        if active is not None and j == len(layers) - 1:
            layer_inputs = {**layer_inputs, "active": active}
        x = into.record(layer(x, need_weights=need_weights, **layer_inputs), need_weights)
    return x


def run_stack(
    layers: Sequence[nn.Module],
    x: Tensor,
    *,
    n_steps: int = 1,
    step_input: Callable[[Tensor, int], Tensor] | None = None,
    act: HaltingLoop | None = None,
    skip_halted: bool = False,
    before_step: Callable[[int], None] | None = None,
    final_norm: nn.Module | None = None,
    token_mask: Tensor | None = None,
    need_weights: bool = False,
    cache: DecodingCache | None = None,
    cache_key: CacheKey = key_by_layer,
    **layer_inputs,
) -> StackOutput:
    """Apply the block ``layers`` to ``x`` (B, L, D) ``n_steps`` times, or under ``act`` (module docstring).

    Args:
        step_input: ``(state, t) -> x_t``, what step t's block (and ACT's halting unit) reads; None: the state.
        act: run the steps under this halting loop (ACT, PonderNet or stick-breaking; at most ``act.max_steps``)
            instead of exactly ``n_steps``.
        skip_halted: under a halting loop, run the block on the running positions only (one layer, position-wise);
            not when the maps are asked for or with a cache.
        before_step: called with t before every step (incremental ACT decoding fills caches there).
        final_norm: applied to the final states (the pre-norm stacks' final LayerNorm).
        token_mask: Bool[B, L] real tokens: given to the layers, and the positions a halting loop runs (padding
            never runs).
        cache / cache_key: incremental decoding (module docstring); ``x`` holds only the new positions.
        layer_inputs: the layers' other keyword inputs (self_mask, memory, memory_mask).
    """
    out = StackOutput(x, token_mask)
    layer_inputs["token_mask"] = token_mask
    skip_halted = skip_halted and not need_weights and cache is None  # maps and caches need every position

    def block(x_t: Tensor, t: int, running: Tensor | None) -> Tensor:
        inputs = layer_inputs
        if running is not None and skip_halted:
            index, _ = pack_active(running)
            if index.shape[1] < running.shape[1]:
                inputs = {**layer_inputs, "queries": index}
        return apply_layers(layers, x_t, out, step=t, cache=cache, cache_key=cache_key, need_weights=need_weights,
                            active=running, **inputs)

    if act is None:
        for t in range(n_steps):
            if before_step is not None:
                before_step(t)
            x = block(x if step_input is None else step_input(x, t), t, None)
    else:

        def step_fn(state: Tensor, t: int, running: Tensor) -> tuple[Tensor, Tensor]:
            if before_step is not None:
                before_step(t)
            x_t = state if step_input is None else step_input(state, t)
            return x_t, block(x_t, t, running)

        out.halting = act(x, token_mask, step_fn)
        x = out.halting.output
        states = getattr(out.halting, "states", None)
        if states:
            out.step_states = torch.stack([s if final_norm is None else final_norm(s) for s in states])
    out.output = x if final_norm is None else final_norm(x)
    return out
