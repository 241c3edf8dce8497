"""The ``run`` section of a training config: where a run writes, how it is tracked, how it checkpoints.

W&B is the default tracker and runs OFFLINE unless ``online: true`` (no run ever waits on the network; sync an
offline run later with ``wandb sync <save_dir>/.../wandb/offline-run-*``). Note that the environment variable
``WANDB_MODE=offline`` (set by the Makefile and the tests) still wins over ``online: true``: unset it to go online.
``logger: csv`` or ``tensorboard`` needs no W&B account. Runs are grouped by ``experiment`` (the W&B group, and the
folder ``<save_dir>/<experiment>/<name>``) and tagged by model name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

LOGGERS = ("wandb", "csv", "tensorboard", "none")


@dataclass
class RunConfig:
    """Run bookkeeping; each field is a YAML key under ``run:``."""

    experiment: str = "default"  # W&B group and sub-folder of save_dir, e.g. "ut_paper/algorithmic"
    name: str | None = None  # run name (folder and W&B run name); None: "<model_name>-seed<seed>"
    save_dir: str = "outputs"  # root folder of every run's logs and checkpoints
    logger: str = "wandb"  # "wandb" (default, offline), "csv", "tensorboard" or "none"
    online: bool = False  # W&B: sync to the server while training (off: offline run folder)
    project: str = "universal-transformers"  # W&B project
    tags: list[str] = field(default_factory=list)  # extra W&B tags (the model name is always added)
    checkpoint_every_n_steps: int | None = None  # also checkpoint every n steps (None: at epoch / validation end)

    def __post_init__(self):
        if self.logger not in LOGGERS:
            raise ValueError(f"run.logger={self.logger!r} is not one of {LOGGERS}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ValueError("run.checkpoint_every_n_steps must be >= 1 or null")

    def run_name(self, model_name: str, seed) -> str:
        return self.name or f"{model_name}-seed{seed}"

    def run_dir(self, model_name: str, seed) -> Path:
        return Path(self.save_dir) / _slug(self.experiment) / _slug(self.run_name(model_name, seed))

    def build_logger(self, model_name: str, seed) -> Logger | bool:
        """The Lightning logger this section asks for (False for "none")."""
        run_dir = self.run_dir(model_name, seed)
        name = self.run_name(model_name, seed)
        if self.logger == "none":
            return False
        if self.logger == "csv":
            return CSVLogger(save_dir=str(run_dir), name="csv", version="")
        if self.logger == "tensorboard":
            return TensorBoardLogger(save_dir=str(run_dir), name="tb", version="")
        run_dir.mkdir(parents=True, exist_ok=True)
        # a run id from the folder, so that resuming a run continues the same W&B run; under a W&B sweep agent
        # (which sets WANDB_SWEEP_ID) the agent's own run id must be used instead
        ids = {} if os.environ.get("WANDB_SWEEP_ID") else {"id": _slug(f"{self.experiment}-{name}")[-64:],
                                                            "resume": "allow"}
        return WandbLogger(project=self.project, name=name, save_dir=str(run_dir), offline=not self.online,
                           group=self.experiment, tags=sorted({model_name, *self.tags}), job_type="train", **ids)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"
