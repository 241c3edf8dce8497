"""Wikitext to text on real snippets: rendered inline templates, dropped pronunciations, localized file links,
entities, indented tables, quote runs; the minimum-source filters; the leftover-markup check on whole dumps.

The snippets are copied from the enwiki excerpt in ../shared/data/wiki (Wikipedia contributors, CC BY-SA)
unless marked otherwise, so these tests run without the shared data.
"""

import pytest

from data_prep.build import page_to_article
from data_prep.dump import iter_dump_pages
from data_prep.example import ExampleConfig, make_example
from data_prep.inline_templates import INLINE_TEMPLATES, render_template
from data_prep.markup_check import LEFTOVER_PATTERNS, leftover_counts
from data_prep.paragraphs import normalize_text
from data_prep.sources import wiki_body_documents
from data_prep.wikitext import parse_wikitext, quotes_to_text, wikitext_to_sections


def lead(wikitext: str, **kwargs) -> str:
    return wikitext_to_sections(wikitext, **kwargs)[0]["text"]


# (article, wikitext, the text a reader sees)
REAL_SNIPPETS = [
    ("Abraham Lincoln",  # pronunciation dropped with the ';' it leaves
     "'''Abraham Lincoln''' ({{IPAc-en|audio=GeoTrinity_Abraham_Lincoln.ogg|ˈ|eɪ|b|r|ə|h|æ|m|_|ˈ|l|I|ŋ|k|ən}}; "
     "February 12, 1809 – April 15, 1865) was the 16th President",
     "Abraham Lincoln (February 12, 1809 – April 15, 1865) was the 16th President"),
    ("Arthur Schopenhauer",
     "'''Arthur Schopenhauer''' ({{IPA-de|ˈaʁtʊʁ ˈʃoːpənˌhaʊ̯ɐ|lang}}; 22 February 1788&nbsp;– 21 September 1860) "
     "was a [[Germans|German]] [[philosopher]].",
     "Arthur Schopenhauer (22 February 1788 – 21 September 1860) was a German philosopher."),
    ("Achilles",  # {{lang-grc}} rendered, two pronunciations dropped
     "'''Achilles''' ({{IPAc-en|ə|ˈ|k|ɪ|l|iː|z}}; {{lang-grc|Ἀχιλλεύς}}, ''Akhilleus'', {{IPA-el|akʰilːéu̯s|pron}}) "
     "was a [[Greeks|Greek]] hero",
     "Achilles (Ἀχιλλεύς, Akhilleus) was a Greek hero"),
    ("Albania",  # IPAc-en + respell
     "'''Albania''' ({{IPAc-en|audio=en-us-Albania.ogg|æ|l|ˈ|b|eɪ|n|i|ə|,_|ɔː|l|-}}, {{respell|a(w)l|BAY|nee-ə}}; "
     "{{lang-sq|Shqipëri/Shqipëria}}), officially known as the '''Republic of Albania'''",
     "Albania (Shqipëri/Shqipëria), officially known as the Republic of Albania"),
    ("Aristotle",
     "'''Aristotle''' ({{IPAc-en|ˈ|æ|r|ɪ|ˌ|s|t|ɒ|t|əl}};<ref>[http://www.collinsdictionary.com/x \"Aristotle\"] "
     "entry</ref> {{lang-grc-gre|Ἀριστοτέλης}} {{IPA-grc|aristotélɛːs}}, ''Aristotélēs''; 384–322&nbsp;BC) was",
     "Aristotle (Ἀριστοτέλης, Aristotélēs; 384–322 BC) was"),
    ("Algeria",  # nested templates: {{lang-ar|{{large|...}}}}, {{transl}}
     "'''Algeria''' ({{lang-ar|{{large|الجزائر}}}} ''{{transl|ar|al-Jazā'ir}}''; {{lang-ber|ⵍⵣⵣⴰⵢⴻⵔ}} ''Dzayer''), "
     "officially",
     "Algeria (الجزائر al-Jazā'ir; ⵍⵣⵣⴰⵢⴻⵔ Dzayer), officially"),
    ("Ayn Rand",
     "born '''Alisa Zinov'yevna Rosenbaum''', {{lang-ru|Али́са Зино́вьевна Розенба́ум}}; "
     "{{OldStyleDate|February 2|1905|January 20}}&nbsp;– March 6, 1982) was",
     "born Alisa Zinov'yevna Rosenbaum, Али́са Зино́вьевна Розенба́ум; February 2, 1905 – March 6, 1982) was"),
    ("Alabama", "At {{convert|1300|mi|km}}, Alabama has one of the longest navigable inland waterways",
     "At 1300 mi, Alabama has one of the longest navigable inland waterways"),
    ("Alabama", "the thirtieth-largest state in the United States with {{convert|52419|sqmi|km2|abbr=out|sp=us}} of "
     "total area", "the thirtieth-largest state in the United States with 52419 sq mi of total area"),
    ("Apollo 11", "one of the {{convert|67|in|cm|0|adj=on}} probes hanging from ''Eagle''{{'s}} footpads",
     "one of the 67 in probes hanging from Eagle's footpads"),
    ("American Revolutionary War", "the war with France (1778{{ndash}}83) and",
     "the war with France (1778–83) and"),
    ("Abraham Lincoln", "bobbing of the head ([[De Musset's sign|DeMusset's sign]]){{snd}} based on blurring",
     "bobbing of the head (DeMusset's sign) – based on blurring"),
    ("Autism", "are diagnosed with ASD {{as of|2014|lc=y}}, a 30% increase",
     "are diagnosed with ASD as of 2014, a 30% increase"),
    ("Animal Farm", "in ''[[The Times Literary Supplement]]'' on 15{{nbsp}}September 1972",
     "in The Times Literary Supplement on 15 September 1972"),
    ("Agriculture", "sickle made from baked clay ({{circa|3000}}{{nbsp}}BC)",
     "sickle made from baked clay (c. 3000 BC)"),
    ("Alkane", "+ ({{frac|3|2}}''n''&nbsp;+&nbsp;{{frac|2}})&nbsp;O<sub>2</sub>", "+ (3/2n + 1/2) O2"),
    ("Afghanistan", "{{nowrap|{{big|{{lang|ar|لا إله إلا الله}}}}}} is", "لا إله إلا الله is"),
    ("Algorithm", "{{vanchor|1|el1}} [Into two locations L and S put the numbers", "1 [Into two locations L and S "
     "put the numbers"),
    ("Achilles",  # the whole line: its later '' runs decide how the ''' after Iliad is read
     "Many Homeric scholars argued that episode inspired many details in the ''Iliad'''s description of the death "
     "of Patroclus and Achilles' reaction to it. The episode then formed the basis of the [[Epic Cycle|cyclic epic]] "
     "''[[Aethiopis]]'', which was composed after the ''Iliad'', possibly in the 7th century B.C. The "
     "''Aethiopis'' is now lost, except for scattered fragments quoted by later authors.",
     "Many Homeric scholars argued that episode inspired many details in the Iliad's description of the death "
     "of Patroclus and Achilles' reaction to it. The episode then formed the basis of the cyclic epic "
     "Aethiopis, which was composed after the Iliad, possibly in the 7th century B.C. The "
     "Aethiopis is now lost, except for scattered fragments quoted by later authors."),
    ("Anarchism",  # an unbalanced '' in a ref: in the whole article it made the parser leak the ref as text
     "globally.\"<ref>[[Simon Critchley#Infinitely Demanding|Infinitely Demanding]]'' by [[Simon Critchley]]. "
     "[[Verso Books|Verso]]. 2007. p. 125</ref> International anarchist federations",
     "globally.\" International anarchist federations"),
    ("Ambiguity",  # the same for a file link with an unbalanced ''' in its caption
     "forms.\n[[File:Structural analysis of an ambiguous spanish sentence.svg|thumb|Structural analysis:<br /> "
     "'''Pepe vio a Pablo enfurecido''<br />Interpretation 1.]]\n\nThe lexical ambiguity",
     "forms.\nThe lexical ambiguity"),
    # the issue's own examples (not in the excerpt)
    ("(issue) Tudor", "(1417{{ndash}}1701)", "(1417–1701)"),
    ("(issue) mdash", "a series{{mdash}}known as", "a series—known as"),
    ("(issue) vanchor", "{{vanchor|[[Battle of Hastings|Hastings]]}} is", "Hastings is"),
    ("(issue) convert", "an area of about {{convert|1.5|e6acre|km2}}. It covers",
     "an area of about 1.5 million acres. It covers"),
]


