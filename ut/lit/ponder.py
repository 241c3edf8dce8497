"""ACT ponder-time statistics for logging (Graves 2016; Dehghani et al. 2019 §2.2 and Fig. 5).

Models with Adaptive Computation Time report, per stream ("encoder", "decoder"), the ponder time ``n + r`` and the
number of updates ``n`` of every position (``ModelOutput.ponder_time`` / ``n_updates``, 0 on padding). The ponder
LOSS is already inside ``ModelOutput.aux_loss``; this module only summarises the times, masked to real tokens:
sums for exact epoch means, the maximum, and a histogram of ``n`` (the paper's per-position ponder plots; with the
t2t halting bias of +1 many tokens halt after ~2 steps, which the histogram makes visible).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ut.lit.epoch_metrics import EpochSums
from ut.models.outputs import ModelOutput

HIST_BINS = 32  # n_updates histogram covers 0..HIST_BINS-1 (larger counts land in the last bin)


def ponder_masks_for(output: ModelOutput, masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """The real-token mask of every stream that reports ponder time; a stream without a mask counts n > 0."""
    out = {}
    for name, n in output.n_updates.items():
        m = masks.get(name)
        out[name] = m.bool() if m is not None and m.shape == n.shape else n > 0
    return out


def add_ponder_sums(sums: EpochSums, output: ModelOutput, masks: dict[str, Tensor]) -> None:
    """Accumulate ponder-time sums / counts / max and the n_updates histogram of each stream into ``sums``."""
    for name, mask in ponder_masks_for(output, masks).items():
        pt = output.ponder_time.get(name)
        n = output.n_updates[name].detach().float()
        k = mask.sum()
        sums.add(f"ponder_{name}_count", k)
        sums.add(f"n_updates_{name}_sum", (n * mask).sum())
        if pt is not None:
            sums.add(f"ponder_{name}_sum", (pt.detach().float() * mask).sum())
        hist = torch.bincount(n[mask].long().clamp(0, HIST_BINS - 1).cpu(), minlength=HIST_BINS)
        sums.add_vector(f"n_updates_hist_{name}", hist)


def ponder_metrics(scalars: dict[str, float]) -> dict[str, float]:
    """Means from the sums of :func:`add_ponder_sums`: ``ponder_<stream>`` (mean n + r), ``n_updates_<stream>``."""
    out = {}
    for key, count in scalars.items():
        if key.startswith("ponder_") and key.endswith("_count") and count > 0:
            name = key[len("ponder_"):-len("_count")]
            if f"ponder_{name}_sum" in scalars:
                out[f"ponder_{name}"] = scalars[f"ponder_{name}_sum"] / count
            out[f"n_updates_{name}"] = scalars[f"n_updates_{name}_sum"] / count
    return out


def batch_ponder_metrics(output: ModelOutput, masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-batch means and max of the ponder time (for training-step logging)."""
    out = {}
    for name, mask in ponder_masks_for(output, masks).items():
        pt = output.ponder_time.get(name, output.n_updates[name].float())
        vals = pt.detach().float()[mask]
        if vals.numel():
            out[f"ponder_{name}"] = vals.mean()
            out[f"ponder_{name}_max"] = vals.max()
    return out
