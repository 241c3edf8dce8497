"""Mixture-of-experts feed-forward transition: top-k gating, expert capacity, load-balancing auxiliary loss.

The T-DMCA-MoE layers of Liu et al. 2018 (128 or 256 experts; t2t ``transformer_moe``, built on the sparsely-gated
MoE of Shazeer et al. 2017, "Outrageously Large Neural Networks"). Each expert is a position-wise feed-forward
network ``W2 act(W1 x)``; a router ``x W_g`` scores the experts, and each token goes to its top ``k``:

- gating (Shazeer et al. 2017, eq. 3-5, without the noise term): ``G(x) = softmax(KeepTopK(x W_g, k))``, i.e. the
  softmax over the k best logits; the output is ``sum_{e in top-k} G(x)_e E_e(x)``;
- capacity (GShard, Lepikhin et al. 2020; Switch, Fedus et al. 2021): in training each expert takes at most
  ``C = ceil(capacity_factor * N * k / n_experts)`` of the N real tokens of a call, and an assignment beyond C is
  dropped (its gate contributes nothing; the layer's residual carries the token). Which assignments are kept is
  the *priority*, ``priority=``:

  * ``"position"`` (default; **causal priority**, a deviation from GShard for decoder-only models): the slots of
    every expert are filled in sequence-position order over ALL choices -- every assignment (first, second, ...
    choice) of position i comes before any assignment of position i + 1 (at one position: first choices of the
    batch rows, then their second choices, ...). A token's routing then depends only on the tokens at its own
    and earlier positions, so training stays causal: a later token's first choice can never evict an earlier
    token's second choice (tested). The capacity C itself counts the call's real tokens, so it changes only when
    the padding changes, not when later tokens do;
  * ``"choice"`` (GShard's priority): all first choices before all second choices, in token order within a
    choice. NOT causal in training: a later token's first choice evicts an earlier token's second choice.

  In evaluation nothing is dropped under either priority, so that a token's output never depends on the other
  tokens of the batch (incremental decoding equals a full forward);
- load balancing, ``balance=``:

  * ``"importance"`` (default; Shazeer et al. 2017, eq. 6, ``L_importance``): the squared coefficient of variation
    of the experts' importance, ``CV(sum_x P(x))^2`` with ``P(x) = softmax(x W_g)`` the dense router
    distribution (Shazeer sum the sparse gates; the dense distribution keeps a gradient to every expert's
    logit). It is >= 0 and exactly 0 for a router that spreads its probability mass evenly (tested);
  * ``"switch"`` (Fedus et al. 2021, eq. 4, generalised to top-k as in GShard):
    ``n_experts * sum_e f_e * P_e`` with ``f_e`` the fraction of the N*k assignments routed to e and ``P_e`` the
    mean router probability; 1 for a uniform router (its usual optimum, though not a strict lower bound).

  The returned auxiliary loss is already multiplied by ``aux_loss_weight``.

Experts are computed together: assignments are dispatched into an ``(E, C, D)`` buffer and run through stacked
expert weights with batched matrix products (no Python loop over experts), so that a few experts run fast on CPU.
Padding tokens (``token_mask`` False) are not routed and take no part in the loss; their output is 0.

``route_mask`` (a halting loop's running positions, :mod:`ut.nn.stack`): of the real tokens only those where it is
True are routed; the others (halted positions, which run no step) take no expert slot and no part in the loss, and
their output is 0. The training capacity still counts every REAL token of the call (``token_mask``), so that it
depends on the padding alone: counting the routed tokens instead would make an earlier token's capacity depend on
whether later tokens still run, which breaks causal priority in a decoder under a halting loop.

Shape legend: B batch, L length, N = routed tokens, D width, F expert inner width, E experts, k experts per token,
C expert capacity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BALANCE_LOSSES = ("importance", "switch")
PRIORITIES = ("position", "choice")


def cv_squared(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared coefficient of variation var(x) / mean(x)^2 of a 1-D tensor (Shazeer et al. 2017, eq. 6)."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var(unbiased=False) / (x.mean() ** 2 + eps)


def queue_positions(assigned: Tensor, n_experts: int) -> Tensor:
    """Expert index of each assignment, in priority order (M,) -> its place in that expert's queue (M,)."""
    onehot = F.one_hot(assigned, n_experts)  # (M, E)
    return ((onehot.cumsum(0) - 1) * onehot).sum(-1)


