"""LAMBADA (Paperno et al. 2016) for language models: last-word accuracy and perplexity (UT paper §3.2).

Reads `lambada_test.jsonl` (`{"text": ...}` per line); the target is the passage's last whitespace-separated
word, the context everything before it.

NOT THE PAPER'S PROTOCOL, clearly: LAMBADA's training corpus (novels, ~200M words) is not available offline.
At CPU scale the provided 5,153-passage test file is SPLIT by `seed` into train / val / test portions
(`train_fraction`, `val_fraction`, rest test) and the model is trained on the train portion. Numbers from
this module are "LAMBADA-test-split" numbers, not comparable to the paper's (`SPLIT_NOTE` says so for
results tables).

Vocabulary: word level (lower-cased words and punctuation; `max_vocab` most frequent training tokens, others
UNK) or character level (`level="char"`), built from the train portion only. A word-level target that maps
to UNK counts as a miss (the model cannot name it); character level has no such misses.

Batches (CONTRIBUTING.md language-model format): `input_ids Long[B,L]` = BOS + context + target tokens,
`attention_mask Bool[B,L]`, `loss_mask Bool[B,L]` (True at i where logits[:, i] predicting input_ids[:, i+1]
counts). Train batches: every next-token prediction counts. Val / test batches: only the predictions of the
target word's tokens count, so the mean loss over loss_mask is the target-word NLL and `exp` of it the
target-word perplexity the paper reports (per token: per word at word level, per character at char level).
Passages longer than `max_len` keep their end (the target) and drop the oldest context tokens.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ut.data.batching import pad
from ut.data.paths import find_data_dir
from ut.data.vocab import BOS_ID, UNK_ID, Vocabulary

SPLIT_NOTE = (
    "LAMBADA split: trained and evaluated on disjoint portions of lambada_test.jsonl "
    "(the real LAMBADA training corpus is unavailable offline); not comparable to the paper's numbers"
)
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def read_lambada(path: str | Path) -> list[str]:
    """The passages of a LAMBADA jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMBADA file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def split_target(text: str) -> tuple[str, str]:
    """(context, target word): the target is the last whitespace-separated word."""
    words = text.rstrip().rsplit(None, 1)
    if len(words) < 2:
        raise ValueError(f"LAMBADA passage needs a context and a target word: {text!r}")
    return words[0], words[1]


def tokenize(text: str, level: Literal["word", "char"]) -> list[str]:
    """Word level: lower-cased words (with inner apostrophes) and punctuation. Char level: characters, with
    every whitespace run as one space."""
    if level == "word":
        return _WORD.findall(text.lower())
    if level == "char":
        return list(re.sub(r"\s+", " ", text))
    raise ValueError(f"level must be 'word' or 'char', got {level!r}")


@dataclass(frozen=True)
class LambadaExample:
    context: list[str]  # tokens before the target word (char level: ends with the separating space)
    target: list[str]  # the target word's tokens


def make_example(text: str, level: Literal["word", "char"]) -> LambadaExample:
    context, target = split_target(text)
    if level == "char":
        return LambadaExample(tokenize(context, level) + [" "], tokenize(target, level))
    return LambadaExample(tokenize(context, level), tokenize(target, level))


class LambadaCollator:
    """Builds LM batches; `target_only` restricts loss_mask to the target word's predictions."""

    def __init__(self, vocab: Vocabulary, max_len: int, target_only: bool):
        self.vocab, self.max_len, self.target_only = vocab, max_len, target_only

    def __call__(self, examples: list[LambadaExample]) -> dict[str, torch.Tensor]:
        seqs, starts = [], []  # starts: index in the sequence of the first target token
        for e in examples:
            ids = self.vocab.encode(e.context + e.target)[-(self.max_len - 1) :]
            seqs.append([BOS_ID, *ids])
            starts.append(len(seqs[-1]) - len(e.target))
        input_ids, attention_mask = pad(seqs)  # (B, L)
        loss_mask = torch.zeros_like(attention_mask)
        for b, (s, start) in enumerate(zip(seqs, starts)):
            first = max(start, 1) - 1 if self.target_only else 0  # logits[i] predicts token i + 1
            loss_mask[b, first : len(s) - 1] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


