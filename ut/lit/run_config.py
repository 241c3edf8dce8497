"""The ``run`` section of a training config: where a run writes, how it is tracked, how it checkpoints.

W&B is the default tracker. Its mode: ``online: true`` goes online, ``online: false`` stays offline, and the default
``online: null`` follows the environment variable ``WANDB_MODE`` when the user set it (``online``, ``offline``,
``disabled``) and is offline otherwise, so no run waits on the network unless asked. Nothing in the project sets
``WANDB_MODE`` on import.

One W&B run id per run folder: ``fit`` from scratch draws a new id and writes it to ``<run dir>/wandb_run_id``;
``fit --ckpt_path ...`` (a resume), ``test``, ``validate`` and ``predict`` reuse it (``resume="allow"``), so online they
all log into one W&B run. Offline, every invocation writes its own ``<run dir>/wandb/offline-run-*`` folder carrying
that same id; ``wandb sync <run dir>/wandb/offline-run-*`` uploads them, in time order, into the one run. Under a W&B
sweep agent (``WANDB_SWEEP_ID`` set) the agent's run id (``WANDB_RUN_ID``) is used and appended to the run name, so
that every sweep run has its own name, folder and checkpoints.

``logger: csv`` or ``tensorboard`` needs no W&B account; a resumed or evaluated run APPENDS to the CSV metrics of its
folder (a fresh ``fit`` starts a new file). Runs are grouped by ``experiment`` (the W&B group, and the folder
``<save_dir>/<experiment>/<name>``) and tagged by model name.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ut.models.config import ConfigBase


@dataclass
class RunConfig(ConfigBase):
    """Run bookkeeping; each field is a YAML key under ``run:``."""

    experiment: str = "default"  # W&B group and sub-folder of save_dir, e.g. "ut_paper/algorithmic"
    name: str | None = None  # run name (folder and W&B run name); None: "<model_name>-seed<seed>"
    save_dir: str = "outputs"  # root folder of every run's logs and checkpoints
    logger: Literal["wandb", "csv", "tensorboard", "none"] = "wandb"  # W&B (offline by default) or a local logger
    online: bool | None = None  # W&B: true online, false offline, null: $WANDB_MODE if set, else offline
    project: str = "universal-transformers"  # W&B project
    tags: list[str] = field(default_factory=list)  # extra W&B tags (the model name is always added)
    checkpoint_every_n_steps: int | None = None  # also checkpoint every n steps (None: at epoch / validation end)

    def __post_init__(self):
        super().__post_init__()
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ValueError("run.checkpoint_every_n_steps must be >= 1 or null")

    def run_name(self, model_name: str, seed) -> str:
        name = self.name or f"{model_name}-seed{seed}"
        if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
            name = f"{name}-{os.environ['WANDB_RUN_ID']}"  # one folder and checkpoint per sweep run
        return name

    def run_dir(self, model_name: str, seed) -> Path:
        return Path(self.save_dir) / _slug(self.experiment) / _slug(self.run_name(model_name, seed))

    def wandb_mode(self) -> str | None:
        """The ``mode`` passed to ``wandb.init`` (None: let W&B read ``WANDB_MODE``)."""
        if self.online is None:
            return None if os.environ.get("WANDB_MODE") else "offline"
        return "online" if self.online else "offline"

    def wandb_run_id(self, model_name: str, seed, resume: bool) -> str:
        """The W&B run id of this run folder: reused when ``resume`` (a resumed fit, a test), new otherwise."""
        if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
            return os.environ["WANDB_RUN_ID"]
        path = self.run_dir(model_name, seed) / WANDB_ID_FILE
        # DDP workers (LOCAL_RANK / NODE_RANK > 0) start after rank 0 wrote the id: they read it, never draw one
        worker = os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"
        if (resume or worker) and path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        run_id = secrets.token_hex(4)  # W&B's id alphabet (lower-case letters and digits), 8 characters
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id

    def build_logger(self, model_name: str, seed, resume: bool = False) -> Logger | bool:
        """The Lightning logger this section asks for (False for "none"). ``resume``: the run continues (a fit
        from a checkpoint, or an evaluation of the run): same W&B run id, CSV metrics appended."""
        run_dir = self.run_dir(model_name, seed)
        name = self.run_name(model_name, seed)
        if self.logger == "none":
            return False
        if self.logger == "csv":
            cls = AppendingCSVLogger if resume else CSVLogger
            return cls(save_dir=str(run_dir), name="csv", version="")
        if self.logger == "tensorboard":
            return TensorBoardLogger(save_dir=str(run_dir), name="tb", version="")
        run_dir.mkdir(parents=True, exist_ok=True)
        mode = self.wandb_mode()
        # under a sweep agent the project is the sweep's ($WANDB_PROJECT, set by the agent)
        project = None if os.environ.get("WANDB_SWEEP_ID") else self.project
        return WandbLogger(project=project, name=name, save_dir=str(run_dir), offline=False,
                           id=self.wandb_run_id(model_name, seed, resume), group=self.experiment,
                           tags=sorted({model_name, *self.tags}), job_type="train",
                           **({"mode": mode} if mode else {}))


WANDB_ID_FILE = "wandb_run_id"


class _AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, keeping (and extending) an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(header)


class AppendingCSVLogger(CSVLogger):
    """A CSVLogger that appends to the ``metrics.csv`` of its folder (a resumed run, a test of a trained run)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"
