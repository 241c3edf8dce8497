"""Test-time depth knobs of a trained Universal Transformer: changed on the loaded model, no retraining.

- :func:`set_fixed_depth`: the fixed recurrence's T' (every :class:`ut.models.universal.UniversalStack` reads its
  ``n_steps`` attribute at every forward; Dehghani et al. 2019 §2.1 apply one shared layer T times, so any T' is a
  valid model, the question being whether the weights trained at T generalise to it);
- :func:`set_threshold`: the halting threshold of every halting loop -- ACT's ``1 - epsilon`` (Graves 2016; the
  ``threshold`` attribute of :class:`ut.nn.act.AdaptiveComputationTime`), PonderNet's cumulative-probability
  threshold (Banino et al. 2021) and the stick-breaking threshold (Tan et al. 2023), the latter two through
  :func:`ut.models.halting.set_halting_threshold`. A PonderNet encoder-decoder's encoder keeps its threshold
  (``pondernet_encoder_threshold``, 1 - eps): its p-weighted memory is an approximation of the training readout,
  and a lower threshold would hand the decoder a memory it never saw in training (:mod:`ut.nn.pondernet`), so the
  threshold sweep moves the decoder's depth only (:func:`set_max_steps` caps both stacks);
- :func:`set_max_steps`: the most steps a halting loop may run (its cap, ``act_max_steps`` at training).

Depth beyond training needs a timestep signal S_t for the new steps: the sinusoidal one (the paper's) is defined at
every t; the learned one (t2t's) is a table of ``max_steps`` rows and has no row for a step beyond it, so these
helpers refuse such a depth with a ValueError naming the table size, before any forward runs.
"""

from __future__ import annotations

from torch import nn

from ut.models.halting import set_halting_threshold
from ut.models.universal import UniversalStack
from ut.nn.act import AdaptiveComputationTime
from ut.nn.pondernet import PonderNet


def universal_stacks(model: nn.Module) -> list[UniversalStack]:
    """Every UT stack of ``model`` (encoder, decoder); a ValueError if there is none (not a UT)."""
    stacks = [m for m in model.modules() if isinstance(m, UniversalStack)]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no UniversalStack: test-time depth needs a Universal Transformer")
    return stacks


def _check_timestep(stack: UniversalStack, n_steps: int) -> None:
    ts = stack.timestep
    if ts.kind == "learned" and n_steps > ts.max_steps:
        raise ValueError(f"{n_steps} steps need a timestep signal for steps 0..{n_steps - 1}, but this model's "
                         f"learned timestep table has {ts.max_steps} rows (timestep: learned); only the sinusoidal "
                         "timestep signal extrapolates to steps beyond training")


def set_fixed_depth(model: nn.Module, n_steps: int) -> int:
    """Run every stack of a fixed-recurrence UT for ``n_steps`` steps; returns how many stacks were set. A
    ValueError for a model with a halting loop (its depth is the threshold's and the cap's: :func:`set_threshold`,
    :func:`set_max_steps`), for ``n_steps < 1``, or for a learned timestep table too short (module docstring)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    stacks = universal_stacks(model)
    for s in stacks:
        if s.halting is not None:
            raise ValueError(f"this UT halts dynamically ({type(s.halting).__name__}): its n_steps is not read; "
                             "change its halting threshold or its max_steps instead")
        _check_timestep(s, n_steps)
    for s in stacks:
        s.n_steps = n_steps
    return len(stacks)


def halting_loops(model: nn.Module) -> list[nn.Module]:
    """The halting loops (ACT, PonderNet, stick-breaking) of every UT stack of ``model``."""
    return [s.halting for s in universal_stacks(model) if s.halting is not None]


def threshold_knob_loops(model: nn.Module) -> list[nn.Module]:
    """The halting loops whose threshold :func:`set_threshold` sets: all but a PonderNet encoder's p-weighted
    readout (module docstring)."""
    return [m for m in halting_loops(model) if not (isinstance(m, PonderNet) and m.readout == "expected_state")]


def set_threshold(model: nn.Module, threshold: float) -> int:
    """Set the halting threshold of every loop of :func:`threshold_knob_loops` of ``model`` (ACT: ``1 -
    epsilon``); returns how many were set. A ValueError when the model has none (fixed depth) or the threshold is
    outside (0, 1]."""
    if not 0 < threshold <= 1:
        raise ValueError(f"a halting threshold must be in (0, 1], got {threshold}")
    loops = threshold_knob_loops(model)
    if not halting_loops(model):
        raise ValueError(f"{type(model).__name__} has no halting loop (fixed recurrence): change its depth with "
                         "set_fixed_depth")
    acts = [m for m in loops if isinstance(m, AdaptiveComputationTime)]
    for m in acts:
        m.threshold = threshold
    n = len(acts) + set_halting_threshold(model, threshold)
    if n != len(loops):
        raise ValueError(f"{len(loops) - n} halting loops of {type(model).__name__} have no known threshold")
    return n


def set_max_steps(model: nn.Module, max_steps: int) -> int:
    """Let every halting loop of ``model`` run at most ``max_steps`` steps (the last one takes the remainder);
    returns how many were set. A ValueError for a fixed-depth model, ``max_steps < 1``, or a learned timestep table
    too short."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    stacks = [s for s in universal_stacks(model) if s.halting is not None]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no halting loop (fixed recurrence): use set_fixed_depth")
    for s in stacks:
        _check_timestep(s, max_steps)
    for s in stacks:
        s.halting.max_steps = max_steps
    return len(stacks)


def threshold_of(model: nn.Module) -> float:
    """The (common) halting threshold of ``model``'s loops of :func:`threshold_knob_loops`."""
    values = {float(m.threshold) for m in threshold_knob_loops(model)}
    if len(values) != 1:
        raise ValueError(f"expected one halting threshold over the stacks, found {sorted(values)}")
    return values.pop()
