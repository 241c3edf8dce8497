"""``ut-train``: the LightningCLI entry point for every model and task of the project.

    ut-train fit  --config experiments/ut_paper/configs/algorithmic_ut.yaml
    ut-train fit  --config ... --ckpt_path last            # resume the run from its last checkpoint
    ut-train test --config ... --ckpt_path <run>/checkpoints/last.ckpt
    ut-train fit  --config ... --trainer.fast_dev_run true # smoke test
    ut-train fit  --config ... --run.logger csv            # no W&B
    ut-train predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt \
        --prediction.output preds.jsonl [--prediction.file texts.txt] [--prediction.beam_size 4]

A config names the LightningModule (``model.class_path``: :class:`ut.lit.Seq2SeqModule`,
:class:`ut.lit.LanguageModelModule` or :class:`ut.lit.ClassificationModule`), the model in it (``model_name`` +
``model_config``), the DataModule (``data.class_path``), the Trainer (strategy ``ddp`` / ``fsdp`` / ``auto``,
precision, gradient clipping, ...) and the ``run`` section (:class:`ut.lit.run_config.RunConfig`: experiment
group, logger, W&B online / offline, checkpoints).

What the CLI adds to a plain LightningCLI:
- the logger from ``run`` (W&B offline by default, grouped by experiment, tagged by model), unless
  ``trainer.logger`` is given explicitly;
- a ``ModelCheckpoint`` writing ``<run dir>/checkpoints/last.ckpt`` (so that ``--ckpt_path last`` resumes), unless
  the config has its own;
- :class:`ut.lit.callbacks.ResumableDataOrder` seeded by ``seed_everything`` (resume with the same data order);
- the full resolved config logged to every logger and saved as ``config.yaml`` in the run folder;
- for ``predict``, the ``prediction`` section (:class:`ut.lit.callbacks.PredictionWriter`: inputs, search, output
  file, by default ``<run dir>/predictions.jsonl``) as a callback unless the trainer's callbacks hold one, and the
  config saved as ``predict_config.yaml`` (the run's ``config.yaml`` stays the fit's).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ut.lit.base import TrainingModule
from ut.lit.callbacks.prediction_writer import PredictionWriter
from ut.lit.callbacks.resumable_order import ResumableDataOrder
from ut.lit.run_config import RunConfig

# no run may wait on the network: W&B offline unless the user opts in (run.online) and unsets WANDB_MODE
os.environ.setdefault("WANDB_MODE", "offline")


class LogConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder AND log the full resolved config to every logger."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        cfg = self.parser.dump(self.config, skip_none=False, format="yaml")
        for lg in trainer.loggers:
            lg.log_hyperparams({"config": yaml.safe_load(cfg)})


class UTCLI(LightningCLI):
    """LightningCLI with the project's run section, logger and checkpoint defaults (see the module docstring)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        parser.add_class_arguments(PredictionWriter, "prediction", instantiate=False)

    def _run_settings(self):
        cfg = self.config.get(str(self.subcommand), self.config)
        run = RunConfig(**{k: v for k, v in vars(cfg["run"]).items()})
        model_name = cfg["model"]["init_args"]["model_name"]
        seed = cfg.get("seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        return run, model_name, seed

    def instantiate_trainer(self, **kwargs):
        run, model_name, seed = self._run_settings()
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        run_dir = run.run_dir(model_name, seed)
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = run.build_logger(model_name, seed)
        if trainer_cfg.get("default_root_dir") in (None, os.getcwd()):
            kwargs["default_root_dir"] = str(run_dir)
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if trainer_cfg.get("enable_checkpointing", True) is not False and not any(
                isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(ModelCheckpoint(dirpath=str(Path(run_dir) / "checkpoints"), save_last=True,
                                             enable_version_counter=False,
                                             every_n_train_steps=run.checkpoint_every_n_steps))
        callbacks.append(ResumableDataOrder(seed=seed))
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in callbacks):
            cfg = self.config.get(str(self.subcommand), self.config)
            callbacks.append(PredictionWriter(**cfg["prediction"].as_dict()))
            self.save_config_kwargs.setdefault("config_filename", "predict_config.yaml")  # keep the fit's config
        kwargs["callbacks"] = callbacks
        self.save_config_kwargs.setdefault("overwrite", True)
        return super().instantiate_trainer(**kwargs)


def cli_main(args: list[str] | None = None, run: bool = True) -> UTCLI:
    """Build (and by default run) the CLI; ``args`` as on the command line (None: ``sys.argv[1:]``)."""
    return UTCLI(
        TrainingModule,
        None,
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
