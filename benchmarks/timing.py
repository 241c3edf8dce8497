"""Timing helpers for a shared, noisy CPU: warm-up, interleaved repeats, medians (machine: ``benchmarks/machine.py``).

The machine these benchmarks are developed on is shared with other jobs, so every comparison runs its
contenders in the SAME process, interleaved (A B C A B C ...) rather than one after the other: a burst of
load from a neighbour then hits every contender alike, and the median over repeats discards the outliers.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    """Seconds per call of one contender: every repeat, and their median."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repeats were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.seconds else float("nan")


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued device work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, inner: int = 1, device="cpu",
    collect_garbage: bool = True,
) -> dict[str, Timing]:
    """Time each zero-argument callable ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Each timed sample is the mean over ``inner`` back-to-back calls; with ``collect_garbage`` the Python garbage
    collector runs before each sample (outside the timed region). Returns name -> :class:`Timing`.
    """
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    timings = {name: Timing(name) for name in contenders}
    for r in range(repeats):
        # rotate the order each round so that no contender always runs right after the same neighbour
        names = list(contenders)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            if collect_garbage:
                gc.collect()
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                contenders[name]()
            sync(device)
            timings[name].seconds.append((time.perf_counter() - t0) / inner)
    return timings


def time_once(fn: Callable[[], object], device="cpu") -> float:
    """Wall seconds of one call (e.g. a torch.compile warm-up)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0
