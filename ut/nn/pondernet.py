"""PonderNet halting for a recurrence in depth (Banino, Balaguer, Blundell 2021, "PonderNet: Learning to Ponder").

At every step n = 1..N (N = ``max_steps``) the step function gives the new state h_n; the halting unit reads it,
``lambda_n = sigmoid(Linear(h_n))`` (the paper's step function returns (y_n, h_{n+1}, lambda_n) from the state of
step n), and the halting distribution is the stick-breaking product (paper eq. 1-2)

    p_n = lambda_n * prod_{j<n} (1 - lambda_j),     lambda_N = 1,

so that the last allowed step takes the remainder ``prod_{j<N} (1 - lambda_j)`` and ``sum_n p_n = 1`` on every real
position (the paper's maximum number of steps; padding runs no step and has p = 0). The losses (paper eq. 5-6):

- reconstruction ``L_Rec = sum_n p_n L(y, y_n)``, the expectation of the task loss over the halting step, y_n the
  model's prediction from h_n. The loop returns every h_n (:attr:`PonderNetOutput.states`, in training) and the p_n
  (:attr:`PonderNetOutput.step_weights`); the model turns them into per-step predictions
  (``ModelOutput.step_logits`` / ``step_weights``) and the training module takes the expectation
  (``ut.lit.losses.expected_smoothed_cross_entropy``);
- regulariser ``beta * KL(p || p_G)``, p_G the geometric distribution of rate ``lambda_p`` truncated to the N steps
  (renormalised to sum to 1 over them), computed in log space (``log p_n = log lambda_n + sum_{j<n} log(1 -
  lambda_j)`` by ``logsigmoid``), averaged over the real positions (per example: over the examples) --
  :attr:`PonderNetOutput.kl` and ``loss = beta * kl``.

Training unrolls every real position for all N steps (nothing halts: every h_n enters the expectation). Evaluation
halts each position (``eval_halting``, an attribute read at every forward, so it may be changed after training):

- ``"threshold"`` (deterministic): halt after the first step at which the cumulative ``sum_{k<=n} p_k`` exceeds
  ``threshold`` (default 0.5: the median of the halting distribution; the ``"expected_state"`` readout's default is
  :data:`EXPECTED_STATE_THRESHOLD`, below);
- ``"sample"`` (the paper's inference): halt after step n with probability lambda_n (one Bernoulli draw per
  position, or per example, and step, from torch's global generator). Not for the ``"expected_state"`` readout,
  which always halts by its threshold.

A position that halts at step n takes the remainder, ``p'_n = prod_{j<n} (1 - lambda_j)``, so that its p' sums to 1
over the steps it ran; the evaluation KL and ponder time use p'. Halted states are frozen (the UT paper's copy, as in
:mod:`ut.nn.act`): a halted position runs no further step and its state stays the state of its halting step, which
is then the prediction's state -- the cached incremental decoding of ``ut/models/universal.py`` is exact under
``"threshold"`` (under ``"sample"`` a cached decode draws its own coins).

Readouts (``readout``), each a named choice of where the expectation is taken:

- ``"per_position"``: one halting distribution per position; the prediction at position i after step n reads h_n(i)
  (decoders: per target token; the expectation is exact);
- ``"per_example"``: one halting distribution per example (the paper's whole-network halting): lambda_n reads the
  mean of h_n over the real positions; every real position of a row shares lambda_n, p_n and the halting step (the
  classifiers: one answer per example; exact);
- ``"expected_state"``: APPROXIMATION, for the encoder of an encoder-decoder, where an exact expectation would need
  a full decoder pass per encoder step: the output is the p-weighted state ``sum_n p_n h_n`` over all N steps in
  training (at evaluation ``sum_n p'_n h_n`` over the steps run), and only the KL of the encoder's p enters the
  loss. The decoder is trained on the memory of all N steps, so evaluation must reproduce it: this readout halts
  only once the cumulative p exceeds ``threshold`` = 1 - eps (default :data:`EXPECTED_STATE_THRESHOLD` = 0.999;
  the model config's ``pondernet_encoder_threshold``), whatever ``eval_halting`` says. The halting step then takes
  a remainder below eps, so that the position's memory differs from its training memory by at most
  ``eps * max_k |h_halt - h_k|`` (plus what freezing it changes in the positions that attend to it); at the
  median (0.5) the memory would carry up to half the mass on a state the decoder never saw in training.

Deviations, named: the halting unit is one linear unit on the state (the paper leaves the step function's halting
head open), its bias initialised to ``logit(lambda_p)`` so that it starts near the prior's rate; training always
unrolls the full N steps (the paper may stop unrolling once the cumulative halting probability exceeds 1 - eps);
per-position halting of a sequence model with frozen halted states at evaluation (the paper halts the whole
network; the frozen states follow the UT paper).

Step-function protocol: :mod:`ut.nn.act`'s (``step_fn(state, step, running) -> (step_input, transformed[, extra])``;
the halting unit reads ``transformed``).

Shape legend: B batch, L length, D width, N executed steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ut.nn.act import StepFn, masked_mean

EVAL_HALTING = ("threshold", "sample")
READOUTS = ("per_position", "per_example", "expected_state")
PER_TOKEN_THRESHOLD = 0.5  # default "threshold" halting of the per-position / per-example readouts: the median step
EXPECTED_STATE_THRESHOLD = 0.999  # the "expected_state" readout's: its evaluation memory within 1e-3 of training's


def first_real(values: Tensor, token_mask: Tensor) -> Tensor:
    """``values`` (..., B, L) at each row's first real position -> (..., B) (0 for a row without one)."""
    index = token_mask.to(torch.int8).argmax(-1)  # (B,)
    picked = values.gather(-1, index[:, None].expand(*values.shape[:-1], 1)).squeeze(-1)
    return picked * token_mask.any(-1).to(picked.dtype)


