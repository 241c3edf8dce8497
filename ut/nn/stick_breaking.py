"""Stick-breaking dynamic halting (Tan, Shen, Chen, Courville, Gan 2023, "Sparse Universal Transformer", §3.2).

Per position, after step t (t = 1..N, N = ``max_steps``) the halting unit reads the new state h_t,
``alpha_t = sigmoid(Linear(h_t))``, and the halting weights break a stick of length 1:

    p_t = alpha_t * prod_{j<t} (1 - alpha_j).

The output is the halting-weighted combination of the states, ``sum_t p_t h_t`` (the SUT's "soft-halted" state),
and the loss is the expected depth ``sum_t t p_t`` (mean over real positions, times ``loss_weight``; SUT's ACT
loss), which keeps its gradient into the halting unit through the p_t. A position halts as soon as its cumulative
halting ``sum_{k<=t} p_k`` reaches ``threshold`` (SUT: 0.999) and takes the remaining stick at that step,
``p_t = prod_{j<t} (1 - alpha_j)``, so that its weights sum to exactly 1 (as the SUT's soft-halted state does); the
last allowed step takes the remainder likewise. ``threshold`` is an attribute read at every forward, in training
and at evaluation: lowering it after training lowers the executed depth (SUT §4's post-training halting sweep).

Halted positions are frozen (the UT paper's copy, as in :mod:`ut.nn.act`): they run no further step, their state
stays that of their halting step, padding never runs, and the cached incremental decoding of
``ut/models/universal.py`` is exact.

Deviations, named:

- keys and values: the SUT's attention at step t reads the soft-halted states (``sum_{k<t} p_k h_k + (1 - sum_{k<t}
  p_k) h_t``) as keys and values while the queries and the residual stream stay the raw states; here the shared
  layer reads one stream, the raw state, frozen at halting (the repository's ACT semantics), and the halting-weighted
  combination is the stack's OUTPUT only (what the decoder, the classification head or the softmax read);
- the halting unit is one linear unit (zero-initialised: alpha = 0.5 at first, as the SUT's zero-initialised
  gate), not the SUT's two-layer gate; no noise on its logits;
- depth counts from 1 (``sum_t t p_t``; the SUT's code counts from 0: a constant offset of 1, same gradient).

Step-function protocol: :mod:`ut.nn.act`'s (the halting unit reads ``transformed``).

Shape legend: B batch, L length, D width, N executed steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ut.nn.act import StepFn, masked_mean


@dataclass
class StickBreakingOutput:
    output: Tensor  # (B, L, D) the halting-weighted combination sum_t p_t h_t (0 on padding)
    state: Tensor  # (B, L, D) final state, frozen at each position's halting step
    weights: Tensor  # (N, B, L) the halting weights p_t per executed step (sum 1 on real positions, 0 on padding)
    ponder_time: Tensor  # (B, L) expected depth sum_t t p_t; 0 on padding
    n_updates: Tensor  # (B, L) steps each position ran; 0 on padding
    expected_depth: Tensor  # scalar: mean expected depth over real positions (unweighted)
    loss: Tensor  # scalar: loss_weight * expected_depth
    step_outputs: list = field(default_factory=list)  # N x whatever the step function attached

    @property
    def n_steps(self) -> int:
        return self.weights.shape[0]

    def regularizers(self) -> dict[str, Tensor]:
        """The unweighted regulariser by name (logged beside the ponder time)."""
        return {"expected_depth": self.expected_depth}


class StickBreakingHalting(nn.Module):
    """The halting unit and the stick-breaking loop over a step function (see the module docstring).

    Args:
        d_model: width D of the states the halting unit reads.
        max_steps: N, the most steps (the last one takes the remainder).
        threshold: cumulative halting at which a position halts, in (0, 1] (SUT: 0.999); changeable after training.
        loss_weight: weight of the expected-depth loss.
    """

    def __init__(self, d_model: int, max_steps: int, threshold: float = 0.999, loss_weight: float = 0.01):
        super().__init__()
        if max_steps < 1 or not 0 < threshold <= 1 or loss_weight < 0:
            raise ValueError(f"stick-breaking halting needs max_steps >= 1, 0 < threshold <= 1, loss_weight >= 0; "
                             f"got {max_steps}, {threshold}, {loss_weight}")
        self.max_steps, self.threshold, self.loss_weight = max_steps, threshold, loss_weight
        self.halting = nn.Linear(d_model, 1)
        nn.init.zeros_(self.halting.weight)
        nn.init.zeros_(self.halting.bias)

    def halting_logit(self, h: Tensor) -> Tensor:
        """logit(alpha_t) (B, L), in at least float32."""
        z = self.halting(h).squeeze(-1)
        return z.to(torch.promote_types(z.dtype, torch.float32))

    def forward(self, state: Tensor, token_mask: Tensor | None, step_fn: StepFn) -> StickBreakingOutput:
        """Run ``step_fn`` from H^0 = ``state`` (B, L, D) until every real position halted (or ``max_steps``)."""
        mask = (torch.ones(state.shape[:2], dtype=torch.bool, device=state.device) if token_mask is None
                else token_mask.bool())
        dtype = torch.promote_types(state.dtype, torch.float32)
        zeros = torch.zeros(mask.shape, dtype=dtype, device=state.device)
        log_not_halted, depth, n_updates = zeros, zeros, zeros  # log prod_{j<t}(1 - alpha_j), ...
        output = torch.zeros_like(state)
        running, ws, extras = mask, [], []
        for t in range(self.max_steps):
            if not bool(running.any()):
                break
            active = running
            result = step_fn(state, t, active)
            extras.append(result[2] if len(result) > 2 else None)
            transformed = torch.where(active[..., None], result[1].to(state.dtype), state)
            z = self.halting_logit(transformed)
            log_alpha, log_stay = F.logsigmoid(z), F.logsigmoid(-z)
            if t + 1 >= self.max_steps:
                halts = active
            else:  # cumulative halting after this step, 1 - prod_{j<=t}(1 - alpha_j), reaches the threshold
                halts = active & (-torch.expm1(log_not_halted + log_stay) >= self.threshold)
            w = torch.where(halts, log_not_halted, log_not_halted + log_alpha).exp()  # the stick's piece
            w = torch.where(active, w, zeros)
            log_not_halted = torch.where(active & ~halts, log_not_halted + log_stay, log_not_halted)
            output = output + w[..., None].to(state.dtype) * transformed
            depth = depth + (t + 1) * w
            n_updates = n_updates + active.to(dtype)
            running = active & ~halts
            state = transformed  # frozen where not active
            ws.append(w)
        weights = torch.stack(ws) if ws else zeros.new_zeros((0, *mask.shape))
        mean_depth = masked_mean(depth, mask)
        return StickBreakingOutput(output, state, weights, depth, n_updates, mean_depth,
                                   self.loss_weight * mean_depth, extras)
