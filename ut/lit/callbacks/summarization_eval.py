"""The WikiSum evaluation of Liu et al. 2018 §5 at the end of training: teacher-forced log-perplexity, beam
decoding (beam 4, GNMT alpha 0.6 by default), ROUGE-1/2/L/Lsum against the full reference lead, and the share of
distinct outputs (:func:`ut.eval.summarization.evaluate_summarization`), run by the Trainer so that ``ut-train fit``
with a WikiSum config produces the numbers of the paper's tables.

The metrics go to every logger as ``<split>/<metric>``, the decoded examples to a W&B table (``<split>/samples``),
and everything to ``path`` (default ``<default_root_dir>/summarization_eval.json``). Under ``fast_dev_run`` one
example is decoded for 4 tokens (a smoke test). The model is evaluated in fp32 (the weights of a ``*-mixed`` run
already are).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class SummarizationEvalCallback(L.Callback):
    """Evaluate a WikiSum model at the end of fit (see the module docstring).

    Args:
        split: "validation" or "test".
        beam_size, alpha: beam search and GNMT length penalty (paper: 4, 0.6).
        max_len: decoded tokens per example (None: the DataModule's ``target_length``).
        max_examples: decode only the first this many examples (None: all); log-perplexity uses every example.
        path: the JSON file to write; None: ``<default_root_dir>/summarization_eval.json``.
    """

    def __init__(self, split: str = "test", beam_size: int = 4, alpha: float = 0.6, max_len: int | None = None,
                 max_examples: int | None = None, path: str | None = None):
        if split not in ("validation", "test"):
            raise ValueError(f"split={split!r} is not 'validation' or 'test'")
        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        self.split, self.beam_size, self.alpha = split, beam_size, alpha
        self.max_len, self.max_examples, self.path = max_len, max_examples, path
        self.result = None

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0:
            return
        from ut.eval.summarization import evaluate_summarization, log_examples_table

        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "generation_dataloader"):
            raise ValueError("SummarizationEvalCallback needs a WikiSum-style DataModule (generation_dataloader, "
                             f"references); got {type(dm).__name__}")
        smoke = bool(trainer.fast_dev_run)
        max_examples, max_len = (1, 4) if smoke else (self.max_examples, self.max_len)
        model = pl_module.model.float()
        res = evaluate_summarization(model, dm, self.split, self.beam_size, self.alpha, max_len, max_examples,
                                     device=pl_module.device, progress=trainer.progress_bar_callback is not None)
        self.result = res
        for lg in trainer.loggers:
            lg.log_metrics({f"{self.split}/{k}": float(v) for k, v in res.metrics.items()}, step=trainer.global_step)
            log_examples_table(lg, res.examples, key=f"{self.split}/samples")
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "summarization_eval.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"split": self.split, "beam_size": self.beam_size, "alpha": self.alpha,
                                    "max_len": max_len, "max_examples": max_examples, "step": trainer.global_step,
                                    "metrics": res.metrics, "samples": res.examples}, indent=1, default=float) + "\n")