@torch.no_grad()
def lambada_metrics(
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[dict[str, torch.Tensor]],
) -> dict[str, float]:
    """Last-word accuracy and target perplexity over evaluation batches (loss_mask on the target tokens).

    `logits_fn(input_ids Long[B,L], attention_mask Bool[B,L]) -> Float[B,L,V]`. A passage is correct when the
    greedy prediction of every target token is right and no target token is UNK. Perplexity = exp(mean NLL
    over all target tokens).
    """
    nll_sum, n_tokens, n_correct, n_examples = 0.0, 0, 0, 0
    for batch in batches:
        ids, mask = batch["input_ids"], batch["loss_mask"][:, :-1]  # mask: (B, L-1)
        logits = logits_fn(ids, batch["attention_mask"])[:, :-1].float()  # (B, L-1, V)
        nxt = ids[:, 1:]  # (B, L-1)
        nll = F.cross_entropy(logits.transpose(1, 2), nxt, reduction="none")  # (B, L-1)
        nll_sum += nll[mask].sum().item()
        n_tokens += int(mask.sum())
        ok = (logits.argmax(-1) == nxt) & (nxt != UNK_ID)  # (B, L-1)
        n_correct += int(((ok | ~mask).all(1) & mask.any(1)).sum())
        n_examples += int(mask.any(1).sum())
    if n_tokens == 0:
        raise ValueError("no target tokens: do the batches come from a val / test loader?")
    return {
        "accuracy": n_correct / n_examples,
        "perplexity": math.exp(nll_sum / n_tokens),
        "nll": nll_sum / n_tokens,
        "n": n_examples,
    }


class LambadaDataModule(L.LightningDataModule):
    """LAMBADA language modelling on a split of `lambada_test.jsonl` (see the module docstring).

    Args:
        path: the jsonl file; default `<find_data_dir()>/lambada/lambada_test.jsonl`.
        level: "word" or "char" vocabulary.
        train_fraction, val_fraction: shares of the passages for training and validation; the rest is test.
        max_vocab: most frequent training tokens kept (word level); None keeps all.
        min_freq: minimum count of a kept token.
        max_len: longest input_ids (BOS included); longer passages lose their oldest context.
        limit: use only the first `limit` passages of the file (tiny runs); None uses all.
        batch_size, eval_batch_size, seed, num_workers: as usual.

    Attributes after `setup()`: `vocab`, `train_set`, `val_set`, `test_set`, `split_note`.
    """

    def __init__(
        self,
        path: str | None = None,
        level: Literal["word", "char"] = "word",
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        max_vocab: int | None = 10_000,
        min_freq: int = 1,
        max_len: int = 256,
        limit: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if level not in ("word", "char"):
            raise ValueError(f"level must be 'word' or 'char', got {level!r}")
        if not (0 < train_fraction and 0 <= val_fraction and train_fraction + val_fraction < 1):
            raise ValueError(
                f"need 0 < train_fraction, 0 <= val_fraction, sum < 1; got {train_fraction}, {val_fraction}"
            )
        self.save_hyperparameters()
        self.split_note = SPLIT_NOTE
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        hp = self.hparams
        path = Path(hp.path) if hp.path else find_data_dir("lambada") / "lambada_test.jsonl"
        texts = read_lambada(path)[: hp.limit]
        order = np.random.default_rng(hp.seed).permutation(len(texts))
        n_train, n_val = int(hp.train_fraction * len(texts)), int(hp.val_fraction * len(texts))
        examples = [make_example(texts[i], hp.level) for i in order]
        self.train_set = examples[:n_train]
        self.val_set = examples[n_train : n_train + n_val]
        self.test_set = examples[n_train + n_val :]
        max_size = hp.max_vocab if hp.level == "word" else None
        self.vocab = Vocabulary.build((e.context + e.target for e in self.train_set), hp.min_freq, max_size)
        self._ready = True

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _loader(self, data: Sequence[LambadaExample], train: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            data,
            batch_size=hp.batch_size if train else hp.eval_batch_size,
            shuffle=train,
            collate_fn=LambadaCollator(self.vocab, hp.max_len, target_only=not train),
            num_workers=hp.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction inputs (:func:`ut.data.predict.predict_dataloader`): the texts or file of ``predict_inputs``,
        else the test split, in order."""
        from ut.data.predict import predict_dataloader

        return predict_dataloader(self)