class MoEFeedForward(nn.Module):
    """Top-k gated mixture of feed-forward experts (see the module docstring).

    Args:
        d_model: width D.
        d_ff: inner width F of each expert.
        n_experts: E (Liu et al.: 128 or 256; small counts work on CPU).
        top_k: experts per token k (Shazeer et al.: 2 or 4; Switch: 1).
        capacity_factor: expert capacity C = ceil(factor * N * k / E) in training.
        aux_loss_weight: multiplier of the balancing loss (Switch: 0.01).
        balance: ``"importance"`` (Shazeer et al. 2017) or ``"switch"`` (Fedus et al. 2021).
        dropout: dropout inside each expert, after the activation.
        activation: ``"relu"`` or ``"gelu"``.
        priority: which assignments take an expert's capacity slots first: ``"position"`` (causal, default) or
            ``"choice"`` (GShard); see the module docstring.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int = 16, top_k: int = 2, capacity_factor: float = 1.25,
                 aux_loss_weight: float = 0.01, balance: str = "importance", dropout: float = 0.0,
                 activation: str = "relu", priority: str = "position"):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"need 1 <= top_k ({top_k}) <= n_experts ({n_experts})")
        if capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0, got {capacity_factor}")
        if balance not in BALANCE_LOSSES:
            raise ValueError(f"balance={balance!r} is not one of {BALANCE_LOSSES}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority={priority!r} is not one of {PRIORITIES}")
        self.priority = priority
        self.n_experts, self.top_k, self.capacity_factor = n_experts, top_k, capacity_factor
        self.aux_loss_weight, self.balance, self.dropout = aux_loss_weight, balance, dropout
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
        self.router = nn.Linear(d_model, n_experts, bias=False)  # W_g
        # stacked expert weights, each expert initialised like nn.Linear
        bound1, bound2 = 1 / math.sqrt(d_model), 1 / math.sqrt(d_ff)
        self.w1 = nn.Parameter(torch.empty(n_experts, d_model, d_ff).uniform_(-bound1, bound1))  # (E, D, F)
        self.b1 = nn.Parameter(torch.empty(n_experts, 1, d_ff).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(n_experts, d_ff, d_model).uniform_(-bound2, bound2))  # (E, F, D)
        self.b2 = nn.Parameter(torch.empty(n_experts, 1, d_model).uniform_(-bound2, bound2))
        self.last_routing: dict[str, Tensor] = {}  # expert index / kept flag per assignment of the last call

    def capacity(self, n_tokens: int) -> int:
        """Assignments each expert takes in training, C = ceil(capacity_factor * N * k / E)."""
        return max(1, math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts))

    @staticmethod
    def real_tokens(n_routed: int, token_mask: Tensor | None, route_mask: Tensor | None, n_positions: int) -> int:
        """The N that the training capacity counts: the call's real tokens. Without ``route_mask`` they are the
        ``n_routed`` tokens (no host sync); with it, ``token_mask.sum()`` (one sync, training only)."""
        if route_mask is None:
            return n_routed
        return n_positions if token_mask is None else int(token_mask.sum())

    def balance_loss(self, probs: Tensor, experts: Tensor) -> Tensor:
        """probs (N, E) dense router distribution, experts (N, k) chosen experts -> unweighted balancing loss."""
        if self.balance == "importance":
            return cv_squared(probs.sum(0))
        f = torch.bincount(experts.reshape(-1), minlength=self.n_experts).to(probs.dtype) / experts.numel()
        return self.n_experts * (f * probs.mean(0)).sum()

    def forward(self, x: Tensor, token_mask: Tensor | None = None, cache=None,
                route_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, L, D) -> (output (B, L, D), weighted auxiliary loss ()). ``token_mask`` Bool[B, L]: the real
        tokens; ``route_mask`` Bool[B, L]: the real tokens to route (default all; module docstring). ``cache`` is
        unused (position-wise)."""
        bsz, length, d = x.shape
        flat = x.reshape(-1, d)
        routed = token_mask if route_mask is None else route_mask if token_mask is None else token_mask & route_mask
        idx = None if routed is None else routed.reshape(-1).nonzero().squeeze(1)
        tokens = flat if idx is None else flat.index_select(0, idx)  # (N, D) the routed tokens
        n, e, k = tokens.shape[0], self.n_experts, self.top_k
        if n == 0:
            none = torch.zeros(0, k, dtype=torch.long, device=x.device)
            self.last_routing = {"experts": none, "kept": none.bool()}
            return torch.zeros_like(x), x.new_zeros(())
        logits = self.router(tokens)  # (N, E)
        acc = torch.promote_types(logits.dtype, torch.float32)  # softmax at least in float32
        probs = torch.softmax(logits, dim=-1, dtype=acc)
        top_logits, experts = logits.topk(k, dim=-1)  # (N, k)
        gates = torch.softmax(top_logits, dim=-1, dtype=acc).to(x.dtype)  # (N, k) Shazeer's G(x) on the top k
        aux = self.aux_loss_weight * self.balance_loss(probs, experts)

        # queue position of every assignment in its expert, assignments listed choice-major (k*N,)
        assigned = experts.t().reshape(-1)
        if self.training:
            cap = self.capacity(self.real_tokens(n, token_mask, route_mask, bsz * length))
        else:  # evaluation keeps every assignment: the buffer is as deep as the busiest expert's queue
            cap = int(torch.bincount(assigned, minlength=e).max())
        if self.training and self.priority == "position":
            # causal priority: sort by (sequence position, choice); the stable sort keeps the row order within
            pos = torch.arange(n, device=x.device) if idx is None else idx
            key = (pos % length).repeat(k) * k + torch.arange(k, device=x.device).repeat_interleave(n)
            order = torch.argsort(key, stable=True)
            position = torch.empty_like(order).scatter_(0, order, queue_positions(assigned[order], e))
        else:  # GShard: first choices first, token order within a choice (in evaluation the order is irrelevant)
            position = queue_positions(assigned, e)
        kept = position < cap
        slot = assigned * cap + position  # row in the (E*C) dispatch buffer
        token_of = torch.arange(n, device=x.device).repeat(k)  # (k*N,)
        slot, token_of = slot[kept], token_of[kept]
        gate = gates.t().reshape(-1)[kept]
        self.last_routing = {"experts": experts.detach(), "kept": kept.view(k, n).t().detach()}

        buffer = tokens.new_zeros(e * cap, d).index_copy(0, slot, tokens.index_select(0, token_of))
        h = self.activation(torch.baddbmm(self.b1, buffer.view(e, cap, d), self.w1))  # (E, C, F)
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        y = torch.baddbmm(self.b2, h, self.w2).view(e * cap, d)  # (E*C, D)
        out = tokens.new_zeros(n, d).index_add(0, token_of, y.index_select(0, slot) * gate[:, None])
        if idx is not None:
            out = flat.new_zeros(flat.shape).index_copy(0, idx, out)
        return out.view(bsz, length, d), aux
