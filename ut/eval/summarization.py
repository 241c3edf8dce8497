"""Evaluating a WikiSum model (Liu et al. 2018, §5): beam decoding, ROUGE, log-perplexity, output diversity.

- Decoding: :func:`ut.decoding.beam_search`, beam 4 and GNMT length penalty alpha 0.6 by default (the paper's
  setting), up to the data module's ``target_length`` tokens; the best hypothesis of each input is kept.
- ROUGE-1/2/L/Lsum F1 (Google's rouge-score, Lsum on sentence-split text: :func:`ut.eval.rouge.rouge_scores`)
  of the decoded text against the FULL reference lead (not the cut training target).
- Log-perplexity: mean NLL in nats per target token (y + EOS, teacher-forced, unsmoothed), the quantity the
  paper's tables call log-perplexity; for decoder-only models the same tokens are counted (target-only mask).
  Per token of data_prep's BPE vocabulary: comparable between models on one build, not with the paper's numbers.
- The known failure of published WikiSum models (one sentence for every input, or one repeated sentence):
  ``distinct_outputs`` (share of distinct outputs) and ``repeated_sentences`` (share of output sentences
  repeating an earlier one of the same output) are reported beside ROUGE.
- Examples: title, reference, prediction (and the head of the input) per decoded row, for a W&B table
  (:func:`log_examples_table`) and the report.

Works for any model with the decoding protocol of :mod:`ut.decoding` (T-ED, UT, T-D, T-DMCA, UT-DMCA), fed by
:class:`ut.data.wikisum.WikiSumDataModule` (``format`` decides the batch keys).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ut.decoding import beam_search
from ut.eval.rouge import distinct_output_share, repeated_sentence_share, rouge_scores

EXAMPLE_COLUMNS = ("title", "reference", "prediction", "input_head")


@dataclass
class SummarizationResult:
    metrics: dict[str, float]  # log_ppl, ppl, rouge1/2/L/Lsum (F1 x 100), distinct_outputs, ... (see module doc)
    examples: list[dict[str, str]] = field(default_factory=list)  # EXAMPLE_COLUMNS per decoded example


def _to(batch: dict[str, Tensor], device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def target_log_perplexity(model, datamodule, split: str = "test", max_batches: int | None = None,
                          device: str | torch.device = "cpu") -> dict[str, float]:
    """Teacher-forced mean NLL per target token (nats) over ``split``: ``{"log_ppl", "ppl", "target_tokens"}``."""
    was_training = model.training
    model.eval()
    nll_sum, count = 0.0, 0
    try:
        for i, batch in enumerate(datamodule.eval_dataloader(split)):
            if max_batches is not None and i >= max_batches:
                break
            batch = _to(batch, device)
            if datamodule.format == "lm":
                logits = model(batch["input_ids"], batch["attention_mask"]).logits[:, :-1]
                target, mask = batch["input_ids"][:, 1:], batch["loss_mask"][:, :-1]
            else:
                logits = model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"]).logits
                target, mask = batch["tgt_out"], batch["tgt_mask"]
            nll = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, T)
            nll_sum += float(nll[mask].double().sum())
            count += int(mask.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"no target token in split {split!r}")
    log_ppl = nll_sum / count
    return {"log_ppl": log_ppl, "ppl": math.exp(min(log_ppl, 50.0)), "target_tokens": float(count)}


@torch.no_grad()
def decode_split(model, datamodule, split: str = "test", beam_size: int = 4, alpha: float = 0.6,
                 max_len: int | None = None, max_examples: int | None = None, batch_size: int | None = None,
                 device: str | torch.device = "cpu", progress: bool = True) -> dict[int, str]:
    """Beam-decode ``split``; ``{example index: decoded text}`` (best hypothesis, EOS and specials removed)."""
    was_training = model.training
    model.eval()
    max_len = max_len or datamodule.target_length
    loader = datamodule.generation_dataloader(split, batch_size)
    total = len(datamodule.split_data(split)) if max_examples is None else \
        min(max_examples, len(datamodule.split_data(split)))
    out: dict[int, str] = {}
    bar = tqdm(total=total, desc=f"decode {split} (beam {beam_size})", unit="ex", dynamic_ncols=True,
               disable=not progress)
    try:
        for batch in loader:
            index = batch.pop("index").tolist()
            if max_examples is not None:
                keep = [j for j, i in enumerate(index) if i < max_examples]
                if not keep:
                    continue
                sel = torch.tensor(keep)
                batch = {k: v.index_select(0, sel) for k, v in batch.items()}
                index = [index[j] for j in keep]
            res = beam_search(model, _to(batch, device), beam_size=beam_size, alpha=alpha, max_len=max_len,
                              eos_id=datamodule.eos_id, pad_id=datamodule.pad_id)
            for row, i in enumerate(index):
                out[i] = datamodule.decode(res.sequences[row, 0].tolist())
            bar.update(len(index))
    finally:
        bar.close()
        model.train(was_training)
    return out


def evaluate_summarization(model, datamodule, split: str = "test", beam_size: int = 4, alpha: float = 0.6,
                           max_len: int | None = None, max_examples: int | None = None,
                           device: str | torch.device = "cpu", progress: bool = True,
                           input_head_tokens: int = 48) -> SummarizationResult:
    """Log-perplexity + beam decoding + ROUGE + diversity of ``split`` (see the module docstring).

    ROUGE values are F1 x 100 (the paper's scale); ``decode_s`` is the decoding wall time.
    """
    metrics = target_log_perplexity(model, datamodule, split, device=device)
    start = time.perf_counter()
    decoded = decode_split(model, datamodule, split, beam_size, alpha, max_len, max_examples, device=device,
                           progress=progress)
    metrics["decode_s"] = time.perf_counter() - start
    order = sorted(decoded)
    references = datamodule.references(split)
    titles = datamodule.titles(split)
    predictions = [decoded[i] for i in order]
    refs = [references[i] for i in order]
    scores = rouge_scores(predictions, refs)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        metrics[key] = 100.0 * scores[key]
    metrics["distinct_outputs"] = distinct_output_share(predictions)
    metrics["repeated_sentences"] = repeated_sentence_share(predictions)
    metrics["empty_outputs"] = sum(1 for p in predictions if not p) / len(predictions)
    metrics["mean_output_words"] = sum(len(p.split()) for p in predictions) / len(predictions)
    metrics["decoded_examples"] = float(len(predictions))
    metrics["beam_size"], metrics["alpha"] = float(beam_size), float(alpha)
    examples = [
        {"title": titles[i], "reference": references[i], "prediction": decoded[i],
         "input_head": datamodule.input_text(split, i, input_head_tokens)}
        for i in order
    ]
    return SummarizationResult(metrics, examples)


def log_examples_table(logger, examples: list[dict[str, str]], key: str = "test/samples") -> bool:
    """Log generated examples next to their references as a W&B table; False when ``logger`` is not W&B."""
    if not hasattr(logger, "log_table"):
        return False
    rows = [[e.get(c, "") for c in EXAMPLE_COLUMNS] for e in examples]
    logger.log_table(key=key, columns=list(EXAMPLE_COLUMNS), data=rows)
    return True