def truncated_geometric_log_prior(lambda_p: float, n_steps: int, dtype=torch.float64, device=None) -> Tensor:
    """log p_G(n) (n_steps,) for n = 1..N: ``lambda_p (1 - lambda_p)^(n-1) / (1 - (1 - lambda_p)^N)``."""
    n = torch.arange(n_steps, dtype=torch.float64, device=device)
    log_norm = math.log(-math.expm1(n_steps * math.log1p(-lambda_p)))
    return (math.log(lambda_p) + n * math.log1p(-lambda_p) - log_norm).to(dtype)


@dataclass
class PonderNetOutput:
    output: Tensor  # (B, L, D) the readout: the final (frozen) state, or the p-weighted state ("expected_state")
    state: Tensor  # (B, L, D) final state, frozen at each position's halting step (evaluation)
    halting_distribution: Tensor  # (N, B, L) p_n (p'_n at evaluation) per executed step; 0 on padding
    ponder_time: Tensor  # (B, L) expected halting step sum_n n p_n; 0 on padding
    n_updates: Tensor  # (B, L) steps each position ran; 0 on padding
    kl: Tensor  # scalar KL(p || truncated geometric), mean over real positions (per example: over examples)
    loss: Tensor  # scalar beta * kl
    token_mask: Tensor  # Bool[B, L] the positions that ran
    readout: str = "per_position"
    states: list[Tensor] = field(default_factory=list)  # N x (B, L, D) h_n, in training for the expectation
    step_outputs: list = field(default_factory=list)  # N x whatever the step function attached

    @property
    def n_steps(self) -> int:
        return self.halting_distribution.shape[0]

    @property
    def step_weights(self) -> Tensor:
        """p_n of every step: (N, B, L), or (N, B) with the per-example readout."""
        if self.readout == "per_example":
            return first_real(self.halting_distribution, self.token_mask)
        return self.halting_distribution

    def regularizers(self) -> dict[str, Tensor]:
        """The unweighted regulariser by name (logged beside the ponder time)."""
        return {"kl": self.kl}


