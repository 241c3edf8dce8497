import json
import math

import pytest
import torch

from ut.data.lambada import (
    LambadaDataModule,
    LambadaExample,
    collate_windows,
    corpus_files,
    iter_corpus_documents,
    lambada_metrics,
    read_lambada,
    split_target,
    target_stats,
    tokenize,
)
from ut.data.vocab import BOS_ID, PAD_ID, Vocabulary

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


# ---------------------------------------------------------------- protocol="train_corpus" (the paper's protocol)
CORPUS_DOCS = ["The dog ran to the door . Anna opened it .", "Bob saw Anna and the dog at the door ."]


def _corpus_jsonl(tmp_path, docs=CORPUS_DOCS):
    p = tmp_path / "corpus.jsonl"
    p.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return p


def test_train_corpus_windows_are_the_token_stream(tmp_path):
    """Training rows = BOS + consecutive windows of the corpus stream (documents joined by EOS), all counted."""
    dm = LambadaDataModule(protocol="train_corpus", path=str(_file(tmp_path)), train_path=str(_corpus_jsonl(tmp_path)),
                           corpus_window=4, batch_size=3)
    dm.setup()
    expected = []
    for d in CORPUS_DOCS:
        expected += d.lower().split() + ["<eos>"]  # these docs tokenize on whitespace
    assert len(dm.train_set) == -(-len(expected) // 4)
    rows = [collate_windows([dm.train_set[i]]) for i in range(len(dm.train_set))]
    stream = []
    for b in rows:
        ids = b["input_ids"][0]
        assert ids[0] == BOS_ID and b["attention_mask"].all()
        assert b["loss_mask"][0].tolist() == [True] * (len(ids) - 1) + [False]  # the last token predicts nothing
        stream += [dm.vocab.id_to_token(int(i)) for i in ids[1:]]
    assert stream == expected
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (3, 5)
    assert (batch["loss_mask"].sum(1) == batch["attention_mask"].sum(1) - 1).all()


def test_train_corpus_vocab_and_eval_sets(tmp_path):
    """The vocabulary comes from the corpus only; the test passages are evaluated, never trained on."""
    lam, corpus = str(_file(tmp_path, n=5)), str(_corpus_jsonl(tmp_path))
    dm = LambadaDataModule(protocol="train_corpus", path=lam, train_path=corpus, val_fraction=0.1)
    dm.setup()
    assert "cat" not in dm.vocab and "anna" in dm.vocab  # "cat" occurs only in the LAMBADA passages
    assert len(dm.val_set) == 2 and len(dm.test_set) == 18
    assert "train_corpus" in dm.split_note and "corpus.jsonl" in dm.split_note and "18 passages" in dm.split_note
    ev = next(iter(dm.test_dataloader()))
    for i, e in enumerate(dm.test_set[: len(ev["input_ids"])]):
        predicted = ev["input_ids"][i, 1:][ev["loss_mask"][i, :-1]]
        assert [dm.vocab.id_to_token(int(t)) for t in predicted] == [t if t in dm.vocab else "<unk>" for t in e.target]
    val = tmp_path / "dev.jsonl"
    val.write_text(json.dumps({"text": "Anna saw the dog"}) + "\n")
    dm2 = LambadaDataModule(protocol="train_corpus", path=lam, train_path=corpus, val_path=str(val))
    dm2.setup()
    assert len(dm2.val_set) == 1 and len(dm2.test_set) == 20 and "dev.jsonl" in dm2.split_note


def test_train_corpus_text_directory_and_compression(tmp_path):
    import gzip

    d = tmp_path / "novels"
    d.mkdir()
    (d / "b.txt").write_text("zeta eta")
    (d / "a.txt").write_text("alpha beta")
    (d / "skip.md").write_text("not read")
    assert [p.name for p in corpus_files(d)] == ["a.txt", "b.txt"]
    assert list(iter_corpus_documents(d)) == ["alpha beta", "zeta eta"]
    gz = tmp_path / "c.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("gamma delta")
    assert list(iter_corpus_documents(gz)) == ["gamma delta"]
    gzj = tmp_path / "c.jsonl.gz"
    with gzip.open(gzj, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "x y"}) + "\n" + json.dumps({"text": "z"}) + "\n")
    assert list(iter_corpus_documents(gzj)) == ["x y", "z"]
    dm = LambadaDataModule(protocol="train_corpus", path=str(_file(tmp_path)), train_path=str(d), corpus_window=100,
                           max_corpus_tokens=3)
    dm.setup()
    assert [dm.vocab.id_to_token(int(i)) for i in dm.train_set[0]] == ["alpha", "beta", "<eos>", "zeta", "<eos>"]


