"""Exact epoch-level metrics: sums accumulated per batch, reduced across processes once, divided at the end.

Averaging per-batch ratios is wrong when batches hold different numbers of tokens (the last batch, padding), so
validation / test metrics are kept as (numerator, denominator) sums and reduced with the strategy (sum over DDP
ranks) before dividing.
"""

from __future__ import annotations

from collections import defaultdict

import torch


class EpochSums:
    """Named running sums; ``add(name, value)``, then ``reduced(strategy)`` -> {name: float}."""

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        self._vectors: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self._sums.clear()
        self._vectors.clear()

    def add(self, name: str, value: torch.Tensor | float) -> None:
        v = value.detach().double().cpu() if isinstance(value, torch.Tensor) else torch.tensor(float(value),
                                                                                                 dtype=torch.float64)
        self._sums[name] = self._sums[name] + v.sum()

    def add_vector(self, name: str, value: torch.Tensor) -> None:
        """Element-wise sums (e.g. per-task counts or a histogram), all of one length per name."""
        v = value.detach().double().cpu()
        self._vectors[name] = self._vectors[name] + v if name in self._vectors else v.clone()

    def __bool__(self) -> bool:
        return bool(self._sums) or bool(self._vectors)

    def reduced(self, strategy=None) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Sums over processes: ({scalar name: float}, {vector name: tensor}). ``strategy`` may be None (1 process)."""
        names = sorted(self._sums)
        scalars = torch.stack([self._sums[n] for n in names]) if names else torch.zeros(0, dtype=torch.float64)
        vec_names = sorted(self._vectors)
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            device = strategy.root_device
            scalars = strategy.reduce(scalars.to(device), reduce_op="sum").cpu()
            vectors = {n: strategy.reduce(self._vectors[n].to(device), reduce_op="sum").cpu() for n in vec_names}
        else:
            vectors = {n: self._vectors[n] for n in vec_names}
        return {n: float(v) for n, v in zip(names, scalars)}, vectors
