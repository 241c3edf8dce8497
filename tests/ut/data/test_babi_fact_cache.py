"""The fact collator encodes each example once and reuses it; its batches equal the uncached list path."""

import torch

from tests.ut.data.test_babi import _write_layout
from ut.data.babi import BabiDataModule, BabiFactCollator, fact_batch


def test_cached_collation_equals_the_list_path_and_encodes_once(tmp_path, monkeypatch):
    _write_layout(tmp_path, tasks=(8,), n_copies=3)
    dm = BabiDataModule(data_dir=str(tmp_path), tasks=8, val_fraction=0.0)
    dm.setup()
    c = BabiFactCollator(dm.vocab, dm.answers, 2, "newest_first")
    examples = dm.test_set
    want = fact_batch([c.facts(e) for e in examples], [dm.vocab.encode(e.question) for e in examples])
    calls = []
    real = c.facts
    monkeypatch.setattr(c, "facts", lambda e: calls.append(e) or real(e))
    for _ in range(3):  # three "epochs"
        got = c(examples)
        for k, v in want.items():
            assert torch.equal(got[k], v), k
        assert got["label"].tolist() == [dm.answers[e.answer] for e in examples]
    assert len(calls) == len(examples)  # encoded once each, not once per epoch
    assert got["fact_mask"].tolist()[0] == [True, True]  # window of 2: both kept sentences are real facts


def test_cache_never_returns_another_examples_arrays(tmp_path):
    _write_layout(tmp_path, tasks=(8,), n_copies=1)
    dm = BabiDataModule(data_dir=str(tmp_path), tasks=8, val_fraction=0.0)
    dm.setup()
    c = BabiFactCollator(dm.vocab, dm.answers)
    a, b = dm.test_set[0], dm.test_set[1]
    c([a])
    c._encoded[id(b)] = c._encoded.pop(id(a))  # as if b had been allocated at a's recycled address
    assert torch.equal(c([b])["facts"], fact_batch([c.facts(b)], [dm.vocab.encode(b.question)])["facts"])
