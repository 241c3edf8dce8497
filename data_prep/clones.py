"""Clone removal (Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences", Section 2.1).

Many web pages copy Wikipedia. The paper drops a reference or search-result document when its unigram
recall against some section of the article exceeds 0.5:
``recall(document, section) = |unigrams(section) & unigrams(document)| / |unigrams(section)|``
over distinct normalised tokens.

Deviation: a section with fewer than ``min_section_unigrams`` (default 10) distinct tokens is not used as
evidence: a three-word section would otherwise mark almost any long page as a clone. The paper does not
say how it handled short sections.
"""

from __future__ import annotations

from data_prep.paragraphs import normalize_text

CLONE_RECALL_THRESHOLD = 0.5
MIN_SECTION_UNIGRAMS = 10


def unigrams(text: str) -> set[str]:
    """Distinct normalised tokens that hold a letter or digit (punctuation is not evidence)."""
    return {token for token in normalize_text(text).split() if any(ch.isalnum() for ch in token)}


def unigram_recall(document_unigrams: set[str], section_unigrams: set[str]) -> float:
    """Fraction of the section's distinct unigrams that occur in the document."""
    if not section_unigrams:
        return 0.0
    return len(section_unigrams & document_unigrams) / len(section_unigrams)


def is_clone(
    document: str,
    section_texts: list[str],
    threshold: float = CLONE_RECALL_THRESHOLD,
    min_section_unigrams: int = MIN_SECTION_UNIGRAMS,
) -> bool:
    """True when the document's unigram recall against any (long enough) section exceeds ``threshold``."""
    doc = unigrams(document)
    for text in section_texts:
        section = unigrams(text)
        if len(section) >= min_section_unigrams and unigram_recall(doc, section) > threshold:
            return True
    return False
