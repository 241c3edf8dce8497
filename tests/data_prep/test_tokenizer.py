"""The trained tokenizer is self-contained: tokenizer.json alone (tokenizers or transformers) turns RAW text into
the ids the pipeline stores (normalise in Python, then encode), decodes to the normalised text, declares its
special tokens and pads with <pad>."""

import json

import pytest
from tokenizers import Tokenizer

from data_prep.paragraphs import normalize_text
from data_prep.tokenizer import SPECIAL_TOKENS, encode, hf_tokenizer, normalizer, train_tokenizer

RAW = [
    "The Universal Transformer",
    "The Universal Transformer (Dehghani et al., 2019) extends the Transformer!",
    "  Leading and trailing spaces,\ttabs\nand newlines.  ",
    "Punctuation: a+b=c; [x]{y}<z> 'quoted' \"double\" #1 $2 %3 &4 *5 @6 ^7 _8 `9 |10 ~11 /12 \\13",
    "Unicode: Café, naïve, STRASSE, straße, İstanbul, ΟΔΟΣ ΣΑΣ, ＡＢＣ, \u00a0non-breaking\u2009thin\u3000wide",
    "Numbers 1,234.56 and 3-4 dashes -- and ... ellipses",
    "WikiSum: Liu et al. 2018 generate Wikipedia's lead sections.",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    corpus = [normalize_text(t) for t in RAW * 5]
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return tokenizer, path


@pytest.mark.parametrize("raw", RAW)
def test_normalizer_is_the_pipelines_normalisation(raw):
    assert normalizer().normalize_str(raw) == normalize_text(raw)


def test_normalizer_is_idempotent_on_normalised_text():
    for raw in RAW:
        once = normalize_text(raw)
        assert normalizer().normalize_str(once) == once


def test_the_file_alone_encodes_raw_text_like_the_pipeline(trained):
    tokenizer, path = trained
    alone = Tokenizer.from_file(str(path))
    for raw in RAW:
        expected = encode(tokenizer, normalize_text(raw))
        assert alone.encode(raw).ids == expected, raw
        assert SPECIAL_TOKENS["unk"] not in alone.encode(raw).tokens
        assert alone.decode(expected) == normalize_text(raw)
    assert alone.encode("The Universal Transformer").tokens == ["▁the", "▁universal", "▁transformer"]


def test_transformers_fast_tokenizer_from_the_file(trained):
    pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    tokenizer, path = trained
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    assert fast.pad_token == "<pad>" and fast.pad_token_id == 0
    for raw in RAW:
        ids = fast.encode(raw, add_special_tokens=False)
        assert ids == encode(tokenizer, normalize_text(raw))
        assert fast.decode(ids) == normalize_text(raw)
    batch = fast(["the universal transformer", "the"], padding=True)
    assert batch["input_ids"][1][1:] == [0, 0] and batch["attention_mask"][1] == [1, 0, 0]
    named = hf_tokenizer(path)
    assert (named.pad_token_id, named.bos_token_id, named.eos_token_id, named.sep_token_id, named.unk_token_id) == (
        0, 1, 2, 3, 4)


def test_special_tokens_are_declared_with_fixed_ids(trained):
    _, path = trained
    spec = json.loads(path.read_text())
    declared = {t["content"]: t["id"] for t in spec["added_tokens"] if t["special"]}
    assert declared == {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    assert spec["padding"]["pad_token"] == "<pad>" and spec["padding"]["pad_id"] == 0
    alone = Tokenizer.from_file(str(path))
    # a special token inside raw text is one id, and the text around it is still normalised
    expected = alone.encode("the universal").ids + [3] + alone.encode("transformer .").ids
    assert alone.encode("The Universal <sep> Transformer.").ids == expected


def test_single_texts_are_never_padded(trained):
    _, path = trained
    alone = Tokenizer.from_file(str(path))
    assert 0 not in alone.encode("the universal transformer").ids


def test_round_trip_on_real_wikipedia_text(shared_data, tmp_path):
    """Raw (cased, punctuated, Unicode) paragraphs of the real enwiki excerpt: the saved file alone gives the
    pipeline's ids, and decodes them to the pipeline's normalised text."""
    from data_prep.dump import iter_dump_pages
    from data_prep.wikitext import wikitext_to_sections

    dump = shared_data / "wiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    paragraphs = []
    for page in iter_dump_pages(dump):
        if page["namespace"] != 0 or page["redirect"]:
            continue
        for section in wikitext_to_sections(page["wikitext"]):
            paragraphs += [p for p in section["text"].split("\n") if p.strip()]
        if len(paragraphs) > 400:
            break
    tokenizer = train_tokenizer([normalize_text(p) for p in paragraphs], vocab_size=2048)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    alone = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    mismatched = [p for p in paragraphs if alone.encode(p).ids != encode(tokenizer, normalize_text(p))]
    assert not mismatched, mismatched[:2]
    assert sum(p != normalize_text(p) for p in paragraphs) > 0.9 * len(paragraphs)  # the raw text really is raw
    for p in paragraphs[:100]:
        ids = alone.encode(p).ids
        if tokenizer.token_to_id("<unk>") not in ids:
            assert alone.decode(ids) == normalize_text(p)
