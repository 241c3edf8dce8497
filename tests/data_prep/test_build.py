"""The whole build on generated dumps: layout, determinism, idempotence, interrupt safety, bad input."""

import hashlib
import json

import datasets
import pytest
from tokenizers import Tokenizer

from data_prep.build import BuildConfig, build_dataset
from data_prep.paragraphs import normalize_text
from data_prep.splits import split_of_title
from tests.data_prep.fixtures import standard_pages, write_dump

FAST = dict(eval_lengths=(20, 50), input_lengths=(32, 128))


def _digests(folder):
    """sha256 of every file; the data card's recorded command line (which names --out) is left out."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.startswith("data_card"):
            data = b"\n".join(line for line in data.split(b"\n") if str(folder).encode() not in line)
        digests[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return write_dump(tmp_path_factory.mktemp("dump") / "d.xml.bz2", standard_pages(12))


@pytest.fixture(scope="module")
def built(dump, tmp_path_factory):
    return build_dataset(out=str(tmp_path_factory.mktemp("b") / "out"), dumps=[str(dump)], **FAST)


def test_layout_columns_tokenizer_and_card(built):
    ds = datasets.load_from_disk(str(built / "dataset"))
    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(ds[s]) for s in ds) == 12
    for split in ds:
        for title in ds[split]["title"]:
            assert split_of_title(title) == split
    row = ds["train"][0]
    for name in ("identity", "tfidf", "textrank", "sumbasic", "cheating"):
        assert row[f"input_{name}"].split(" <sep> ")[0] == row["title"].lower()
        assert len(row[f"input_ids_{name}"]) <= 128
    special = json.loads((built / "special_tokens.json").read_text())
    assert special == {"pad_id": 0, "bos_id": 1, "eos_id": 2, "sep_id": 3, "unk_id": 4}
    tokenizer = Tokenizer.from_file(str(built / "tokenizer.json"))
    assert special["sep_id"] in row["input_ids_tfidf"]
    assert tokenizer.decode(row["target_ids"]) == row["target"]
    # self-contained: the file alone normalises raw text as the pipeline does before encoding
    assert tokenizer.encode(row["title"]).ids == tokenizer.encode(normalize_text(row["title"])).ids
    assert tokenizer.decode(tokenizer.encode(row["title"]).ids) == row["title"].lower()
    card = json.loads((built / "data_card.json").read_text())
    assert card["skip_reasons"] == {"disambiguation": 1, "not_namespace_0": 1, "redirect": 1}
    assert card["counts"]["examples"] == 12
    assert (built / "extractive_rouge.md").read_text().count("|") > 10
    assert (built / "extractive_rouge.png").stat().st_size > 1000


def test_rebuild_is_byte_identical_and_num_proc_does_not_matter(built, dump, tmp_path):
    again = build_dataset(out=str(tmp_path / built.name), dumps=[str(dump)], num_proc=2, **FAST)
    assert _digests(again) == _digests(built)


def test_rerun_is_a_no_op_and_other_config_is_refused(built, dump):
    before = _digests(built)
    assert build_dataset(out=str(built), dumps=[str(dump)], **FAST) == built
    assert _digests(built) == before
    with pytest.raises(FileExistsError, match="another configuration"):
        build_dataset(out=str(built), dumps=[str(dump)], eval_lengths=(), input_lengths=(32,))


def test_interrupted_build_leaves_no_complete_looking_output_and_rerun_finishes(dump, tmp_path, monkeypatch):
    import data_prep.build as build_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "write_card", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_dataset(out=str(out), dumps=[str(dump)], **FAST)
    assert not out.exists() and (tmp_path / "out.partial").exists()
    monkeypatch.undo()
    build_dataset(out=str(out), dumps=[str(dump)], **FAST)
    assert (out / "build_config.json").exists() and not (tmp_path / "out.partial").exists()


def test_no_example_is_an_error_not_an_empty_dataset(tmp_path):
    dump = write_dump(tmp_path / "only_redirects.xml", standard_pages(0))
    with pytest.raises(RuntimeError, match="no example was produced.*redirect"):
        build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], **FAST)
    assert not (tmp_path / "out").exists()


def test_jsonl_articles_input(tmp_path):
    body = ("{name} is a small town on the river. It has a market and an old church with a tower.\n"
            "History\nThe town was founded by traders in the middle ages. Its bridge was built in stone later.\n"
            "Geography\nThe town lies in a green valley between two hills. A canal runs along the eastern side.\n")
    path = tmp_path / "articles.jsonl"
    path.write_text("".join(json.dumps({"title": f"Town {i}", "text": body.format(name=f"Town {i}")}) + "\n"
                            for i in range(5)))
    out = build_dataset(out=str(tmp_path / "out"), articles=[str(path)], **FAST)
    ds = datasets.load_from_disk(str(out / "dataset"))
    rows = [r for s in ds for r in ds[s]]
    assert len(rows) == 5 and all(r["target"].startswith("town") and "history" not in r["target"] for r in rows)


def test_config_validation():
    with pytest.raises(ValueError, match="reference-store"):
        BuildConfig(out="x", source="references")
    with pytest.raises(ValueError, match="unknown ranker"):
        BuildConfig(out="x", rankers=("nope",))


@pytest.mark.slow
def test_embedded_sample_end_to_end(tmp_path, shared_data):
    out = build_dataset(out=str(tmp_path / "sample"), eval_lengths=(100,), rankers=("identity", "tfidf"))
    card = json.loads((out / "data_card.json").read_text())
    assert card["counts"]["examples"] > 90 and card["skip_reasons"]["redirect"] == 99


@pytest.mark.parametrize(("fractions", "trained_on"), [
    ((1.0, 0.0, 0.0), "train split"),  # every example in train: the card said "the train split was empty"
    ((0.0, 0.0, 1.0), "all examples (the train split was empty)"),
])
def test_card_says_what_the_tokenizer_was_trained_on(tmp_path, fractions, trained_on):
    dump = write_dump(tmp_path / "d.xml", standard_pages(3))
    out = build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], split_fractions=fractions,
                        eval_lengths=(), rankers=("identity",), input_lengths=(32,))
    card = json.loads((out / "data_card.json").read_text())
    assert card["tokenizer"]["trained_on"] == trained_on
    assert card["split_counts"]["train" if fractions[0] else "test"] == 3


def test_bad_articles_tables_name_the_file(tmp_path):
    listed = tmp_path / "listed.jsonl"
    listed.write_text(json.dumps({"title": "A", "text": "x"}) + "\n" + json.dumps(["not", "a", "row"]) + "\n")
    with pytest.raises(ValueError, match=r"listed.jsonl:2: not a \{title, text\} JSON object"):
        build_dataset(out=str(tmp_path / "o1"), articles=[str(listed)], **FAST)  # was an AttributeError
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="broken.parquet: cannot read the Parquet file"):
        build_dataset(out=str(tmp_path / "o2"), articles=[str(broken)], **FAST)


def test_card_command_reproduces_the_configuration():
    import shlex

    from data_prep.build import build_command
    from data_prep.cli import parser

    config = BuildConfig(out="o", dumps=["d.xml"], source="search", search_results="s.jsonl", rankers=("tfidf",),
                         input_lengths=(64, 8), eval_lengths=(), target_mode="article", vocab_size=600,
                         split_fractions=(0.5, 0.25, 0.25), max_articles=3, remove_clones=False)
    args = vars(parser().parse_args(shlex.split(build_command(config))[3:]))
    for key in ("command", "verbose", "num_proc"):
        args.pop(key)
    args["dumps"] = args.pop("dump")
    assert BuildConfig(**args).identity() == config.identity()  # --split-fractions was left out
