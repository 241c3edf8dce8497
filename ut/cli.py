"""``ut-train``: the LightningCLI entry point for every model and task of the project.

    ut-train fit  --config experiments/ut_paper/configs/algorithmic_ut.yaml
    ut-train fit  --config ... --ckpt_path last            # resume the run from its last checkpoint
    ut-train test --config ... --ckpt_path <run>/checkpoints/last.ckpt
    ut-train fit  --config ... --trainer.fast_dev_run true # smoke test
    ut-train fit  --config ... --run.logger csv            # no W&B

A config names the LightningModule (``model.class_path``: :class:`ut.lit.Seq2SeqModule`,
:class:`ut.lit.LanguageModelModule` or :class:`ut.lit.ClassificationModule`), the model in it (``model_name`` +
``model_config``), the DataModule (``data.class_path``), the Trainer (strategy ``ddp`` / ``fsdp`` / ``auto``,
precision, gradient clipping, ...) and the ``run`` section (:class:`ut.lit.run_config.RunConfig`: experiment
group, logger, W&B online / offline, checkpoints).

What the CLI adds to a plain LightningCLI:
- ``trainer.precision: auto`` (the default): bf16-mixed where the CPU / GPU runs bf16 natively, 32-true
  otherwise, logged with its reason (:mod:`ut.precision`);
- the logger from ``run`` (W&B offline by default, online with ``--run.online true``; grouped by experiment,
  tagged by model; one W&B run id across fit / resume / test, see :mod:`ut.lit.run_config`), unless
  ``trainer.logger`` is given explicitly;
- ``trainer.enable_progress_bar`` defaults to "stdout is a terminal" (a progress bar with the running loss when
  run by hand, none in logs and scripted runners; a config or ``--trainer.enable_progress_bar`` decides otherwise);
- a ``ModelCheckpoint`` writing ``<run dir>/checkpoints/last.ckpt`` (so that ``--ckpt_path last`` resumes), unless
  the config has its own;
- :class:`ut.lit.callbacks.ResumableDataOrder` seeded by ``seed_everything`` (resume with the same data order);
- the full resolved config logged once to every logger (nested under ``config``) and saved as ``config.yaml`` in
  the run folder.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Literal

import lightning as L
import yaml
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ut import precision
from ut.lit.base import TrainingModule
from ut.lit.callbacks.resumable_order import ResumableDataOrder
from ut.lit.run_config import RunConfig
from ut.precision import AUTO, resolve_precision

PrecisionInput = Literal["auto"] | _PRECISION_INPUT



def _log_ut_info() -> None:
    """Show the project's INFO messages (e.g. the precision choice) like Lightning's own, once a process."""
    ut_log = logging.getLogger("ut")
    if not ut_log.handlers:
        ut_log.addHandler(logging.StreamHandler())
        ut_log.setLevel(logging.INFO)


class Trainer(L.Trainer):
    """Lightning's Trainer whose ``precision`` also accepts ``"auto"`` (the default): bf16-mixed where the device
    runs bf16 natively, 32-true otherwise (:func:`ut.precision.resolve_precision`, which logs the choice)."""

    def __init__(self, *args, precision: PrecisionInput | None = AUTO, **kwargs):
        _log_ut_info()
        precision = resolve_precision(precision, kwargs.get("accelerator", "auto"))
        super().__init__(*args, precision=precision, **kwargs)


class LogConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder AND log the full resolved config to every logger, once, nested under
    ``config`` (Lightning's own logging of the module's and data module's hparams is switched off: they are part of
    it), with the precision that ``trainer.precision: auto`` resolved to."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        cfg = self.parser.dump(self.config, skip_none=False, format="yaml")
        pl_module._log_hyperparams = False
        if trainer.datamodule is not None:
            trainer.datamodule._log_hyperparams = False
        params = {"config": yaml.safe_load(cfg), "precision/used": str(trainer.precision)}
        if precision.LAST_CHOICE is not None:
            params["precision/reason"] = precision.LAST_CHOICE.reason
        for lg in trainer.loggers:
            lg.log_hyperparams(params)


class UTCLI(LightningCLI):
    """LightningCLI with the project's run section, logger and checkpoint defaults (see the module docstring)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(RunConfig, "run")

    def _run_settings(self):
        cfg = self.config.get(str(self.subcommand), self.config)
        run = RunConfig(**{k: v for k, v in vars(cfg["run"]).items()})
        model_name = cfg["model"]["init_args"]["model_name"]
        seed = cfg.get("seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        # the run continues (same W&B run id, CSV metrics appended): a resumed fit, or any evaluation of the run
        resume = self.subcommand not in (None, "fit") or cfg.get("ckpt_path") is not None
        return run, model_name, seed, resume

    def instantiate_trainer(self, **kwargs):
        run, model_name, seed, resume = self._run_settings()
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        run_dir = run.run_dir(model_name, seed)
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = run.build_logger(model_name, seed, resume=resume)
        if trainer_cfg.get("default_root_dir") in (None, os.getcwd()):
            kwargs["default_root_dir"] = str(run_dir)
        if trainer_cfg.get("enable_progress_bar") is None:
            kwargs["enable_progress_bar"] = sys.stdout.isatty()  # a bar (with the loss) in a terminal only
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if trainer_cfg.get("enable_checkpointing", True) is not False and not any(
                isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(ModelCheckpoint(dirpath=str(Path(run_dir) / "checkpoints"), save_last=True,
                                             enable_version_counter=False,
                                             every_n_train_steps=run.checkpoint_every_n_steps))
        callbacks.append(ResumableDataOrder(seed=seed))
        kwargs["callbacks"] = callbacks
        self.save_config_kwargs.setdefault("overwrite", True)
        return super().instantiate_trainer(**kwargs)


def cli_main(args: list[str] | None = None, run: bool = True) -> UTCLI:
    """Build (and by default run) the CLI; ``args`` as on the command line (None: ``sys.argv[1:]``)."""
    return UTCLI(
        TrainingModule,
        None,
        trainer_class=Trainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def main() -> None:
    cli_main(None)


if __name__ == "__main__":
    main()
