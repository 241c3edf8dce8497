"""WikiSumDataModule (Liu et al. 2018 batches) over a tiny build the test makes with data_prep."""

from __future__ import annotations

import pytest
import torch

from tests.experiments.wikisum_fixtures import build_tiny_wikisum
from ut.data.wikisum import LengthBucketBatchSampler, WikiSumDataModule, check_built


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_wikisum(tmp_path_factory.mktemp("wikisum"))


def test_missing_build_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep build --out"):
        check_built(tmp_path / "nowhere")
    dm = WikiSumDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="data_prep build"):
        dm.setup()


def test_bad_arguments():
    with pytest.raises(ValueError, match="format"):
        WikiSumDataModule(format="t5")
    with pytest.raises(ValueError, match="extractor"):
        WikiSumDataModule(extractor="lead3")


def test_missing_extractor_column(tiny):
    dm = WikiSumDataModule(str(tiny), extractor="textrank")
    with pytest.raises(ValueError, match="textrank"):
        dm.setup()


def test_seq2seq_batches(tiny):
    dm = WikiSumDataModule(str(tiny), format="seq2seq", input_length=40, target_length=16, batch_size=4)
    dm.setup()
    data = dm.split_data("train")
    assert all(len(x) <= 40 for x in data.inputs) and all(len(y) <= 15 for y in data.targets)
    seen = 0
    for b in dm.train_dataloader():
        assert set(b) == {"src", "src_mask", "tgt_in", "tgt_out", "tgt_mask"}
        assert b["src"].shape[1] <= 40 and b["tgt_in"].shape[1] <= 16
        assert (b["tgt_in"][:, 0] == dm.bos_id).all()
        n = b["tgt_mask"].sum(1)
        rows = torch.arange(len(n))
        assert (b["tgt_out"][rows, n - 1] == dm.eos_id).all()  # y + EOS
        assert torch.equal(b["tgt_in"][:, 1:][b["tgt_mask"][:, 1:]], b["tgt_out"][:, :-1][b["tgt_mask"][:, 1:]])
        assert torch.equal(b["src_mask"], b["src"] != dm.pad_id)
        seen += len(n)
    assert seen == len(data)
    assert dm.vocab_size == 300 and dm.max_positions == 40


def test_lm_batches_target_only_loss(tiny):
    dm = WikiSumDataModule(str(tiny), format="lm", input_length=30, target_length=12, batch_size=3)
    dm.setup()
    b = next(iter(dm.val_dataloader()))
    assert set(b) == {"input_ids", "attention_mask", "loss_mask"}
    x, y = dm.split_data("validation").inputs[0], dm.split_data("validation").targets[0]
    row = b["input_ids"][0][b["attention_mask"][0]].tolist()
    assert row == x + [dm.sep_id] + y + [dm.eos_id]
    # the counted predictions are exactly the target tokens + EOS (predicted from sep .. last target token)
    predicted = b["input_ids"][0, 1:][b["loss_mask"][0, :-1]].tolist()
    assert predicted == y + [dm.eos_id]
    assert dm.max_positions == 30 + 1 + 12


def test_loss_on_all_covers_the_whole_sequence_in_training_only(tiny):
    dm = WikiSumDataModule(str(tiny), format="lm", input_length=30, target_length=12, batch_size=3, loss_on="all")
    dm.setup()
    train = next(iter(dm.train_dataloader()))
    # every real next token counts: the mask is the attention mask shifted by one
    assert torch.equal(train["loss_mask"][:, :-1], train["attention_mask"][:, 1:])
    val = next(iter(dm.val_dataloader()))
    assert not torch.equal(val["loss_mask"][:, :-1], val["attention_mask"][:, 1:]), "eval must stay target-only"
    with pytest.raises(ValueError, match="loss_on"):
        WikiSumDataModule(str(tiny), loss_on="input")


def test_generation_batches_and_references(tiny):
    for fmt in ("seq2seq", "lm"):
        dm = WikiSumDataModule(str(tiny), format=fmt, input_length=30, target_length=12, eval_batch_size=2)
        indices = []
        for b in dm.generation_dataloader("test"):
            indices += b["index"].tolist()
            if fmt == "lm":
                ids = b["input_ids"][b["attention_mask"]]
                assert int((b["input_ids"] == dm.sep_id).sum()) >= b["input_ids"].shape[0]
                assert ids.numel() > 0
            else:
                assert "src" in b and "tgt_in" not in b
        assert sorted(indices) == list(range(len(dm.split_data("test"))))
        refs = dm.references("test")
        assert len(refs) == len(indices) and all(r.startswith("topic") for r in refs)


def test_decode_stops_at_eos(tiny):
    dm = WikiSumDataModule(str(tiny))
    ids = dm.tokenizer.encode("the river castle").ids
    assert dm.decode(ids + [dm.eos_id] + ids) == "the river castle"


def test_bucket_sampler_groups_lengths_and_covers_all():
    lengths = [5, 100, 6, 98, 7, 99, 8, 97]
    s = LengthBucketBatchSampler(lengths, batch_size=2, shuffle=True, seed=1)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:  # similar lengths together
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3
    budget = LengthBucketBatchSampler(lengths, batch_size=8, max_tokens=200, shuffle=False)
    for b in budget:
        assert len(b) * max(lengths[i] for i in b) <= 200 or len(b) == 1
    assert sorted(i for b in budget for i in b) == list(range(8))
    assert len(budget) == len(list(budget))


def test_train_min_input_tokens_keeps_only_long_inputs(tiny):
    dm = WikiSumDataModule(str(tiny), input_length=128, train_min_input_tokens=100)
    dm.setup()
    assert all(len(x) >= 100 for x in dm.split_data("train").inputs)
    assert len(dm.titles("train")) == len(dm.split_data("train"))
    with pytest.raises(ValueError, match="no training example"):
        WikiSumDataModule(str(tiny), input_length=128, train_min_input_tokens=10_000).setup()
