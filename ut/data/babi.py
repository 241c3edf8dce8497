"""bAbI question answering (Weston et al. 2015) as the UT paper uses it (Dehghani et al. 2019, §3.1).

Reads the standard `tasks_1-20_v1-2` layout: `<root>/<subset>/qa<k>_<name>_{train,test}.txt`, subset "en"
(1k questions per task) or "en-10k". Single-task (`tasks=3`) or joint training (`tasks="all"` or a list).

Each question becomes one classification example over the story sentences seen so far (questions excluded, as in
t2t's `_babi_parser`). The answer string is one class (multi-word answers such as "apple,football" of tasks 8 and
19 are one class, as t2t does). Two layouts (`layout`):

- `"facts"` (default, the UT paper's §3.1): every story sentence is one row of words, the question its own row;
  the model turns each row into one vector (`ut.nn.fact_encoder`) and runs the encoder over the facts
  (`ut.models.fact_qa`). Facts come newest first (`fact_order="newest_first"`, default: the most recent fact
  sits next to the question at a fixed position, like MemN2N's temporal encoding, which indexes memories by
  recency, Sukhbaatar et al. 2015 §4.1) or in story order (`"oldest_first"`, t2t's order; the default is a
  named deviation from it).
- `"flat"`: t2t's `babi_qa_concat` layout, one token sequence `s1 SEP s2 SEP ... sn SEP q`.

Story window: `max_sentences` keeps the last n sentences (MemN2N: 50). At 50 no supporting fact of the 1k or 10k
train files is cut (the oldest supporting fact is at most 32 sentences back, task 2 of 10k); smaller windows cut
some (20 cuts 3.3% of task 3's questions). Every split counts its questions with a supporting fact outside the
window (`cut_supporting[split] = (n_cut, n_questions)`), logs it, and names it in `split_note` (which results
JSONs copy), so a table can say how many were cut.

Tokens: lower-cased words and punctuation (`.`, `?`, `,`). The word vocabulary is built from the training
split; answer classes from the answers of the train and test files of the chosen tasks (t2t builds its
vocabulary from both; labels only, no test text enters the inputs' vocabulary).

Validation: t2t evaluates on the test file and has no validation split. Following MemN2N (Sukhbaatar et al.
2015), whose bAbI protocol the UT paper's "best of 10 runs" selection needs, 10% of each task's TRAIN
stories (`val_fraction`) are held out as validation, chosen by `seed`, split by story so no story is in both.

Missing files raise `FileNotFoundError` naming the path. One exception, recorded: the copy of en-10k in
../shared/data lacks `qa3_three-supporting-facts_train.txt`; when an en-10k train file is missing and the 1k
(`en`) file exists, the 1k file is used with a logged warning and `fallbacks[task] = message`, so that a
results table can say so (`allow_fallback=False` turns the fallback into an error).

Batch, `layout="facts"`: `facts Long[B,F,W]` (PAD_ID-padded words; an all-PAD row is a padding fact),
`fact_mask Bool[B,F]`, `question Long[B,Wq]`, `src_mask Bool[B,1+F]` (the encoder's items `[question, facts]`:
True for the question and the real facts, a prefix), `label Long[B]`, `task Long[B]` (the bAbI task, 1..20).
Batch, `layout="flat"` (CONTRIBUTING.md classification format): `src Long[B,S]`, `src_mask Bool[B,S]`, `label`,
`task`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ut.data.batching import pad
from ut.data.paths import find_data_dir
from ut.data.vocab import PAD_ID, Vocabulary

log = logging.getLogger(__name__)

TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
SUBSETS = ("en", "en-10k")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return _TOKEN.findall(text.lower())


@dataclass
class BabiExample:
    """One question with the story before it."""

    story: list[list[str]]  # tokenised context sentences, oldest first (questions excluded)
    line_ids: list[int]  # the file's line number of each story sentence
    question: list[str]
    answer: str  # raw answer string, e.g. "bathroom" or "apple,football"
    supporting: list[int]  # line numbers of the supporting facts
    task: int = 0
    story_id: int = 0  # index of the story within its file

    @property
    def supporting_idx(self) -> list[int]:
        """Indices into `story` of the supporting facts."""
        return [self.line_ids.index(n) for n in self.supporting]


def parse_babi(lines: Iterable[str], task: int = 0) -> list[BabiExample]:
    """Parse bAbI text: `<n> <sentence>` lines, questions `<n> <q>\\t<answer>\\t<supporting ids>`; a line
    numbered 1 starts a new story."""
    examples: list[BabiExample] = []
    story: list[list[str]] = []
    line_ids: list[int] = []
    story_id = -1
    for raw in lines:
        raw = raw.rstrip("\n")
        if not raw.strip():
            continue
        num_str, text = raw.split(" ", 1)
        num = int(num_str)
        if num == 1:
            story, line_ids, story_id = [], [], story_id + 1
        if "\t" in text:
            parts = text.split("\t")
            question, answer = parts[0], parts[1].strip()
            supporting = [int(s) for s in parts[2].split()] if len(parts) > 2 else []
            examples.append(
                BabiExample(
                    [list(s) for s in story],
                    list(line_ids),
                    tokenize(question),
                    answer,
                    supporting,
                    task,
                    story_id,
                )
            )
        else:
            story.append(tokenize(text))
            line_ids.append(num)
    return examples


def babi_path(root: str | Path, subset: str, task: int, split: str) -> Path:
    """`<root>/<subset>/qa<task>_<name>_<split>.txt`."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown bAbI subset {subset!r}; choose one of {SUBSETS}")
    if task not in TASK_NAMES:
        raise ValueError(f"bAbI task must be 1..20, got {task}")
    return Path(root) / subset / f"qa{task}_{TASK_NAMES[task]}_{split}.txt"


