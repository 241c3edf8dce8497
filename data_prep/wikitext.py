"""Wikitext to plain-text sections, and the reference URLs an article cites (mwparserfromhell).

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") work from the article's text split
into sections: the lead (text before the first heading) is the target, the rest is the article body.
t2t shipped pre-parsed articles; this module parses the wikitext itself with mwparserfromhell:

- rendered: inline templates that stand for text (dashes, ``{{convert}}``'s value and unit, ``{{lang}}``,
  ``{{nowrap}}``, ``{{vanchor}}``, ``{{as of}}``, dates, ...: the table of :mod:`data_prep.inline_templates`);
- removed: every other template (infoboxes, navboxes, citations); pronunciation templates together with
  the separators they leave (``({{IPAc-en|...}}; born 1900)`` -> ``(born 1900)``) and empty brackets;
  ``<ref>`` tags and their contents, other invisible tags (``<gallery>``, ``<math>``, ...); tables, also
  indented ones (``::{|``); comments; file/media and category links in the dump's own language (the
  namespace names come from its ``<siteinfo>``, see :func:`dropped_link_prefixes`; a link of an undeclared
  namespace that carries image options such as ``thumb`` / ``mini`` / ``200px`` or names a media file is
  dropped too); interlanguage links. External links keep their label; wikilinks keep their text;
- decoded: HTML entities, doubly escaped ones too (``&amp;nbsp;``), with :func:`html.unescape`; a ``<ref>``
  or HTML tag that appears only after that decoding (``&lt;ref&gt;``) or that the parser left as text is
  removed by pattern;
- bold / italic quote runs are read as MediaWiki's ``doQuotes`` reads them (:func:`quotes_to_text`), so
  ``''Battle'''s`` reads ``Battle's``. mwparserfromhell's own style parsing is switched off: on an
  unbalanced run it gives up on the markup that follows, which then leaks as text (``<ref>`` tags, file
  links);
- kept: every section, flat, as ``{"title", "text"}`` with the lead first under the title ``""``;
  paragraphs are newline-separated. Sections whose title is pure apparatus ("References",
  "External links", "See also", ...) are dropped: with refs and templates stripped they hold only link
  lists, and they would pollute both the wiki-body source and the clone check.

Deviation: templates outside the table render to nothing (t2t's own extraction is not published); the
table's own deviations from MediaWiki's rendering are listed in :mod:`data_prep.inline_templates`.
"""

from __future__ import annotations

import html
import re

import mwparserfromhell
from mwparserfromhell.nodes import Argument, Comment, ExternalLink, Heading, Tag, Template, Text, Wikilink

from data_prep.inline_templates import render_template

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
# MediaWiki's numbers of the namespaces whose links render no text: Media (-2), File (6), Category (14)
DROPPED_LINK_NAMESPACES = (-2, 6, 14)
# their canonical English names, valid on every language's wiki
CANONICAL_DROPPED_PREFIXES = frozenset({"media", "file", "image", "category"})
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
# image options: MediaWiki's magic words in English and the larger wikis' languages, and key=value options
_IMAGE_OPTION_WORDS = frozenset(
    """thumb thumbnail frame framed frameless border left right center centre none upright baseline middle
    top bottom text-top text-bottom mini miniatur rahmen rahmenlos links rechts zentriert ohne hochkant
    vignette gauche droite centré néant cadre redresse miniaturadeimagen miniatura izquierda derecha centro
    duimnael regs middel miniatuur gecentreerd sinistra destra miniaturadaimagem esquerda direita
    мини справа слева центр""".split()
)
_IMAGE_OPTION_KEYS = frozenset(
    "alt link page class lang upright hochkant verweis seite alternativtext redresse lien".split()
)
_IMAGE_SIZE_RE = re.compile(r"^\d*\s*x?\s*\d+\s*(?:px|пкс)$", re.IGNORECASE)
_MEDIA_FILE_RE = re.compile(
    r"\.(?:jpe?g|png|svg|gif|tiff?|webp|xcf|ogg|ogv|oga|opus|webm|mp3|mp4|wav|flac|midi?|pdf|djvu|stl)$",
    re.IGNORECASE,
)
_INDENTED_TABLE_RE = re.compile(r"^[:*#]+[ \t]*(?=\{\|)", re.MULTILINE)
_URL_PARAMETERS = ("url", "chapter-url", "chapterurl", "contribution-url", "section-url", "website-url")
_LEFTOVER_REF_RE = re.compile(
    r"<\s*ref\b[^>]*/\s*>|<\s*ref\b[^>/]*>.*?<\s*/\s*ref\s*>|<\s*/?\s*ref\b[^>]*>", re.IGNORECASE | re.DOTALL
)
_LEFTOVER_TAG_RE = re.compile(
    r"<\s*/?\s*(?:blockquote|small|big|center|div|span|br|sup|sub|u|s|i|b|p|poem|font|abbr|cite|code|tt|em|"
    r"strong|del|ins|hr|references|onlyinclude|includeonly|noinclude|section|nowiki|q|var|dfn|kbd|samp|"
    r"mark|ruby|rt|rp|bdi|bdo|wbr|li|ul|ol|dl|dd|dt)\b[^<>]*>",
    re.IGNORECASE,
)
_QUOTE_RUN_RE = re.compile(r"('{2,})")
_OPEN_SEPARATORS_RE = re.compile(r"\(\s*(?:[,;:]\s*)+")
_CLOSE_SEPARATORS_RE = re.compile(r"\s*(?:[,;]\s*)+\)")
_SEPARATOR_RUN_RE = re.compile(r"[,;](?:\s*[,;])+")
_EMPTY_BRACKETS_RE = re.compile(r"\(\s*\)")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_ZERO_WIDTH_RE = re.compile(r"[\u200b\u200e\u200f\ufeff]")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" +([,.;:])")


