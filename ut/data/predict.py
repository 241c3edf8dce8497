"""Prediction inputs for every task: raw text (a list or a file) or a data split, as batches a model decodes.

Two pieces:

- :class:`TextInterface`: how ONE task turns raw text into a model input and outputs back into text. It holds the
  task's self-contained ``tokenizer.json`` (WikiSum: the build's BPE tokenizer; the other tasks: their vocabulary as
  a ``tokenizers`` tokenizer, :mod:`ut.data.task_tokenizer`), the special ids wrapped around an input (LAMBADA's LMs
  read ``BOS + context``; WikiSum's decoder-only models ``[input; sep]``, Liu et al. 2018 §4.2), the input length
  kept, and the class names of a classifier. It is plain JSON (:meth:`TextInterface.to_dict`), so a checkpoint and
  ``save_pretrained`` carry it and a trained model generates from text with no data folder
  (:func:`text_interface` builds it from a DataModule).
- :func:`predict_dataloader`: the ``predict_dataloader`` of every DataModule of :mod:`ut.data`: the texts or file
  named by the DataModule's ``predict_inputs`` (:class:`PredictInputs`, set by
  :class:`ut.lit.callbacks.PredictionWriter` or by hand), else its test split.

Raw-text formats: a ``.jsonl`` file holds one ``{"text": ...}`` object a line (other fields are copied to the
output), any other file one text a line (empty lines skipped and counted). bAbI text is a story and its question,
``"Mary went to the kitchen. Where is Mary?"``: sentences end at ``.``, ``?`` or ``!``, the last one is the question,
and they are joined with ``<sep>`` as the data module flattens them (the question itself is not followed by one).
Algorithmic text is digits (``"31415"``, addition ``"123+45"`` lower-endian, as the data); another symbol is an
error naming the text. Word-level tasks map unknown words to ``<unk>`` and say how many in each output row.

Batches (CONTRIBUTING.md formats, without targets) plus ``index Long[B]``: the row of ``PredictDataset.records``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ut.data.batching import pad
from ut.data.jsonl import iter_text_records

log = logging.getLogger(__name__)

TASKS = ("seq2seq", "lm", "classification")
SPLIT_ALIASES = {"val": "validation", "validation": "validation", "test": "test", "train": "train"}
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


@dataclass
class TextInterface:
    """Raw text <-> model ids for one task (module docstring)."""

    task: str  # "seq2seq" (decode from src), "lm" (continue a prefix) or "classification" (one label per text)
    tokenizer_json: str  # the task's tokenizer.json content
    prefix_ids: list[int] = field(default_factory=list)  # ids before every input (LAMBADA: BOS)
    suffix_ids: list[int] = field(default_factory=list)  # ids after every input (WikiSum decoder-only: SEP)
    max_input_tokens: int | None = None  # input tokens kept (prefix / suffix not counted); None: all
    keep: str = "first"  # which tokens survive the cut: "first", or "last" (LAMBADA keeps the context's end)
    babi_sentences: bool = False  # bAbI: story sentences joined by <sep> before the question
    max_sentences: int | None = None  # bAbI: keep the last n story sentences (the data module's max_sentences)
    babi_fact_order: str | None = None  # bAbI fact layout: "newest_first" / "oldest_first"; None: the flat layout
    strict: bool = False  # an unknown symbol is an error (the algorithmic tasks' digits)
    labels: list[str] | None = None  # classification: class id -> name
    pad_id: int = 0
    eos_id: int = 2
    unk_id: int = 4

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"TextInterface.task={self.task!r} is not one of {TASKS}")
        if self.keep not in ("first", "last"):
            raise ValueError(f"TextInterface.keep={self.keep!r} is not 'first' or 'last'")
        if self.task == "classification" and not self.labels:
            raise ValueError("a classification TextInterface needs its labels")
        self._tokenizer = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextInterface:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"TextInterface: unknown keys {unknown}; valid: {sorted(names)}")
        return cls(**values)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def cut(self, ids: list[int]) -> list[int]:
        n = self.max_input_tokens
        if n is None or len(ids) <= n:
            return list(ids)
        return list(ids[:n]) if self.keep == "first" else list(ids[-n:])

    def wrap(self, ids: list[int]) -> list[int]:
        """The model input of already tokenised ids: cut, then prefix and suffix added."""
        return [*self.prefix_ids, *self.cut(ids), *self.suffix_ids]

    def tokenize(self, text: str) -> list[int]:
        """Ids of raw ``text`` (no prefix / suffix, no cut); ValueError on an unknown symbol when ``strict``."""
        if self.babi_sentences:
            sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
            story, question = sentences[:-1], sentences[-1:]
            if self.max_sentences is not None:
                story = story[len(story) - self.max_sentences:] if self.max_sentences else []
            text = " ".join(f"{s} <sep>" for s in story) + (" " if story else "") + " ".join(question)
        enc = self.tokenizer.encode(text)
        if self.strict and self.unk_id in enc.ids:
            bad = sorted({text[a:b] for (a, b), i in zip(enc.offsets, enc.ids) if i == self.unk_id})
            raise ValueError(f"{text[:60]!r}: symbols {bad} are not in this model's vocabulary")
        return enc.ids

    def encode(self, text: str) -> list[int]:
        """The model input of raw ``text``."""
        return self.wrap(self.tokenize(text))

    def decode(self, ids) -> str:
        """Text of generated ids: stops at EOS, drops special tokens."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def collate(self, items: list[tuple[int, list[int]]]) -> dict[str, torch.Tensor]:
        """``(record index, model input ids)`` pairs -> a batch of this task's format plus ``index``."""
        index, inputs = zip(*items)
        if self.babi_fact_order is not None:
            batch = self._fact_batch(inputs)
        else:
            ids, mask = pad(inputs, self.pad_id)
            batch = {"input_ids": ids, "attention_mask": mask} if self.task == "lm" else {"src": ids, "src_mask": mask}
        batch["index"] = torch.tensor(index, dtype=torch.long)
        return batch

    def _fact_batch(self, inputs) -> dict[str, torch.Tensor]:
        """bAbI's fact layout (:func:`ut.data.babi.fact_batch`) from ``s1 <sep> ... sn <sep> q`` ids."""
        from ut.data.babi import fact_batch
        from ut.data.vocab import SEP_ID

        rows, questions = [], []
        for ids in inputs:
            parts, cur = [], []
            for i in ids:
                if i == SEP_ID:
                    parts.append(cur)
                    cur = []
                else:
                    cur.append(i)
            facts = [p for p in parts if p]
            rows.append(facts[::-1] if self.babi_fact_order == "newest_first" else facts)
            questions.append(cur)
        return fact_batch(rows, questions)


