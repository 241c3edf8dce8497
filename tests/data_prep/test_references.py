"""The references path: a WARC store built here with warcio from real web pages (../shared/data/web_refs),
cited by generated articles; coverage, clone removal, bad records and a missing store."""

import gzip
import io
import json

import datasets
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_prep.build import build_dataset
from data_prep.clones import is_clone, unigram_recall
from data_prep.reference_store import ReferenceStore, ReferenceStoreError, canonical_url
from tests.data_prep.fixtures import standard_pages, write_dump


def _write_warc(path, records):
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, payload, content_type in records:
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.0")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload),
                                                          http_headers=headers))


@pytest.fixture(scope="module")
def web_pages(shared_data):
    folder = shared_data / "web_refs" / "article_extraction_benchmark"
    truth = json.loads((folder / "ground-truth.json").read_text())
    pages = []
    for key in sorted(truth)[:8]:
        html = gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes())
        pages.append((truth[key]["url"], html))
    return pages


def test_warc_store_resolves_cited_urls(tmp_path, web_pages):
    store_path = tmp_path / "refs.warc.gz"
    records = [(url, html, "text/html; charset=utf-8") for url, html in web_pages]
    records.append(("http://bad.example/page", b"caf\xe9 \xff\xfe broken", "text/html; charset=utf-8"))
    _write_warc(store_path, records)
    store = ReferenceStore.from_paths(store_path)
    assert store.skipped["undecodable_bytes"] == 1
    assert len(store) >= 6  # pages trafilatura finds text in
    url, _ = web_pages[0]
    assert store.get(url + "#section") == store.get(url)  # the join key ignores fragments


def test_references_build_reports_coverage(tmp_path, web_pages):
    store_path = tmp_path / "refs.warc.gz"
    _write_warc(store_path, [(url, html, "text/html; charset=utf-8") for url, html in web_pages])
    urls = [url for url, _ in web_pages]
    # article i cites two stored pages and one URL absent from the store
    cited = {i: (urls[i % 8], urls[(i + 1) % 8], f"http://missing.example/{i}") for i in range(8)}
    dump = write_dump(tmp_path / "d.xml", standard_pages(8, cited))
    out = build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], source="references",
                        reference_store=[str(store_path)], eval_lengths=(50,), input_lengths=(64, 256))
    card = json.loads((out / "data_card.json").read_text())
    assert card["coverage"]["cited_or_searched_urls"] == 24
    assert card["coverage"]["documents_found"] == 16 and card["coverage"]["url_coverage"] == round(16 / 24, 4)
    assert card["counts"]["examples"] >= 6
    ds = datasets.load_from_disk(str(out / "dataset"))
    example = next(iter(ds["train"]))
    assert example["n_cited_urls"] == 3 and example["input_tfidf"].startswith(example["title"].lower())


def test_clone_is_removed():
    section = "The castle was first recorded by the monks of the abbey in the old town of the valley long ago."
    assert unigram_recall({"the", "castle"}, {"the", "castle", "x", "y"}) == 0.5
    assert is_clone("Copied: " + section + " and more words here.", ["", section])
    assert not is_clone("An unrelated page about engines and rail timetables.", ["", section])
    assert not is_clone("the", ["the castle"])  # a too-short section is no evidence


def test_jsonl_store_and_missing_store(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text(json.dumps({"url": "HTTP://Example.org/a/", "text": "Some text."}) + "\n"
                    + json.dumps({"url": "http://example.org/b", "html": "<html><body><p>Para one is here."
                                  "</p></body></html>"}) + "\n" + "{not json\n")
    store = ReferenceStore.from_paths(path)
    assert store.get("http://example.org/a") == "Some text." and store.skipped["malformed_json"] == 1
    assert canonical_url("HTTP://Example.org:80/a/#x") == "http://example.org/a"
    with pytest.raises(FileNotFoundError, match="no_store_here"):
        ReferenceStore.from_paths(tmp_path / "no_store_here")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(ReferenceStoreError, match="empty"):
        ReferenceStore.from_paths(tmp_path / "empty")


def test_jsonl_store_lines_that_are_not_records_are_counted_not_a_crash(tmp_path):
    path = tmp_path / "store.jsonl"
    lines = ['[1, 2]', '"a string"', '{"url": 5, "text": "x"}', '{"url": "http://b.org", "text": 7}',
             json.dumps({"url": "http://c.org", "text": "kept"})]
    path.write_text("\n".join(lines) + "\n")
    store = ReferenceStore.from_paths(path)  # was AttributeError: 'list' object has no attribute 'get'
    assert store.documents == {"http://c.org": "kept"} and store.skipped["malformed_json"] == 4


def test_corrupt_gzip_store_names_the_file(tmp_path):
    import random

    rng, words = random.Random(0), "river castle museum garden engine harbour valley tower bridge market".split()
    lines = "".join(json.dumps({"url": f"http://a.org/{i}", "text": " ".join(rng.choices(words, k=30))}) + "\n"
                    for i in range(300))
    data = bytearray(gzip.compress(lines.encode()))
    for k in range(len(data) // 4, len(data) // 4 + 40):
        data[k] ^= 0xFF  # a bad deflate stream: zlib.error, which is not an OSError (it escaped unnamed)
    path = tmp_path / "refs.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ReferenceStoreError, match="refs.jsonl.gz"):
        ReferenceStore.from_paths(path)


def test_clone_threshold_is_strictly_above_one_half():
    section = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"  # 10 distinct unigrams
    assert not is_clone("alpha bravo charlie delta echo and other words", ["", section])  # recall 0.5: kept
    assert is_clone("alpha bravo charlie delta echo foxtrot and other words", ["", section])  # 0.6: a clone