def resolve_babi_file(
    root: str | Path, subset: str, task: int, split: str, allow_fallback: bool = True
) -> tuple[Path, str | None]:
    """The file to read and, when the en-10k train file is missing and the 1k one is used, a message."""
    path = babi_path(root, subset, task, split)
    if path.is_file():
        return path, None
    if allow_fallback and subset == "en-10k" and split == "train":
        alt = babi_path(root, "en", task, split)
        if alt.is_file():
            msg = f"task {task}: {path} is missing; trained on the 1k file {alt} instead"
            log.warning("bAbI fallback: %s", msg)
            return alt, msg
        raise FileNotFoundError(f"bAbI file not found: {path} (nor the 1k fallback {alt})")
    raise FileNotFoundError(f"bAbI file not found: {path}")


def load_babi(
    root: str | Path, subset: str, tasks: Sequence[int], split: str, allow_fallback: bool = True
) -> tuple[list[BabiExample], dict[int, str]]:
    """All examples of `tasks` for one split (train / test), and the fallbacks used {task: message}."""
    examples, fallbacks = [], {}
    for task in tasks:
        path, msg = resolve_babi_file(root, subset, task, split, allow_fallback)
        if msg:
            fallbacks[task] = msg
        with open(path, encoding="utf-8") as f:
            examples.extend(parse_babi(f, task))
    return examples, fallbacks


