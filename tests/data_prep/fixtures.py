"""Small generated inputs for the data_prep tests (written by the tests themselves, never committed data)."""

from __future__ import annotations

import bz2
from pathlib import Path
from xml.sax.saxutils import escape

WORDS = ("river castle museum garden engine harbour valley tower bridge market library forest island "
         "station theatre college village mountain temple canal").split()


def article_wikitext(i: int, urls: tuple[str, ...] = ()) -> str:
    """A synthetic article: a lead, two sections, a citation per URL, an infobox, a table and a category."""
    a, b, c = WORDS[i % len(WORDS)], WORDS[(i + 3) % len(WORDS)], WORDS[(i + 7) % len(WORDS)]
    refs = "".join(f"<ref>{{{{cite web|url={u}|title=Page}}}}</ref>" for u in urls)
    return (
        f"{{{{Infobox place|name=Topic {i}}}}}\n"
        f"'''Topic {i}''' is a famous {a} near the old {b} in the county.{refs} "
        f"It was built in the year {1800 + i} by the local people of the {c} region.\n\n"
        f"== History ==\nThe {a} was first recorded by the monks of the {b} abbey. "
        f"Later the {c} merchants rebuilt the whole {a} in stone and brick.\n"
        f"{{| class=wikitable\n|-\n| cell one || cell two\n|}}\n"
        f"== Geography ==\nThe [[{b}|{b}]] lies to the north of the {a} and the {c} to the south. "
        f"Visitors walk along the {c} path to reach the {a} every summer.\n"
        f"[[File:Example.jpg|thumb|A caption]]\n"
        f"== References ==\n{{{{reflist}}}}\n[[Category:Places]]\n"
    )


def page_xml(title: str, text: str, page_id: int, ns: int | None = 0, redirect: str | None = None) -> str:
    ns_xml = f"<ns>{ns}</ns>" if ns is not None else ""
    redirect_xml = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    return (f"<page><title>{escape(title)}</title>{ns_xml}<id>{page_id}</id>{redirect_xml}"
            f"<revision><id>{page_id * 10}</id><text xml:space=\"preserve\">{escape(text)}</text></revision></page>\n")


def dump_xml(pages: list[str], schema: str = "0.10", encoding: str = "utf-8") -> bytes:
    head = (f'<?xml version="1.0" encoding="{encoding}"?>\n'
            f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-{schema}/" version="{schema}">\n'
            "<siteinfo><sitename>Test</sitename><namespaces><namespace key=\"0\" />"
            "<namespace key=\"4\">Wikipedia</namespace><namespace key=\"14\">Category</namespace>"
            "</namespaces></siteinfo>\n")
    return (head + "".join(pages) + "</mediawiki>\n").encode(encoding)


def standard_pages(n_articles: int = 12, urls_by_article: dict[int, tuple[str, ...]] | None = None) -> list[str]:
    """``n_articles`` articles plus a redirect, a disambiguation page and a non-article page."""
    urls_by_article = urls_by_article or {}
    pages = [page_xml(f"Topic {i}", article_wikitext(i, urls_by_article.get(i, ())), i + 1)
             for i in range(n_articles)]
    pages.append(page_xml("Topic redirect", "#REDIRECT [[Topic 0]]", 900, redirect="Topic 0"))
    pages.append(page_xml("Topic (disambiguation)", "'''Topic''' may mean:\n* [[Topic 1]]\n{{disambiguation}}", 901))
    pages.append(page_xml("Wikipedia:About", "Project page text.", 902, ns=4))
    return pages


def write_dump(path: Path, pages: list[str], **kwargs) -> Path:
    data = dump_xml(pages, **kwargs)
    path.write_bytes(bz2.compress(data) if path.suffix == ".bz2" else data)
    return path
