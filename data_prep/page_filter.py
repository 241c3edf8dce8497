"""Which dump pages become articles: namespace 0 only; redirects, disambiguation pages, empty and
enormous pages are skipped with a named reason (counted in the data card).

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") used the English Wikipedia
articles; t2t's extraction kept namespace-0, non-redirect pages. Disambiguation pages are lists of
links with no summary to learn, so they are skipped too (detected by their maintenance templates or a
"(disambiguation)" title).
"""

from __future__ import annotations

import re

ARTICLE_NAMESPACE = 0
# A generous bound: the longest English articles are well under 1.5 M characters of wikitext.
DEFAULT_MAX_WIKITEXT_CHARS = 3_000_000

_REDIRECT_RE = re.compile(r"^\s*#\s*redirect", re.IGNORECASE)
_DISAMBIGUATION_TEMPLATES = (
    "disambiguation",
    "disambig",
    "disamb",
    "dab",
    "dbig",
    "hndis",
    "geodis",
    "numberdis",
    "letter-numbercombdisambig",
    "hospital disambiguation",
    "school disambiguation",
    "mountainindex",
    "shipindex",
    "roaddis",
    "mathdab",
)
_DISAMBIGUATION_RE = re.compile(
    r"\{\{\s*(?:" + "|".join(re.escape(name) for name in _DISAMBIGUATION_TEMPLATES) + r")\s*(?:\||\}\})",
    re.IGNORECASE,
)


def is_redirect(page: dict) -> bool:
    """A ``<redirect>`` element (schema >= 0.4) or ``#REDIRECT`` wikitext (any schema)."""
    return bool(page.get("redirect")) or bool(_REDIRECT_RE.match(page.get("wikitext") or ""))


def is_disambiguation(page: dict) -> bool:
    """A disambiguation (or name-list) maintenance template, or a "(disambiguation)" title."""
    if page.get("title", "").endswith("(disambiguation)"):
        return True
    return bool(_DISAMBIGUATION_RE.search(page.get("wikitext") or ""))


def page_skip_reason(page: dict, max_wikitext_chars: int = DEFAULT_MAX_WIKITEXT_CHARS) -> str | None:
    """The reason to skip a dump page, or None for an article to process."""
    if page.get("namespace", 0) != ARTICLE_NAMESPACE:
        return "not_namespace_0"
    if is_redirect(page):
        return "redirect"
    text = page.get("wikitext") or ""
    if not text.strip():
        return "empty_page"
    if len(text) > max_wikitext_chars:
        return "page_too_long"
    if is_disambiguation(page):
        return "disambiguation"
    return None
