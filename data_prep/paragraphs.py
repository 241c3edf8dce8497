"""Paragraphs: split a document, normalise the text, filter obviously bad paragraphs.

This follows the WikiSum pipeline of Liu et al. 2018, "Generating Wikipedia by Summarizing Long
Sequences" (ICLR), as released in tensor2tensor (`data_generators/wikisum/utils.py::filter_paragraph`
and `wikisum.py::_normalize_text`):

1. split: each source document is split on newlines (HTML has already been reduced to text with one
   block-level element per line, see :mod:`data_prep.html_text`);
2. normalise: lowercase, a space on both sides of every ASCII punctuation character, whitespace collapsed;
3. filter: drop a paragraph with fewer than 6 tokens, with no letter, or with no "sentence" (a "." token
   more than 3 tokens after the previous "." with at least 3 purely alphabetic tokens in between).

Deviation: none in the rules. t2t's letter test uses ``[A-Za-z]``; so does this module, which means a
paragraph written only in a non-Latin script is dropped exactly as in t2t.
"""

from __future__ import annotations

import re
import string

MIN_PARAGRAPH_TOKENS = 6
_SOME_ALPHA_RE = re.compile(r"[A-Za-z]")
# t2t's regex substitution of every punctuation character c by " c ", as one str.translate table
_SPACED_PUNCTUATION = str.maketrans({c: f" {c} " for c in string.punctuation})


def normalize_text(text: str) -> str:
    """Lowercase, spaces around every punctuation character, whitespace collapsed (t2t `_normalize_text`).

    The whitespace of t2t's ``\\s+`` (Python's Unicode ``\\s``) is exactly what :meth:`str.split` splits on
    (``str.isspace``), so collapsing is ``" ".join(text.split())``."""
    return " ".join(text.lower().translate(_SPACED_PUNCTUATION).split())


def is_good_paragraph(paragraph: str) -> bool:
    """True when t2t's `filter_paragraph` would KEEP this (already normalised) paragraph.

    Rules, in t2t's order: at least 6 whitespace tokens; at least one ASCII letter; at least one
    "sentence": a "." token more than 3 tokens after the previous "." with >= 3 purely alphabetic
    tokens since that previous ".".
    """
    tokens = paragraph.split()
    if len(tokens) < MIN_PARAGRAPH_TOKENS:
        return False
    if not _SOME_ALPHA_RE.search(paragraph):
        return False
    last_period = 0
    num_alpha = 0
    for i, token in enumerate(tokens):
        if token == ".":
            if i - last_period > 3 and num_alpha >= 3:
                return True
            last_period = i
            num_alpha = 0
        if token.isascii() and token.isalpha():  # t2t's ^[A-Za-z]*$ on a (non-empty) token
            num_alpha += 1
    return False


def document_paragraphs(document: str) -> tuple[list[str], int]:
    """Split a document on newlines, normalise each line and keep the good ones.

    Returns ``(kept_paragraphs, n_dropped)``; blank lines are neither kept nor counted as dropped.
    """
    kept: list[str] = []
    dropped = 0
    for line in document.split("\n"):
        paragraph = normalize_text(line)
        if not paragraph:
            continue
        if is_good_paragraph(paragraph):
            kept.append(paragraph)
        else:
            dropped += 1
    return kept, dropped