@dataclass
class PredictInputs:
    """What to predict on: ``texts``, or a ``file`` of texts, or else the data ``split``."""

    split: str = "test"  # train / val (validation) / test
    texts: list[str] | None = None
    file: str | None = None  # .jsonl ({"text": ...} a line) or plain text (one a line)
    limit: int | None = None  # the first n inputs only
    batch_size: int | None = None  # None: the DataModule's evaluation batch size

    def __post_init__(self):
        if self.texts is not None and self.file is not None:
            raise ValueError("PredictInputs: give texts or file, not both")
        if self.split not in SPLIT_ALIASES:
            raise ValueError(f"PredictInputs.split={self.split!r} is not one of {sorted(SPLIT_ALIASES)}")


def read_texts(path: str | Path) -> list[dict[str, Any]]:
    """Records ``{"text": ..., other fields}`` of a .jsonl or plain-text file (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction input file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    if path.suffix == ".jsonl":
        records = [rec for _, rec in iter_text_records(lines, path)]
    else:
        records = [{"text": line.rstrip("\n")} for line in lines if line.strip()]
    if len(records) < len(lines):
        log.info("%s: skipped %d empty lines", path, len(lines) - len(records))
    if not records:
        raise ValueError(f"{path}: no text to predict on")
    return records


class PredictDataset(Dataset):
    """Model inputs and their records (input text or reference fields) for the prediction writer."""

    def __init__(self, interface: TextInterface, inputs: list[list[int]], records: list[dict[str, Any]]):
        if len(inputs) != len(records):
            raise ValueError(f"{len(inputs)} inputs for {len(records)} records")
        self.interface, self.inputs, self.records = interface, inputs, records

    @classmethod
    def from_texts(cls, interface: TextInterface, records: list[dict[str, Any]]) -> PredictDataset:
        inputs, out = [], []
        for rec in records:
            ids = interface.tokenize(rec["text"])
            unknown = sum(i == interface.unk_id for i in ids)
            inputs.append(interface.wrap(ids))
            out.append({**rec, "n_unknown_tokens": unknown} if unknown else dict(rec))
        return cls(interface, inputs, out)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[int, list[int]]:
        return i, self.inputs[i]

    def render(self, index: int, prediction: dict[str, Any]) -> dict[str, Any]:
        """One output row: the record, then the prediction as text (or class name) and its score."""
        row = {"index": index, **self.records[index]}
        if "label_id" in prediction:
            row["prediction"] = self.interface.labels[prediction["label_id"]]
        else:
            row["prediction"] = self.interface.decode(prediction["ids"])
        row.update({k: v for k, v in prediction.items() if k not in ("ids", "label_id")})
        return row


# ---------------------------------------------------------------------- per DataModule
def text_interface(dm) -> TextInterface:
    """The :class:`TextInterface` of a DataModule of :mod:`ut.data` (set up on demand)."""
    from ut.data.algorithmic import AlgorithmicDataModule
    from ut.data.babi import BabiDataModule
    from ut.data.lambada import LambadaDataModule
    from ut.data.task_tokenizer import vocabulary_tokenizer
    from ut.data.vocab import BOS_ID
    from ut.data.wikisum import WikiSumDataModule

    if isinstance(dm, WikiSumDataModule):
        special = dm.special_ids()
        return TextInterface("lm" if dm.format == "lm" else "seq2seq", dm.tokenizer.to_str(),
                             suffix_ids=[special["sep_id"]] if dm.format == "lm" else [],
                             max_input_tokens=dm.input_length, pad_id=special["pad_id"], eos_id=special["eos_id"],
                             unk_id=dm._special("unk_id"))
    if isinstance(dm, AlgorithmicDataModule):
        return TextInterface("seq2seq", vocabulary_tokenizer(dm.vocab, "digits").to_str(),
                             max_input_tokens=dm.max_positions - 1, strict=True)
    if isinstance(dm, BabiDataModule):
        dm.setup()
        labels = [a for a, _ in sorted(dm.answers.items(), key=lambda kv: kv[1])]
        facts = dm.hparams.layout == "facts"
        return TextInterface("classification", vocabulary_tokenizer(dm.vocab, "babi").to_str(), babi_sentences=True,
                             max_sentences=dm.hparams.max_sentences, labels=labels,
                             babi_fact_order=dm.hparams.fact_order if facts else None)
    if isinstance(dm, LambadaDataModule):
        dm.setup()
        level = "lambada_word" if dm.hparams.level == "word" else "lambada_char"
        return TextInterface("lm", vocabulary_tokenizer(dm.vocab, level).to_str(), prefix_ids=[BOS_ID],
                             max_input_tokens=dm.hparams.max_len - 1, keep="last")
    raise ValueError(f"{type(dm).__name__} has no text interface: prediction from text supports the DataModules "
                     "of ut.data (algorithmic, bAbI, LAMBADA, WikiSum)")


def split_inputs(dm, split: str) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Token ids (before :meth:`TextInterface.wrap`) and reference records of a data split of ``dm``."""
    from ut.data.algorithmic import AlgorithmicDataModule
    from ut.data.babi import BabiDataModule, flatten
    from ut.data.lambada import LambadaDataModule
    from ut.data.wikisum import WikiSumDataModule

    split = SPLIT_ALIASES[split]
    if isinstance(dm, WikiSumDataModule):
        data = dm.split_data(split)
        refs, titles = dm.references(split), dm.titles(split)
        return list(data.inputs), [{"title": t, "reference": r} for t, r in zip(titles, refs)]
    short = {"validation": "val"}.get(split, split)
    if isinstance(dm, AlgorithmicDataModule):
        data = getattr(dm, f"{short}_set")
        examples = [data[i] for i in range(len(data))]
        text = lambda ids: "".join(dm.vocab.decode(ids))
        return [e.src for e in examples], [{"input": text(e.src), "reference": text(e.tgt)} for e in examples]
    dm.setup()
    examples = getattr(dm, f"{short}_set")
    if isinstance(dm, BabiDataModule):
        hp = dm.hparams
        ids = [dm.vocab.encode(flatten(e, hp.max_sentences, hp.only_supporting)) for e in examples]
        return ids, [{"task": e.task, "question": " ".join(e.question), "reference": e.answer} for e in examples]
    if isinstance(dm, LambadaDataModule):
        joiner = "" if dm.hparams.level == "char" else " "
        ids = [dm.vocab.encode(e.context) for e in examples]
        return ids, [{"context_end": joiner.join(e.context[-12:]), "reference": joiner.join(e.target)}
                     for e in examples]
    raise ValueError(f"{type(dm).__name__} has no prediction inputs (see ut.data.predict)")


