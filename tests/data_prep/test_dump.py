import bz2

import pytest

from data_prep.dump import DumpFormatError, iter_dump_pages
from data_prep.page_filter import page_skip_reason
from data_prep.wikitext import parse_article, reference_urls, wikitext_to_sections
from tests.data_prep.fixtures import article_wikitext, dump_xml, page_xml, standard_pages, write_dump


def _reasons(path):
    return [page_skip_reason(p) for p in iter_dump_pages(path)]


@pytest.mark.parametrize("schema", ["0.3", "0.5", "0.10", "0.11"])
def test_any_schema_version_and_skip_reasons(tmp_path, schema):
    path = write_dump(tmp_path / "d.xml", standard_pages(3), schema=schema)
    assert _reasons(path) == [None, None, None, "redirect", "disambiguation", "not_namespace_0"]


def test_schema_without_ns_element_uses_title_prefix(tmp_path):
    pages = [page_xml("Topic 1", article_wikitext(1), 1, ns=None), page_xml("Wikipedia:About", "x", 2, ns=None)]
    path = write_dump(tmp_path / "d.xml", pages, schema="0.3")
    assert [p["namespace"] for p in iter_dump_pages(path)] == [0, 4]


def test_bare_page_file(tmp_path):
    path = tmp_path / "page.xml"
    path.write_text(page_xml("Topic 2", article_wikitext(2), 7))
    (page,) = list(iter_dump_pages(path))
    assert page["title"] == "Topic 2" and page["page_id"] == "7" and page_skip_reason(page) is None


def test_multistream_bz2_and_declared_encoding(tmp_path):
    pages = standard_pages(2)
    pages[0] = page_xml("Café", article_wikitext(0), 1)
    data = dump_xml(pages, encoding="iso-8859-1")
    cut = data.index(b"<page>", data.index(b"<page>") + 1)  # two bz2 streams, split between pages
    path = tmp_path / "d-multistream.xml.bz2"
    path.write_bytes(bz2.compress(data[:cut]) + bz2.compress(data[cut:]))
    titles = [p["title"] for p in iter_dump_pages(path)]
    assert titles[:2] == ["Café", "Topic 1"]


def test_truncated_bz2_names_the_file(tmp_path):
    path = write_dump(tmp_path / "d.xml.bz2", standard_pages(3))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DumpFormatError, match="d.xml.bz2"):
        list(iter_dump_pages(path))


def test_malformed_xml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_bytes(dump_xml(standard_pages(2)).replace(b"</title>", b"</titel>", 1))
    with pytest.raises(DumpFormatError, match=r"bad.xml: malformed XML at line"):
        list(iter_dump_pages(path))


def test_missing_dump_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        list(iter_dump_pages(tmp_path / "nope.xml"))


def test_wikitext_sections_and_references():
    text = article_wikitext(3, ("http://example.org/a", "https://example.com/b#frag"))
    sections = wikitext_to_sections(text)
    assert [s["title"] for s in sections] == ["", "History", "Geography"]  # References dropped
    lead = sections[0]["text"]
    assert lead.startswith("Topic 3 is a famous") and "Infobox" not in lead and "cite" not in lead
    geography = sections[2]["text"]
    assert "cell one" not in geography and "thumb" not in geography and "Category" not in geography
    assert reference_urls(text) == ["http://example.org/a", "https://example.com/b#frag"]
    assert parse_article("T", text)["reference_urls"] == reference_urls(text)


def test_every_real_dump(shared_data):
    """Every real dump (incl. bare-page files) streams to the end and yields articles with a lead."""
    files = sorted(p for p in (shared_data / "wiki").rglob("*") if p.is_file())
    assert len(files) >= 12
    total_articles = 0
    for path in files:
        pages = list(iter_dump_pages(path))
        articles = [p for p in pages if page_skip_reason(p) is None]
        assert articles, path
        for page in articles[:3]:
            parsed = parse_article(page["title"], page["wikitext"])
            assert parsed["sections"][0]["text"], (path, page["title"])
        total_articles += len(articles)
    sample = shared_data / "wiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    reasons = _reasons(sample)
    assert len(reasons) == 206 and reasons.count("redirect") == 99 and reasons.count("disambiguation") == 8
    assert total_articles > 100


def _corrupt_middle(data: bytes) -> bytes:
    cut = bytearray(data)
    for k in range(len(cut) // 2, len(cut) // 2 + 40):
        cut[k] ^= 0xFF
    return bytes(cut)


def test_corrupt_gzip_names_the_file(tmp_path):
    import gzip

    path = tmp_path / "d.xml.gz"
    path.write_bytes(_corrupt_middle(gzip.compress(dump_xml(standard_pages(40)))))
    with pytest.raises(DumpFormatError, match=r"d.xml.gz: cannot decompress"):  # was a bare zlib.error
        list(iter_dump_pages(path))


def test_non_numeric_namespace_names_the_file(tmp_path):
    path = tmp_path / "ns.xml"
    path.write_bytes(dump_xml([page_xml("A", "'''A''' is a page.", 1).replace("<ns>0</ns>", "<ns>zero</ns>")]))
    with pytest.raises(DumpFormatError, match=r"ns.xml: <ns> of 'A' is not a number"):  # was a bare ValueError
        list(iter_dump_pages(path))
