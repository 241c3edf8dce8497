"""Training a decoder-only language model (T-D / T-DMCA of Liu et al. 2018; LAMBADA LMs of Dehghani et al. 2019).

Batch (CONTRIBUTING.md): ``input_ids``, ``attention_mask``, ``loss_mask``; the loss compares ``logits[:, i]`` with
``input_ids[:, i + 1]`` where ``loss_mask[:, i]``.

Metrics: label-smoothed loss, NLL and perplexity over the counted predictions, token accuracy, and sequence
accuracy = share of rows whose every counted prediction is right and is not ``unk_id``. On LAMBADA's eval batches
the counted predictions are the target word's tokens, so ``seq_acc`` IS LAMBADA's last-word accuracy (the rule of
:func:`ut.data.lambada.lambada_metrics`) and ``ppl`` the target-word perplexity (UT paper Table 2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ut.decoding import generate
from ut.eval.metrics import token_accuracy
from ut.lit.base import TrainingModule, model_config_keys
from ut.models.outputs import ModelOutput


class LanguageModelModule(TrainingModule):
    """Decoder-only LM training. See :class:`ut.lit.base.TrainingModule` for the shared arguments.

    Args:
        unk_id: a prediction of this id never counts as right for ``seq_acc`` (None: no such rule).
    """

    DATA_FILLED_KEYS = {"vocab_size": "vocab_size"}
    ACCEPTED_MODELS = ("decoder_only", "universal_decoder_only")
    FUSES_OUTPUT_LOSS = True  # training at vocabularies >= 1024: the fused output loss (TrainingModule)

    def __init__(self, model_name: str = "decoder_only",
                 model_config: LanguageModelConfig = {},  # noqa: B006 (copied in TrainingModule, never mutated)
                 optimizer: dict[str, Any] | None = None, label_smoothing: float = 0.1, unk_id: int | None = 4):
        super().__init__(model_name, model_config, optimizer, label_smoothing)
        self.save_hyperparameters({"unk_id": unk_id})
        self.unk_id = unk_id

    def forward_batch(self, batch: dict[str, Tensor], need_weights: bool = False,
                      project_output: bool = True) -> ModelOutput:
        return self._require_model()(batch["input_ids"], batch["attention_mask"], need_weights=need_weights,
                                     project_output=project_output)

    def ponder_masks(self, batch):
        return {"decoder": batch.get("attention_mask")}

    @staticmethod
    def _shifted(batch, out):
        return out.logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, :-1]  # (B, L-1, V), (B, L-1)

    def task_loss(self, batch, out):
        if out.logits is None:  # training at a large vocabulary: the fused output loss
            return self.fused_token_loss(out.final_states[:, :-1], batch["input_ids"][:, 1:],
                                         batch["loss_mask"][:, :-1])
        logits, target, mask = self._shifted(batch, out)
        steps = (None, None) if out.step_logits is None else (out.step_logits[:, :, :-1], out.step_weights[:, :, :-1])
        task = self.smoothed_loss(logits, target, mask, *steps)
        return task, {"token_acc": token_accuracy(logits.detach(), target, mask)}

    def accumulate(self, sums, batch, out, task):
        logits, target, mask = self._shifted(batch, out)
        ok = logits.argmax(-1) == target  # (B, L-1)
        if self.unk_id is not None:
            ok &= target != self.unk_id
        rows = mask.any(-1)
        sums.add("correct_tokens", (ok & mask).sum())
        sums.add("correct_seqs", ((ok | ~mask).all(-1) & rows).sum())
        sums.add("seqs", rows.sum())

    def finalize(self, scalars, vectors):
        return {"token_acc": scalars["correct_tokens"] / max(scalars["count"], 1.0),
                "seq_acc": scalars["correct_seqs"] / max(scalars["seqs"], 1.0)}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> list[dict[str, Any]]:
        """Continue each prefix (``input_ids`` / ``attention_mask``: LAMBADA's ``BOS + context``, WikiSum's
        ``[input; sep]``) with :attr:`generation` -> ``{"index", "ids", "score", "ended"}`` per row."""
        model = self._require_model()
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
        out = generate(model, inputs, self.generation, eos_id=model.cfg.eos_id, pad_id=model.cfg.pad_id)
        return self._prediction_rows(batch, out, model.cfg.eos_id)


# the keys ``model_config`` may hold, checked by LightningCLI while parsing (ut.lit.base.model_config_keys)
LanguageModelConfig = model_config_keys("LanguageModelConfig", LanguageModelModule)
