"""Adaptive Computation Time (ACT) for a recurrence in depth: the Universal Transformer's dynamic halting.

Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks", as adapted per position by Dehghani et al.
2019, "Universal Transformers", §2.2, and tensor2tensor's ``universal_transformer_util._ffn_layer_multi_step`` /
``ut_function``. Every position keeps a halting probability ``hp``, a remainder ``r`` and an update count ``n``
(all ``[B, L]``); threshold = 1 - eps (eps = 0.01). At every step t:

1. the step function adds the timing signals (``x_t = H + P + S_t``) and applies the shared layer;
   ``p = sigmoid(Linear(x_t))`` (the halting unit, its bias initialised to ``halting_bias_init``, +1.0 in t2t);
2. ``new_halted = running & (hp + p > thr)``, ``still = running & ~new_halted``;
3. ``hp += p * still``; ``r += new_halted * (1 - hp)``; ``hp += new_halted * r``; ``n += running``;
4. update weight ``w = p * still + new_halted * r``;
5. ``combine="basic"`` (t2t): ``out = transformed * w + out * (1 - w)``; ``combine="accumulated"`` (Graves):
   ``out = out + transformed * w``;
6. the loop runs while any position runs and t < max_steps. Ponder time = ``n + r``; ponder loss =
   ``weight * mean(n + r)`` over real positions.

Defects of the published implementations that this one avoids (each tested in ``tests/ut/nn/test_act.py``):

- padding positions never run: zero ponder time, no part in the loop condition or the ponder loss (t2t ignores
  the padding);
- a position still running at step ``max_steps - 1`` is forced to halt there and receives its remainder, so its
  weights sum to exactly 1 (t2t leaves them summing to ``hp < 1``);
- the ponder loss keeps its gradient into the halting unit through ``r = 1 - sum(p)`` (a popular PyTorch port
  calls ``.item()`` on it);
- "running" is an explicit boolean, not t2t's float test ``hp < 1.0`` (which depends on ``hp + (1 - hp)``
  rounding to exactly 1).

Deviation from t2t, named: **frozen halted state**. t2t keeps transforming halted positions (``state =
transformed`` for every position; only the ACT output stops changing). We follow the UT paper instead: "once the
per-symbol recurrent block halts, its state is simply copied to the next step" (Dehghani et al. 2019, §2.2), i.e.
``H_t = layer(x_t)`` where a position was running at the start of step t and ``H_t = H_{t-1}`` where it had halted
before. At step t, halted positions still serve as keys / values (and convolution neighbours) through
``x_t = H_frozen + P + S_t``, but their own layer output is never used. Consequences:

- with a position-wise transition the halted positions' queries, attention output and transition need not be
  computed at all: :func:`pack_active` gives the running positions, and the layer runs on those queries only with
  keys and values still from every position (the ``queries`` argument of ``ut/nn/layers.py``'s layers, used by
  :func:`ut.nn.stack.run_stack`); the outputs are unchanged (tested);
- a position's output does not depend on how many further steps the batch runs, which makes cached incremental
  decoding exact (see ``ut/models/universal.py``).

The loop is generic, a step function over states, so that any recurrent-in-depth model (the encoder-decoder UT,
the decoder-only UT) can reuse it::

    step_fn(state Float[B, L, D], step int, running Bool[B, L])
        -> (step_input Float[B, L, D], transformed Float[B, L, D]) or (step_input, transformed, extra)

``step_input`` is what the halting unit reads (the state with the timing signals added); ``transformed`` must be
correct where ``running`` is True (other positions are ignored); ``extra`` (e.g. attention maps) is collected per
step in :attr:`ACTOutput.step_outputs`. :class:`ACTState` is the halting bookkeeping
alone, for loops driven elsewhere.

Shape legend: B batch, L length, D width, N executed steps, La the most running positions in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

StepFn = Callable[[Tensor, int, Tensor], tuple[Tensor, Tensor]]
COMBINE_MODES = ("basic", "accumulated")


@dataclass
class ACTOutput:
    output: Tensor  # (B, L, D) the ACT combination of the per-step states (0 on padding)
    state: Tensor  # (B, L, D) final recurrent state H, frozen at each position's halting step
    ponder_time: Tensor  # (B, L) n + r; 0 on padding
    n_updates: Tensor  # (B, L) n, the steps each position ran; 0 on padding
    remainders: Tensor  # (B, L) r
    weights: list[Tensor] = field(default_factory=list)  # N x (B, L) update weight w per executed step
    halting_probability: list[Tensor] = field(default_factory=list)  # N x (B, L) accumulated hp after each step
    step_outputs: list = field(default_factory=list)  # N x whatever the step function attached (attention maps)

    @property
    def n_steps(self) -> int:
        return len(self.weights)

    def ponder_cost(self, token_mask: Tensor | None = None) -> Tensor:
        """Mean ponder time n + r over real positions (a scalar that keeps its gradient to the halting unit)."""
        return masked_mean(self.ponder_time, token_mask)


def masked_mean(values: Tensor, token_mask: Tensor | None) -> Tensor:
    """Mean of ``values`` (B, L) over the positions where ``token_mask`` is True (all when None); 0 (with a
    gradient) when there is no position at all (an empty batch), not NaN."""
    if token_mask is None:
        return values.mean() if values.numel() else values.sum()
    m = token_mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


class ACTState:
    """Per-position halting bookkeeping of one ACT loop (steps 2-4 of the module docstring).

    Args:
        token_mask: Bool[B, L], True on real tokens; padding never runs.
        threshold: 1 - eps.
        max_steps: the step with index ``max_steps - 1`` forces every running position to halt.
    """

    def __init__(self, token_mask: Tensor, threshold: float, max_steps: int, dtype: torch.dtype = torch.float32):
        self.threshold, self.max_steps, self.step = threshold, max_steps, 0
        zeros = torch.zeros(token_mask.shape, dtype=dtype, device=token_mask.device)
        self.hp, self.remainders, self.n_updates = zeros, zeros, zeros
        self.running = token_mask.bool()  # still running (not halted); padding never runs

    def any_running(self) -> bool:
        return self.step < self.max_steps and bool(self.running.any())

    def update(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """Consume the halting probabilities ``p`` (B, L) of this step.

        Returns ``(w, active)``: the update weights (B, L) of this step, and the positions that ran at this step
        (those running at its start: they take the transformed state).
        """
        active, dtype = self.running, self.hp.dtype
        active_f = active.to(dtype)
        p = p.to(dtype) * active_f
        if self.step + 1 >= self.max_steps:  # last allowed step: everything still running halts here
            new_halted = active
        else:
            new_halted = active & (self.hp + p > self.threshold)
        self.running = active & ~new_halted
        still_p = p * self.running.to(dtype)  # p of the positions that keep running
        hp = self.hp + still_p
        r = new_halted.to(dtype) * (1.0 - hp)  # the remainder, once, at the halting step
        self.remainders = self.remainders + r
        self.hp = hp + r
        self.n_updates = self.n_updates + active_f
        self.step += 1
        return still_p + r, active

    @property
    def ponder_time(self) -> Tensor:
        return self.n_updates + self.remainders


class AdaptiveComputationTime(nn.Module):
    """The halting unit and the ACT loop over a step function (see the module docstring).

    Args:
        d_model: width D of the states the halting unit reads.
        max_steps: most steps any position may run (t2t ``act_max_steps``; UT default 2 x the fixed step count).
        epsilon: threshold = 1 - epsilon (Graves: 0.01).
        halting_bias_init: initial bias of the halting unit (t2t ``act_halting_bias_init`` = 1.0, p ~ 0.73 at first,
            which makes most positions halt after 2 steps).
        combine: ``"basic"`` (t2t's default) or ``"accumulated"`` (Graves' weighted sum).
    """

    def __init__(self, d_model: int, max_steps: int, epsilon: float = 0.01, halting_bias_init: float = 1.0,
                 combine: str = "basic"):
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"ACT combine must be one of {COMBINE_MODES}, got {combine!r}")
        if max_steps < 1 or not 0 < epsilon < 1:
            raise ValueError(f"need max_steps >= 1 and 0 < epsilon < 1, got {max_steps}, {epsilon}")
        self.max_steps, self.threshold, self.combine = max_steps, 1.0 - epsilon, combine
        self.halting = nn.Linear(d_model, 1)
        nn.init.constant_(self.halting.bias, halting_bias_init)

    def halting_probability(self, x: Tensor) -> Tensor:
        """p = sigmoid(Linear(x)) (B, L), in at least float32 (bf16 would round the accumulation)."""
        p = torch.sigmoid(self.halting(x)).squeeze(-1)
        return p.to(torch.promote_types(p.dtype, torch.float32))

    def forward(self, state: Tensor, token_mask: Tensor | None, step_fn: StepFn) -> ACTOutput:
        """Run ``step_fn`` until every real position halted (or ``max_steps``); ``state`` (B, L, D) is H^0."""
        if token_mask is None:
            token_mask = torch.ones(state.shape[:2], dtype=torch.bool, device=state.device)
        acts = ACTState(token_mask, self.threshold, self.max_steps,
                        torch.promote_types(state.dtype, torch.float32))
        output = torch.zeros_like(state)
        weights, hps, extras = [], [], []
        while acts.any_running():
            step = acts.step
            result = step_fn(state, step, acts.running)
            step_input, transformed = result[0], result[1]
            extras.append(result[2] if len(result) > 2 else None)
            w, active = acts.update(self.halting_probability(step_input))
            transformed = torch.where(active[..., None], transformed.to(state.dtype), state)
            wt = w[..., None].to(transformed.dtype)
            if self.combine == "basic":  # transformed * wt + output * (1 - wt), in one op
                output = torch.lerp(output, transformed, wt)
            else:
                output = output + transformed * wt
            state = transformed  # frozen where not active (the UT paper's copy; see the module docstring)
            weights.append(w)
            hps.append(acts.hp)
        return ACTOutput(output, state, acts.ponder_time, acts.n_updates, acts.remainders, weights, hps, extras)


class FrozenStates:
    """Incremental decoding under ACT: the frozen input ``H_frozen + P`` (B, n, D) of every position decoded so far.

    A :class:`ut.nn.attention.DecodingCache` site (``reorder_`` follows the beams). With frozen halted states, the
    step-t key / value of a position that halted before step t is a function of ``H_frozen + P + S_t`` alone, so a
    decoder can compute it when step t is first reached by a later position (see ``ut/models/universal.py``).
    """

    def __init__(self):
        self.base: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.base is None else self.base.shape[1]

    def append(self, x: Tensor) -> None:
        self.base = x if self.base is None else torch.cat([self.base, x], dim=1)

    def reorder_(self, index: Tensor) -> None:
        if self.base is not None:
            self.base = self.base.index_select(0, index)


# ----------------------------------------------------------------------------------------------------------------
# compute skipping: run a position-wise computation on the running positions only


def pack_active(active: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the running positions of each row, packed to the left.

    Returns ``(index Long[B, La], valid Bool[B, La])``: ``index[b, :count_b]`` are the running positions of row b in
    order; the rest of the row holds distinct non-running positions (``valid`` False) so that the index is
    duplicate-free and a scatter never collides.
    """
    counts = active.sum(1)
    la = max(int(counts.max()), 1) if active.numel() else 1
    order = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :la]
    valid = torch.arange(la, device=active.device)[None, :] < counts[:, None]
    return order, valid


def gather_positions(x: Tensor, index: Tensor) -> Tensor:
    """x (B, L, D), index (B, La) -> (B, La, D)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def scatter_positions(base: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """``base`` (B, L, D) with rows ``index`` (B, La) replaced by ``values`` (B, La, D) (out of place)."""
    return base.scatter(1, index[..., None].expand(-1, -1, base.shape[-1]), values.to(base.dtype))
