import json
import math

import pytest
import torch

from ut.data.lambada import LambadaDataModule, lambada_metrics, read_lambada, split_target, tokenize
from ut.data.vocab import BOS_ID, PAD_ID

TEXTS = [
    "He opened the door and saw the dog . It was the dog",
    'She said "hello" to Anna, and smiled at Anna',
    "the cat sat on the mat near the cat",
    "a b c d a b c d a b",
]


def _file(tmp_path, n=5):
    p = tmp_path / "lambada_test.jsonl"
    p.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * n))
    return p


def test_split_target_and_tokenize():
    assert split_target("the cat sat\n\non Anna") == ("the cat sat\n\non", "Anna")
    assert tokenize('She said "hi, don\'t"', "word") == ["she", "said", '"', "hi", ",", "don't", '"']
    assert tokenize("a \n b", "char") == ["a", " ", "b"]
    with pytest.raises(ValueError):
        split_target("lonely")


def test_read_lambada_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_lambada(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("level", ["word", "char"])
def test_batches_and_masks(tmp_path, level):
    dm = LambadaDataModule(path=str(_file(tmp_path)), level=level, batch_size=4, eval_batch_size=4)
    dm.setup()
    assert len(dm.train_set) == 16 and len(dm.val_set) == 2 and len(dm.test_set) == 2
    assert "not comparable" in dm.split_note
    tr = next(iter(dm.train_dataloader()))
    assert set(tr) == {"input_ids", "attention_mask", "loss_mask"}
    assert (tr["input_ids"][:, 0] == BOS_ID).all() and (
        tr["input_ids"][~tr["attention_mask"]] == PAD_ID
    ).all()
    n = tr["attention_mask"].sum(1)
    assert (tr["loss_mask"].sum(1) == n - 1).all()  # every next-token prediction counts in training
    ev = next(iter(dm.test_dataloader()))
    for i, e in enumerate(dm.test_set[:4]):
        m = ev["loss_mask"][i]
        predicted = ev["input_ids"][i, 1:][m[:-1]]  # the tokens the masked positions predict
        assert dm.vocab.decode(predicted.tolist()) == e.target


def test_truncation_keeps_target(tmp_path):
    dm = LambadaDataModule(path=str(_file(tmp_path)), level="char", max_len=8, eval_batch_size=4)
    dm.setup()
    ev = next(iter(dm.val_dataloader()))
    assert ev["input_ids"].shape[1] <= 8
    e = dm.val_set[0]
    assert dm.vocab.decode(ev["input_ids"][0, 1:][ev["loss_mask"][0, :-1]].tolist()) == e.target


def test_metrics_perfect_and_uniform(tmp_path):
    dm = LambadaDataModule(path=str(_file(tmp_path)), level="word", eval_batch_size=4)
    dm.setup()
    batches = list(dm.test_dataloader())
    V = dm.vocab_size

    def oracle(ids, _mask):  # puts all mass on the true next token
        nxt = torch.cat([ids[:, 1:], ids[:, :1]], 1)
        return torch.nn.functional.one_hot(nxt, V).float() * 50

    m = lambada_metrics(oracle, batches)
    assert m["accuracy"] == 1.0 and m["perplexity"] == pytest.approx(1.0, abs=1e-6) and m["n"] == 2
    u = lambada_metrics(lambda ids, _m: torch.zeros(*ids.shape, V), batches)
    assert u["accuracy"] == 0.0 and u["perplexity"] == pytest.approx(V, rel=1e-4)
    assert u["nll"] == pytest.approx(math.log(V), rel=1e-5)


def test_real_lambada(shared_data):
    texts = read_lambada(shared_data / "lambada" / "lambada_test.jsonl")
    assert len(texts) == 5153
    dm = LambadaDataModule(path=str(shared_data / "lambada" / "lambada_test.jsonl"), limit=200)
    dm.setup()
    assert len(dm.train_set) == 160 and all(e.target for e in dm.test_set)
