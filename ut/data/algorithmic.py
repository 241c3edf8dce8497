"""The UT paper's algorithmic tasks: copy, reverse, decimal addition (Dehghani et al. 2019, §3.3).

Data follow tensor2tensor's `algorithmic_{identity,reverse,addition}_decimal40` problems (used by the paper):

- copy / reverse: length uniform in [1, max_len], digits uniform in 0..9; target = the input (copy) or the
  input reversed (reverse).
- addition: two numbers written LOWER-ENDIAN (least significant digit first, as in t2t), lengths
  l1 ~ U[1, max_len // 2], l2 ~ U[1, max_len - l1 - 1], leading (= last) digit non-zero unless the number
  has one digit; input `n1 + "+" + n2`, target the sum, also lower-endian.
- training: max_len 40 (t2t train_length); evaluation: max_len 400 (t2t dev_length). By default evaluation
  lengths are uniform in [1, 400] as in t2t's dev set (`eval_length="uniform"`); `eval_length="fixed"` makes
  every evaluation input exactly 400 symbols long (the paper's wording "test length 400").
- position offsets, a named policy (`position_offsets`). The paper (§3.3) trains "with randomized offsets"; in
  tensor2tensor, which the paper used, the offsets are NOT in the data: the Transformer's positions start at 0, and
  the Universal Transformer draws a random start index inside every recurrent step
  (`universal_transformer_util.add_position_timing_signal`, `position_start_index="random"`; here the model config
  field `position_start_index` of ut/models/universal.py). So the default `position_offsets="none"` gives every
  batch zero offsets, and t2t's policy is data "none" + UT `position_start_index: random`. Two data-side variants
  are kept as options, applied to TRAINING batches of every model (evaluation batches always carry zero offsets):
  - `"shared"`: ONE offset per example for both the source and the target positions, uniform so that
    offset + max(padded src length, padded tgt length) <= `max_positions`: positions up to `max_positions - 1`
    (~400) are seen while training on lengths <= 40, and target position i carries the same position signal as
    source position i (copy) or a fixed relation to it. Not t2t.
  - `"independent"`: source and target offsets drawn independently per example, each bounded by its own padded
    length; the source / target position relation is random on every example. Not t2t either (t2t's draw is per
    batch, bounded by the length, and inside the model); at CPU scale (hundreds of steps) no model learned copy
    that way (char-acc ~0.26 on training lengths after 600 steps, vs 0.83 without offsets).

Deviations from t2t, named:
- ids: PAD=0, BOS=1, EOS=2, SEP=3, UNK=4, digits "0".."9" = 5..14, "+" = 15 (t2t: 0 pad, 1 EOS, digits
  from 2, and the separator is the id `base`).
- the source carries no EOS (t2t appended one); its length is given by `src_mask`.
- t2t generated a fixed 100k training set; here example i of a split is a pure function of
  (seed, split, i), generated lazily: any `train_size`, reproducible runs, resume with the same data.

Batch (CONTRIBUTING.md seq2seq format plus offsets):
  src Long[B,S], src_mask Bool[B,S], tgt_in Long[B,T] (BOS + y), tgt_out Long[B,T] (y + EOS),
  tgt_mask Bool[B,T], src_pos_offset Long[B], tgt_pos_offset Long[B].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ut.data.batching import pad
from ut.data.vocab import BOS_ID, EOS_ID, Vocabulary

TASKS = ("copy", "reverse", "addition")
DIGIT_OFFSET = 5  # id of digit "0"
PLUS_ID = DIGIT_OFFSET + 10
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def algorithmic_vocab() -> Vocabulary:
    """Specials (0..4), digits "0".."9" (5..14), "+" (15)."""
    return Vocabulary([*"0123456789", "+"])


@dataclass(frozen=True)
class AlgorithmicExample:
    src: list[int]  # token ids, no BOS/EOS
    tgt: list[int]  # token ids, no BOS/EOS
    u_src: float  # uniform [0,1) draw that fixes the source position offset at collation time
    u_tgt: float


def lower_endian_to_int(digits: list[int]) -> int:
    return sum(d * 10**i for i, d in enumerate(digits))


def int_to_lower_endian(n: int) -> list[int]:
    return [int(c) for c in reversed(str(n))]


def _random_number(rng: np.random.Generator, length: int) -> list[int]:
    """Lower-endian random number of `length` digits; the most significant (last) digit is non-zero if
    length > 1."""
    if length == 1:
        return [int(rng.integers(10))]
    return [int(d) for d in rng.integers(10, size=length - 1)] + [int(rng.integers(1, 10))]


def generate_example(
    task: str, rng: np.random.Generator, max_len: int, fixed_length: bool = False
) -> tuple[list[int], list[int]]:
    """One (input digits, target digits) pair, as digit VALUES 0..9 with 10 for "+" (not yet ids)."""
    if task in ("copy", "reverse"):
        n = max_len if fixed_length else int(rng.integers(1, max_len + 1))
        x = [int(d) for d in rng.integers(10, size=n)]
        return x, (list(x) if task == "copy" else x[::-1])
    if task == "addition":
        if max_len < 3:
            raise ValueError(f"addition needs max_len >= 3, got {max_len}")
        if fixed_length:
            l1 = int(rng.integers(1, max_len - 1))  # [1, max_len - 2]
            l2 = max_len - 1 - l1
        else:
            l1 = int(rng.integers(1, max_len // 2 + 1))  # t2t: randint(max_len // 2) + 1
            l2 = int(rng.integers(1, max_len - l1))  # t2t: randint(max_len - l1 - 1) + 1
        n1, n2 = _random_number(rng, l1), _random_number(rng, l2)
        return n1 + [10] + n2, int_to_lower_endian(lower_endian_to_int(n1) + lower_endian_to_int(n2))
    raise ValueError(f"unknown algorithmic task {task!r}; choose one of {TASKS}")


class AlgorithmicDataset(Dataset):
    """`size` examples of one task; example i is a pure function of (seed, split, i)."""

    def __init__(self, task: str, size: int, max_len: int, seed: int, split: str, fixed_length: bool = False):
        if task not in TASKS:
            raise ValueError(f"unknown algorithmic task {task!r}; choose one of {TASKS}")
        self.task, self.size, self.max_len, self.seed = task, size, max_len, seed
        self.split_id, self.fixed_length = _SPLIT_IDS[split], fixed_length

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> AlgorithmicExample:
        if not 0 <= i < self.size:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, self.split_id, i])
        x, y = generate_example(self.task, rng, self.max_len, self.fixed_length)
        u = rng.random(2)
        return AlgorithmicExample(
            [v + DIGIT_OFFSET for v in x], [v + DIGIT_OFFSET for v in y], float(u[0]), float(u[1])
        )


POSITION_OFFSETS = ("none", "shared", "independent")


class Seq2SeqCollator:
    """Pads examples into the seq2seq batch with per-example position offsets (``position_offsets``, see the module
    docstring): "none" all zero; "shared" ONE offset per example in [0, max_positions - padded_len] with padded_len
    = max(src, tgt padded length), from the example's own uniform draw; "independent" source and target offsets
    from two draws, each bounded by its own padded length."""

    def __init__(self, max_positions: int, position_offsets: str = "none"):
        if position_offsets not in POSITION_OFFSETS:
            raise ValueError(f"position_offsets must be one of {POSITION_OFFSETS}, got {position_offsets!r}")
        self.max_positions, self.position_offsets = max_positions, position_offsets

    def _offsets(self, us: list[float], length: int) -> torch.Tensor:
        room = self.max_positions - length + 1  # offsets 0..room-1 keep offset + length <= max_positions
        if self.position_offsets == "none":
            return torch.zeros(len(us), dtype=torch.long)
        if room < 1:
            raise ValueError(f"batch length {length} exceeds max_positions={self.max_positions}")
        return torch.tensor([min(int(u * room), room - 1) for u in us], dtype=torch.long)

    def __call__(self, examples: list[AlgorithmicExample]) -> dict[str, torch.Tensor]:
        src, src_mask = pad([e.src for e in examples])  # (B, S)
        tgt_in, tgt_mask = pad([[BOS_ID, *e.tgt] for e in examples])  # (B, T)
        tgt_out, _ = pad([[*e.tgt, EOS_ID] for e in examples])  # (B, T)
        if self.position_offsets != "independent":
            src_off = self._offsets([e.u_src for e in examples], max(src.shape[1], tgt_in.shape[1]))  # (B,)
            tgt_off = src_off.clone()
        else:
            src_off = self._offsets([e.u_src for e in examples], src.shape[1])  # (B,)
            tgt_off = self._offsets([e.u_tgt for e in examples], tgt_in.shape[1])  # (B,)
        return {
            "src": src,
            "src_mask": src_mask,
            "tgt_in": tgt_in,
            "tgt_out": tgt_out,
            "tgt_mask": tgt_mask,
            "src_pos_offset": src_off,
            "tgt_pos_offset": tgt_off,
        }


class AlgorithmicDataModule(L.LightningDataModule):
    """Copy / reverse / addition for the UT paper's length-generalisation comparison.

    Args:
        task: "copy", "reverse" or "addition".
        train_max_len: longest training input (paper / t2t: 40).
        eval_max_len: longest validation / test input (paper / t2t: 400).
        eval_length: "uniform" (lengths U[1, eval_max_len], t2t's dev set) or "fixed" (exactly eval_max_len).
        max_positions: positions 0..max_positions-1 may occur; training offsets keep
            offset + padded length <= max_positions. Default eval_max_len + 1 (room for BOS / EOS), so a
            learned position table needs this many rows.
        position_offsets: data-side position offsets of TRAINING batches: "none" (default; t2t, whose random
            start index lives inside the UT's steps, see the module docstring), "shared" (one random offset per
            example for source and target) or "independent" (two per example). Evaluation batches: always zero.
        train_size, val_size, test_size: examples per split (t2t: 100k train, 10k dev; small here for CPU).
        batch_size, eval_batch_size: examples per batch.
        seed: data seed (train order is shuffled by the trainer's seed).
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        task: Literal["copy", "reverse", "addition"] = "copy",
        train_max_len: int = 40,
        eval_max_len: int = 400,
        eval_length: Literal["uniform", "fixed"] = "uniform",
        max_positions: int | None = None,
        position_offsets: Literal["none", "shared", "independent"] = "none",
        train_size: int = 100_000,
        val_size: int = 256,
        test_size: int = 1024,
        batch_size: int = 64,
        eval_batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown algorithmic task {task!r}; choose one of {TASKS}")
        if position_offsets not in POSITION_OFFSETS:
            raise ValueError(f"position_offsets must be one of {POSITION_OFFSETS}, got {position_offsets!r}")
        if eval_length not in ("uniform", "fixed"):
            raise ValueError(f"eval_length must be 'uniform' or 'fixed', got {eval_length!r}")
        self.save_hyperparameters()
        self.task = task
        self.vocab = algorithmic_vocab()
        self.max_positions = max_positions if max_positions is not None else eval_max_len + 1
        # the longest sequence a batch may hold: addition targets can be one digit longer than half the input
        if self.max_positions < max(train_max_len, eval_max_len) + 1:
            raise ValueError(
                f"max_positions={self.max_positions} < longest sequence + 1 ({eval_max_len + 1})"
            )
        fixed = eval_length == "fixed"
        self.train_set = AlgorithmicDataset(task, train_size, train_max_len, seed, "train")
        self.val_set = AlgorithmicDataset(task, val_size, eval_max_len, seed, "val", fixed)
        self.test_set = AlgorithmicDataset(task, test_size, eval_max_len, seed, "test", fixed)
        self._train_collate = Seq2SeqCollator(self.max_positions, position_offsets)
        self._eval_collate = Seq2SeqCollator(self.max_positions, "none")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            collate_fn=self._train_collate,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.hparams.eval_batch_size,
            collate_fn=self._eval_collate,
            num_workers=self.hparams.num_workers,
        )

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.test_set,
            batch_size=self.hparams.eval_batch_size,
            collate_fn=self._eval_collate,
            num_workers=self.hparams.num_workers,
        )

    def predict_dataloader(self) -> DataLoader:
        """Prediction inputs (:func:`ut.data.predict.predict_dataloader`): the texts or file of ``predict_inputs``,
        else the test split, in order."""
        from ut.data.predict import predict_dataloader

        return predict_dataloader(self)
