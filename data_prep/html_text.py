"""HTML reference pages to plain text, one block-level element per line.

Liu et al. 2018 reduced HTML to text by block-level tags (t2t `wikisum/html.py`); this module uses the
well-kept trafilatura extractor (main-content extraction, boilerplate such as menus and footers removed),
falling back to trafilatura's whole-page text conversion when main-content extraction finds nothing.
Deviation: trafilatura's boilerplate removal is stronger than t2t's tag-based reduction, so fewer
navigation paragraphs reach the paragraph filter.
"""

from __future__ import annotations

import re

import trafilatura

_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


def decode_html_bytes(payload: bytes, declared_charset: str | None = None) -> str | None:
    """Decode page bytes strictly: the HTTP-declared charset, else a ``<meta charset>``, else UTF-8.

    Returns None when the bytes are not valid in that encoding (the caller counts and logs a skip)
    instead of guessing and feeding mojibake to the model.
    """
    charset = declared_charset
    if not charset:
        match = _META_CHARSET_RE.search(payload[:4096])
        charset = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return payload.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None


def html_to_text(html: str) -> str:
    """Main text of an HTML page, paragraphs separated by newlines ("" when nothing is found)."""
    text = trafilatura.extract(
        html, include_comments=False, include_tables=False, favor_recall=True, deduplicate=False
    )
    if not text:
        text = trafilatura.html2txt(html) or ""
    return text
