"""``ut-train predict``: what to predict on, which search to run, and where the predictions go (JSONL).

    ut-train predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt \\
        --prediction.output predictions.jsonl --prediction.file texts.txt --prediction.beam_size 4

(or, without the ``prediction`` group, ``--trainer.callbacks+=ut.lit.callbacks.PredictionWriter
--trainer.callbacks.output=...``). Before the predict loop builds its dataloader, the callback sets the DataModule's
``predict_inputs`` (:class:`ut.data.predict.PredictInputs`: the texts, the file, else the split) and the module's
``generation`` (:class:`ut.decoding.GenerationConfig`); each batch's predictions are written as they come, one JSON
object a line: the input's record (``text``, or a split's ``reference`` fields), ``prediction`` (decoded text or the
class name), ``score`` (summed log-probability, length-penalised for beam search; a classifier's probability) and
``ended`` (the output reached EOS). Without ``output`` the file is ``<trainer.default_root_dir>/predictions.jsonl``
(``ut-train``: the run folder). With several processes, rank r writes ``<output stem>.rank<r>.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from ut.data.predict import PredictDataset, PredictInputs
from ut.decoding import GenerationConfig


class PredictionWriter(BasePredictionWriter):
    """Writes ``ut-train predict`` outputs to ``output`` (JSONL); see the module docstring.

    Args:
        output: the JSONL file to write (its folder is created); None: ``predictions.jsonl`` in the trainer's
            ``default_root_dir``.
        split: the data split to predict on when neither ``texts`` nor ``file`` is given.
        texts: raw input texts.
        file: a .jsonl (``{"text": ...}`` a line) or plain-text (one a line) file of raw inputs.
        limit: predict on the first n inputs only.
        batch_size: rows per batch (None: the DataModule's evaluation batch size).
        beam_size, alpha, max_len, min_len, no_repeat_ngram_size, sample, temperature, top_k, top_p, seed:
            the search (:class:`ut.decoding.GenerationConfig`).
    """

    def __init__(self, output: str | None = None, split: str = "test", texts: list[str] | None = None,
                 file: str | None = None, limit: int | None = None, batch_size: int | None = None,
                 beam_size: int = 1, alpha: float = 0.6, max_len: int = 100, min_len: int = 0,
                 no_repeat_ngram_size: int = 0, sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None):
        super().__init__(write_interval="batch")
        self.output = Path(output) if output is not None else None
        self.inputs = PredictInputs(split=split, texts=texts, file=file, limit=limit, batch_size=batch_size)
        self.generation = GenerationConfig(beam_size=beam_size, alpha=alpha, max_len=max_len, min_len=min_len,
                                           no_repeat_ngram_size=no_repeat_ngram_size, sample=sample,
                                           temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        self._file = None
        self.rows_written = 0

    def path_for(self, trainer) -> Path:
        path = self.output if self.output is not None else Path(trainer.default_root_dir) / "predictions.jsonl"
        if trainer.world_size > 1:
            return path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "predict":
            return
        if trainer.datamodule is None:
            raise ValueError("PredictionWriter needs a DataModule (its predict_dataloader builds the inputs)")
        trainer.datamodule.predict_inputs = self.inputs
        pl_module.generation = self.generation

    def on_predict_start(self, trainer, pl_module) -> None:
        path = self.path_for(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in on_predict_end)
        self.rows_written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        loaders = trainer.predict_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
        dataset = loader.dataset
        if not isinstance(dataset, PredictDataset):
            raise TypeError(f"PredictionWriter renders ut.data.predict.PredictDataset rows, got "
                            f"{type(dataset).__name__} (use a DataModule of ut.data)")
        for row in prediction:
            self._file.write(json.dumps(dataset.render(row["index"], row), ensure_ascii=False) + "\n")
            self.rows_written += 1
        self._file.flush()

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            print(f"wrote {self.rows_written} predictions to {self.path_for(trainer)}")
