"""WikiSum (Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences") as a LightningDataModule.

Reads the output of ``python -m data_prep build`` (layout in data_prep/build.py): ``dataset/`` (an HF
``DatasetDict`` with train / validation / test), ``tokenizer.json`` and ``special_tokens.json``. Each example holds
the target (the lead section) as ``target_ids`` and one ranked input per extractor as ``input_ids_<extractor>``
(``title <sep> ranked paragraphs``, stored up to the build's largest L).

Paper §2.1 / §4: the input is the first L tokens of the ranked paragraphs (L from 100 to 11,000); the model is an
encoder-decoder (T-ED) or a decoder-only LM over ``[input; sep; target]`` (T-D, T-DMCA). Two batch formats
(CONTRIBUTING.md), chosen by ``format``:

- ``"seq2seq"``: ``src Long[B,S]`` (first L input tokens), ``src_mask``, ``tgt_in`` = BOS + y, ``tgt_out`` = y + EOS,
  ``tgt_mask``.
- ``"lm"``: ``input_ids`` = ``[input; sep; y; eos]``, ``attention_mask``, ``loss_mask`` on the target predictions
  only (from the separator to the token before the end), built by
  :func:`ut.data.lm_batches.pack_input_target`. So the LM's loss and log-perplexity cover the same tokens
  (y + EOS) as the encoder-decoder's: the paper's per-token log-perplexity on the target.

Batches are length-bucketed (:class:`LengthBucketBatchSampler`): examples of similar length share a batch, by a
fixed ``batch_size`` or by a ``max_tokens`` budget of padded tokens, as t2t's bucketed batching.
:meth:`WikiSumDataModule.generation_dataloader` gives the decoding inputs (the source, or the ``[input; sep]``
prefix) with each row's example index, so that decoded text is scored against the FULL reference lead
(:meth:`WikiSumDataModule.references`).

Deviations from the paper, named:
- the target is cut at ``target_length`` tokens *including* EOS (y keeps ``target_length - 1`` tokens and EOS is
  always appended); t2t truncated targets too, but its length limit and the EOS after a cut are not documented;
- the subword vocabulary is data_prep's BPE (not t2t's SubwordTextEncoder), so per-token log-perplexities are not
  comparable with the paper's numbers, only between models on the same build;
- the sample build (``source=wiki-body``) feeds the article's own non-lead sections, an offline stand-in for the
  cited references and search results (see its data card).
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ut.data.batching import pad
from ut.data.lm_batches import pack_input_target

FORMATS = ("seq2seq", "lm")
SPLITS = ("train", "validation", "test")
EXTRACTORS = ("identity", "tfidf", "textrank", "sumbasic", "cheating")
BUILD_COMMAND = "python -m data_prep build --out {path}"


def check_built(data_dir: str | Path) -> Path:
    """``data_dir`` if it holds a finished data_prep build; else a FileNotFoundError naming the build command."""
    path = Path(data_dir)
    missing = [name for name in ("dataset", "tokenizer.json", "special_tokens.json") if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"no WikiSum build at {path} (missing {', '.join(missing)}). Build the sample from the embedded real "
            f"enwiki dump with:\n    {BUILD_COMMAND.format(path=path)}\n(about a minute on 2 cores; "
            "see `python -m data_prep build --help` for a full dump)"
        )
    return path


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths (t2t-style bucketing).

    Each epoch the indices are shuffled (``shuffle=True``), cut into pools of ``pool_batches`` batches, each pool
    sorted by length and cut into batches; the batch order is shuffled again. A batch holds ``batch_size`` examples,
    or, when ``max_tokens`` is set, as many as fit ``n * longest <= max_tokens`` (at least one). Without shuffling
    the order is fully sorted by length (deterministic evaluation).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int = 8, max_tokens: int | None = None,
                 shuffle: bool = True, seed: int = 0, pool_batches: int = 50, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.lengths = list(lengths)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.shuffle, self.seed, self.pool_batches, self.drop_last = shuffle, seed, pool_batches, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _cut(self, indices: list[int]) -> list[list[int]]:
        batches, batch, longest = [], [], 0
        for i in indices:
            new_longest = max(longest, self.lengths[i])
            full = len(batch) >= self.batch_size if self.max_tokens is None else \
                (len(batch) + 1) * new_longest > self.max_tokens
            if batch and full:
                batches.append(batch)
                batch, new_longest = [], self.lengths[i]
            batch.append(i)
            longest = new_longest
        if batch and not (self.drop_last and self.max_tokens is None and len(batch) < self.batch_size):
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            return self._cut(sorted(order, key=lambda i: (self.lengths[i], i)))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(order)
        pool = max(self.batch_size, 1) * self.pool_batches
        out = []
        for start in range(0, len(order), pool):
            out += self._cut(sorted(order[start:start + pool], key=lambda i: self.lengths[i]))
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1  # a new order next time even when no one calls set_epoch
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches())


class _Examples(Dataset):
    """(index, input ids, target ids) triples of one split, already cut to L and the target length."""

    def __init__(self, inputs: list[list[int]], targets: list[list[int]]):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[int, list[int], list[int]]:
        return i, self.inputs[i], self.targets[i]


class WikiSumDataModule(L.LightningDataModule):
    """WikiSum batches for T-ED (``format="seq2seq"``) or T-D / T-DMCA (``format="lm"``); see the module docstring.

    Args:
        data_dir: a ``python -m data_prep build`` output folder.
        format: "seq2seq" (encoder-decoder) or "lm" (decoder-only over ``[input; sep; target]``).
        extractor: which ranked input to read (identity, tfidf, textrank, sumbasic, cheating: paper Table 3).
        input_length: L, input tokens kept (the build must store at least L; it stores up to its largest L).
        target_length: target tokens kept, EOS included.
        batch_size: examples per batch (the upper bound when ``max_tokens`` is set).
        max_tokens: padded-token budget per training batch (longest row x rows); None = fixed ``batch_size``.
        eval_batch_size: examples per validation / test / generation batch (default ``batch_size``).
        max_examples: keep at most this many examples per split (quick runs); None = all.
        train_min_input_tokens: keep only training examples with at least this many input tokens (after the cut
            to L): the L sweep sets it to L so that every timed step really sees L input tokens.
        loss_on: the loss mask of TRAINING ``lm`` batches: "target" (T-D, Liu et al. §4.2: the target only) or
            "all" (every next token of ``[input; sep; target]``); evaluation batches always score the target only,
            so log-perplexities stay comparable.
        seed: shuffling seed.
        num_workers: DataLoader workers (0 keeps everything in this process: the data is a few MB).
    """

    def __init__(self, data_dir: str = "data/wikisum_sample", format: str = "seq2seq", extractor: str = "tfidf",
                 input_length: int = 500, target_length: int = 256, batch_size: int = 8,
                 max_tokens: int | None = None, eval_batch_size: int | None = None,
                 max_examples: int | None = None, seed: int = 0, num_workers: int = 0,
                 train_min_input_tokens: int | None = None, loss_on: str = "target"):
        super().__init__()
        if loss_on not in ("target", "all"):
            raise ValueError(f"loss_on={loss_on!r} is not one of ('target', 'all')")
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not one of {FORMATS}")
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor={extractor!r} is not one of {EXTRACTORS}")
        if input_length < 1 or target_length < 2:
            raise ValueError(f"need input_length >= 1 and target_length >= 2 (y + EOS), got "
                             f"{input_length}, {target_length}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.format, self.extractor = format, extractor
        self.input_length, self.target_length = input_length, target_length
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_examples, self.seed, self.num_workers = max_examples, seed, num_workers
        self.train_min_input_tokens = train_min_input_tokens
        self.loss_on = loss_on
        self._splits: dict[str, _Examples] = {}
        self._rows: dict[str, dict[str, list]] = {}
        self._tokenizer = None
        self.special: dict[str, int] = {}

    # ------------------------------------------------------------------ sizes the training modules read
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    @property
    def max_positions(self) -> int:
        """Positions a model must cover: L for the encoder, the target length for the decoder; L + 1 + T (LM)."""
        if self.format == "lm":
            return self.input_length + 1 + self.target_length
        return max(self.input_length, self.target_length)

    @property
    def pad_id(self) -> int:
        return self._special("pad_id")

    @property
    def bos_id(self) -> int:
        return self._special("bos_id")

    @property
    def eos_id(self) -> int:
        return self._special("eos_id")

    @property
    def sep_id(self) -> int:
        return self._special("sep_id")

    def special_ids(self) -> dict[str, int]:
        """``{"pad_id", "bos_id", "eos_id", "sep_id"}``, to put in a model config."""
        return {k: self._special(k) for k in ("pad_id", "bos_id", "eos_id", "sep_id")}

    def _special(self, key: str) -> int:
        if not self.special:
            path = check_built(self.data_dir)
            self.special = {k: int(v) for k, v in json.loads((path / "special_tokens.json").read_text()).items()}
        return self.special[key]

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(check_built(self.data_dir) / "tokenizer.json"))
        return self._tokenizer

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids: stops at EOS, drops special tokens."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # ------------------------------------------------------------------ loading
    def prepare_data(self) -> None:
        check_built(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        import datasets

        path = check_built(self.data_dir)
        dsd = datasets.load_from_disk(str(path / "dataset"))
        column = f"input_ids_{self.extractor}"
        for split in SPLITS:
            if split not in dsd:
                raise ValueError(f"{path}/dataset has no {split!r} split (has {list(dsd)})")
            ds = dsd[split]
            if column not in ds.column_names:
                have = sorted(c[len("input_ids_"):] for c in ds.column_names if c.startswith("input_ids_"))
                raise ValueError(f"the build at {path} has no {self.extractor!r} input (has {have}); rebuild "
                                 f"with --rankers including it")
            if self.max_examples is not None:
                ds = ds.select(range(min(self.max_examples, len(ds))))
            cols = ds.select_columns([column, "target_ids", "title", "target"]).to_dict()
            inputs = [list(x[: self.input_length]) for x in cols[column]]
            targets = [list(y[: self.target_length - 1]) for y in cols["target_ids"]]
            if split == "train" and self.train_min_input_tokens:
                keep = [i for i, x in enumerate(inputs) if len(x) >= self.train_min_input_tokens]
                if not keep:
                    raise ValueError(f"no training example of {path} has >= {self.train_min_input_tokens} input "
                                     f"tokens ({self.extractor})")
                inputs, targets = [inputs[i] for i in keep], [targets[i] for i in keep]
                cols = {k: [v[i] for i in keep] for k, v in cols.items()}
            self._splits[split] = _Examples(inputs, targets)
            self._rows[split] = {"title": cols["title"], "target": cols["target"]}
        if len(self._splits["train"]) == 0:
            raise ValueError(f"the build at {path} has an empty train split")

    def split_data(self, split: str) -> _Examples:
        self.setup()
        if split not in self._splits:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        return self._splits[split]

    def references(self, split: str) -> list[str]:
        """The full (uncut) reference leads of ``split``, in example order."""
        self.split_data(split)
        return list(self._rows[split]["target"])

    def titles(self, split: str) -> list[str]:
        self.split_data(split)
        return list(self._rows[split]["title"])

    def input_text(self, split: str, index: int, max_tokens: int | None = None) -> str:
        """The model's input of one example as text (first ``max_tokens`` tokens)."""
        ids = self.split_data(split).inputs[index][:max_tokens]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    # ------------------------------------------------------------------ collation
    def row_length(self, n_input: int, n_target: int) -> int:
        """Padded length a row occupies (the bucketing key)."""
        return n_input + n_target + 2 if self.format == "lm" else max(n_input, n_target + 1)

    def collate(self, items: list[tuple[int, list[int], list[int]]],
                loss_on: str = "target") -> dict[str, torch.Tensor]:
        """Teacher-forced batch in the format's keys (CONTRIBUTING.md); ``loss_on`` for ``lm`` batches."""
        _, inputs, targets = zip(*items)
        if self.format == "lm":
            return pack_input_target(list(inputs), list(targets), self.sep_id, self.eos_id, self.pad_id, loss_on)
        src, src_mask = pad(inputs, self.pad_id)
        tgt_in, tgt_mask = pad([[self.bos_id, *y] for y in targets], self.pad_id)
        tgt_out, _ = pad([[*y, self.eos_id] for y in targets], self.pad_id)
        return {"src": src, "src_mask": src_mask, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_mask": tgt_mask}

    def collate_generation(self, items: list[tuple[int, list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Decoding inputs: ``src/src_mask`` (seq2seq) or the ``[input; sep]`` prefix (lm), plus ``index``."""
        index, inputs, _ = zip(*items)
        if self.format == "lm":
            ids, mask = pad([[*x, self.sep_id] for x in inputs], self.pad_id)
            batch = {"input_ids": ids, "attention_mask": mask}
        else:
            src, src_mask = pad(inputs, self.pad_id)
            batch = {"src": src, "src_mask": src_mask}
        batch["index"] = torch.tensor(index, dtype=torch.long)
        return batch

    def _sampler(self, split: str, shuffle: bool, batch_size: int, max_tokens: int | None):
        data = self.split_data(split)
        lengths = [self.row_length(len(x), len(y)) for x, y in zip(data.inputs, data.targets)]
        return LengthBucketBatchSampler(lengths, batch_size, max_tokens, shuffle=shuffle, seed=self.seed)

    def _loader(self, split: str, shuffle: bool, batch_size: int, max_tokens: int | None, collate):
        return DataLoader(self.split_data(split), batch_sampler=self._sampler(split, shuffle, batch_size, max_tokens),
                          collate_fn=collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size, self.max_tokens,
                            functools.partial(self.collate, loss_on=self.loss_on))

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False, self.eval_batch_size, None, self.collate)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size, None, self.collate)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Teacher-forced batches of any split, in length order (for log-perplexity)."""
        return self._loader(split, False, self.eval_batch_size, None, self.collate)

    def generation_dataloader(self, split: str = "test", batch_size: int | None = None) -> DataLoader:
        """Decoding inputs of ``split`` with their example ``index`` (see :meth:`collate_generation`)."""
        return self._loader(split, False, batch_size or self.eval_batch_size, None, self.collate_generation)

    def predict_dataloader(self) -> DataLoader:
        """Prediction inputs (:func:`ut.data.predict.predict_dataloader`): the texts or file of ``predict_inputs``
        (raw text: the self-contained tokenizer normalises it as the build did), else the test split, in order."""
        from ut.data.predict import predict_dataloader

        return predict_dataloader(self)

    def summary(self) -> dict[str, float]:
        """Split sizes and mean input / target tokens after cutting (for reports)."""
        out: dict[str, float] = {}
        for split in SPLITS:
            data = self.split_data(split)
            n = len(data)
            out[f"{split}_examples"] = n
            out[f"{split}_mean_input_tokens"] = sum(map(len, data.inputs)) / n if n else math.nan
            out[f"{split}_mean_target_tokens"] = sum(map(len, data.targets)) / n + 1 if n else math.nan
        return out
