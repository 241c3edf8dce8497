"""Tiny data for the training-module tests: a generated bAbI folder and a tiny LM DataModule."""

from __future__ import annotations

import random

import lightning as L
import pytest
from torch.utils.data import DataLoader

from ut.data.lm_batches import pack_input_target

PEOPLE = ["mary", "john", "sandra", "daniel"]
PLACES = ["bathroom", "hallway", "kitchen", "garden"]


def write_babi(root, n_stories: int = 12, tasks=(1,)):
    """A bAbI-format folder ``<root>/en/qa<k>_<name>_{train,test}.txt`` with single-supporting-fact stories."""
    from ut.data.babi import TASK_NAMES

    rng = random.Random(0)
    (root / "en").mkdir(parents=True, exist_ok=True)
    for task in tasks:
        for split in ("train", "test"):
            lines = []
            for _ in range(n_stories):
                where = {}
                n = 1
                for _ in range(2):
                    for _ in range(2):
                        p, place = rng.choice(PEOPLE), rng.choice(PLACES)
                        where[p] = (place, n)
                        lines.append(f"{n} {p.capitalize()} went to the {place}.")
                        n += 1
                    p = rng.choice(sorted(where))
                    lines.append(f"{n} Where is {p.capitalize()}? \t{where[p][0]}\t{where[p][1]}")
                    n += 1
            (root / "en" / f"qa{task}_{TASK_NAMES[task]}_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def babi_dir(tmp_path):
    return write_babi(tmp_path / "babi", tasks=(1, 2))


class TinyLMData(L.LightningDataModule):
    """Copy-after-separator sequences in the LM batch format (loss on the target only)."""

    def __init__(self, n: int = 32, batch_size: int = 8):
        super().__init__()
        rng = random.Random(0)
        self.rows = [[rng.randrange(5, 12) for _ in range(rng.randrange(2, 6))] for _ in range(n)]
        self.batch_size = batch_size
        self.vocab_size = 12

    def _collate(self, rows):
        return pack_input_target(rows, rows, sep_id=3, eos_id=2, pad_id=0)

    def train_dataloader(self):
        return DataLoader(self.rows, batch_size=self.batch_size, shuffle=True, collate_fn=self._collate)

    def val_dataloader(self):
        return DataLoader(self.rows, batch_size=self.batch_size, collate_fn=self._collate)

    test_dataloader = val_dataloader


@pytest.fixture
def tiny_lm_data():
    return TinyLMData()
