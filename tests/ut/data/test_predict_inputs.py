"""Prediction inputs (ut/data/predict.py, ut/data/task_tokenizer.py): every task's tokenizer.json turns RAW text into
exactly the ids its data module would build, splits give the data module's own inputs, bad input is a clear error."""

from __future__ import annotations

import json

import pytest
import torch

from tests.experiments.wikisum_fixtures import build_tiny_wikisum
from tests.ut.lit.conftest import write_babi
from ut.data import BOS_ID, SEP_ID
from ut.data.algorithmic import AlgorithmicDataModule
from ut.data.babi import BabiDataModule, BabiExample, flatten
from ut.data.lambada import LambadaDataModule, make_example, split_target
from ut.data.lambada import tokenize as lambada_tokenize
from ut.data.predict import PredictInputs, TextInterface, predict_dataloader, read_texts, text_interface
from ut.data.task_tokenizer import vocabulary_tokenizer
from ut.data.wikisum import WikiSumDataModule

PASSAGES = [
    "The cat sat on the mat, and then she didn't move. \"Why?\" asked Tom; the cat",
    "It's 3 o'clock  in\tthe   morning -- said Dr. Smith. Café naïve ÉCOLE stays",
    "she looked at him and said that the dog",
]


def babi_raw_questions(path):
    """(raw story text + question, answer) in file order, rebuilt from the bAbI file's own lines."""
    out, story = [], []
    for line in path.read_text().splitlines():
        num, text = line.split(" ", 1)
        if num == "1":
            story = []
        if "\t" in text:
            q, a = text.split("\t")[:2]
            out.append((" ".join(story + [q.strip()]), a))
        else:
            story.append(text)
    return out


@pytest.fixture(scope="module")
def babi_dm(tmp_path_factory):
    root = write_babi(tmp_path_factory.mktemp("babi") / "babi", tasks=(1,))
    dm = BabiDataModule(data_dir=str(root), tasks=1, eval_batch_size=5)
    dm.setup()
    return dm, root


def test_babi_raw_text_gives_the_data_modules_ids(babi_dm):
    dm, root = babi_dm
    iface = text_interface(dm)
    raw = babi_raw_questions(next((root / "en").glob("qa1_*_test.txt")))
    assert len(raw) == len(dm.test_set)
    for (text, answer), example in zip(raw, dm.test_set):
        assert iface.encode(text) == dm.vocab.encode(flatten(example))
        assert example.answer == answer
    assert iface.labels[dm.answers["kitchen"]] == "kitchen"
    assert "<sep>" in iface.tokenizer.decode(iface.encode("Mary went home. Where is Mary?"), skip_special_tokens=False)


@pytest.mark.parametrize("layout", ["flat", "facts"])
def test_babi_split_inputs_equal_the_test_loader(babi_dm, layout):
    _, root = babi_dm
    dm = BabiDataModule(data_dir=str(root), tasks=1, eval_batch_size=5, layout=layout)
    dm.setup()
    pred = next(iter(predict_dataloader(dm)))
    test = next(iter(dm.test_dataloader()))
    n = pred["index"].shape[0]
    assert n == 5 and pred["index"].tolist() == list(range(5))
    keys = ("src", "src_mask") if layout == "flat" else ("facts", "fact_mask", "question", "src_mask")
    for k in keys:  # the same model inputs as the test loader (cropped to the prediction batch's padding)
        got = pred[k]
        assert torch.equal(got, test[k][(slice(0, n), *(slice(0, d) for d in got.shape[1:]))]), k
    assert predict_dataloader(dm).dataset.records[0]["reference"] == dm.test_set[0].answer


def test_babi_fact_layout_from_raw_text_equals_the_collator():
    from ut.data.babi import BabiFactCollator
    from ut.data.vocab import Vocabulary

    vocab = Vocabulary("mary went to the kitchen . john bathroom where is ?".split())
    story = [["mary", "went", "to", "the", "kitchen", "."], ["john", "went", "to", "the", "bathroom", "."]]
    example = BabiExample(story, [1, 2], ["where", "is", "mary", "?"], "kitchen", [1], task=1)
    want = BabiFactCollator(vocab, {"kitchen": 0}, max_sentences=50)([example])
    iface = TextInterface("classification", vocabulary_tokenizer(vocab, "babi").to_str(), babi_sentences=True,
                          max_sentences=50, labels=["kitchen"], babi_fact_order="newest_first")
    got = iface.collate([(0, iface.encode("Mary went to the kitchen. John went to the bathroom. Where is Mary?"))])
    for k in ("facts", "fact_mask", "question", "src_mask"):
        assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("level", ["word", "char"])