class PonderNet(nn.Module):
    """The halting unit and the PonderNet loop over a step function (see the module docstring).

    Args:
        d_model: width D of the states the halting unit reads.
        max_steps: N, the most steps (the last one takes the remainder).
        lambda_p: rate of the geometric prior (Banino et al.: 0.2 on parity), in (0, 1).
        beta: weight of the KL regulariser (Banino et al.: 0.01).
        eval_halting: ``"threshold"`` or ``"sample"`` (evaluation only; an attribute, changeable after training;
            the ``"expected_state"`` readout always halts by threshold).
        threshold: cumulative halting probability that halts under ``"threshold"``, in (0, 1]; None:
            :data:`PER_TOKEN_THRESHOLD` (0.5), or :data:`EXPECTED_STATE_THRESHOLD` (0.999) under ``"expected_state"``.
        readout: ``"per_position"``, ``"per_example"`` or ``"expected_state"``.
    """

    def __init__(self, d_model: int, max_steps: int, lambda_p: float = 0.2, beta: float = 0.01,
                 eval_halting: str = "threshold", threshold: float | None = None, readout: str = "per_position"):
        super().__init__()
        if max_steps < 1 or not 0 < lambda_p < 1 or beta < 0:
            raise ValueError(f"PonderNet needs max_steps >= 1, 0 < lambda_p < 1, beta >= 0; got {max_steps}, "
                             f"{lambda_p}, {beta}")
        if readout not in READOUTS:
            raise ValueError(f"PonderNet readout must be one of {READOUTS}, got {readout!r}")
        if threshold is None:
            threshold = EXPECTED_STATE_THRESHOLD if readout == "expected_state" else PER_TOKEN_THRESHOLD
        if not 0 < threshold <= 1:
            raise ValueError(f"PonderNet threshold must be in (0, 1], got {threshold}")
        self.max_steps, self.lambda_p, self.beta, self.readout = max_steps, lambda_p, beta, readout
        self.eval_halting, self.threshold = eval_halting, threshold
        self.halting = nn.Linear(d_model, 1)
        nn.init.constant_(self.halting.bias, math.log(lambda_p / (1 - lambda_p)))

    def halting_logit(self, h: Tensor, token_mask: Tensor) -> Tensor:
        """logit(lambda_n) (B, L) from the states h (B, L, D), in at least float32; per example from the mean over
        the real positions, broadcast over the row."""
        if self.readout == "per_example":
            m = token_mask[..., None].to(h.dtype)
            z = self.halting((h * m).sum(1) / m.sum(1).clamp_min(1.0)).expand(-1, h.shape[1])
        else:
            z = self.halting(h).squeeze(-1)
        return z.to(torch.promote_types(z.dtype, torch.float32))

    def _halts(self, log_remaining_after: Tensor, log_lambda: Tensor) -> Tensor:
        """Which positions halt at this step, before the last one (evaluation rules; nothing in training; the
        ``"expected_state"`` readout by threshold alone)."""
        if self.training:
            return torch.zeros_like(log_lambda, dtype=torch.bool)
        if self.eval_halting not in EVAL_HALTING:
            raise ValueError(f"PonderNet eval_halting must be one of {EVAL_HALTING}, got {self.eval_halting!r}")
        if self.eval_halting == "sample" and self.readout != "expected_state":
            u = torch.rand(log_lambda.shape[0], 1 if self.readout == "per_example" else log_lambda.shape[1],
                           dtype=log_lambda.dtype, device=log_lambda.device)
            return u < log_lambda.exp()
        return -torch.expm1(log_remaining_after) > self.threshold  # cumulative p after this step

    def forward(self, state: Tensor, token_mask: Tensor | None, step_fn: StepFn) -> PonderNetOutput:
        """Run ``step_fn`` from H^0 = ``state`` (B, L, D): all N steps in training, until every real position halted
        at evaluation (module docstring)."""
        mask = (torch.ones(state.shape[:2], dtype=torch.bool, device=state.device) if token_mask is None
                else token_mask.bool())
        dtype = torch.promote_types(state.dtype, torch.float32)
        zeros = torch.zeros(mask.shape, dtype=dtype, device=state.device)
        log_not_halted, kl, ponder, n_updates = zeros, zeros, zeros, zeros  # log prod_{j<n}(1 - lambda_j), ...
        log_prior = truncated_geometric_log_prior(self.lambda_p, self.max_steps, dtype, state.device)
        output = torch.zeros_like(state) if self.readout == "expected_state" else None
        keep_states = self.training and output is None
        running, ps, states, extras = mask, [], [], []
        for t in range(self.max_steps):
            if not bool(running.any()):
                break
            active = running
            result = step_fn(state, t, active)
            extras.append(result[2] if len(result) > 2 else None)
            transformed = torch.where(active[..., None], result[1].to(state.dtype), state)
            if t + 1 < self.max_steps:
                z = self.halting_logit(transformed, mask)
                log_lambda, log_stay = F.logsigmoid(z), F.logsigmoid(-z)
                halts = active & self._halts(log_not_halted + log_stay, log_lambda)
            else:  # lambda_N = 1: every position still running halts here
                log_lambda, log_stay, halts = zeros, zeros, active
            # p_n = lambda_n prod_{j<n}(1 - lambda_j); the halting step takes the remainder prod_{j<n}(1 - lambda_j)
            log_p = torch.where(halts, log_not_halted, log_not_halted + log_lambda)
            p = torch.where(active, log_p.exp(), zeros)
            kl = kl + torch.where(active, p * (log_p - log_prior[t]), zeros)
            ponder = ponder + (t + 1) * p
            n_updates = n_updates + active.to(dtype)
            log_not_halted = torch.where(active & ~halts, log_not_halted + log_stay, log_not_halted)
            running = active & ~halts
            if output is not None:
                output = output + p[..., None].to(state.dtype) * transformed
            if keep_states:
                states.append(transformed)
            state = transformed  # frozen where not active
            ps.append(p)
        dist = torch.stack(ps) if ps else zeros.new_zeros((0, *mask.shape))
        if self.readout == "per_example":
            rows = mask.any(-1)
            kl_mean = masked_mean(first_real(kl, mask)[None], rows[None])
        else:
            kl_mean = masked_mean(kl, mask)
        return PonderNetOutput(state if output is None else output, state, dist, ponder, n_updates, kl_mean,
                               self.beta * kl_mean, mask, self.readout, states, extras)
