"""Wikitext to plain-text sections, and the reference URLs an article cites (mwparserfromhell).

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") work from the article's text split
into sections: the lead (text before the first heading) is the target, the rest is the article body.
t2t shipped pre-parsed articles; this module parses the wikitext itself with mwparserfromhell:

- removed: templates (infoboxes, navboxes, citation templates), ``<ref>`` tags and their contents, other
  invisible tags (``<gallery>``, ``<math>``, ...), tables, comments, file/image and category links,
  interlanguage links; external links keep their label; wikilinks keep their text;
- kept: every section, flat, as ``{"title", "text"}`` with the lead first under the title ``""``;
  paragraphs are newline-separated. Sections whose title is pure apparatus ("References",
  "External links", "See also", ...) are dropped: with refs and templates stripped they hold only link
  lists, and they would pollute both the wiki-body source and the clone check.

Deviation: templates are dropped wholesale, so text a template would have rendered inline (``{{convert}}``,
``{{lang}}``, dates) is lost, as in most wikitext cleaners; t2t's own extraction is not published.
"""

from __future__ import annotations

import re

import mwparserfromhell
from mwparserfromhell.nodes import Comment, Heading, Tag, Template, Wikilink

APPARATUS_SECTION_TITLES = frozenset(
    {
        "references",
        "external links",
        "see also",
        "further reading",
        "notes",
        "bibliography",
        "sources",
        "footnotes",
        "citations",
        "notes and references",
        "references and notes",
        "works cited",
        "links",
    }
)
_DROPPED_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
_INTERLANGUAGE_RE = re.compile(r"^:?[a-z]{2,3}(-[a-z]+)?:")
_DROPPED_TAGS = frozenset(
    {
        "ref",
        "references",
        "gallery",
        "math",
        "chem",
        "score",
        "timeline",
        "imagemap",
        "syntaxhighlight",
        "source",
        "templatedata",
        "graph",
        "mapframe",
        "table",
    }
)
_URL_PARAMETERS = ("url", "chapter-url", "chapterurl", "contribution-url", "section-url", "website-url")
_EMPTY_BRACKETS_RE = re.compile(r"\(\s*[,;]*\s*\)")
_SPACES_RE = re.compile(r"[ \t\u00a0]+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" +([,.;:])")


def _is_dropped_link(link: Wikilink) -> bool:
    title = str(link.title).strip().lower()
    return title.startswith(_DROPPED_LINK_PREFIXES) or bool(_INTERLANGUAGE_RE.match(title))


def _remove_nodes(code) -> None:
    """Remove markup that carries no prose (a node already gone with its parent is skipped)."""
    doomed = []
    for node in code.ifilter(recursive=True):
        if isinstance(node, (Template, Comment)):
            doomed.append(node)
        elif isinstance(node, Tag) and (str(node.tag).lower() in _DROPPED_TAGS or node.wiki_markup == "{|"):
            doomed.append(node)
        elif isinstance(node, Wikilink) and _is_dropped_link(node):
            doomed.append(node)
    for node in doomed:
        try:
            code.remove(node)
        except ValueError:
            pass  # inside a node removed earlier


def _clean_plain_text(text: str) -> str:
    """Tidy what ``strip_code`` leaves: empty brackets, runs of spaces, blank lines."""
    lines = []
    for line in text.split("\n"):
        line = _EMPTY_BRACKETS_RE.sub("", line)
        line = _SPACES_RE.sub(" ", line)
        line = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", line).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def wikitext_to_sections(wikitext, drop_apparatus: bool = True) -> list[dict]:
    """Plain-text sections ``[{"title": str, "text": str}, ...]``, lead first (title ``""``).

    ``wikitext`` is a string or an already parsed ``Wikicode`` (which is modified in place).
    Every heading level starts a new (flat) section, so a level-3 subsection is its own entry.
    Empty sections are kept out; the lead is always present (possibly with empty text).
    """
    code = mwparserfromhell.parse(wikitext) if isinstance(wikitext, str) else wikitext
    sections: list[dict] = []
    for i, section in enumerate(code.get_sections(flat=True, include_lead=True)):
        headings = section.filter_headings(recursive=False)
        title = ""
        if headings and section.nodes and isinstance(section.nodes[0], Heading):
            title = _clean_plain_text(headings[0].title.strip_code()).strip()
            section.remove(section.nodes[0])
        elif i > 0:
            continue
        if drop_apparatus and title.lower() in APPARATUS_SECTION_TITLES:
            continue
        _remove_nodes(section)
        text = _clean_plain_text(section.strip_code(normalize=True, collapse=True))
        if i == 0 and not title:
            sections.append({"title": "", "text": text})
        elif text:
            sections.append({"title": title, "text": text})
    if not sections or sections[0]["title"]:
        sections.insert(0, {"title": "", "text": ""})
    return sections


def _canonical_cited_url(url: str) -> str | None:
    url = url.strip().strip("[]").split()[0] if url.strip() else ""
    if url.startswith("//"):
        url = "http:" + url
    return url if url.lower().startswith(("http://", "https://")) else None


def reference_urls(wikitext) -> list[str]:
    """URLs an article cites: external links and citation templates' url fields inside ``<ref>`` tags,
    plus ``url`` fields of citation templates anywhere (``{{cite web}}``, ``{{cite news}}``,
    ``{{citation}}``, ...). Order of first appearance, duplicates removed.
    """
    code = mwparserfromhell.parse(wikitext) if isinstance(wikitext, str) else wikitext
    found: list[str] = []

    def add(raw: str) -> None:
        url = _canonical_cited_url(raw)
        if url and url not in seen:
            seen.add(url)
            found.append(url)

    seen: set[str] = set()
    for node in code.ifilter(recursive=True):
        if isinstance(node, Tag) and str(node.tag).lower() == "ref" and node.contents is not None:
            # links written directly in the ref; templates inside it are visited by this same loop
            for link in node.contents.ifilter_external_links(recursive=False):
                add(str(link.url))
        elif isinstance(node, Template) and str(node.name).strip().lower().startswith(("cite", "citation")):
            for param in _URL_PARAMETERS:
                if node.has(param):
                    add(str(node.get(param).value))
    return found


def parse_article(title: str, wikitext: str) -> dict:
    """One parse for both products: ``{"title", "sections", "reference_urls"}`` (the article record)."""
    code = mwparserfromhell.parse(wikitext)
    urls = reference_urls(code)  # before the sections pass strips the refs
    return {"title": title, "sections": wikitext_to_sections(code), "reference_urls": urls}
