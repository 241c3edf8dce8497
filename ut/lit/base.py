"""What every training module shares: building the model from the registry, the optimiser and schedule,
parameter counts, and exact epoch-level evaluation metrics.

The model is named by ``model_name`` (a key of :data:`ut.models.MODEL_REGISTRY`) and configured by
``model_config`` (a plain dict, checked by the model's typed config). Each subclass types ``model_config`` with
:func:`model_config_keys` (the keys of the configs of the models it trains), so that LightningCLI rejects a misspelt
key, a wrongly typed value or a value outside a ``Literal`` field's choices at parse time, in one line, and
``--model.model_config.help <Name>`` documents every key (see :func:`ut.models.config.config_keys_type`). Built from
Python, the module checks the same at construction: an unknown key, or a choice outside its field's values
(``ConfigBase.check_choices``), is a ``ValueError`` naming it; the other checks of the config run when the model is
built (at construction when every size is given, else in :meth:`configure_model`).

Sizes that come from the data (vocabulary, number of answer classes, number of positions) may be left out of
``model_config``: they are filled in from the DataModule in :meth:`configure_model` (``DATA_FILLED_KEYS`` says
which key comes from which DataModule attribute), and the filled config is written back into ``hparams`` so that
a checkpoint rebuilds the same model with ``load_from_checkpoint`` and no DataModule. Building in
``configure_model`` is also what Lightning's FSDP strategy needs.

Losses: ``task_loss`` (through :meth:`TrainingModule.smoothed_loss`: the label-smoothed cross-entropy, or, for a
model that gives per-step predictions -- PonderNet in training, ``ModelOutput.step_logits`` / ``step_weights`` --
its expectation over the halting step) plus ``ModelOutput.aux_loss`` (the halting regulariser ``ponder_loss`` and
the MoE ``moe_loss``, each already weighted and each logged under its own name; the unweighted PonderNet KL /
stick-breaking expected depth as ``<stream>_kl`` / ``<stream>_expected_depth``). Training a token-predicting
model at a vocabulary of 1024 or more computes the output projection and the loss fused, in row chunks, never
holding the logits (:meth:`TrainingModule.output_loss_fused`, :mod:`ut.lit.linear_cross_entropy`): the same loss,
gradients and token accuracy; evaluation projects as usual (its metrics need the logits).

Subclasses implement ``forward_batch``, ``task_loss`` and the eval accumulation (``accumulate`` / ``finalize``),
and ``predict_step`` (``ut-train predict``: decoded ids or a class per input row, rendered by
:class:`ut.lit.callbacks.PredictionWriter`), which reads its search from :attr:`TrainingModule.generation`.

Checkpoints also carry the DataModule's :class:`ut.data.predict.TextInterface` (key ``"text_interface"``: the task's
self-contained tokenizer and input format), so that ``ut.load(checkpoint)`` generates from raw text without the data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ut.decoding import GenerationConfig
from ut.lit.epoch_metrics import EpochSums
from ut.lit.linear_cross_entropy import FUSED_OUTPUT_LOSS_MIN_VOCAB, linear_cross_entropy, output_loss_fusable
from ut.lit.losses import SmoothedLoss, expected_smoothed_cross_entropy, smoothed_cross_entropy
from ut.lit.ponder import add_ponder_sums, batch_ponder_metrics, ponder_metrics
from ut.models import build_model, model_classes
from ut.models.config import config_keys_type
from ut.models.outputs import ModelOutput
from ut.optim import OptimizerConfig, build_optimizer

STAGES = ("val", "test")
TEXT_INTERFACE_KEY = "text_interface"  # checkpoint key of the DataModule's ut.data.predict.TextInterface
log = logging.getLogger(__name__)


def count_parameters(module: torch.nn.Module) -> dict[str, int]:
    """Unique parameters (tied weights counted once): total and trainable."""
    seen, total, trainable = set(), 0, 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": total, "trainable": trainable}


def model_config_keys(name: str, module_cls: type[TrainingModule]):
    """The ``TypedDict`` of ``module_cls``'s ``model_config``: every key of the configs of the models it trains
    (``ACCEPTED_MODELS``), optional; its ``DATA_FILLED_KEYS`` may also be null (filled from the DataModule)."""
    configs = [model_classes(n)[1] for n in module_cls.ACCEPTED_MODELS]
    return config_keys_type(name, configs, module_cls.DATA_FILLED_KEYS)


class TrainingModule(L.LightningModule):
    """Base class; see the module docstring. Args shared by every subclass:

    Args:
        model_name: registry name, e.g. "transformer", "universal", "universal_classifier", "decoder_only".
        model_config: the model's config as a dict (data-dependent sizes may be omitted, see above).
        optimizer: :class:`ut.optim.OptimizerConfig` fields (Adam + warmup / inverse-sqrt schedule).
        label_smoothing: eps of the label-smoothed cross-entropy (Vaswani et al.: 0.1).
    """

    # model config key -> DataModule attribute it is filled from when absent (subclasses extend)
    DATA_FILLED_KEYS: dict[str, str] = {}
    # model names this module can train (checked at construction: a clear error instead of a shape mismatch)
    ACCEPTED_MODELS: tuple[str, ...] = ()
    # token-predicting modules (their forward_batch takes project_output, their task_loss handles final_states):
    # vocabularies from this size up train with the fused output projection + loss
    FUSES_OUTPUT_LOSS = False
    FUSED_OUTPUT_LOSS_MIN_VOCAB = FUSED_OUTPUT_LOSS_MIN_VOCAB

    def __init__(self, model_name: str, model_config: dict[str, Any] | None = None,
                 optimizer: dict[str, Any] | None = None, label_smoothing: float = 0.1):
        super().__init__()
        _, config_cls = model_classes(model_name)  # unknown name -> ValueError listing the known ones
        if self.ACCEPTED_MODELS and model_name not in self.ACCEPTED_MODELS:
            raise ValueError(f"{type(self).__name__} trains {self.ACCEPTED_MODELS}; got model_name={model_name!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        model_config = dict(model_config or {})
        fields = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(model_config) - fields)
        if unknown:
            raise ValueError(f"{config_cls.__name__}: unknown model_config keys {unknown}; valid: {sorted(fields)}")
        config_cls.check_choices(model_config)
        self._config_fields = fields
        # _class_path lets `ut-train test --ckpt_path ...` (LightningCLI) rebuild this subclass from a checkpoint
        self.save_hyperparameters({"model_name": model_name, "model_config": model_config,
                                   "optimizer": dict(optimizer or {}), "label_smoothing": label_smoothing,
                                   "_class_path": f"{type(self).__module__}.{type(self).__qualname__}"})
        self.optim_cfg = OptimizerConfig.from_dict(optimizer)
        self.label_smoothing = label_smoothing
        # False: training always projects to logits (the same loss and gradients up to rounding; for debugging)
        self.fused_output_loss = True
        self.model: torch.nn.Module | None = None
        self._sums = {s: EpochSums() for s in STAGES}
        self.last_eval_metrics: dict[str, dict[str, float]] = {}  # stage -> metrics of the last finished epoch
        self.last_eval_vectors: dict[str, dict[str, Tensor]] = {}  # stage -> histograms / per-task counts
        if not self._missing_data_keys():
            self.model = build_model(model_name, model_config)

    # ------------------------------------------------------------------ model construction
    def _missing_data_keys(self) -> list[str]:
        cfg = self.hparams.model_config
        return [k for k in self.DATA_FILLED_KEYS if k in self._config_fields and cfg.get(k) is None]

    def fill_from_data(self, datamodule) -> dict[str, Any]:
        """Fill the absent data-dependent keys from ``datamodule``; returns the filled keys."""
        filled = {}
        for key in self._missing_data_keys():
            attr = self.DATA_FILLED_KEYS[key]
            if datamodule is None or getattr(datamodule, attr, None) is None:
                raise ValueError(
                    f"model_config.{key} is not set and the DataModule ({type(datamodule).__name__}) has no "
                    f"`{attr}` to fill it from; set model_config.{key} explicitly")
            filled[key] = int(getattr(datamodule, attr))
        self.hparams.model_config.update(filled)
        return filled

    def configure_model(self) -> None:
        if self.model is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self.fill_from_data(datamodule)
        self.model = build_model(self.hparams.model_name, self.hparams.model_config)

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError("the model is not built yet: it needs the DataModule's sizes (call configure_model "
                               "inside a Trainer, or give every size in model_config)")
        return self.model

    @property
    def d_model(self) -> int:
        return int(self._require_model().cfg.d_model)

    # ------------------------------------------------------------------ to implement
    def forward_batch(self, batch: dict[str, Tensor], need_weights: bool = False) -> ModelOutput:
        """The model on ``batch``; token-predicting modules also take ``project_output`` (False: the model's final
        states instead of logits, see :meth:`output_loss_fused`)."""
        raise NotImplementedError

    def task_loss(self, batch: dict[str, Tensor], out: ModelOutput) -> tuple[SmoothedLoss, dict[str, Tensor]]:
        """(smoothed loss, per-batch extra metrics such as token accuracy)."""
        raise NotImplementedError

    def smoothed_loss(self, logits: Tensor, target: Tensor, mask: Tensor | None, step_logits: Tensor | None = None,
                      step_weights: Tensor | None = None) -> SmoothedLoss:
        """The label-smoothed cross-entropy of ``logits``; with per-step predictions ``step_logits`` (N, ..., V) and
        their halting probabilities ``step_weights`` (N, ...) (PonderNet in training), its expectation over the
        halting step, ``sum_n p_n L(y_n)`` (:func:`ut.lit.losses.expected_smoothed_cross_entropy`)."""
        if step_logits is not None:
            return expected_smoothed_cross_entropy(step_logits, step_weights, target, mask, self.label_smoothing)
        return smoothed_cross_entropy(logits, target, mask, self.label_smoothing)

    def ponder_masks(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Real-token mask of each ACT stream ("encoder", "decoder")."""
        return {}

    def accumulate(self, sums: EpochSums, batch: dict[str, Tensor], out: ModelOutput, task: SmoothedLoss) -> None:
        """Add task-specific eval sums (accuracy counts, ...)."""

    def finalize(self, scalars: dict[str, float], vectors: dict[str, Tensor]) -> dict[str, float]:
        """Task-specific epoch metrics from the reduced sums."""
        return {}

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Tensor], need_weights: bool = False) -> ModelOutput:
        return self.forward_batch(batch, need_weights)

    def _total_loss(self, task: SmoothedLoss, out: ModelOutput) -> Tensor:
        # ModelOutput.aux_loss is already weighted (ACT ponder loss, MoE balance loss): add it as it is
        return task.loss if out.aux_loss is None else task.loss + out.aux_loss

    def output_loss_fused(self) -> bool:
        """Whether this training step asks the model for its final states instead of logits and computes the
        output projection and the loss fused (:meth:`fused_token_loss`): a token-predicting module
        (``FUSES_OUTPUT_LOSS``) whose model has a bias-free ``output`` projection onto at least
        ``FUSED_OUTPUT_LOSS_MIN_VOCAB`` tokens, gradients on, no per-step predictions (PonderNet's expected loss
        needs every step's logits) and no FSDP (the loss reads the output weight outside its module's forward)."""
        strategy = type(self._trainer.strategy).__name__ if self._trainer is not None else ""
        return (self.FUSES_OUTPUT_LOSS and self.fused_output_loss and "FSDP" not in strategy
                and output_loss_fusable(self.model, self.FUSED_OUTPUT_LOSS_MIN_VOCAB))

    def fused_token_loss(self, states: Tensor, target: Tensor, mask: Tensor | None
                         ) -> tuple[SmoothedLoss, dict[str, Tensor]]:
        """The smoothed loss and token accuracy of ``model.output(states)`` against ``target`` where ``mask``,
        without the logits (:func:`ut.lit.linear_cross_entropy.linear_cross_entropy`)."""
        task, correct = linear_cross_entropy(states, self.model.output.weight, target, mask, self.label_smoothing)
        return task, {"token_acc": correct.float() / task.count}

    def training_forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """The model on a training batch: its final states instead of logits where the output loss is fused
        (:meth:`output_loss_fused`; :meth:`task_loss` then computes the fused loss), its logits elsewhere."""
        if self.output_loss_fused():
            return self.forward_batch(batch, project_output=False)
        return self.forward_batch(batch)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.training_forward(batch)
        task, extra = self.task_loss(batch, out)
        loss = self._total_loss(task, out)
        bs = next(iter(batch.values())).shape[0]
        logs_now = self.logs_this_step()
        if logs_now or self.progress_bar_refreshes(batch_idx):
            self.log("train/loss_step", loss.detach(), prog_bar=True, batch_size=bs, logger=False)
        logs = {"train/loss": loss.detach(), "train/task_loss": task.loss.detach(), "train/nll": task.nll.detach()}
        for name in ("ponder_loss", "moe_loss"):  # the parts of out.aux_loss, each already weighted
            if getattr(out, name) is not None:
                logs[f"train/{name}"] = getattr(out, name).detach()
        logs.update({f"train/{k}": v.detach() for k, v in out.halting_regularizers.items()})
        logs.update({f"train/{k}": v.detach() for k, v in extra.items()})
        logs.update({f"train/{k}": v for k, v in batch_ponder_metrics(out, self.ponder_masks(batch)).items()})
        if logs_now:
            self.log_dict(logs, prog_bar=False, batch_size=bs)
        else:  # kept (detached scalars) in case a callback stops training after this step: see on_train_batch_end
            self._unlogged_step = (logs, bs)
        return loss

    def logs_this_step(self) -> bool:
        """Whether this training step's metrics reach the loggers: Lightning writes step metrics every
        ``log_every_n_steps`` steps (and when training stops), so on the other steps they are not passed to
        ``self.log`` (~0.3-0.5 ms a call on CPU, about 10% of a d 64 training step for the ~15 metrics). The final
        step of a ``max_steps`` run always logs, so ``trainer.callback_metrics`` ends with the last step's values; in
        between they are those of the last logged step (a checkpoint monitoring a TRAINING metric sees values up to
        ``log_every_n_steps`` old; a run ended by ``max_epochs`` ends with those of its last logging step). A step
        after which a callback stops training (``max_time``, early stopping) logs its metrics in
        :meth:`on_train_batch_end`, so the row Lightning then writes is that step's. The progress-bar loss is logged
        on these steps and on those where a progress bar refreshes (:meth:`progress_bar_refreshes`)."""
        t = self._trainer
        connector = getattr(t, "_logger_connector", None)
        if t is None or connector is None or connector.should_update_logs:
            return True
        return t.max_steps is not None and t.max_steps > 0 and t.global_step + 1 >= t.max_steps

    def progress_bar_refreshes(self, batch_idx: int) -> bool:
        """Whether a progress bar shows this training step's loss: there is an enabled one and its ``refresh_rate``
        (TQDM's and Rich's; 1 when it has none) divides ``batch_idx + 1``. Without a bar (scripted runs, the
        runners, the benchmarks) the progress-bar loss costs one ``self.log`` per step for nothing: ~1 ms, 5% of
        a bAbI 1k training step (benchmarks/small_models.py)."""
        bar = None if self._trainer is None else self._trainer.progress_bar_callback
        if bar is None or not bar.is_enabled:
            return False
        rate = getattr(bar, "refresh_rate", 1) or 1
        return (batch_idx + 1) % rate == 0

    def configure_optimizers(self):
        # Lightning's mixed-precision plugin cannot clip a fused optimizer's gradients: the loop there
        mixed = self._trainer is not None and str(self.trainer.precision).endswith("-mixed")
        opt, sched = build_optimizer(self.parameters(), self.optim_cfg, self.d_model, fused=False if mixed else None)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_train_batch_start(self, batch, batch_idx):
        self._unlogged_step, self._unlogged_lr = None, None
        if self._trainer is not None and self.trainer.optimizers:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            if self.logs_this_step():
                self.log("train/lr", lr, batch_size=1)
            else:
                self._unlogged_lr = lr

    def on_train_batch_end(self, outputs, batch, batch_idx):
        """A step that did not log, after which a callback (run before this hook) stopped training: log it now,
        so that the row Lightning writes on stopping holds this step's metrics, not the last logged step's."""
        unlogged = getattr(self, "_unlogged_step", None)
        if self._trainer is not None and self.trainer.should_stop and unlogged is not None:
            logs, bs = unlogged
            self.log_dict(logs, prog_bar=False, batch_size=bs)
            if getattr(self, "_unlogged_lr", None) is not None:
                self.log("train/lr", self._unlogged_lr, batch_size=1)
        self._unlogged_step, self._unlogged_lr = None, None

    def on_fit_start(self) -> None:
        counts = count_parameters(self._require_model())
        for logger in self.loggers:
            logger.log_hyperparams({"params/total": counts["total"], "params/trainable": counts["trainable"]})

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, stage: str, batch: dict[str, Tensor]) -> None:
        out = self.forward_batch(batch)
        task, _ = self.task_loss(batch, out)
        sums = self._sums[stage]
        n = task.count.double()
        sums.add("loss_sum", task.loss.double() * n)
        sums.add("nll_sum", task.nll.double() * n)
        sums.add("count", n)
        sums.add("batches", 1.0)
        for name in ("ponder_loss", "moe_loss"):
            if getattr(out, name) is not None:
                sums.add(f"{name}_sum", getattr(out, name))
        for name, value in out.halting_regularizers.items():
            sums.add(f"halting_{name}_sum", value)
        add_ponder_sums(sums, out, self.ponder_masks(batch))
        self.accumulate(sums, batch, out, task)

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def _eval_epoch_end(self, stage: str) -> None:
        sums = self._sums[stage]
        if not sums:
            return
        scalars, vectors = sums.reduced(self.trainer.strategy if self._trainer is not None else None)
        sums.reset()
        count = max(scalars.get("count", 0.0), 1.0)
        metrics = {"loss": scalars["loss_sum"] / count, "nll": scalars["nll_sum"] / count}
        metrics["ppl"] = math.exp(min(metrics["nll"], 50.0))
        for name in ("ponder_loss", "moe_loss"):
            if f"{name}_sum" in scalars:
                metrics[name] = scalars[f"{name}_sum"] / max(scalars["batches"], 1.0)
        for key, value in scalars.items():  # the halting regularisers, unweighted, by name
            if key.startswith("halting_") and key.endswith("_sum"):
                metrics[key[len("halting_"):-len("_sum")]] = value / max(scalars["batches"], 1.0)
        metrics.update(ponder_metrics(scalars))
        metrics.update(self.finalize(scalars, vectors))
        self.last_eval_metrics[stage] = metrics
        self.last_eval_vectors[stage] = vectors
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, sync_dist=False)

    def on_validation_epoch_start(self):
        self._sums["val"].reset()

    def on_test_epoch_start(self):
        self._sums["test"].reset()

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ prediction
    @property
    def generation(self) -> GenerationConfig:
        """The search ``predict_step`` runs (greedy by default; set by :class:`ut.lit.callbacks.PredictionWriter`)."""
        return self.__dict__.get("_generation") or GenerationConfig()

    @generation.setter
    def generation(self, config: GenerationConfig) -> None:
        if not isinstance(config, GenerationConfig):
            raise TypeError(f"generation must be a ut.decoding.GenerationConfig, got {type(config).__name__}")
        self.__dict__["_generation"] = config

    @staticmethod
    def _prediction_rows(batch: dict[str, Tensor], generated, eos_id: int) -> list[dict[str, Any]]:
        """One dict per row: ``index`` (of the prediction dataset), ``ids`` (up to EOS, excluded), ``score``."""
        index = batch["index"].tolist() if "index" in batch else list(range(generated.sequences.shape[0]))
        rows = []
        for i, seq, n, score in zip(index, generated.sequences.tolist(), generated.lengths.tolist(),
                                    generated.scores.tolist()):
            ids = seq[:n]
            rows.append({"index": i, "ids": ids[:-1] if ids and ids[-1] == eos_id else ids, "score": score,
                         "ended": bool(ids) and ids[-1] == eos_id})
        return rows

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        from ut.data.predict import text_interface

        try:
            checkpoint[TEXT_INTERFACE_KEY] = text_interface(datamodule).to_dict()
        except ValueError as e:  # a DataModule outside ut.data (tests, user code): batches only
            if not getattr(self, "_warned_no_text", False):
                log.warning("checkpoint without a text interface (generate() from batches only): %s", e)
                self._warned_no_text = True
