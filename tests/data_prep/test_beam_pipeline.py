"""The Beam build (data_prep/beam/) against the single-machine build, on the DirectRunner.

The reference store is built here, with warcio, from ../shared/data/web_refs pages whose URLs are set to
URLs that the sample articles really cite, plus bad records (an undecodable WET payload, a record with no
URL, a malformed JSONL line) and a clone of an article; the dump is the first articles of the real enwiki
excerpt. The Beam path must give the same examples (titles, targets, ranked inputs, token ids) and count
the bad records. Tests of the dump cutter (data_prep.beam.dump_shards) need no Beam.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import re
from pathlib import Path

import pytest

from data_prep.beam.dump_shards import (
    chunk_xml,
    iter_dump_chunks,
    multistream_index_name,
    multistream_ranges,
    read_chunk_pages,
    stream_offsets,
)
from data_prep.dump import iter_dump_pages, open_dump
from tests.data_prep.fixtures import dump_xml, page_xml, standard_pages, write_dump

SAMPLE_DUMP = "wiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
N_ARTICLES = 10  # articles (non-redirect pages) of the excerpt kept in the test dump
PAGE_RE = re.compile(rb"<page>.*?</page>", re.DOTALL)
MALFORMED_PAGE = b"<page><title>Broken &amp page</title><ns>0</ns><id>99999</id><revision><text>x</revision></page>"


@pytest.fixture(scope="module")
def beam():
    return pytest.importorskip(
        "apache_beam", reason="apache_beam is not installed: pip install 'universal-transformers[beam]'"
    )


# ---- the dump cutter (no Beam) ---------------------------------------------------------------------------


def _chunked_pages(path, pages_per_chunk):
    with open_dump(path) as stream:
        return [r for c in iter_dump_chunks(stream, pages_per_chunk) for _, r in read_chunk_pages(c, path.name)]


def test_chunks_give_the_readers_pages_on_every_real_dump(shared_data):
    paths = sorted((shared_data / "wiki").glob("*.*")) + sorted((shared_data / "wiki").glob("*/*.xml"))
    assert len(paths) >= 12
    for path in paths:
        assert _chunked_pages(path, 7) == list(iter_dump_pages(path)), path.name


def test_a_malformed_page_costs_only_itself(tmp_path):
    pages = standard_pages(6)
    bad = page_xml("Bad page", "text", 77).replace("</title>", "</titel>")
    path = write_dump(tmp_path / "d.xml", pages[:3] + [bad] + pages[3:], schema="0.3", encoding="iso-8859-1")
    records = _chunked_pages(path, 4)
    good = list(iter_dump_pages(write_dump(tmp_path / "ok.xml", pages, schema="0.3", encoding="iso-8859-1")))
    assert [r for r in records if "skip" not in r] == [dict(g, source_file="d.xml") for g in good]
    skipped = [r for r in records if "skip" in r]
    assert [(r["title"], r["skip"]) for r in skipped] == [("Bad page", "malformed_xml")]
    assert "mismatched tag" in skipped[0]["error"]


def test_bare_page_chunks_and_truncated_tail():
    header = b'<?xml version="1.0"?>\n'
    page = page_xml("Solo", "'''Solo''' is a page.", 1).encode()
    assert b"<mediawiki>" in chunk_xml(header, [page])
    chunks = list(iter_dump_chunks(io.BytesIO(header + page + page[:40]), 10))
    assert len(chunks) == 1 and len(chunks[0]["pages"]) == 2  # the cut page is kept for the reader to reject
    records = [r for _, r in read_chunk_pages(chunks[0], "x.xml")]
    assert records[0]["title"] == "Solo" and records[1]["skip"] == "malformed_xml"


def test_multistream_index_helpers():
    assert multistream_index_name("enwiki-20240101-pages-articles-multistream.xml.bz2") == (
        "enwiki-20240101-pages-articles-multistream-index.txt.bz2"
    )
    assert multistream_index_name("enwiki-pages-articles.xml.bz2") is None
    offsets = stream_offsets([b"600:12:Anarchism\n", b"600:25:Autism\n", b"50:10:A\n", b"1200:40:B\n"])
    assert offsets == [50, 600, 1200]
    assert multistream_ranges(offsets, 2) == [(50, 1200), (1200, None)]


# ---- the sample: real articles, a reference store built with warcio ---------------------------------------


def _sample_pages(shared_data) -> tuple[bytes, list[bytes]]:
    """Header and the first pages of the excerpt, up to N_ARTICLES non-redirect pages."""
    data = bz2.decompress((shared_data / SAMPLE_DUMP).read_bytes())
    first = PAGE_RE.search(data)
    header, pages, articles = data[: first.start()], [], 0
    for match in PAGE_RE.finditer(data):
        pages.append(match.group(0))
        articles += b"<redirect" not in match.group(0)
        if articles == N_ARTICLES:
            break
    return header, pages


def _write_store(store_dir, shared_data, articles):
    """WARC (HTML responses), WET (plain-text conversions) and JSONL records for the articles' citations."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    refs = shared_data / "web_refs" / "article_extraction_benchmark"
    truth = json.loads((refs / "ground-truth.json").read_text())
    page_ids = sorted(truth)
    store_dir.mkdir()
    warc_file, wet_file = open(store_dir / "1_refs.warc.gz", "wb"), open(store_dir / "2_refs.wet.gz", "wb")
    warc, wet, jsonl = WARCWriter(warc_file, gzip=True), WARCWriter(wet_file, gzip=True), []
    k = 0
    for a, article in enumerate(articles):
        urls = article["reference_urls"]
        for u, url in enumerate(urls[:3]):
            page_id = page_ids[k % len(page_ids)]
            k += 1
            html = gzip.decompress((refs / "html" / f"{page_id}.html.gz").read_bytes())
            if u == 0:  # an HTML response; the URL written with an upper-case host (the join canonicalises it)
                stored = re.sub(r"^(https?://)([^/]+)", lambda m: m.group(1) + m.group(2).upper(), url)
                headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                warc.write_record(
                    warc.create_warc_record(stored, "response", payload=io.BytesIO(html), http_headers=headers)
                )
            elif u == 1:  # a WET conversion record: plain text
                text = truth[page_id]["articleBody"].encode("utf-8")
                headers = {"Content-Type": "text/plain; charset=utf-8"}
                wet.write_record(
                    wet.create_warc_record(url, "conversion", payload=io.BytesIO(text), warc_headers_dict=headers)
                )
            else:
                jsonl.append(json.dumps({"url": url, "html": html.decode("utf-8", "replace")}))
        if a == 0 and len(urls) > 4:  # a clone of the article (dropped by the paper's unigram-recall rule)
            clone = "\n".join(s["text"] for s in article["sections"]).encode("utf-8")
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            wet.write_record(
                wet.create_warc_record(urls[3], "conversion", payload=io.BytesIO(clone), warc_headers_dict=headers)
            )
            # bad records: undecodable payload, no URL
            bad = io.BytesIO(b"caf\xc3\x28 \xff\xfe not utf-8")
            wet.write_record(wet.create_warc_record(urls[4], "conversion", payload=bad, warc_headers_dict=headers))
            wet.write_record(
                wet.create_warc_record("", "conversion", payload=io.BytesIO(b"orphan text"), warc_headers_dict=headers)
            )
        if a == 1 and urls:  # a duplicate of a WARC URL: the first store file wins, in both builds
            jsonl.append(json.dumps({"url": urls[0], "text": "a later copy that must lose. " * 5}))
    jsonl += ['{"url": "http://example.org/broken"', json.dumps({"text": "a record with no url at all"})]
    warc_file.close()
    wet_file.close()
    (store_dir / "3_refs.jsonl").write_text("\n".join(jsonl) + "\n")
    return store_dir


