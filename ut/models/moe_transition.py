"""The sparse Universal Transformer: a mixture-of-experts transition inside the ONE shared layer.

``transition="moe"`` (config field of every UT model: the encoder-decoder, the classifier, the fact-QA model, and
UT-DMCA, where every layer of the pattern takes it; UT-DMCA's ``"-moe"`` layer suffix gives it to one layer) replaces
the shared layer's feed-forward transition by :class:`ut.nn.moe.MoEFeedForward`: ``n_experts`` feed-forward experts
of inner width ``d_ff`` each, a router sending every token to its ``moe_top_k`` best experts with Shazeer et al.'s
softmax over the top-k logits, a training capacity of ``moe_capacity_factor * tokens * k / n_experts`` per expert,
and a load-balancing loss (``moe_balance``: ``"importance"``, Shazeer et al. 2017, or ``"switch"``, Fedus et al.
2021) times ``moe_aux_loss_weight``, once per application of the layer. These are the field names of the T-DMCA-MoE
model (``ut/models/decoder_only.py``, Liu et al. 2018), which builds its MoE layers with the same
:func:`moe_feed_forward`.

Papers: the Sparse Universal Transformer (Tan, Shen, Chen, Courville, Gan 2023, "Sparse Universal Transformer"):
a UT whose shared block is a sparse mixture of experts, with stick-breaking dynamic halting (here
``recurrence="stick_breaking"``, :mod:`ut.nn.stick_breaking`; ACT and PonderNet combine with it too); MoEUT
(Csordas, Irie, Schmidhuber, Potts, Manning 2024, "MoEUT: Mixture-of-Experts Universal Transformers"): MoE
feed-forward and attention layers in a shared group of layers, which makes a UT match a dense Transformer's
parameter count at a fraction of its compute. The experts are shared across depth like the rest of the layer; the
router reads the step input (after the layer norm, so it sees the timestep signal ``S_t``), so a token may go to
different experts at different steps.

What is kept apart, and where:

- the balancing loss is ``StackOutput.moe_loss`` summed over every application (every executed step) of the shared
  layer, then ``ModelOutput.moe_loss`` over the stacks; the halting regulariser is ``ModelOutput.ponder_loss``; the
  training modules add both to the task loss and log them under their own names (:mod:`ut.lit.base`);
- under a halting loop only the RUNNING positions are routed (:mod:`ut.nn.stack`, :mod:`ut.nn.layers`): a halted
  position runs no step, so it takes no expert slot and no part in the balancing loss; the training capacity counts
  the real tokens, so that it depends on the padding alone and the decoder stays causal (:mod:`ut.nn.moe`); the
  transition is position-wise, so ``act_skip_halted`` applies and the frozen-state fill of cached decoding projects
  keys and values only (:mod:`ut.models.universal`). In a UT-DMCA pattern of several layers this holds at the
  pattern's last layer; the earlier layers route halted positions too, whose states there are the later layers'
  keys and values (:mod:`ut.nn.stack`). So a UT-DMCA under ACT whose LAST pattern layer is an MoE layer (a
  ``"-moe"`` suffix or ``transition="moe"``) gives its halted positions no expert slot and no part in the
  balancing loss there, which trains it differently from this repository's versions before the sparse UT, where
  that layer routed every real position at every step (no committed config uses this combination);
- padding is never routed; in evaluation nothing is dropped, so a token's output depends on no other token of the
  batch and cached decoding equals the full forward.

Deviations, named: no mixture of attention heads (SUT's MoMHA; MoEUT's SwitchHead): the attention stays dense; the
gate is Shazeer et al.'s softmax over the top-k logits with a capacity that drops overflow in training (MoEUT's
sigma-MoE gates by a sigmoid without capacity or dropping); the balancing loss is Shazeer's importance or Switch's
(SUT maximises the mutual information between tokens and experts; MoEUT regularises the entropy of the batch's
expert distribution); one shared layer (MoEUT groups several layers per recurrence, which UT-DMCA's
``layer_pattern`` is, in the decoder-only model); pre- or post-norm as the rest of the UT (not MoEUT's
peri-layernorm).

Equal compute: an expert of width ``d_ff`` applied to k experts per token costs what a dense feed-forward of width
``k * d_ff`` costs, plus the router's ``d_model * n_experts`` multiply-adds; ``benchmarks/flops.py``
(``universal_flops_per_token``, ``active_parameters``) counts both, to match a dense and a sparse UT.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ut.models.config import ConfigBase, MoEBalance, MoEPriority
from ut.nn.moe import MoEFeedForward


@dataclass
class MoETransitionConfig(ConfigBase):
    """The mixture-of-experts fields of the UT configs (module docstring); used where ``transition="moe"``."""

    n_experts: int = 16  # experts of the MoE transition (T-DMCA-MoE, Liu et al.: 128 or 256)
    moe_top_k: int = 2  # experts per token k (Shazeer et al.: 2 or 4; Switch: 1)
    moe_capacity_factor: float = 1.25  # expert capacity = factor * real tokens * k / n_experts (training)
    moe_aux_loss_weight: float = 0.01  # load-balancing loss weight (per application of a MoE layer)
    moe_priority: MoEPriority = "position"  # capacity priority: "position" (causal in training) or "choice" (GShard)
    moe_balance: MoEBalance = "importance"  # balancing loss: "importance" (Shazeer et al.) or "switch" (Fedus et al.)

    def __post_init__(self):
        super().__post_init__()
        self._check(self.n_experts >= 1, f"n_experts must be >= 1, got {self.n_experts}")
        self._check(1 <= self.moe_top_k <= self.n_experts,
                    f"need 1 <= moe_top_k <= n_experts, got moe_top_k={self.moe_top_k}, n_experts={self.n_experts}")
        self._check(self.moe_capacity_factor > 0, f"moe_capacity_factor must be > 0, got {self.moe_capacity_factor}")
        self._check(self.moe_aux_loss_weight >= 0, f"moe_aux_loss_weight must be >= 0, got {self.moe_aux_loss_weight}")


def moe_feed_forward(cfg) -> MoEFeedForward:
    """The MoE transition of a config with the MoE fields (:class:`MoETransitionConfig`'s, or T-DMCA-MoE's), its
    widths, ``dropout`` and ``activation``."""
    return MoEFeedForward(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.moe_top_k, cfg.moe_capacity_factor,
                          cfg.moe_aux_loss_weight, balance=cfg.moe_balance, dropout=cfg.dropout,
                          activation=cfg.activation, priority=cfg.moe_priority)


def shared_layer_transition(cfg) -> str | nn.Module:
    """What a UT layer takes as its ``transition``: the MoE module for ``"moe"``, else the kind's name (built by
    :func:`ut.nn.layers.make_transition`)."""
    return moe_feed_forward(cfg) if cfg.transition == "moe" else cfg.transition