def _namespace_key(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def dropped_link_prefixes(namespaces: dict[str, int] | None = None) -> frozenset[str]:
    """Lower-cased names of the namespaces whose links render no text (Media, File, Category): those of a
    dump's ``<siteinfo><namespaces>`` table ``{name: number}`` (every name, aliases too) plus the canonical
    English ones."""
    declared = {_namespace_key(name) for name, key in (namespaces or {}).items() if key in DROPPED_LINK_NAMESPACES}
    return frozenset(declared | CANONICAL_DROPPED_PREFIXES)


def _has_image_options(link: Wikilink) -> bool:
    """A link whose pipe-separated parts hold an image option (``thumb``, ``mini``, ``200px``, ``alt=``)."""
    if link.text is None:
        return False
    for part in str(link.text).split("|"):
        part = part.strip().lower()
        key, equals, _ = part.partition("=")
        if part in _IMAGE_OPTION_WORDS or _IMAGE_SIZE_RE.match(part) or (equals and key.strip() in _IMAGE_OPTION_KEYS):
            return True
    return False


def _is_dropped_link(link: Wikilink, prefixes: frozenset[str]) -> bool:
    title = str(link.title).strip()
    if _INTERLANGUAGE_RE.match(title.lower()):
        return True
    if ":" not in title or title.startswith(":"):
        return False  # [[:Category:X|text]] is a visible link
    if _namespace_key(title.split(":", 1)[0]) in prefixes:
        return True
    # a namespace the dump did not declare (a link copied from another wiki): judge by the link itself
    return bool(_MEDIA_FILE_RE.search(title)) or _has_image_options(link)


def _clean_code(code, prefixes: frozenset[str]) -> None:
    """Render or remove, in place and bottom-up, every node that is not prose (see the module docstring)."""
    kept = []
    for node in code.nodes:
        node = _clean_node(node, prefixes)
        if node is not None:
            kept.append(node)
    code.nodes = kept


def _clean_node(node, prefixes: frozenset[str]):
    """What replaces ``node``: itself (cleaned inside), a Text, or None (dropped)."""
    if isinstance(node, (Comment, Argument)):
        return None
    if isinstance(node, Template):
        _clean_code(node.name, prefixes)  # {{formatnum:{{inflation|...}}}}
        for param in node.params:
            _clean_code(param.value, prefixes)  # nested templates first: their text feeds this one
        text = render_template(node)
        return Text(text) if text else None
    if isinstance(node, Tag):
        name = str(node.tag).strip().lower()
        if name in _DROPPED_TAGS or node.wiki_markup == "{|":
            return None
        if name == "br":
            return Text(" ")
        if node.contents is not None:
            _clean_code(node.contents, prefixes)
        return node
    if isinstance(node, Wikilink):
        if _is_dropped_link(node, prefixes):
            return None
        if node.text is not None:
            _clean_code(node.text, prefixes)
        return node
    if isinstance(node, ExternalLink):
        if node.title is not None:
            _clean_code(node.title, prefixes)
        return node
    if isinstance(node, Heading):
        _clean_code(node.title, prefixes)
    return node


def quotes_to_text(line: str) -> str:
    """One line with its bold / italic quote runs removed and its apostrophes kept, as MediaWiki's
    ``Parser::doQuotes`` reads them: 4 quotes are an apostrophe and a bold run, more than 5 are apostrophes
    and a bold-italic run; when the italic and the bold runs are both odd in number, one bold run is an
    apostrophe and an italic run (the first after a one-letter word, else after a longer word, else after
    a space)."""
    parts = _QUOTE_RUN_RE.split(line)
    if len(parts) == 1:
        return line
    n_italic = n_bold = 0
    for i in range(1, len(parts), 2):
        run = len(parts[i])
        if run == 4:
            parts[i - 1] += "'"
            parts[i] = "'" * 3
        elif run > 5:
            parts[i - 1] += "'" * (run - 5)
            parts[i] = "'" * 5
        run = len(parts[i])
        n_italic += run in (2, 5)
        n_bold += run in (3, 5)
    if n_italic % 2 and n_bold % 2:
        single = multi = space = None
        for i in range(1, len(parts), 2):
            if len(parts[i]) != 3:
                continue
            before = parts[i - 1]
            if before[-1:] == " ":
                space = i if space is None else space
            elif before[-2:-1] == " ":
                single = i
                break
            elif multi is None:
                multi = i
        chosen = next((i for i in (single, multi, space) if i is not None), None)
        if chosen is not None:
            parts[chosen - 1] += "'"
            parts[chosen] = "''"
    return "".join(parts[0::2])


def clean_plain_text(text: str) -> str:
    """Tidy what ``strip_code`` leaves: entities, stray ref / HTML tags, quote runs, the separators and
    empty brackets a removed template leaves, runs of spaces, blank lines."""
    text = html.unescape(text)
    text = _LEFTOVER_REF_RE.sub("", text)
    text = _LEFTOVER_TAG_RE.sub(" ", text)
    text = _ZERO_WIDTH_RE.sub("", text)
    lines = []
    for line in text.split("\n"):
        line = _SPACES_RE.sub(" ", quotes_to_text(line))
        line = _OPEN_SEPARATORS_RE.sub("(", line)
        line = _CLOSE_SEPARATORS_RE.sub(")", line)
        line = _EMPTY_BRACKETS_RE.sub("", line)
        line = _SEPARATOR_RUN_RE.sub(lambda match: match.group(0)[-1], line)
        line = _SPACES_RE.sub(" ", line)
        line = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", line).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def parse_wikitext(wikitext: str):
    """``mwparserfromhell.parse`` as this module reads wikitext: indented tables (``::{|``) unindented so
    that they parse as tables, no style-tag parsing (quote runs are read by :func:`quotes_to_text`)."""
    return mwparserfromhell.parse(_INDENTED_TABLE_RE.sub("", wikitext), skip_style_tags=True)


def wikitext_to_sections(
    wikitext, drop_apparatus: bool = True, namespaces: dict[str, int] | None = None
) -> list[dict]:
    """Plain-text sections ``[{"title": str, "text": str}, ...]``, lead first (title ``""``).

    ``wikitext`` is a string or a ``Wikicode`` from :func:`parse_wikitext` (which is modified in place).
    ``namespaces``: the dump's ``{namespace name: number}`` (:func:`data_prep.dump.iter_dump_pages` gives
    it with every page); file and category links in those names are dropped.
    Every heading level starts a new (flat) section, so a level-3 subsection is its own entry.
    Empty sections are kept out; the lead is always present (possibly with empty text).
    """
    code = parse_wikitext(wikitext) if isinstance(wikitext, str) else wikitext
    prefixes = dropped_link_prefixes(namespaces)
    sections: list[dict] = []
    for i, section in enumerate(code.get_sections(flat=True, include_lead=True)):
        title = ""
        if section.nodes and isinstance(section.nodes[0], Heading):
            heading = section.nodes[0]
            _clean_code(heading.title, prefixes)
            title = clean_plain_text(heading.title.strip_code()).strip()
            section.nodes.pop(0)  # the heading (what section.remove(heading) finds, without the search)
        elif i > 0:
            continue
        if drop_apparatus and title.lower() in APPARATUS_SECTION_TITLES:
            continue
        _clean_code(section, prefixes)
        text = clean_plain_text(section.strip_code(normalize=True, collapse=True))
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
    code = parse_wikitext(wikitext) if isinstance(wikitext, str) else wikitext
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


def parse_article(
    title: str, wikitext: str, namespaces: dict[str, int] | None = None, with_reference_urls: bool = True
) -> dict:
    """One parse for both products: ``{"title", "sections", "reference_urls"}`` (the article record).

    ``namespaces``: the dump's namespace table, see :func:`wikitext_to_sections`. ``with_reference_urls``
    False skips the walk over the whole tree that finds them (``reference_urls`` is then None): the
    wiki-body source never reads them."""
    code = parse_wikitext(wikitext)
    urls = reference_urls(code) if with_reference_urls else None  # before the sections pass strips the refs
    sections = wikitext_to_sections(code, namespaces=namespaces)
    return {"title": title, "sections": sections, "reference_urls": urls}
