"""The two batch layouts of bAbI question answering (:mod:`ut.data.babi` reads the files and picks one).

- ``"facts"`` (the UT paper's, Dehghani et al. 2019 §3.1): :class:`BabiFactCollator`, one row of word ids per kept
  story sentence (newest first by default, or in story order) and the question its own row; the model encodes each
  row into one vector (``ut.nn.fact_encoder``). :func:`fact_batch` builds the same inputs from word ids (prediction
  from raw text).
- ``"flat"`` (t2t's ``babi_qa_concat``): :class:`BabiCollator`, one token sequence ``s1 SEP s2 SEP ... sn SEP q``
  (:func:`flatten`).

The story window (:func:`window`) keeps the last ``max_sentences`` sentences; :func:`supporting_cut` says whether it
drops a supporting fact of a question.

Batch, ``layout="facts"``: ``facts Long[B,F,W]`` (PAD_ID-padded words; an all-PAD row is a padding fact),
``fact_mask Bool[B,F]``, ``question Long[B,Wq]``, ``src_mask Bool[B,1+F]`` (the encoder's items
``[question, facts]``: True for the question and the real facts, a prefix), ``label Long[B]``, ``task Long[B]`` (the
bAbI task, 1..20). Batch, ``layout="flat"`` (CONTRIBUTING.md classification format): ``src Long[B,S]``,
``src_mask Bool[B,S]``, ``label``, ``task``.

Shape legend: B batch, F facts, W words per fact, Wq question words, S flat sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ut.data.batching import pad
from ut.data.vocab import PAD_ID, Vocabulary

if TYPE_CHECKING:
    from ut.data.babi import BabiExample


def flatten(
    example: BabiExample, max_sentences: int | None = None, only_supporting: bool = False
) -> list[str]:
    """`s1 <sep> ... sn <sep> q` as tokens ("<sep>" encodes to SEP_ID). Stories of task 3 reach ~1,500
    tokens in full; `max_sentences` bounds them for CPU-scale runs."""
    idx = range(len(example.story))
    if only_supporting:
        idx = sorted(example.supporting_idx)
    elif max_sentences is not None:
        idx = idx[-max_sentences:]
    tokens: list[str] = []
    for i in idx:
        tokens += [*example.story[i], "<sep>"]
    return tokens + example.question


@dataclass
class BabiCollator:
    """Flat layout (t2t's ``babi_qa_concat``): one token sequence per question, :func:`flatten`."""

    vocab: Vocabulary
    answers: dict[str, int]
    max_sentences: int | None = None
    only_supporting: bool = False

    def encode(self, e: BabiExample) -> list[int]:
        return self.vocab.encode(flatten(e, self.max_sentences, self.only_supporting))

    def __call__(self, examples: list[BabiExample]) -> dict[str, torch.Tensor]:
        src, src_mask = pad([self.encode(e) for e in examples])  # (B, S)
        return {
            "src": src,
            "src_mask": src_mask,
            "label": torch.tensor([self.answers[e.answer] for e in examples], dtype=torch.long),  # (B,)
            "task": torch.tensor([e.task for e in examples], dtype=torch.long),  # (B,)
        }


FACT_ORDERS = ("newest_first", "oldest_first")
LAYOUTS = ("facts", "flat")


def window(example: BabiExample, max_sentences: int | None) -> list[int]:
    """Indices of the story sentences kept: the last `max_sentences` (all when None)."""
    n = len(example.story)
    start = 0 if max_sentences is None else max(n - max_sentences, 0)
    return list(range(start, n))


def supporting_cut(example: BabiExample, max_sentences: int | None) -> bool:
    """True when a supporting fact of `example` lies outside the story window."""
    kept = set(window(example, max_sentences))
    return any(i not in kept for i in example.supporting_idx)


@dataclass
class BabiFactCollator:
    """Fact layout (see module docstring): one word row per kept story sentence, the question its own row."""

    vocab: Vocabulary
    answers: dict[str, int]
    max_sentences: int | None = None
    fact_order: str = "newest_first"
    _encoded: dict[int, tuple] = field(default_factory=dict, init=False, repr=False, compare=False)

    def facts(self, e: BabiExample) -> list[list[int]]:
        idx = window(e, self.max_sentences)
        if self.fact_order == "newest_first":
            idx = idx[::-1]
        return [self.vocab.encode(e.story[i]) for i in idx]

    def encoded(self, e: BabiExample) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(facts Long[F, W] in the model's order, question Long[Wq], answer class, task) of one example, encoded
        once and reused every epoch (the collator's per-batch cost is then padding only). Keyed by the example
        object (``id`` plus an identity check, so a recycled id never returns another example's arrays)."""
        hit = self._encoded.get(id(e))
        if hit is None or hit[0] is not e:
            hit = (e, fact_rows_array(self.facts(e)), np.asarray(self.vocab.encode(e.question), dtype=np.int64),
                   self.answers[e.answer], e.task)
            self._encoded[id(e)] = hit
        return hit[1:]

    def __call__(self, examples: list[BabiExample]) -> dict[str, torch.Tensor]:
        enc = [self.encoded(e) for e in examples]
        batch = fact_batch_from_arrays([x[0] for x in enc], [x[1] for x in enc])
        batch["label"] = torch.tensor([x[2] for x in enc], dtype=torch.long)  # (B,)
        batch["task"] = torch.tensor([x[3] for x in enc], dtype=torch.long)  # (B,)
        return batch


def fact_rows_array(rows: list[list[int]]) -> np.ndarray:
    """One example's facts as a PAD_ID-padded Long[F, W] array (at least 1 x 1)."""
    out = np.full((max(1, len(rows)), max([1, *(len(f) for f in rows)])), PAD_ID, dtype=np.int64)
    for i, f in enumerate(rows):
        out[i, : len(f)] = f
    return out


def fact_batch_from_arrays(facts_per_example: list[np.ndarray], questions: list[np.ndarray],
                           ) -> dict[str, torch.Tensor]:
    """The fact layout's model inputs from per-example arrays (:func:`fact_rows_array`, question ids). An
    example's padding facts are all-PAD rows; ``fact_mask`` marks its real facts (rows with a word)."""
    n_facts = max(a.shape[0] for a in facts_per_example)
    n_words = max(a.shape[1] for a in facts_per_example)
    b = len(facts_per_example)
    facts = np.full((b, n_facts, n_words), PAD_ID, dtype=np.int64)  # (B, F, W)
    for i, a in enumerate(facts_per_example):
        facts[i, : a.shape[0], : a.shape[1]] = a
    fact_mask = torch.from_numpy((facts != PAD_ID).any(-1))  # (B, F)
    q = np.full((b, max([1, *(len(x) for x in questions)])), PAD_ID, dtype=np.int64)  # (B, Wq)
    for i, x in enumerate(questions):
        q[i, : len(x)] = x
    return {
        "facts": torch.from_numpy(facts),
        "fact_mask": fact_mask,
        "question": torch.from_numpy(q),
        "src_mask": torch.cat([torch.ones(b, 1, dtype=torch.bool), fact_mask], 1),  # (B, 1 + F)
    }


def fact_batch(rows: list[list[list[int]]], questions: list[list[int]]) -> dict[str, torch.Tensor]:
    """The fact layout's model inputs from word ids: ``rows[b]`` the facts of example b in the model's order,
    ``questions[b]`` its question (used by prediction from raw text; the training collator caches the arrays)."""
    arrays = [fact_rows_array(r) for r in rows]
    return fact_batch_from_arrays(arrays, [np.asarray(q, dtype=np.int64) for q in questions])