@pytest.fixture(scope="module")
def sample(beam, shared_data, tmp_path_factory):
    """The sample dump (plain bz2 and multistream with one malformed page), the store, the reference build."""
    from data_prep.build import build_dataset
    from data_prep.wikitext import parse_article

    root = tmp_path_factory.mktemp("beam_sample")
    header, pages = _sample_pages(shared_data)
    xml = header + b"\n".join(pages) + b"\n</mediawiki>\n"
    dump = root / "sample.xml.bz2"
    dump.write_bytes(bz2.compress(xml))
    articles = [
        parse_article(p["title"], p["wikitext"]) for p in iter_dump_pages(dump) if "#REDIRECT" not in p["wikitext"]
    ]
    store = _write_store(root / "store", shared_data, articles)

    # the same pages as a multistream dump (4 pages per bzip2 stream) with its index, one malformed page added
    multi_pages = pages[:5] + [MALFORMED_PAGE] + pages[5:]
    multi = root / "sample-multistream.xml.bz2"
    blob, index = bz2.compress(header), []
    for start in range(0, len(multi_pages), 4):
        for page in multi_pages[start : start + 4]:
            page_id = re.search(rb"<id>(\d+)</id>", page).group(1).decode()
            index.append(f"{len(blob)}:{page_id}:title")
        blob += bz2.compress(b"\n".join(multi_pages[start : start + 4]) + b"\n")
    blob += bz2.compress(b"</mediawiki>\n")
    multi.write_bytes(blob)
    (root / multistream_index_name(multi.name)).write_bytes(bz2.compress("\n".join(index).encode() + b"\n"))

    config = dict(source="references", reference_store=[str(store)], eval_lengths=(100,), input_lengths=(100, 400))
    reference = build_dataset(out=str(root / "single"), dumps=[str(dump)], **config)
    n_streams = -(-len(multi_pages) // 4)
    return {
        "root": root,
        "dump": dump,
        "multi": multi,
        "n_streams": n_streams,
        "store": store,
        "config": config,
        "reference": reference,
    }


def _rows(dataset_dict):
    """Rows by split, sorted by title (Beam's row order is the runner's); empty splits left out."""
    return {split: sorted(ds.to_list(), key=lambda r: r["title"]) for split, ds in dataset_dict.items() if len(ds)}


def _card(out):
    return json.loads((out / "data_card.json").read_text())


def _run(beam, sample, name, dump, **kwargs):
    from data_prep.beam_pipeline import run_beam_build
    from data_prep.build import BuildConfig

    config = BuildConfig(out=str(sample["root"] / name), dumps=[str(dump)], **sample["config"])
    return run_beam_build(config, "direct", [], **kwargs)


@pytest.fixture(scope="module")
def beam_build(beam, sample):
    return _run(beam, sample, "beam", sample["dump"], pages_per_chunk=8)


def test_beam_gives_the_single_machine_examples(sample, beam_build):
    import datasets

    from data_prep.beam_pipeline import load_beam_dataset

    reference, out = sample["reference"], sample["root"] / "beam"
    expected = _rows(datasets.load_from_disk(str(reference / "dataset")))
    got = _rows(load_beam_dataset(beam_build))
    assert {s: [r["title"] for r in rows] for s, rows in got.items()} == {
        s: [r["title"] for r in rows] for s, rows in expected.items()
    }
    assert got == expected  # targets, every ranker's input, token ids, per-example statistics
    assert sum(len(rows) for rows in got.values()) >= 5
    assert json.loads((out / "tokenizer.json").read_text()) == json.loads((reference / "tokenizer.json").read_text())
    assert (out / "special_tokens.json").read_text() == (reference / "special_tokens.json").read_text()
    rouge, single_rouge = (json.loads((d / "extractive_rouge.json").read_text()) for d in (out, reference))
    assert rouge == single_rouge  # means of the same per-example scores, rounded to 2 decimals


def test_beam_card_counts_match_and_bad_store_records_are_counted(sample, beam_build):
    single, card = _card(sample["reference"]), _card(sample["root"] / "beam")
    assert card["split_counts"] == single["split_counts"]
    assert card["skip_reasons"] == single["skip_reasons"]
    for key in ("records_read", "examples", "skipped", "paragraphs_kept", "paragraphs_dropped_by_filter"):
        assert card["counts"][key] == single["counts"][key], key
    assert card["counts"]["documents_removed_as_clones"] == single["counts"]["documents_removed_as_clones"] >= 1
    for key in ("cited_or_searched_urls", "documents_found", "articles_with_any_document", "reference_store_documents"):
        assert card["coverage"][key] == single["coverage"][key], key
    assert card["coverage"]["documents_found"] > 0
    assert card["reference_store_skipped"] == single["reference_store_skipped"]
    assert card["reference_store_skipped"]["undecodable_bytes"] == 1
    assert card["reference_store_skipped"]["no_url"] == 2  # the WET record and the JSONL line
    assert card["reference_store_skipped"]["malformed_json"] == 1
    assert card["histograms"] == single["histograms"]
    assert card["leftover_markup"] == single["leftover_markup"]  # the same examples, the same counts


def test_multistream_read_skips_a_malformed_page(beam, sample, beam_build):
    from data_prep.beam_pipeline import load_beam_dataset

    out = _run(beam, sample, "beam_multi", sample["multi"], streams_per_shard=2)
    assert _rows(load_beam_dataset(out)) == _rows(load_beam_dataset(beam_build))
    card, clean = _card(sample["root"] / "beam_multi"), _card(sample["root"] / "beam")
    assert card["skip_reasons"].pop("malformed_xml") == 1
    assert card["skip_reasons"] == clean["skip_reasons"]
    assert card["counts"]["records_read"] == clean["counts"]["records_read"] + 1
    assert card["counts"]["dump_chunks"] == -(-sample["n_streams"] // 2)  # one chunk per shard of 2 streams


# ---- the CLI, generated data (no shared data needed) -------------------------------------------------------


def test_cli_beam_subcommand_writes_parquet_that_datasets_loads(beam, tmp_path, capsys):
    import datasets

    from data_prep.__main__ import main

    dump = write_dump(tmp_path / "gen.xml.bz2", standard_pages(12))
    out = tmp_path / "out"
    args = ["beam", "--runner", "direct", "--dump", str(dump), "--out", str(out), "--eval-lengths", ""]
    args += ["--rankers", "identity,tfidf", "--input-lengths", "64", "--num-shards", "1"]
    assert main(args) == 0
    assert "built" in capsys.readouterr().out
    loaded = datasets.load_dataset(str(out / "dataset"))  # split names from the shard file names
    assert sum(len(ds) for ds in loaded.values()) == 12
    assert set(loaded["train"].column_names) >= {"title", "target", "input_tfidf", "input_ids_tfidf", "target_ids"}
    card = _card(out)
    assert card["skip_reasons"] == {"disambiguation": 1, "not_namespace_0": 1, "redirect": 1}
    assert main(args) == 0  # a rerun over the finished build returns at once
    assert main([*args[:-4], "--input-lengths", "32"]) == 2  # another configuration: a clear error
    assert "another configuration" in capsys.readouterr().err


def test_cli_beam_errors_are_clear(beam, tmp_path, capsys):
    from data_prep.__main__ import main

    assert main(["beam", "--dump", str(tmp_path / "missing.xml.bz2"), "--out", str(tmp_path / "o")]) == 2
    assert "dump file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["beam", "--runner", "nope", "--out", str(tmp_path / "o")])
    assert main(["beam", "--source", "references", "--out", str(tmp_path / "o")]) == 2
    assert "--reference-store" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_truncated_dump_is_counted_not_fatal_when_partial_dumps_are_kept(beam, tmp_path, damage):
    from data_prep.beam_pipeline import run_beam_build
    from data_prep.build import BuildConfig

    xml = dump_xml(standard_pages(12))
    data = gzip.compress(xml)  # gzip decompresses up to the cut; bz2 by 900 kB blocks
    dump = tmp_path / "cut.xml.gz"
    if damage == "truncated":
        dump.write_bytes(data[: len(data) * 3 // 4])
    else:  # two gzip members, bytes flipped in the second: zlib.error, not an OSError (it failed the pipeline)
        middle = xml.index(b"<page>", len(xml) // 2)
        second = bytearray(gzip.compress(xml[middle:]))
        for k in range(len(second) // 3, len(second) // 3 + 40):
            second[k] ^= 0xFF
        dump.write_bytes(gzip.compress(xml[:middle]) + bytes(second))
    config = BuildConfig(out=str(tmp_path / "out"), dumps=[str(dump)], eval_lengths=(), rankers=("identity",))
    out = run_beam_build(config, "direct", [], pages_per_chunk=2, keep_partial_dumps=True)  # asked for
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["counts"]["dump_file_errors"] == 1
    assert 0 < card["counts"]["examples"] < 12
    assert out == str(tmp_path / "out")


def test_search_source_matches_the_single_machine_build(beam, tmp_path):
    import datasets

    from data_prep.beam_pipeline import load_beam_dataset, run_beam_build
    from data_prep.build import BuildConfig, build_dataset

    dump = write_dump(tmp_path / "gen.xml", standard_pages(8))
    words = "the harbour museum opened in the old tower and many visitors came to the village every summer ."
    store = tmp_path / "store.jsonl"
    store.write_text(
        "\n".join(json.dumps({"url": f"http://site{i}.org/p", "text": f"{words} page {i} ."}) for i in range(8))
    )
    results = tmp_path / "search.jsonl"
    lines = [
        {"title": f"Topic {i}", "results": [{"url": f"http://SITE{i}.org/p/"}, {"url": "http://gone.org"}]}
        for i in range(6)
    ]
    lines.append({"title": "Topic 6", "results": [{"text": f"{words} inline result text ."}]})
    results.write_text("\n".join(json.dumps(line) for line in lines))
    common = dict(dumps=[str(dump)], source="search", search_results=str(results), reference_store=[str(store)])
    common.update(eval_lengths=(), rankers=("identity", "tfidf"), input_lengths=(64,))
    common.update(min_source_words=0, min_source_target_ratio=0.0)  # one-line search results: a short source
    single = build_dataset(out=str(tmp_path / "single"), **common)
    out = run_beam_build(BuildConfig(out=str(tmp_path / "beam"), **common), "direct", [])
    assert _rows(load_beam_dataset(out)) == _rows(datasets.load_from_disk(str(single / "dataset")))
    card, single_card = _card(tmp_path / "beam"), _card(single)
    assert card["coverage"]["cited_or_searched_urls"] == single_card["coverage"]["cited_or_searched_urls"] == 13
    assert card["coverage"]["documents_found"] == single_card["coverage"]["documents_found"] == 7


def test_beam_path_calls_the_single_machine_functions(beam):
    """One implementation: the Beam module imports build's per-page, row, tokenizer, schema and card code."""
    import data_prep.beam_pipeline as beam_pipeline
    import data_prep.build as build

    for name in ("page_to_article", "example_row", "fit_tokenizer", "dataset_features", "data_card"):
        assert getattr(beam_pipeline, name) is getattr(build, name), name


def test_rerun_over_an_interrupted_remote_output_drops_its_stale_shards(beam, tmp_path, monkeypatch):
    """A remote --out is written in place: a stale shard of an interrupted run must not join the new ones."""
    import data_prep.beam.running as running
    import data_prep.beam_pipeline as beam_pipeline
    from data_prep.build import BuildConfig

    monkeypatch.setattr(running, "is_remote", lambda path: True)  # a local folder standing in for gs://
    dump = write_dump(tmp_path / "gen.xml", standard_pages(4))
    out = tmp_path / "out"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "train-00000-of-00009.parquet").write_bytes(b"stale shard of an interrupted run")
    (out / "notes.txt").write_text("not the build's: kept")
    config = BuildConfig(out=str(out), dumps=[str(dump)], eval_lengths=(), rankers=("identity",), input_lengths=(32,))
    beam_pipeline.run_beam_build(config, "direct", [], num_shards=1)
    shards = sorted(p.name for p in (out / "dataset").iterdir())
    assert "train-00000-of-00009.parquet" not in shards and shards
    assert (out / "notes.txt").exists()
    assert sum(len(ds) for ds in beam_pipeline.load_beam_dataset(str(out)).values()) == 4


@pytest.mark.parametrize("cut", ["inside_a_page", "between_pages"])
def test_a_plain_xml_dump_that_ends_early_fails_naming_the_file(beam, tmp_path, capsys, cut):
    """It used to exit 0 with 8 of 12 examples, counted only as one malformed page."""
    from data_prep.__main__ import main

    xml = dump_xml(standard_pages(12))
    end = xml.index(b"</page>", len(xml) * 2 // 3) + len(b"</page>")
    dump = tmp_path / "cut.xml"
    dump.write_bytes(xml[: end - 30] if cut == "inside_a_page" else xml[:end])
    out = tmp_path / "out"
    args = ["beam", "--dump", str(dump), "--out", str(out), "--eval-lengths", "", "--rankers", "identity"]
    assert main([*args, "--pages-per-chunk", "3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"dump {dump}: the file is truncated" in line and "--keep-partial-dumps" in line
    assert not out.exists() and not (tmp_path / "out.partial").exists()
    assert main([*args, "--pages-per-chunk", "3", "--keep-partial-dumps"]) == 0  # asked for: built, counted
    card = json.loads((out / "data_card.json").read_text())
    assert card["counts"]["dump_file_errors"] == 1 and 0 < card["counts"]["examples"] < 12


def test_beam_local_output_follows_the_build_protocol(beam, tmp_path):
    """Marker-carrying partial, manifest with the inputs' fingerprints: a changed dump rebuilds."""
    from data_prep.beam_pipeline import load_beam_dataset, run_beam_build
    from data_prep.build import BuildConfig
    from data_prep.build_output import MANIFEST_FILE, MARKER_FILE

    dump = write_dump(tmp_path / "gen.xml", standard_pages(4))
    mine = tmp_path / "out.partial"
    mine.mkdir()
    config = BuildConfig(out=str(tmp_path / "out"), dumps=[str(dump)], eval_lengths=(), rankers=("identity",),
                         input_lengths=(32,))
    with pytest.raises(RuntimeError, match="not made by data_prep"):
        run_beam_build(config, "direct", [], num_shards=1)
    mine.rmdir()
    out = Path(run_beam_build(config, "direct", [], num_shards=1))
    assert (out / MARKER_FILE).is_file() and (out / MANIFEST_FILE).is_file()
    assert sum(len(ds) for ds in load_beam_dataset(str(out)).values()) == 4
    stamp = dump.stat().st_mtime_ns + 10**9
    write_dump(dump, standard_pages(6))
    os.utime(dump, ns=(stamp, stamp))
    run_beam_build(config, "direct", [], num_shards=1)
    assert sum(len(ds) for ds in load_beam_dataset(str(out)).values()) == 6  # not the old build