@pytest.mark.parametrize(("article", "wikitext", "expected"), REAL_SNIPPETS, ids=[f"{a}-{i}" for i, (a, _, _) in
                                                                                   enumerate(REAL_SNIPPETS)])
def test_real_snippets_read_as_a_reader_sees_them(article, wikitext, expected):
    assert lead(wikitext) == expected


def test_every_table_entry_renders_text_or_is_a_constant():
    """Each template of the table, with a parameter, gives non-empty text (a typo in the table would not)."""
    for name in INLINE_TEMPLATES:
        template = parse_wikitext("{{" + name + "|2010|5|12}}").filter_templates()[0]
        assert render_template(template), name


def test_unknown_and_pronunciation_templates_render_nothing():
    for text in ("{{Infobox person|name=X}}", "{{cite web|url=http://x.org|title=T}}", "{{IPAc-en|ˈ|k}}",
                 "{{respell|KEE}}", "{{IPA-fr|bɔ̃ʒuʁ}}", "{{audio|x.ogg|listen}}"):
        assert render_template(parse_wikitext(text).filter_templates()[0]) is None, text


def test_entities_escaped_refs_blockquotes_and_indented_tables():
    assert lead("a&nbsp;b &amp;nbsp; c &amp;ndash; d&#160;e") == "a b c – d e"  # doubly escaped too
    assert lead("Kept.&lt;ref&gt;Smith 2001, p. 3&lt;/ref&gt; After.") == "Kept. After."
    assert lead("Text.&lt;ref name=x /&gt; More.") == "Text. More."
    assert lead('writes: &lt;blockquote&gt;"In March 1871 the Commune took power"&lt;/blockquote&gt; then') == (
        'writes: "In March 1871 the Commune took power" then'
    )
    plankton = ("Plankton are classified by size:\n::{| class=\"wikitable\"\n|-\n! Group !! Size\n|-\n"
                "| megaplankton || > 20 mm\n|}\nThey drift.")  # the issue's `| megaplankton | | > 20 mm |`
    assert lead(plankton) == "Plankton are classified by size:\nThey drift."