def test_lambada_text_gives_the_data_modules_prefix(tmp_path, level):
    path = tmp_path / "lambada.jsonl"
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in PASSAGES * 4))
    dm = LambadaDataModule(path=str(path), level=level, max_len=16, train_fraction=0.5, val_fraction=0.25)
    dm.setup()
    iface = text_interface(dm)
    for p in PASSAGES:
        context, _ = split_target(p)
        py = dm.vocab.encode(make_example(p, level).context)
        if level == "word":
            assert iface.tokenize(context) == py
        else:  # the data module's char context ends with the separating space
            assert iface.tokenize(context + " ") == py
        assert iface.encode(context)[0] == BOS_ID and len(iface.encode(context)) <= 16  # BOS + the context's end
        assert iface.encode(context)[-3:] == iface.tokenize(context)[-3:]
    assert iface.decode(iface.tokenize("the cat sat")) == "the cat sat"
    pieces = [iface.tokenizer.id_to_token(i) for i in iface.tokenize("Didn't")]
    assert pieces == (["didn't"] if level == "word" else list("Didn't")) == lambada_tokenize("Didn't", level)


def test_algorithmic_digits_and_the_unknown_symbol_error():
    dm = AlgorithmicDataModule(task="addition", train_max_len=6, eval_max_len=8, val_size=4, test_size=6,
                               eval_batch_size=4)
    iface = text_interface(dm)
    assert iface.encode("12 3+45") == dm.vocab.encode(list("123+45"))
    assert iface.decode(dm.vocab.encode(list("907"))) == "907"
    with pytest.raises(ValueError, match=r"\['a'\]"):
        iface.encode("12a4")
    dm.predict_inputs = PredictInputs(texts=["12+3", "4+56"])
    batch = next(iter(predict_dataloader(dm)))
    assert batch["src"].tolist() == [dm.vocab.encode(list("12+3")), dm.vocab.encode(list("4+56"))]
    dm.predict_inputs = PredictInputs(split="test", limit=3)
    data = predict_dataloader(dm).dataset
    assert [r["input"] for r in data.records] == ["".join(dm.vocab.decode(dm.test_set[i].src)) for i in range(3)]
    assert data.inputs == [dm.test_set[i].src for i in range(3)]


def test_read_texts_jsonl_plain_and_errors(tmp_path):
    good = tmp_path / "in.jsonl"
    good.write_text('{"text": "a b", "id": 7}\n\n{"text": "c"}\n')
    assert read_texts(good) == [{"text": "a b", "id": 7}, {"text": "c"}]
    plain = tmp_path / "in.txt"
    plain.write_text("first line\n\nsecond line\n")
    assert read_texts(plain) == [{"text": "first line"}, {"text": "second line"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_texts(bad)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_texts(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="texts or file"):
        PredictInputs(texts=["a"], file="x")
    with pytest.raises(ValueError, match="split"):
        PredictInputs(split="dev")


def test_text_interface_is_plain_json_and_checked():
    iface = TextInterface("classification", "{}", labels=["a"])
    assert TextInterface.from_dict(json.loads(json.dumps(iface.to_dict()))).to_dict() == iface.to_dict()
    with pytest.raises(ValueError, match="labels"):
        TextInterface("classification", "{}")
    with pytest.raises(ValueError, match="unknown keys"):
        TextInterface.from_dict({**iface.to_dict(), "extra": 1})


class _Other:
    pass


def test_a_data_module_outside_ut_data_is_named():
    with pytest.raises(ValueError, match="_Other has no text interface"):
        text_interface(_Other())


@pytest.fixture(scope="module")
def tiny_wikisum(tmp_path_factory):
    return build_tiny_wikisum(tmp_path_factory.mktemp("wikisum"))


@pytest.mark.parametrize("fmt", ["seq2seq", "lm"])
def test_wikisum_raw_text_and_split_inputs(tiny_wikisum, fmt):
    from data_prep.paragraphs import normalize_text
    from data_prep.tokenizer import encode

    dm = WikiSumDataModule(str(tiny_wikisum), format=fmt, input_length=24, eval_batch_size=3)
    dm.setup()
    iface = text_interface(dm)
    raw = "The Castle near the River was visited by the Monks, in the year 1707!"
    expected = encode(dm.tokenizer, normalize_text(raw))[:24] + ([SEP_ID] if fmt == "lm" else [])
    assert iface.encode(raw) == expected
    dm.predict_inputs = None  # the test split, in example order
    loader = predict_dataloader(dm)
    by_index = {}
    for batch in dm.generation_dataloader("test"):
        key = "input_ids" if fmt == "lm" else "src"
        mask = batch["attention_mask" if fmt == "lm" else "src_mask"]
        for i, row, m in zip(batch["index"].tolist(), batch[key], mask):
            by_index[i] = row[m].tolist()
    assert len(loader.dataset) == len(by_index)
    assert [loader.dataset.inputs[i] for i in range(len(by_index))] == [by_index[i] for i in range(len(by_index))]
    assert loader.dataset.records[0]["reference"] == dm.references("test")[0]
