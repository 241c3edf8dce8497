"""Optimiser and learning-rate schedule of the Transformer papers.

Vaswani et al. 2017, §5.3: Adam(beta1 0.9, beta2 0.98, eps 1e-9) and

    lr(step) = c * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)

(linear warmup for ``warmup`` steps, then inverse square root decay), with c = 1 and warmup 4000 in the paper.
tensor2tensor (used by the Universal Transformer paper, Dehghani et al. 2019) uses beta2 0.997, c = 2.0 and
warmup 8000 ("rsqrt_decay * linear_warmup * constant * rsqrt_hidden_size"); the defaults here are the paper's,
the t2t values are one config change away.

Deviations, named: steps are counted from 1 (step 0 would give lr 0 and a wasted first update), so the first
update uses ``lr(1)``; ``schedule="constant"`` (lr = ``lr``) exists for quick debugging runs and for Adam
baselines; ``min_lr`` (default 0) floors the decay.

Run-length-independent peak: the inverse-sqrt schedule peaks at step = warmup with
``c * d_model^-0.5 * warmup^-0.5``, so a script that scales the warmup with the run length (warmup = steps / 4)
also moves the peak (3.9e-3 at 1000 steps, 7.2e-3 at 300 for c = 0.5, d = 64). ``peak_lr`` (default None: off)
names the peak directly: ``lr(step) = peak_lr * warmup^0.5 * min(step^-0.5, step * warmup^-1.5)``, i.e. the same
warmup + inverse-sqrt shape with ``c = peak_lr * d_model^0.5 * warmup^0.5``, so the largest learning rate is
``peak_lr`` whatever the warmup, the run length and the width; ``lr_scale`` is then ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

SCHEDULES = ("inverse_sqrt", "constant")


def inverse_sqrt_lr(step: int, d_model: int, warmup: int, scale: float = 1.0) -> float:
    """``scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` for ``step >= 1`` (Vaswani et al. eq. 3)."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if warmup < 1 or d_model < 1:
        raise ValueError(f"warmup and d_model must be >= 1, got warmup={warmup}, d_model={d_model}")
    return scale * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


@dataclass
class OptimizerConfig:
    """Adam + schedule settings; every field is a YAML key under ``model.optimizer``."""

    schedule: str = "inverse_sqrt"  # "inverse_sqrt" (paper) or "constant"
    lr_scale: float = 1.0  # c in lr = c * d^-0.5 * min(...) (paper 1.0; t2t 2.0); ignored by "constant"
    warmup_steps: int = 4000  # linear warmup length (paper 4000; t2t 8000)
    lr: float = 1e-3  # the learning rate of schedule="constant"
    min_lr: float = 0.0  # floor of the decayed learning rate
    beta1: float = 0.9  # Adam beta1 (paper 0.9)
    beta2: float = 0.98  # Adam beta2 (paper 0.98; t2t 0.997)
    eps: float = 1e-9  # Adam epsilon (paper 1e-9)
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) when > 0; the papers use none
    peak_lr: float | None = None  # inverse_sqrt: the learning rate at step = warmup (overrides lr_scale); None: off

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule={self.schedule!r} is not one of {SCHEDULES}")
        if self.warmup_steps < 1:
            raise ValueError(f"optimizer.warmup_steps must be >= 1, got {self.warmup_steps}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"Adam betas must be in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.lr_scale <= 0 or self.lr <= 0 or self.eps <= 0:
            raise ValueError("optimizer.lr_scale, optimizer.lr and optimizer.eps must be > 0")
        if self.peak_lr is not None and not self.peak_lr > 0:
            raise ValueError(f"optimizer.peak_lr must be > 0 or null, got {self.peak_lr}")

    @classmethod
    def from_dict(cls, values: dict | None) -> OptimizerConfig:
        values = dict(values or {})
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown optimizer keys {unknown}; valid keys are {sorted(names)}")
        return cls(**values)

    def lr_at(self, step: int, d_model: int) -> float:
        """The learning rate of optimiser step ``step`` (1-based)."""
        if self.schedule == "constant":
            return self.lr
        return max(self.min_lr, inverse_sqrt_lr(step, d_model, self.warmup_steps, self.scale(d_model)))

    def scale(self, d_model: int) -> float:
        """c of the inverse-sqrt schedule: ``lr_scale``, or the c that puts the peak at ``peak_lr``."""
        if self.peak_lr is None:
            return self.lr_scale
        return self.peak_lr * d_model**0.5 * self.warmup_steps**0.5


def fused_adam_supported(params: list[torch.nn.Parameter]) -> bool:
    """True when every parameter is a float32 / float64 / bfloat16 tensor on a CPU or CUDA device (where
    ``torch.optim.Adam(fused=True)`` has a kernel); float16 only on CUDA."""
    ok = {"cpu": (torch.float32, torch.float64, torch.bfloat16),
          "cuda": (torch.float32, torch.float64, torch.bfloat16, torch.float16)}
    return bool(params) and all(p.dtype in ok.get(p.device.type, ()) for p in params)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig, d_model: int):
    """Adam (AdamW when weight_decay > 0) with a LambdaLR applying :meth:`OptimizerConfig.lr_at`.

    Adam runs as torch's fused kernel wherever it exists (:func:`fused_adam_supported`): the same update as the
    per-parameter loop up to float rounding, and 2.7-5.2x faster optimiser steps on CPU
    (``benchmarks/optimizer_step.py``), several percent of a training step at d 64.
    The optimiser's base lr is 1 and the LambdaLR multiplier IS the learning rate; LambdaLR's internal counter
    starts at 0, so the multiplier is evaluated at ``counter + 1`` (1-based steps, see module docstring).
    Returns ``(optimizer, scheduler)``; the scheduler must be stepped once per optimiser step.
    """
    params = list(params)
    kwargs = dict(lr=1.0, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused_adam_supported(params))
    if cfg.weight_decay > 0:
        opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay, **kwargs)
    else:
        opt = torch.optim.Adam(params, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cfg.lr_at(i + 1, d_model))
    return opt, sched


def peak_lr(cfg: OptimizerConfig, d_model: int) -> float:
    """The largest learning rate of the schedule (at step = warmup for inverse_sqrt)."""
    if cfg.schedule == "constant":
        return cfg.lr
    return cfg.scale(d_model) * d_model**-0.5 * cfg.warmup_steps**-0.5 if cfg.warmup_steps else math.inf