def test_quote_runs_follow_mediawiki():
    assert quotes_to_text("''Battle'''s end") == "Battle's end"
    assert quotes_to_text("'''bold''' and ''italic'' and '''''both'''''") == "bold and italic and both"
    assert quotes_to_text("l''''ami''''") == "l'ami'"  # 4 quotes: an apostrophe + bold
    assert quotes_to_text("no quotes") == "no quotes"


DE_SITEINFO = (  # dewiki declares Datei (6) and Kategorie (14); "Bild" is its alias, declared with the same key
    '<siteinfo><sitename>Wikipedia</sitename><namespaces><namespace key="-2">Medium</namespace>'
    '<namespace key="0" /><namespace key="6">Datei</namespace><namespace key="6">Bild</namespace>'
    '<namespace key="14">Kategorie</namespace></namespaces></siteinfo>'
)
AF_SITEINFO = ('<siteinfo><sitename>Wikipedia</sitename><namespaces><namespace key="0" />'
               '<namespace key="6">Lêer</namespace><namespace key="14">Kategorie</namespace></namespaces></siteinfo>')


def _dump(tmp_path, name, siteinfo, text):
    from xml.sax.saxutils import escape

    body = ("'''Berlin''' ist die Hauptstadt der Bundesrepublik Deutschland und mit rund 3,7 Millionen Einwohnern "
            "die bevölkerungsreichste Stadt des Landes.")
    page = (f"<page><title>Berlin</title><ns>0</ns><id>1</id><revision><id>2</id>"
            f"<text>{escape(text + body)}</text></revision></page>")
    path = tmp_path / name
    path.write_text(f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">{siteinfo}{page}</mediawiki>')
    return path


@pytest.mark.parametrize(("siteinfo", "link"), [
    (DE_SITEINFO, "[[Datei:Berlin Skyline.jpg|mini|hochkant=1.3|Blick über die Stadt]]\n"),
    (DE_SITEINFO, "[[Bild:Reichstag.jpg|links|Der Reichstag]]\n"),  # the alias
    (DE_SITEINFO, "[[Kategorie:Hauptstadt]]"),
    (AF_SITEINFO, "[[Lêer:Berlyn.jpg|thumb|links|Blick oor die stad]]\n"),
    ("", "[[Fichier:Paris.png|vignette|Vue de la ville]]\n"),  # no siteinfo: by extension and image options
    ("", "[[Plik:Panorama|250px|Widok miasta]]\n"),  # no extension either: by the size option
])
def test_file_links_are_dropped_in_the_dumps_language(tmp_path, siteinfo, link):
    (page,) = iter_dump_pages(_dump(tmp_path, "d.xml", siteinfo, link))
    article, reason = page_to_article(page)
    text = article["sections"][0]["text"]
    assert reason is None and text.startswith("Berlin ist die Hauptstadt"), text
    for leaked in ("mini", "hochkant", "Blick", "Reichstag", "thumb", "links", "Hauptstadt]]", "Vue", "Widok"):
        assert leaked not in text.split("Hauptstadt der")[0], (leaked, text)


def test_links_with_a_colon_that_are_not_files_keep_their_text():
    assert lead("See [[Star Wars: Episode IV|the first film]] and [[Wikipedia:Manual of Style|the manual]].") == (
        "See the first film and the manual."
    )
    assert lead("[[:Category:Philosophers|list of philosophers]]") == "list of philosophers"


# ---- minimum-source and empty-title filters -------------------------------------------------------------

def _article(title: str, lead_words: int, source_words: int) -> dict:
    lead_text = " ".join(["lead"] * (lead_words - 1)) + "."  # lead_words tokens
    body = " ".join(["the old river runs past the quiet town ."] * (source_words // 9))  # 9 tokens a sentence
    return {"title": title, "sections": [{"title": "", "text": lead_text}, {"title": "Body", "text": body}]}


@pytest.mark.parametrize(("lead_words", "source_words", "config", "reason"), [
    (206, 18, {}, "source_too_short"),  # the 19-source-word example with a 206-word lead
    (100, 81, {}, "source_shorter_than_target"),
    (100, 81, {"min_source_target_ratio": 0.5}, None),
    (10, 18, {"min_source_words": 10}, None),
    (10, 45, {}, None),
])
def test_minimum_source_filters(lead_words, source_words, config, reason):
    article = _article("Topic", lead_words, source_words)
    documents, counts = wiki_body_documents(article)
    example, got, _ = make_example(article, documents, counts, ExampleConfig(rankers=("identity",),
                                                                             source_is_article=True, **config))
    assert got == reason
    assert (example is None) == (reason is not None)


def test_empty_title_is_skipped_and_named():
    article = _article("  ", 10, 40)
    documents, counts = wiki_body_documents(article)
    assert make_example(article, documents, counts, ExampleConfig(rankers=("identity",)))[1] == "empty_title"


def test_filters_are_validated_and_counted_in_the_card(tmp_path):
    import json

    from data_prep.build import BuildConfig, build_dataset
    from tests.data_prep.fixtures import page_xml, standard_pages, write_dump

    with pytest.raises(ValueError, match="min_source_words"):
        BuildConfig(out="x", min_source_words=-1)
    long_body = "== Body ==\n" + "The old river runs past the quiet town and the market square.\n" * 12
    long = page_xml("Long", "'''Long''' is a town with a long history and many old buildings.\n" + long_body, 60)
    dump = write_dump(tmp_path / "d.xml", standard_pages(4) + [long])
    out = build_dataset(out=str(tmp_path / "o"), dumps=[str(dump)], eval_lengths=(), rankers=("identity",),
                        input_lengths=(32,), min_source_words=1, min_source_target_ratio=2.5)
    card = json.loads((out / "data_card.json").read_text())
    assert card["skip_reasons"]["source_shorter_than_target"] == 4 and card["counts"]["examples"] == 1
    assert "source_shorter_than_target" in (out / "data_card.md").read_text()
    assert "--min-source-ratio 2.5" in card["command"] and "--min-source-words 1" in card["command"]


# ---- the leftover-markup check --------------------------------------------------------------------------

def test_leftover_patterns_count_normalised_markup_and_not_prose():
    dirty = normalize_text("{{cite web|url=x}} [[File:a.jpg|thumb|c]] &nbsp; &#160; <ref>x</ref> ( ; born")
    counts = leftover_counts(dirty)
    assert all(counts[key] > 0 for key in LEFTOVER_PATTERNS), counts
    clean = normalize_text("Books I & II; Volume 2 (in French) costs 5 & 6; ok.")
    assert sum(leftover_counts(clean).values()) == 0


def test_the_card_and_stats_show_leftover_markup(tmp_path, capsys):
    import json

    from data_prep.__main__ import main
    from data_prep.build import build_dataset
    from tests.data_prep.fixtures import page_xml, standard_pages, write_dump

    leaky = page_xml("Leaky", "'''Leaky''' is a page with a stray pipe | in its lead sentence and more words.\n"
                     "== Body ==\nThe body has plenty of words to keep the example alive for this test here.\n"
                     "The second line of the body also has a stray | pipe and some more words in it.", 50)
    dump = write_dump(tmp_path / "d.xml", standard_pages(3) + [leaky])
    out = build_dataset(out=str(tmp_path / "o"), dumps=[str(dump)], eval_lengths=(), rankers=("identity",),
                        input_lengths=(64,), min_source_words=0, min_source_target_ratio=0.0)
    row = json.loads((out / "data_card.json").read_text())["leftover_markup"]["| (table cell, template or link pipe)"]
    assert row == {"target": 1, "target_examples": 1, "input": 1, "input_examples": 1}
    assert main(["stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Leftover markup" in printed
    assert "| `\\| (table cell, template or link pipe)` | 1 | 1 | 1 | 1 |" in printed


SHARED_DUMPS_CLEAN = ("template_open", "link_open", "entity", "ref_tag", "image_option", "orphan_separator")


def test_whole_real_dumps_have_no_leftover_markup(shared_data):
    """Every article of every real dump: no template, link, entity, ref or image-option markup, and no
    orphaned separator, in the target or in the input (the pipe of real prose is allowed)."""
    files = sorted(p for p in (shared_data / "wiki").rglob("*") if p.is_file())
    config = ExampleConfig(rankers=("identity",), source_is_article=True)
    n_examples = 0
    for path in files:
        for page in iter_dump_pages(path):
            article, reason = page_to_article(page)
            if reason:
                continue
            example, _, _ = make_example(article, *wiki_body_documents(article), config)
            if example is None:
                continue
            n_examples += 1
            for field in ("target", "input_identity"):
                counts = leftover_counts(example[field])
                assert not any(counts[key] for key in SHARED_DUMPS_CLEAN), (path.name, example["title"], field,
                                                                              counts)
    assert n_examples > 80
