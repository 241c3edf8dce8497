"""Position and timestep signals.

Attention is order-blind, so a position signal is added to the input embedding (Vaswani et al. 2017, §3.5).
Adding a learned vector e_i to x_i is the same as appending a one-hot position p_i to x_i and multiplying by the
block matrix [W_x W_p]: the learned position table IS W_p (shown in ``tests/ut/nn/test_positions.py``).

- :func:`sinusoid`: the fixed signal. We use tensor2tensor's ``get_timing_signal_1d`` layout, [sin | cos] halves
  with geometric timescales from 1 to 1e4 -- Vaswani et al. interleave sin and cos; the two differ only by a fixed
  permutation of channels, so nothing learned depends on the choice.
- :func:`shift_sinusoid`: ``sinusoid(p)`` -> ``sinusoid(p + k)`` by the angle-addition identities, without the
  positions p: how the Universal Transformer's per-step random start index is applied (see
  :func:`draw_start_index` and ``UniversalCommonConfig.position_start_index`` in :mod:`ut.models.universal`).
- :class:`LearnedPositions`: a learned table (BERT / t2t ``pos=emb``).
- :class:`TimestepSignal`: the Universal Transformer's per-step signal S_t (Dehghani et al. 2019, §2.1), added
  together with the position signal before every application of the shared layer. ``sinusoidal`` (the paper: the
  same sinusoid evaluated at the step index) or ``learned`` (t2t's default: a [T, D] table initialised N(0, D^-0.5)
  and multiplied by sqrt(D)).

Shape legend: B batch, L length, D width, T number of steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _inv_timescales(half: int, device, min_timescale: float = 1.0, max_timescale: float = 1.0e4) -> Tensor:
    log_increment = math.log(max_timescale / min_timescale) / max(half - 1, 1)
    return min_timescale * torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -log_increment)


def sinusoid(positions: Tensor, d_model: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4) -> Tensor:
    """Fixed sinusoidal signal for integer ``positions`` (any shape) -> float32 ``positions.shape + (D,)``."""
    half = d_model // 2
    inv_timescales = _inv_timescales(half, positions.device, min_timescale, max_timescale)
    scaled = positions.to(torch.float32)[..., None] * inv_timescales  # (..., D/2)
    signal = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)
    if d_model % 2:
        signal = torch.nn.functional.pad(signal, (0, 1))
    return signal


def shift_sinusoid(signal: Tensor, shift: Tensor | int) -> Tensor:
    """``sinusoid(p, D)`` (``Float[..., D]``, default timescales) -> ``sinusoid(p + shift, D)``, same dtype.

    sin(w(p+k)) = sin(wp) cos(wk) + cos(wp) sin(wk) and cos(w(p+k)) = cos(wp) cos(wk) - sin(wp) sin(wk), channel by
    channel, so the positions p need not be known. ``shift``: an int or a tensor broadcastable to ``signal.shape[:-1]``
    (one start index per batch: a scalar; per example: ``Long[B, 1]``). An odd D's zero pad channel stays zero.
    """
    d_model = signal.shape[-1]
    half = d_model // 2
    k = torch.as_tensor(shift, device=signal.device, dtype=torch.float32)
    angle = k[..., None] * _inv_timescales(half, signal.device)  # (..., D/2)
    cos_k, sin_k = torch.cos(angle), torch.sin(angle)
    s, c = signal[..., :half].float(), signal[..., half : 2 * half].float()
    out = torch.cat([s * cos_k + c * sin_k, c * cos_k - s * sin_k], dim=-1)
    if d_model % 2:
        out = torch.cat([out, signal[..., 2 * half :].float().expand(*out.shape[:-1], 1)], dim=-1)
    return out.to(signal.dtype)


def draw_start_index(length: int, device=None) -> Tensor:
    """tensor2tensor's ``position_start_index="random"`` (``universal_transformer_util.add_position_timing_signal``):
    ONE start index uniform in [0, length) for the whole batch, ``length`` the padded length of the layer input;
    a ``Long[]`` drawn from torch's global generator (so ``seed_everything`` fixes it)."""
    return torch.randint(max(length, 1), (), device=device)


def position_ids(length: int, batch: int = 1, offset: Tensor | int | None = None, device=None) -> Tensor:
    """``Long[B, L]`` positions ``offset + 0 .. offset + L-1``; ``offset`` may be a per-example ``Long[B]``."""
    pos = torch.arange(length, device=device)[None, :].expand(batch, length)
    if offset is None:
        return pos
    if isinstance(offset, int):
        return pos + offset
    return pos + offset.to(pos.device)[:, None]


class LearnedPositions(nn.Module):
    """A learned position table W_p: ``forward(pos Long[...]) -> Float[..., D]``."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=d_model**-0.5)

    def forward(self, positions: Tensor) -> Tensor:
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(
                f"position {int(positions.max())} >= max_len={self.max_len} of the learned position table; "
                "raise max_len in the model config or use position='sinusoidal'"
            )
        return self.table(positions)


class PositionSignal(nn.Module):
    """Position signal of either kind behind one call: ``forward(pos Long[B, L]) -> Float[B, L, D]``."""

    def __init__(self, kind: str, d_model: int, max_len: int):
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"position kind must be 'sinusoidal' or 'learned', got {kind!r}")
        self.kind, self.d_model = kind, d_model
        self.learned = LearnedPositions(max_len, d_model) if kind == "learned" else None

    def forward(self, positions: Tensor) -> Tensor:
        if self.learned is not None:
            return self.learned(positions)
        return sinusoid(positions, self.d_model)


class TimestepSignal(nn.Module):
    """The Universal Transformer's timestep signal S_t, ``forward(t) -> Float[D]`` for step t = 0 .. T-1.

    ``sinusoidal``: the paper's choice (the position sinusoid evaluated at t, any t). ``learned``: t2t's
    ``add_step_timing_signal`` with ``step_timing_signal_type="learned"``: a table of ``max_steps`` rows.
    """

    def __init__(self, kind: str, d_model: int, max_steps: int):
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"timestep signal kind must be 'sinusoidal' or 'learned', got {kind!r}")
        self.kind, self.d_model, self.max_steps = kind, d_model, max_steps
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_steps, d_model) * d_model**-0.5)

    def forward(self, step: int, device: torch.device | None = None) -> Tensor:
        if self.kind == "learned":
            if step >= self.max_steps:
                raise ValueError(f"step {step} >= max_steps={self.max_steps} of the learned timestep table")
            return self.table[step] * math.sqrt(self.d_model)
        return sinusoid(torch.tensor(step, device=device), self.d_model)
