"""Training encoder-only classifiers / QA models (bAbI: Transformer encoder vs Universal Transformer, Dehghani et
al. 2019 §3.1).

Batch (CONTRIBUTING.md): ``src``, ``src_mask``, ``label``, optional ``task`` (the bAbI task number).

Metrics: accuracy and error; with ``task`` in the batch, the per-task error ``error_task<k>``, the mean error over
tasks (the paper's "avg error") and the number of failed tasks (error > 5%, Weston et al. 2015), via
:mod:`ut.eval.metrics`. Ponder times of the encoder when the model uses ACT (the paper's Fig. 5 reads ponder time
per bAbI task).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ut.eval.metrics import babi_summary
from ut.lit.base import TrainingModule, model_config_keys
from ut.models.outputs import ModelOutput

MAX_TASK_ID = 63  # per-task counts are kept for task ids 0..MAX_TASK_ID


class ClassificationModule(TrainingModule):
    """Encoder-only classification. See :class:`ut.lit.base.TrainingModule` for the shared arguments."""

    DATA_FILLED_KEYS = {"vocab_size": "vocab_size", "n_classes": "num_classes"}
    ACCEPTED_MODELS = ("transformer_classifier", "universal_classifier")

    def __init__(self, model_name: str = "universal_classifier",
                 model_config: ClassificationModelConfig = {},  # noqa: B006 (copied in TrainingModule, never mutated)
                 optimizer: dict[str, Any] | None = None, label_smoothing: float = 0.1):
        super().__init__(model_name, model_config, optimizer, label_smoothing)

    def forward_batch(self, batch: dict[str, Tensor], need_weights: bool = False) -> ModelOutput:
        return self._require_model()(batch["src"], batch["src_mask"], need_weights=need_weights)

    def ponder_masks(self, batch):
        return {"encoder": batch.get("src_mask")}

    def task_loss(self, batch, out):
        task = self.smoothed_loss(out.logits, batch["label"], None, out.step_logits, out.step_weights)
        return task, {"acc": (out.logits.detach().argmax(-1) == batch["label"]).float().mean()}

    def accumulate(self, sums, batch, out, task):
        wrong = out.logits.argmax(-1) != batch["label"]  # (B,)
        sums.add("wrong", wrong.sum())
        if "task" in batch:
            t = batch["task"].clamp(0, MAX_TASK_ID).cpu()
            sums.add_vector("task_total", torch.bincount(t, minlength=MAX_TASK_ID + 1))
            sums.add_vector("task_wrong", torch.bincount(t, weights=wrong.double().cpu(), minlength=MAX_TASK_ID + 1))
            if "encoder" in out.ponder_time:  # per-task ponder time (paper Fig. 5)
                pt = out.ponder_time["encoder"].detach().double()
                m = batch["src_mask"]
                per_ex = (pt * m).sum(-1) / m.sum(-1).clamp(min=1)  # (B,)
                sums.add_vector("task_ponder", torch.bincount(t, weights=per_ex.cpu(), minlength=MAX_TASK_ID + 1))

    def finalize(self, scalars, vectors):
        n = max(scalars["count"], 1.0)
        m = {"error": scalars["wrong"] / n, "acc": 1.0 - scalars["wrong"] / n}
        if "task_total" in vectors:
            total, wrong = vectors["task_total"], vectors["task_wrong"]
            errors = {int(k): float(wrong[k] / total[k]) for k in torch.nonzero(total).flatten()}
            m.update({f"error_task{k}": e for k, e in errors.items()})
            summary = babi_summary(errors)
            m["mean_error"] = summary["mean_error"]
            m["failed_tasks"] = float(summary["failed_tasks"])
            if "task_ponder" in vectors:
                m.update({f"ponder_task{k}": float(vectors["task_ponder"][k] / total[k]) for k in errors})
        return m

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> list[dict[str, Any]]:
        """The most likely class of each input -> ``{"index", "label_id", "score"}`` (its probability) per row."""
        probs = self.forward_batch(batch).logits.float().softmax(-1)  # (B, C)
        best, label = probs.max(-1)
        index = batch["index"].tolist() if "index" in batch else list(range(len(label)))
        return [{"index": i, "label_id": c, "score": p} for i, c, p in zip(index, label.tolist(), best.tolist())]


# the keys ``model_config`` may hold, checked by LightningCLI while parsing (ut.lit.base.model_config_keys)
ClassificationModelConfig = model_config_keys("ClassificationModelConfig", ClassificationModule)