def split_by_story(
    examples: Sequence[BabiExample], val_fraction: float, seed: int
) -> tuple[list[BabiExample], list[BabiExample]]:
    """Hold out ceil(val_fraction * stories) whole stories per task as validation."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = [], []
    for task in sorted({e.task for e in examples}):
        of_task = [e for e in examples if e.task == task]
        stories = sorted({e.story_id for e in of_task})
        n_val = math.ceil(val_fraction * len(stories)) if val_fraction > 0 else 0
        rng = np.random.default_rng([seed, task])
        held = set(rng.permutation(stories)[:n_val].tolist())
        for e in of_task:
            (val if e.story_id in held else train).append(e)
    return train, val


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


def _parse_tasks(tasks: int | str | Sequence[int]) -> list[int]:
    if tasks == "all":
        return list(TASK_NAMES)
    if isinstance(tasks, int):
        return [tasks]
    if isinstance(tasks, str):
        return [int(t) for t in tasks.split(",")]
    return [int(t) for t in tasks]


class BabiDataModule(L.LightningDataModule):
    """bAbI QA for encoder-only models (UT paper §3.1).

    Args:
        data_dir: the folder holding `en/` and `en-10k/`; default `<find_data_dir()>/babi/tasks_1-20_v1-2`.
        subset: "en" (1k) or "en-10k".
        tasks: one task number, a list, "1,2,3", or "all" (joint training).
        val_fraction: share of train stories held out for validation (MemN2N protocol: 0.1).
        layout: "facts" (the UT paper's fact encoding, default) or "flat" (t2t's `babi_qa_concat`).
        fact_order: facts layout: "newest_first" (default) or "oldest_first" (story order).
        max_sentences: keep only the last n story sentences (MemN2N used 50); None keeps all (t2t).
        only_supporting: flat layout: keep only the supporting facts (an oracle ablation; off for the paper's task).
        allow_fallback: use the 1k train file when an en-10k train file is missing (see module docstring).
        batch_size, eval_batch_size, seed, num_workers: as usual.

    Attributes after `setup()`: `vocab`, `answers` ({answer: class id}), `num_classes`, `max_words` (the longest
    fact or question of any split, the fact encoder's mask length), `fallbacks` ({task: message}),
    `cut_supporting` ({split: (questions with a supporting fact outside the window, questions)}), `split_note`,
    `train_set`, `val_set`, `test_set`.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        subset: str = "en",
        tasks: int | str | list[int] = 1,
        val_fraction: float = 0.1,
        layout: str = "facts",
        fact_order: str = "newest_first",
        max_sentences: int | None = None,
        only_supporting: bool = False,
        allow_fallback: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 100,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if subset not in SUBSETS:
            raise ValueError(f"unknown bAbI subset {subset!r}; choose one of {SUBSETS}")
        if layout not in LAYOUTS:
            raise ValueError(f"BabiDataModule.layout={layout!r} is not one of {LAYOUTS}")
        if fact_order not in FACT_ORDERS:
            raise ValueError(f"BabiDataModule.fact_order={fact_order!r} is not one of {FACT_ORDERS}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"BabiDataModule.max_sentences must be >= 1 or null, got {max_sentences}")
        if only_supporting and layout != "flat":
            raise ValueError("BabiDataModule.only_supporting is an option of layout='flat'")
        self.tasks = _parse_tasks(tasks)
        for t in self.tasks:
            if t not in TASK_NAMES:
                raise ValueError(f"bAbI task must be 1..20, got {t}")
        self.fallbacks: dict[int, str] = {}
        self.cut_supporting: dict[str, tuple[int, int]] = {}
        self.split_note: str | None = None
        self.max_words: int | None = None
        self._ready = False

    @property
    def root(self) -> Path:
        if self.hparams.data_dir is not None:
            return Path(self.hparams.data_dir)
        return find_data_dir("babi/tasks_1-20_v1-2")

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        hp = self.hparams
        train_all, self.fallbacks = load_babi(self.root, hp.subset, self.tasks, "train", hp.allow_fallback)
        self.test_set, _ = load_babi(self.root, hp.subset, self.tasks, "test", hp.allow_fallback)
        self.train_set, self.val_set = split_by_story(train_all, hp.val_fraction, hp.seed)
        self.vocab = Vocabulary.build(
            flatten(e, hp.max_sentences, hp.only_supporting) for e in self.train_set
        )
        self.answers = {a: i for i, a in enumerate(sorted({e.answer for e in train_all + self.test_set}))}
        if hp.layout == "facts":
            self._collate = BabiFactCollator(self.vocab, self.answers, hp.max_sentences, hp.fact_order)
        else:
            self._collate = BabiCollator(self.vocab, self.answers, hp.max_sentences, hp.only_supporting)
        splits = {"train": self.train_set, "val": self.val_set, "test": self.test_set}
        self.max_words = max(
            len(w) for data in splits.values() for e in data for w in [e.question, *e.story]
        )
        if not hp.only_supporting:
            self.cut_supporting = {
                name: (sum(supporting_cut(e, hp.max_sentences) for e in data), len(data))
                for name, data in splits.items()
            }
            cuts = [f"{name} {n}/{total}" for name, (n, total) in self.cut_supporting.items() if n]
            if cuts:
                self.split_note = (f"story window of {hp.max_sentences} sentences cuts a supporting fact of "
                                   f"{', '.join(cuts)} questions")
                log.warning("bAbI: %s", self.split_note)
        self._ready = True

    @property
    def num_classes(self) -> int:
        return len(self.answers)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _loader(self, data: list[BabiExample], train: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            data,
            batch_size=hp.batch_size if train else hp.eval_batch_size,
            shuffle=train,
            collate_fn=self._collate,
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
