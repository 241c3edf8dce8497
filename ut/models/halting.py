"""The recurrence in depth of the Universal Transformer models: fixed depth or one of three halting mechanisms.

``recurrence`` (config field of every UT model, through :class:`HaltingConfig`):

- ``"fixed"``: T = ``n_steps`` applications of the shared layer (Dehghani et al. 2019, "UT base");
- ``"act"``: Adaptive Computation Time per position (Graves 2016; UT §2.2), :mod:`ut.nn.act`; ponder loss
  ``act_loss_weight * mean(n + r)``;
- ``"pondernet"``: PonderNet (Banino et al. 2021), :mod:`ut.nn.pondernet`; loss the expectation of the task loss over
  the halting step plus ``pondernet_beta * KL(p || truncated geometric(pondernet_lambda_p))``; evaluation halting
  ``pondernet_eval_halting`` (``"threshold"`` at ``pondernet_threshold``, or ``"sample"``) per token or per example;
  the encoder of an encoder-decoder (the ``"expected_state"`` readout, trained on the memory of all N steps) halts
  only at ``pondernet_encoder_threshold`` (default 0.999: 1 - eps), so that its evaluation memory stays the one
  the decoder was trained on;
- ``"stick_breaking"``: the Sparse Universal Transformer's stick-breaking halting (Tan et al. 2023),
  :mod:`ut.nn.stick_breaking`; loss ``stick_breaking_loss_weight * mean expected depth``; halting threshold
  ``stick_breaking_threshold``, which may be changed after training (:func:`set_halting_threshold`).

The three dynamic ones run at most ``act_max_steps`` steps (default 2 x ``n_steps``), freeze halted states, never
run padding, and share ``act_skip_halted``. :func:`build_halting` builds the loop a stack runs; ``readout`` says where
PonderNet's expectation is taken (:mod:`ut.nn.pondernet`: per target token in the decoders, per example in the
classifiers, the p-weighted state in the encoder of an encoder-decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from ut.models.config import ConfigBase
from ut.nn.act import AdaptiveComputationTime
from ut.nn.pondernet import PonderNet
from ut.nn.stick_breaking import StickBreakingHalting

Recurrence = Literal["fixed", "act", "pondernet", "stick_breaking"]


@dataclass
class HaltingConfig(ConfigBase):
    """The recurrence fields shared by every Universal Transformer config (module docstring)."""

    n_steps: int = 6  # T: applications of the shared layer (fixed recurrence); the halting ones' max default is 2T
    recurrence: Recurrence = "fixed"  # "fixed" T steps, or halting per position: "act", "pondernet", "stick_breaking"
    act_max_steps: int | None = None  # ACT: most steps a position may run (also pondernet, stick_breaking); None: 2T
    act_epsilon: float = 0.01  # ACT halting threshold = 1 - epsilon (Graves 2016)
    act_halting_bias_init: float = 1.0  # ACT halting unit bias at init (t2t: 1.0, p ~ 0.73)
    act_combine: Literal["basic", "accumulated"] = "basic"  # t2t: out = f*w + out*(1-w); Graves: out += f*w
    act_loss_weight: float = 0.01  # ponder loss weight (t2t act_loss_weight), encoder and decoder each
    act_skip_halted: bool | None = None  # halting: layer on running positions only (same outputs); None: where valid
    pondernet_lambda_p: float = 0.2  # PonderNet: rate of the truncated geometric prior (Banino et al.: 0.2)
    pondernet_beta: float = 0.01  # PonderNet: weight of KL(p || prior), per stack (Banino et al.: 0.01)
    # PonderNet at evaluation: halt once the cumulative p exceeds pondernet_threshold, or by Bernoulli(lambda_n)
    pondernet_eval_halting: Literal["threshold", "sample"] = "threshold"  # PonderNet evaluation halting rule
    pondernet_threshold: float = 0.5  # PonderNet "threshold" halting: cumulative p to exceed (0.5: the median step)
    # PonderNet encoder of an encoder-decoder (p-weighted memory): cumulative p to exceed at evaluation, 1 - eps
    pondernet_encoder_threshold: float = 0.999  # eval memory within eps of training's (all N steps); not "sample"
    stick_breaking_threshold: float = 0.999  # stick-breaking: cumulative halting that halts (SUT: 0.999), changeable
    stick_breaking_loss_weight: float = 0.01  # stick-breaking: weight of the expected depth, encoder and decoder each

    def __post_init__(self):
        super().__post_init__()
        self._check(self.n_steps > 0, "n_steps must be > 0")
        self._check(self.act_max_steps is None or self.act_max_steps >= 1, "act_max_steps must be >= 1 or None")
        self._check(0 < self.act_epsilon < 1, "act_epsilon must be in (0, 1)")
        self._check(self.act_loss_weight >= 0, "act_loss_weight must be >= 0")
        self._check(0 < self.pondernet_lambda_p < 1, "pondernet_lambda_p must be in (0, 1)")
        self._check(self.pondernet_beta >= 0, "pondernet_beta must be >= 0")
        self._check(0 < self.pondernet_threshold <= 1, "pondernet_threshold must be in (0, 1]")
        self._check(0 < self.pondernet_encoder_threshold <= 1, "pondernet_encoder_threshold must be in (0, 1]")
        self._check(0 < self.stick_breaking_threshold <= 1, "stick_breaking_threshold must be in (0, 1]")
        self._check(self.stick_breaking_loss_weight >= 0, "stick_breaking_loss_weight must be >= 0")

    @property
    def max_steps(self) -> int:
        """Most steps the shared layer can run: T (fixed) or act_max_steps (a halting loop, default 2T)."""
        if self.recurrence == "fixed":
            return self.n_steps
        return self.act_max_steps if self.act_max_steps is not None else 2 * self.n_steps


def build_halting(cfg: HaltingConfig, d_model: int, readout: str = "per_position") -> nn.Module | None:
    """The halting loop of ``cfg.recurrence`` over states of width ``d_model`` (None for ``"fixed"``); ``readout``
    is PonderNet's (:mod:`ut.nn.pondernet`), unused by the others; the ``"expected_state"`` readout halts at
    ``pondernet_encoder_threshold``, the others at ``pondernet_threshold``."""
    if cfg.recurrence == "act":
        return AdaptiveComputationTime(d_model, cfg.max_steps, cfg.act_epsilon, cfg.act_halting_bias_init,
                                       cfg.act_combine)
    if cfg.recurrence == "pondernet":
        threshold = cfg.pondernet_encoder_threshold if readout == "expected_state" else cfg.pondernet_threshold
        return PonderNet(d_model, cfg.max_steps, cfg.pondernet_lambda_p, cfg.pondernet_beta,
                         cfg.pondernet_eval_halting, threshold, readout)
    if cfg.recurrence == "stick_breaking":
        return StickBreakingHalting(d_model, cfg.max_steps, cfg.stick_breaking_threshold,
                                    cfg.stick_breaking_loss_weight)
    return None


def threshold_loops(model: nn.Module) -> list[nn.Module]:
    """The PonderNet / stick-breaking loops of ``model`` whose threshold is a depth knob: all but a PonderNet
    ``"expected_state"`` encoder, whose threshold (``pondernet_encoder_threshold``) says how closely its evaluation
    memory follows its training memory (:mod:`ut.nn.pondernet`); set that one's ``threshold`` attribute directly."""
    return [m for m in model.modules() if isinstance(m, StickBreakingHalting)
            or (isinstance(m, PonderNet) and m.readout != "expected_state")]


def set_halting_threshold(model: nn.Module, threshold: float) -> int:
    """Set the evaluation threshold of every loop of :func:`threshold_loops` in ``model`` (a test-time depth sweep;
    a PonderNet encoder-decoder's encoder keeps its own); returns how many loops were set (0: the model has none,
    e.g. fixed depth or ACT)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"a halting threshold must be in (0, 1], got {threshold}")
    loops = threshold_loops(model)
    for m in loops:
        m.threshold = threshold
    return len(loops)