def predict_dataset(dm, inputs: PredictInputs | None = None) -> PredictDataset:
    """The prediction inputs of ``dm``: ``inputs`` (default: ``dm.predict_inputs``, else the test split)."""
    inputs = inputs or getattr(dm, "predict_inputs", None) or PredictInputs()
    interface = text_interface(dm)
    if inputs.texts is not None or inputs.file is not None:
        records = [{"text": t} for t in inputs.texts] if inputs.texts is not None else read_texts(inputs.file)
        return PredictDataset.from_texts(interface, records[: inputs.limit])
    ids, records = split_inputs(dm, inputs.split)
    ids, records = ids[: inputs.limit], records[: inputs.limit]
    return PredictDataset(interface, [interface.wrap(x) for x in ids], records)


def eval_batch_size(dm) -> int:
    hp = getattr(dm, "hparams", {})
    return int(getattr(dm, "eval_batch_size", None) or hp.get("eval_batch_size") or hp.get("batch_size") or 32)


def predict_dataloader(dm, inputs: PredictInputs | None = None) -> DataLoader:
    """Batches of :func:`predict_dataset`, in input order (the ``predict_dataloader`` of the DataModules)."""
    data = predict_dataset(dm, inputs)
    chosen = inputs or getattr(dm, "predict_inputs", None) or PredictInputs()
    return DataLoader(data, batch_size=chosen.batch_size or eval_batch_size(dm), shuffle=False,
                      collate_fn=data.interface.collate)