def test_train_corpus_bad_input_is_named(tmp_path):
    lam = str(_file(tmp_path))
    with pytest.raises(ValueError, match="train_path"):
        LambadaDataModule(protocol="train_corpus", path=lam)
    with pytest.raises(ValueError, match="protocol"):
        LambadaDataModule(protocol="novels", path=lam)
    with pytest.raises(ValueError, match="train_corpus"):
        LambadaDataModule(protocol="test_split", path=lam, train_path="x.txt")
    with pytest.raises(FileNotFoundError, match="missing_corpus.txt"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(tmp_path / "missing_corpus.txt")).setup()
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.txt"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(empty_dir)).setup()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n{oops\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(bad)).setup()
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(ValueError, match="nokey.jsonl:1: expected an object with a string 'text'"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(nokey)).setup()
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n")
    with pytest.raises(ValueError, match="blank.txt holds no text"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(blank)).setup()
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=str(latin)).setup()
    with pytest.raises(ValueError, match="evaluation file"):  # training on the test passages is test_split
        LambadaDataModule(protocol="train_corpus", path=lam, train_path=lam).setup()


def test_read_lambada_malformed_lines_are_named(tmp_path):
    p = tmp_path / "lam.jsonl"
    p.write_text(json.dumps({"text": "a b"}) + "\nnot json\n")
    with pytest.raises(ValueError, match="lam.jsonl:2: not valid JSON"):
        read_lambada(p)
    p.write_text(json.dumps({"text": "a b"}) + "\n" + json.dumps({"text": "lonely"}) + "\n")
    with pytest.raises(ValueError, match="lam.jsonl:2: a LAMBADA passage needs a context"):
        read_lambada(p)
    p.write_text(json.dumps(["a", "b"]) + "\n")
    with pytest.raises(ValueError, match="lam.jsonl:1: expected an object"):
        read_lambada(p)
    p.write_text("\n")
    with pytest.raises(ValueError, match="no LAMBADA passages"):
        read_lambada(p)


def test_target_stats():
    vocab = Vocabulary(["the", "dog", "anna"])
    examples = [LambadaExample(["the", "dog", "saw"], ["dog"]),  # in context, known
                LambadaExample(["the", "dog"], ["anna"]),  # not in context, known
                LambadaExample(["bob", "met"], ["bob"])]  # in context, UNK
    s = target_stats(examples, vocab)
    assert s == {"n": 3, "target_unk": pytest.approx(1 / 3), "target_in_context": pytest.approx(2 / 3),
                 "random_context_word": pytest.approx((1 / 3 + 0 + 0) / 3)}  # the UNK "bob" is never right
    chars = [LambadaExample(list("ab ab "), list("ab")), LambadaExample(list("a b "), list("ab"))]
    assert target_stats(chars, Vocabulary("ab "))["target_in_context"] == 0.5  # multi-token targets match in order


def test_real_lambada_with_wiki_corpus(shared_data, tmp_path):
    from experiments.ut_paper.run_lambada import write_wiki_corpus

    corpus = write_wiki_corpus(tmp_path / "wiki.jsonl")
    docs = list(iter_corpus_documents(corpus))
    assert len(docs) == 106 and sum(len(d.split()) for d in docs) > 300_000
    dm = LambadaDataModule(protocol="train_corpus", path=str(shared_data / "lambada" / "lambada_test.jsonl"),
                           train_path=str(corpus), limit=200, max_corpus_tokens=20_000, corpus_window=100)
    dm.setup()
    assert len(dm.train_set) == 201 and len(dm.val_set) == 20 and len(dm.test_set) == 180
