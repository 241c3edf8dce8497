"""Training any encoder-decoder (Transformer T-ED, Universal Transformer with or without ACT) on seq2seq batches.

Batch (CONTRIBUTING.md): ``src``, ``src_mask``, ``tgt_in`` (BOS + y), ``tgt_out`` (y + EOS), ``tgt_mask``, and
optionally ``src_pos_offset`` / ``tgt_pos_offset`` (the algorithmic tasks' random position offsets, Dehghani et al.
2019 §3.3).

Metrics (UT paper §3.3, t2t's ``padded_accuracy`` / ``padded_sequence_accuracy``): token ("char") accuracy and
sequence accuracy of the teacher-forced argmax against ``tgt_out`` under ``tgt_mask`` (EOS position included), the
label-smoothed loss, the unsmoothed NLL and perplexity, the ACT ponder loss and ponder times. These are
teacher-forced like t2t's evaluation, which the paper reports. ``decode_on_test=True`` also runs greedy decoding
on the test set (``test/decoded_token_acc``, ``test/decoded_seq_acc``): a stricter, free-running measure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ut.decoding import generate, greedy_decode
from ut.eval.metrics import sequence_accuracy, token_accuracy
from ut.lit.base import TrainingModule, model_config_keys
from ut.lit.epoch_metrics import EpochSums
from ut.lit.losses import SmoothedLoss
from ut.models.outputs import ModelOutput


class Seq2SeqModule(TrainingModule):
    """Encoder-decoder training. See :class:`ut.lit.base.TrainingModule` for the shared arguments.

    Args:
        decode_on_test: also greedy-decode the test set and report free-running accuracies.
        decode_max_extra: greedy decoding runs for target length + this many tokens.
    """

    DATA_FILLED_KEYS = {"src_vocab_size": "vocab_size", "tgt_vocab_size": "vocab_size", "max_len": "max_positions"}
    ACCEPTED_MODELS = ("transformer", "universal")
    FUSES_OUTPUT_LOSS = True  # training at vocabularies >= 1024: the fused output loss (TrainingModule)

    def __init__(self, model_name: str = "transformer",
                 model_config: Seq2SeqModelConfig = {},  # noqa: B006 (copied in TrainingModule, never mutated)
                 optimizer: dict[str, Any] | None = None, label_smoothing: float = 0.1,
                 decode_on_test: bool = False, decode_max_extra: int = 5):
        super().__init__(model_name, model_config, optimizer, label_smoothing)
        self.save_hyperparameters({"decode_on_test": decode_on_test, "decode_max_extra": decode_max_extra})
        self.decode_on_test = decode_on_test
        self.decode_max_extra = decode_max_extra

    def forward_batch(self, batch: dict[str, Tensor], need_weights: bool = False,
                      project_output: bool = True) -> ModelOutput:
        return self._require_model()(
            batch["src"], batch["src_mask"], batch["tgt_in"], batch.get("tgt_mask"),
            src_pos_offset=batch.get("src_pos_offset"), tgt_pos_offset=batch.get("tgt_pos_offset"),
            need_weights=need_weights, project_output=project_output,
        )

    def ponder_masks(self, batch):
        return {"encoder": batch.get("src_mask"), "decoder": batch.get("tgt_mask")}

    def task_loss(self, batch, out):
        mask = batch["tgt_mask"]
        if out.logits is None:  # training at a large vocabulary: the fused output loss
            return self.fused_token_loss(out.final_states, batch["tgt_out"], mask)
        task = self.smoothed_loss(out.logits, batch["tgt_out"], mask, out.step_logits, out.step_weights)
        return task, {"token_acc": token_accuracy(out.logits.detach(), batch["tgt_out"], mask)}

    def accumulate(self, sums: EpochSums, batch, out: ModelOutput, task: SmoothedLoss) -> None:
        mask, target = batch["tgt_mask"], batch["tgt_out"]
        n_tok = mask.sum()
        n_seq = mask.any(-1).sum()
        sums.add("correct_tokens", token_accuracy(out.logits, target, mask) * n_tok)
        sums.add("correct_seqs", sequence_accuracy(out.logits, target, mask) * n_seq)
        sums.add("seqs", n_seq)
        if self.decode_on_test and self.trainer.testing:
            self._accumulate_decoded(sums, batch)

    @torch.no_grad()
    def _accumulate_decoded(self, sums: EpochSums, batch) -> None:
        mask, target = batch["tgt_mask"], batch["tgt_out"]
        t = target.shape[1]
        gen = greedy_decode(self._require_model(), batch, t + self.decode_max_extra,
                            eos_id=self.model.cfg.eos_id, pad_id=self.model.cfg.pad_id).sequences
        pred = torch.full_like(target, -1)
        k = min(t, gen.shape[1])
        pred[:, :k] = gen[:, :k]
        sums.add("decoded_correct_tokens", token_accuracy(pred, target, mask) * mask.sum())
        sums.add("decoded_correct_seqs", sequence_accuracy(pred, target, mask) * mask.any(-1).sum())

    def finalize(self, scalars, vectors):
        n_tok = max(scalars.get("count", 0.0), 1.0)
        n_seq = max(scalars.get("seqs", 0.0), 1.0)
        m = {"token_acc": scalars["correct_tokens"] / n_tok, "seq_acc": scalars["correct_seqs"] / n_seq}
        if "decoded_correct_tokens" in scalars:
            m["decoded_token_acc"] = scalars["decoded_correct_tokens"] / n_tok
            m["decoded_seq_acc"] = scalars["decoded_correct_seqs"] / n_seq
        return m

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> list[dict[str, Any]]:
        """Decode each source with :attr:`generation` -> ``{"index", "ids", "score", "ended"}`` per row."""
        model = self._require_model()
        inputs = {k: batch[k] for k in ("src", "src_mask", "src_pos_offset") if k in batch}
        out = generate(model, inputs, self.generation, eos_id=model.cfg.eos_id, pad_id=model.cfg.pad_id)
        return self._prediction_rows(batch, out, model.cfg.eos_id)


# the keys ``model_config`` may hold, checked by LightningCLI while parsing (ut.lit.base.model_config_keys)
Seq2SeqModelConfig = model_config_keys("Seq2SeqModelConfig", Seq2SeqModule)
