"""LAMBADA (Paperno et al. 2016) for language models: last-word accuracy and perplexity (UT paper §3.2).

A LAMBADA passage (`{"text": ...}` per line of `lambada_test.jsonl`) is a context and a target: the passage's last
whitespace-separated word. The metrics are the target word's perplexity and last-word accuracy on the test passages
(Dehghani et al. 2019, Table 2: Transformer 7321 (0), UT 319 (0.17), UT+ACT 142 (0.19)).

Two named protocols, `LambadaDataModule(protocol=...)`:

- `"train_corpus"`, the PAPER'S PROTOCOL: train a language model on a separate training corpus (`train_path`; the
  paper uses LAMBADA's own training corpus of novels, ~200M words, which is not shipped with the test set), validate
  on LAMBADA passages (`val_path`, e.g. LAMBADA's development set; without one, a seeded `val_fraction` of the test
  passages is held out for validation and the rest is the test set, which the data module's note says), and test
  on the LAMBADA test passages (`path`). The corpus is read as one token stream (documents separated by EOS) cut
  into consecutive windows of `corpus_window` tokens; every next-token prediction of a window counts in training.
  `train_path` may be a `.jsonl` file (one document per line, `{"text": ...}`), a plain UTF-8 text file (`.txt`,
  or anything else; `.gz` / `.bz2` are decompressed), or a directory, whose `*.txt` files are read in sorted order
  (the layout of LAMBADA's `train-novels/`).
- `"test_split"` (the default, since it needs nothing but the test file): NOT the paper's protocol. The test file's
  passages are split by `seed` into train / val / test portions (`train_fraction`, `val_fraction`, rest test) and
  the model is trained on the train portion's passages. Numbers from it are "LAMBADA-test-split" numbers, not
  comparable to the paper's (`split_note` says so for results tables).

Vocabulary: word level (lower-cased words and punctuation; `max_vocab` most frequent training tokens, others UNK)
or character level (`level="char"`), built from the training text only (the corpus, or the train portion). A
word-level target that maps to UNK counts as a miss (the model cannot name it); character level has no such
misses. :func:`target_stats` gives the share of evaluation targets that are UNK or occur in their context.

Batches (CONTRIBUTING.md language-model format): `input_ids Long[B,L]` = BOS + tokens, `attention_mask Bool[B,L]`,
`loss_mask Bool[B,L]` (True at i where logits[:, i] predicting input_ids[:, i+1] counts). Train batches: every
next-token prediction counts. Val / test batches: BOS + context + target, and only the predictions of the target
word's tokens count, so the mean loss over loss_mask is the target-word NLL and `exp` of it the target-word
perplexity the paper reports (per token: per word at word level, per character at char level). Passages longer
than `max_len` keep their end (the target) and drop the oldest context tokens.
"""

from __future__ import annotations

import bz2
import gzip
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ut.data.batching import pad
from ut.data.jsonl import iter_text_records
from ut.data.paths import find_data_dir
from ut.data.vocab import BOS_ID, EOS_ID, UNK_ID, Vocabulary

PROTOCOLS = ("test_split", "train_corpus")
SPLIT_NOTE = (
    "LAMBADA split: trained and evaluated on disjoint portions of lambada_test.jsonl "
    "(the real LAMBADA training corpus is unavailable offline); not comparable to the paper's numbers"
)
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def read_lambada(path: str | Path) -> list[str]:
    """The passages of a LAMBADA jsonl file; a line that is not `{"text": <passage of >= 2 words>}` is an error
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMBADA file not found: {path}")
    texts = []
    with open(path, encoding="utf-8") as f:
        for lineno, record in iter_text_records(f, path):
            if len(record["text"].split()) < 2:
                raise ValueError(f"{path}:{lineno}: a LAMBADA passage needs a context and a target word")
            texts.append(record["text"])
    if not texts:
        raise ValueError(f"{path}: no LAMBADA passages in the file")
    return texts


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def corpus_files(path: str | Path) -> list[Path]:
    """The files of a training corpus: `path` itself, or the `*.txt` files under a directory (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise FileNotFoundError(f"training corpus directory {path} holds no *.txt files")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"training corpus not found: {path}")
    return [path]


