"""What an experiment table needs from one training run, recorded by the Trainer itself and written as JSON.

Used by the WikiSum experiments (Liu et al. 2018 Tables 3-4 and the L sweep: time per step, memory, learning
curves at equal steps) and usable by any ``ut-train`` run. Recorded:

- ``time_per_step_s``: median wall time of a training batch (forward, backward, optimiser step), the first
  ``skip_first_steps`` excluded (allocator and kernel warm-up); on CUDA the device is synchronised around each step;
  ``cpu_per_step_s``: the same for the process's CPU time (all its threads), which a machine shared with other jobs
  inflates less than wall time;
- ``curve``: ``[[step, training loss], ...]`` of every step; ``val_curve``: ``[[step, val nll], ...]`` at every
  validation: the teacher-forced log-perplexity (nats per target token) against the number of optimiser steps;
- ``peak_rss_mb``: the process's peak resident memory (Linux ``VmHWM``; ``ru_maxrss`` elsewhere), and on CUDA
  ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated``);
- the resolved ``precision`` (with the reason ``precision: auto`` gave), ``accelerator`` and device count, the
  parameter count, the steps trained, and the DataModule's hyper-parameters (paths relative to the working
  directory, which ``ut-train`` runs in).

The JSON goes to ``path`` or, by default, ``<trainer.default_root_dir>/record.json`` (the run folder under
``ut-train``), written at the end of ``fit`` on rank 0.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ut.lit.base import count_parameters


def peak_rss_mb() -> float:
    """Peak resident memory of this process image: VmHWM (Linux); ru_maxrss elsewhere (it survives exec, so a
    child would also count its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def relative_path(path: str | os.PathLike | None, root: str | os.PathLike | None = None) -> str | None:
    """``path`` relative to ``root`` (default: the working directory), so that a record names no machine's
    absolute folders; ``..`` is used for a path outside ``root``."""
    if path is None:
        return None
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root or os.getcwd()))


def _precision_reason() -> str | None:
    """Why ``precision: auto`` chose what it chose (:mod:`ut.precision`), when it was asked to."""
    try:
        from ut.precision import LAST_CHOICE
    except ImportError:
        return None
    return LAST_CHOICE.reason if LAST_CHOICE is not None else None


class RunRecordCallback(L.Callback):
    """Record step times, learning curves and peak memory of a fit (see the module docstring).

    Args:
        path: the JSON file to write; None: ``<default_root_dir>/record.json``.
        skip_first_steps: training steps left out of the median step time.
    """

    def __init__(self, path: str | None = None, skip_first_steps: int = 2):
        if skip_first_steps < 0:
            raise ValueError("skip_first_steps must be >= 0")
        self.path, self.skip_first_steps = path, skip_first_steps
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.curve: list[list[float]] = []
        self.val_curve: list[list[float]] = []
        self._t0 = self._c0 = 0.0
        self._fit_t0 = 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_t0 = time.perf_counter()
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._t0)
        self.cpu_times.append(time.process_time() - self._c0)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.curve.append([int(trainer.global_step), float(loss)])

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        nll = (getattr(pl_module, "last_eval_metrics", {}).get("val") or {}).get("nll")
        if nll is not None:
            self.val_curve.append([int(trainer.global_step), float(nll)])

    def record(self, trainer, pl_module) -> dict[str, Any]:
        timed = self.times[self.skip_first_steps:] or self.times
        cpu = self.cpu_times[self.skip_first_steps:] or self.cpu_times
        hp = dict(getattr(pl_module, "hparams", {}) or {})
        dm = trainer.datamodule
        data = {k: v for k, v in dict(getattr(dm, "hparams", {}) or {}).items()}
        if data.get("data_dir") is not None:
            data["data_dir"] = relative_path(data["data_dir"])
        out: dict[str, Any] = {
            "model_name": hp.get("model_name"),
            "model_config": dict(hp.get("model_config") or {}),
            "module": type(pl_module).__name__,
            "datamodule": type(dm).__name__ if dm is not None else None,
            "data": data,
            "params": count_parameters(pl_module.model)["total"] if getattr(pl_module, "model", None) else None,
            "steps": int(trainer.global_step),
            "time_per_step_s": statistics.median(timed) if timed else None,
            "cpu_per_step_s": statistics.median(cpu) if cpu else None,
            "train_time_s": time.perf_counter() - self._fit_t0,
            "curve": self.curve,
            "val_curve": self.val_curve,
            "peak_rss_mb": peak_rss_mb(),
            "precision": str(trainer.precision),
            "precision_reason": _precision_reason(),
            "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
            "devices": int(trainer.num_devices),
            "threads": torch.get_num_threads(),
        }
        if pl_module.device.type == "cuda":
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            out["gpu"] = torch.cuda.get_device_name(pl_module.device)
        return out

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0:
            return
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record(trainer, pl_module), indent=1, default=float) + "\n")
