"""Timing helpers for a shared, noisy CPU: warm-up, interleaved repeats, medians, machine description.

The machine these benchmarks are developed on is shared with other jobs, so every comparison runs its
contenders in the SAME process, interleaved (A B C A B C ...) rather than one after the other: a burst of
load from a neighbour then hits every contender alike, and the median over repeats discards the outliers.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
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


def machine_description() -> dict[str, object]:
    """CPU model, core count, load average, torch version and thread count (recorded with every result)."""
    cpu_model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                cpu_model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info: dict[str, object] = {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "bf16_supported": bool(getattr(torch.backends, "mkldnn", None) and torch.backends.mkldnn.is_available()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
