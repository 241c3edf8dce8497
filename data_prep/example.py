"""The per-article stage: an article record and its source documents in, one example record out.

Pure (no I/O, no global state), so the single-machine build and the Beam build (:mod:`data_prep.beam.joins`) share it.
Steps, after Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") and t2t's
``wikisum.py::produce_examples``:

1. target: the lead section, normalised; ``target_mode="article"`` gives the whole article with t2t's
   section boundaries `` == title == ``; an empty lead skips the article (``empty_lead``);
2. clone removal for web sources (:mod:`data_prep.clones`);
3. paragraphs: split, normalise, filter (:mod:`data_prep.paragraphs`); no paragraph left skips the article
   (``no_source_text``; t2t skipped articles without references the same way);
4. minimum source: fewer than ``min_source_words`` words of kept paragraphs (``source_too_short``), or
   fewer than ``min_source_target_ratio`` times the target's words (``source_shorter_than_target``)
   skips the article: no model can write a 200-word lead from 19 words of source. Deviation: t2t had
   no such filter (its inputs were web pages, rarely shorter than the lead); the wiki-body stand-in and
   sparse reference stores produce such examples. An empty title skips the article (``empty_title``);
5. every selected ranker orders the paragraphs; input text = normalised title + `` <sep> `` + ranked
   paragraphs joined by spaces, cut at ``max_input_words`` words (a bound on storage: the token-level
   truncation to each L happens after tokenisation, and subword tokens are never fewer than words).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_prep.clones import is_clone
from data_prep.paragraphs import document_paragraphs, normalize_text
from data_prep.rankers import get_ranker

SEPARATOR = "<sep>"
DEFAULT_RANKERS = ("identity", "tfidf", "textrank", "sumbasic", "cheating")


@dataclass(frozen=True)
class ExampleConfig:
    """How one article becomes an example."""

    rankers: tuple[str, ...] = DEFAULT_RANKERS  # extractors whose ranked inputs are stored (one column each)
    max_input_words: int = 11_000  # words of ranked input kept as text (the paper's largest L is 11,000)
    target_mode: str = "lead"  # "lead" (the paper's target) or "article" (all sections, t2t boundaries)
    remove_clones: bool = True  # paper's clone filter; applied to the web sources only
    min_lead_words: int = 1  # leads shorter than this are skipped as "empty_lead"
    min_source_words: int = 30  # fewer words of kept source paragraphs: skipped as "source_too_short"
    # source words below this times the target words: skipped as "source_shorter_than_target"
    min_source_target_ratio: float = 1.0
    source_is_article: bool = field(
        default=False
    )  # True for wiki-body: no clone removal (documents ARE the article)

    def __post_init__(self):
        for name in self.rankers:
            get_ranker(name)
        if self.target_mode not in ("lead", "article"):
            raise ValueError(f"target_mode must be 'lead' or 'article', not {self.target_mode!r}")
        if self.max_input_words < 1:
            raise ValueError("max_input_words must be positive")
        if self.min_source_words < 0:
            raise ValueError(f"min_source_words must be >= 0, not {self.min_source_words}")
        if not self.min_source_target_ratio >= 0:
            raise ValueError(f"min_source_target_ratio must be >= 0, not {self.min_source_target_ratio}")


def article_target(article: dict, target_mode: str = "lead") -> str:
    """Normalised lead, or the whole article with `` == section title == `` boundaries (t2t's format)."""
    sections = article["sections"]
    target = normalize_text(sections[0]["text"])
    if target_mode == "article":
        for section in sections[1:]:
            target += f" == {normalize_text(section['title'])} == {normalize_text(section['text'])}"
    return target.strip()


def ranked_input(
    title: str, paragraphs: list[str], order: list[int], max_words: int, word_counts: list[int] | None = None
) -> str:
    """``title <sep> p_order[0] p_order[1] ...`` cut at ``max_words`` words of paragraph text.

    ``word_counts``: ``len(p.split())`` of each paragraph, for paragraphs that are normalised
    (:func:`normalize_text`: words separated by one space, none at the ends, none empty); whole
    paragraphs are then joined as they are and only the one holding the cut is split (the same text)."""
    if word_counts is None:
        words: list[str] = []
        for index in order:
            words.extend(paragraphs[index].split())
            if len(words) >= max_words:
                break
        return f"{title} {SEPARATOR} {' '.join(words[:max_words])}"
    parts: list[str] = []
    n_words = 0
    for index in order:
        if n_words + word_counts[index] >= max_words:
            parts.append(" ".join(paragraphs[index].split()[: max_words - n_words]))
            break
        parts.append(paragraphs[index])
        n_words += word_counts[index]
    return f"{title} {SEPARATOR} {' '.join(parts)}"


def make_example(
    article: dict, documents: list[dict], source_counts: dict, config: ExampleConfig
) -> tuple[dict | None, str | None, dict]:
    """Build one example. Returns ``(example or None, skip reason or None, counts)``."""
    counts = dict(source_counts)
    counts.update(n_clones_removed=0, n_paragraphs_kept=0, n_paragraphs_dropped=0)
    title = normalize_text(article["title"])
    if not title:
        return None, "empty_title", counts
    lead = normalize_text(article["sections"][0]["text"])
    if len(lead.split()) < config.min_lead_words:
        return None, "empty_lead", counts
    if config.remove_clones and not config.source_is_article:
        section_texts = [s["text"] for s in article["sections"]]
        kept = [d for d in documents if not is_clone(d["text"], section_texts)]
        counts["n_clones_removed"] = len(documents) - len(kept)
        documents = kept
    paragraphs: list[str] = []
    for document in documents:
        kept_paragraphs, dropped = document_paragraphs(document["text"])
        paragraphs.extend(kept_paragraphs)
        counts["n_paragraphs_dropped"] += dropped
    counts["n_paragraphs_kept"] = len(paragraphs)
    if not paragraphs:
        return None, "no_source_text", counts
    target = article_target(article, config.target_mode)
    word_counts = [len(p.split()) for p in paragraphs]
    n_source_words = sum(word_counts)
    if n_source_words < config.min_source_words:
        return None, "source_too_short", counts
    if n_source_words < config.min_source_target_ratio * len(target.split()):
        return None, "source_shorter_than_target", counts
    example = {"title": article["title"], "target": target}
    for name in config.rankers:
        order = get_ranker(name)(title, paragraphs, lead)
        example[f"input_{name}"] = ranked_input(title, paragraphs, order, config.max_input_words, word_counts)
    example.update(
        {
            "n_target_words": len(example["target"].split()),
            "n_source_words": n_source_words,
            "n_paragraphs": len(paragraphs),
            "n_documents": len(documents),
            "n_cited_urls": counts.get("n_cited_urls", 0),
            "n_found_documents": counts.get("n_found_documents", 0),
            "n_clones_removed": counts["n_clones_removed"],
        }
    )
    return example, None, counts