def iter_corpus_documents(path: str | Path) -> Iterator[str]:
    """The documents of a training corpus (see the module docstring for the accepted layouts): one per line of a
    `.jsonl` file, one per plain text file. Malformed input is an error naming the file (and line)."""
    for file in corpus_files(path):
        is_jsonl = file.name.removesuffix(".gz").removesuffix(".bz2").endswith(".jsonl")
        try:
            with _open_text(file) as f:
                if not is_jsonl:
                    yield f.read()
                    continue
                for _, record in iter_text_records(f, file):
                    yield record["text"]
        except UnicodeDecodeError as err:
            raise ValueError(f"{file}: not UTF-8 text ({err})") from err
        except (OSError, EOFError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise ValueError(f"{file}: cannot be read as (compressed) text ({err})") from err


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


def target_stats(examples: Sequence[LambadaExample], vocab: Vocabulary) -> dict[str, float]:
    """Over passages: `target_unk`, the share whose target has a token outside `vocab` (never counted right);
    `target_in_context`, the share whose target occurs verbatim in the context (the words a model could copy);
    `random_context_word`, the expected accuracy of guessing the target as the tokens at a uniformly drawn context
    start position (a baseline that uses the context but no language model; UNK targets count as misses)."""
    n = len(examples)
    unk = in_context = 0
    random_guess = 0.0
    for e in examples:
        k = len(e.target)
        starts = range(len(e.context) - k + 1)
        hits = sum(e.context[i : i + k] == e.target for i in starts)
        is_unk = any(t not in vocab for t in e.target)
        unk += is_unk
        in_context += hits > 0
        random_guess += 0.0 if is_unk or not e.context else hits / len(e.context)
    return {"n": n, "target_unk": unk / max(n, 1), "target_in_context": in_context / max(n, 1),
            "random_context_word": random_guess / max(n, 1)}


class LambadaCollator:
    """Builds LM batches from passages; `target_only` restricts loss_mask to the target word's predictions."""

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


class CorpusWindows(Dataset):
    """Consecutive, non-overlapping windows of `window` ids of a token stream (the last, shorter one is kept)."""

    def __init__(self, ids: np.ndarray, window: int):
        if window < 1:
            raise ValueError(f"corpus window must be >= 1 token, got {window}")
        self.ids, self.window = ids, window

    def __len__(self) -> int:
        return math.ceil(len(self.ids) / self.window)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.ids[i * self.window : (i + 1) * self.window]


def collate_windows(windows: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """BOS + window per row; every next-token prediction counts."""
    input_ids, attention_mask = pad([[BOS_ID, *w.tolist()] for w in windows])
    loss_mask = attention_mask.clone()
    loss_mask[torch.arange(len(windows)), attention_mask.sum(1) - 1] = False  # the last token predicts nothing
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
    """LAMBADA language modelling under a named protocol (see the module docstring).

    Args:
        protocol: "test_split" (train on a split of the test passages; not the paper's protocol) or
            "train_corpus" (train on `train_path`, evaluate on the LAMBADA passages: the paper's protocol).
        path: the LAMBADA test passages (jsonl); default `<find_data_dir()>/lambada/lambada_test.jsonl`.
        train_path: "train_corpus" only, required there: the training corpus (.jsonl, text file or directory).
        val_path: "train_corpus" only: LAMBADA-format validation passages (e.g. the development set); None holds
            out `val_fraction` of `path`'s passages (seeded) for validation, the rest being the test set.
        level: "word" or "char" vocabulary.
        train_fraction, val_fraction: "test_split": shares of the passages for training and validation, the rest
            is test; "train_corpus" without `val_path`: `val_fraction` is the validation share (train_fraction unused).
        max_vocab: most frequent training tokens kept (word level); None keeps all.
        min_freq: minimum count of a kept token.
        max_len: longest input_ids (BOS included); longer passages lose their oldest context.
        corpus_window: "train_corpus": tokens per training window (BOS added); None = max_len - 1.
        max_corpus_tokens: "train_corpus": read at most this many corpus tokens (tiny runs); None reads all.
        limit: use only the first `limit` passages of `path` (tiny runs); None uses all.
        batch_size, eval_batch_size, seed, num_workers: as usual.

    Attributes after `setup()`: `vocab`, `train_set`, `val_set`, `test_set`, `split_note` (the protocol as one
    sentence, for results tables).
    """

    def __init__(
        self,
        protocol: Literal["test_split", "train_corpus"] = "test_split",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        level: Literal["word", "char"] = "word",
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        max_vocab: int | None = 10_000,
        min_freq: int = 1,
        max_len: int = 256,
        corpus_window: int | None = None,
        max_corpus_tokens: int | None = None,
        limit: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if level not in ("word", "char"):
            raise ValueError(f"level must be 'word' or 'char', got {level!r}")
        if protocol == "test_split":
            if not (0 < train_fraction and 0 <= val_fraction and train_fraction + val_fraction < 1):
                raise ValueError(
                    f"need 0 < train_fraction, 0 <= val_fraction, sum < 1; got {train_fraction}, {val_fraction}"
                )
            if train_path is not None or val_path is not None:
                raise ValueError("train_path / val_path belong to protocol='train_corpus'; "
                                 "protocol='test_split' trains on a split of `path`")
        else:
            if not train_path:
                raise ValueError("protocol='train_corpus' needs train_path: the training corpus file or directory "
                                 "(LAMBADA's novels in the paper)")
            if val_path is None and not 0 < val_fraction < 1:
                raise ValueError(f"without val_path, val_fraction must be in (0, 1), got {val_fraction}")
        if corpus_window is not None and corpus_window < 1:
            raise ValueError(f"corpus_window must be >= 1, got {corpus_window}")
        self.save_hyperparameters()
        self.split_note = SPLIT_NOTE if protocol == "test_split" else ""
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        hp = self.hparams
        path = Path(hp.path) if hp.path else find_data_dir("lambada") / "lambada_test.jsonl"
        texts = read_lambada(path)[: hp.limit]
        order = np.random.default_rng(hp.seed).permutation(len(texts))
        examples = [make_example(texts[i], hp.level) for i in order]
        max_size = hp.max_vocab if hp.level == "word" else None
        if hp.protocol == "test_split":
            n_train, n_val = int(hp.train_fraction * len(texts)), int(hp.val_fraction * len(texts))
            self.train_set = examples[:n_train]
            self.val_set = examples[n_train : n_train + n_val]
            self.test_set = examples[n_train + n_val :]
            self.vocab = Vocabulary.build((e.context + e.target for e in self.train_set), hp.min_freq, max_size)
        else:
            self._setup_train_corpus(path, examples, max_size)
        self._ready = True

    def _setup_train_corpus(self, path: Path, examples: list[LambadaExample], max_size: int | None) -> None:
        hp = self.hparams
        train_path = Path(hp.train_path)
        eval_files = {Path(p).resolve() for p in (path, hp.val_path) if p is not None}
        leaked = [f for f in corpus_files(train_path) if f.resolve() in eval_files]
        if leaked:
            raise ValueError(f"train_path {train_path} includes the evaluation file {leaked[0]}: training on the "
                             "test passages is protocol='test_split'")
        docs = []
        n_tokens = 0
        for doc in iter_corpus_documents(train_path):
            toks = tokenize(doc, hp.level)
            if hp.max_corpus_tokens is not None:
                toks = toks[: hp.max_corpus_tokens - n_tokens]
            if toks:
                docs.append(toks)
                n_tokens += len(toks)
            if hp.max_corpus_tokens is not None and n_tokens >= hp.max_corpus_tokens:
                break
        if not docs:
            raise ValueError(f"training corpus {train_path} holds no text")
        self.vocab = Vocabulary.build(docs, hp.min_freq, max_size)
        stream = []
        for toks in docs:
            stream.extend(self.vocab.encode(toks))
            stream.append(EOS_ID)
        window = hp.corpus_window or hp.max_len - 1
        self.train_set = CorpusWindows(np.asarray(stream, dtype=np.int64), window)
        if hp.val_path is not None:
            self.val_set = [make_example(t, hp.level) for t in read_lambada(hp.val_path)]
            self.test_set = examples
            val_note = f"validated on {Path(hp.val_path).name} ({len(self.val_set)} passages), tested on the"
        else:
            n_val = max(int(hp.val_fraction * len(examples)), 1)
            self.val_set, self.test_set = examples[:n_val], examples[n_val:]
            val_note = (f"validated on {n_val} held-out passages of {path.name} (seed {hp.seed}; no LAMBADA "
                        "development file given), tested on the other")
        self.split_note = (f"LAMBADA protocol train_corpus: trained on {train_path.name} ({n_tokens} tokens, "
                           f"{len(docs)} documents, windows of {window}), {val_note} {len(self.test_set)} "
                           f"passages of {path.name}")

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
        if isinstance(self.train_set, CorpusWindows):
            hp = self.hparams
            return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=True, collate_fn=collate_windows,
                              num_workers=hp.num_workers)
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
