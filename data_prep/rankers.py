"""Extractive stage: rank an article's paragraphs before truncation to L tokens.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences", Section 2.2 and Figure 2) compare
five extractors. Each ranker here is a pure function
``rank(title, paragraphs, lead) -> list[int]`` returning paragraph indices, best first; ``title`` and
``paragraphs`` are already normalised (:func:`data_prep.paragraphs.normalize_text`), tokens are whitespace
tokens. Ties keep the original order (stable sort), so every ranker is deterministic.

- ``identity``: the original order.
- ``tfidf``: the paper's formula as in t2t (``wikisum.py::_rank_reference_paragraphs``):
  ``score(p) = sum_{w in title} tf(w, p) * log(N / max(df(w), 1))`` with N the number of this article's
  paragraphs, df the number of them containing w, title tokens those holding ``[a-z0-9]``.
  Deviation: t2t counted tokens of its subword tokenizer; here whitespace tokens of the normalised text.
- ``textrank``: Mihalcea & Tarau (2004): PageRank (damping 0.85) over the paragraph graph weighted by
  ``|overlap(i, j)| / (log|i| + log|j|)``. Deviation: only the first ``MAX_GRAPH_PARAGRAPHS`` paragraphs
  enter the O(N^2) graph; the rest follow in original order.
- ``sumbasic``: Nenkova & Vanderwende (2005): repeatedly take the paragraph with the highest mean word
  probability, then square the probabilities of its words. Words are the alphanumeric tokens (punctuation
  ignored); the same cap as textrank applies.
- ``cheating``: tf-idf against the ground-truth lead instead of the title (an oracle upper bound).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

import numpy as np

MAX_GRAPH_PARAGRAPHS = 1000
TEXTRANK_DAMPING = 0.85
_SCORED_TOKEN_RE = re.compile("[a-z0-9]")

Ranker = Callable[[str, list[str], str], list[int]]


def _query_tokens(text: str) -> list[str]:
    """Distinct scored tokens, SORTED: summing floats in set order would vary with PYTHONHASHSEED."""
    return sorted({token for token in text.split() if _SCORED_TOKEN_RE.search(token)})


def tfidf_scores(query: str, paragraphs: list[str]) -> list[float]:
    """t2t's tf-idf score of each paragraph against the distinct tokens of ``query``.

    Each paragraph's sum runs over the query tokens it holds, in sorted order: the tokens it lacks add
    0.0, which leaves a float sum unchanged, so this is the sum over all query tokens."""
    wanted = set(_query_tokens(query))
    counts, held = [], []
    for paragraph in paragraphs:
        tokens = paragraph.split()
        present = sorted(wanted.intersection(tokens))
        # a few query tokens (a title): count them in the list; many (a lead): count the whole paragraph
        counts.append({w: tokens.count(w) for w in present} if len(present) <= 4 else Counter(tokens))
        held.append(present)
    doc_freq = Counter(token for tokens in held for token in tokens)
    n = len(paragraphs)
    idf = {w: math.log(n / max(df, 1)) for w, df in doc_freq.items()}
    return [sum((c[w] * idf[w] for w in tokens), 0.0) for c, tokens in zip(counts, held, strict=True)]


def _order_by_score(scores) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def rank_identity(title: str, paragraphs: list[str], lead: str = "") -> list[int]:
    return list(range(len(paragraphs)))


def rank_tfidf(title: str, paragraphs: list[str], lead: str = "") -> list[int]:
    return _order_by_score(tfidf_scores(title, paragraphs))


def rank_cheating(title: str, paragraphs: list[str], lead: str = "") -> list[int]:
    return _order_by_score(tfidf_scores(lead, paragraphs))


def _capped(paragraphs: list[str], rank_head: Callable[[list[str]], list[int]]) -> list[int]:
    head = paragraphs[:MAX_GRAPH_PARAGRAPHS]
    return rank_head(head) + list(range(len(head), len(paragraphs)))


def textrank_scores(paragraphs: list[str], iterations: int = 100, tolerance: float = 1e-10) -> np.ndarray:
    """PageRank scores of the paragraph similarity graph (Mihalcea & Tarau 2004).

    ``w(i, j) = |tokens_i & tokens_j| / (log|tokens_i| + log|tokens_j|)`` over distinct tokens, no self-loops.
    """
    n = len(paragraphs)
    token_sets = [set(p.split()) for p in paragraphs]
    shared = [w for w, c in sorted(Counter(w for s in token_sets for w in s).items()) if c > 1]
    column = {w: k for k, w in enumerate(shared)}
    incidence = np.zeros((n, len(shared)), dtype=np.float32)  # (N, V) distinct-token indicator
    for i, tokens in enumerate(token_sets):
        incidence[i, [column[w] for w in tokens if w in column]] = 1.0
    overlap = (incidence @ incidence.T).astype(np.float64)  # (N, N)
    log_size = np.log(np.maximum([len(s) for s in token_sets], 1))
    denominator = log_size[:, None] + log_size[None, :]
    weights = np.where(denominator > 0, overlap / np.where(denominator > 0, denominator, 1), 0.0)
    np.fill_diagonal(weights, 0.0)
    out_weight = weights.sum(axis=1, keepdims=True)
    # a paragraph with no edge spreads its vote uniformly (the standard dangling-node treatment)
    transition = np.where(out_weight > 0, weights / np.where(out_weight > 0, out_weight, 1), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - TEXTRANK_DAMPING) / n + TEXTRANK_DAMPING * transition.T @ scores
        converged = np.abs(updated - scores).sum() < tolerance
        scores = updated
        if converged:
            break
    return scores


def rank_textrank(title: str, paragraphs: list[str], lead: str = "") -> list[int]:
    if not paragraphs:
        return []
    return _capped(paragraphs, lambda head: _order_by_score(np.round(textrank_scores(head), 12).tolist()))


def sumbasic_order(paragraphs: list[str]) -> list[int]:
    """SumBasic selection order (Nenkova & Vanderwende 2005) over all paragraphs.

    ``p(w)`` starts as w's share of all word tokens; each step takes the paragraph with the highest mean
    ``p`` over its tokens (the lowest index on ties), then squares ``p`` of the words it holds.
    """
    words = [[t for t in p.split() if _SCORED_TOKEN_RE.search(t)] for p in paragraphs]
    vocabulary = {w: k for k, w in enumerate(sorted({w for ws in words for w in ws}))}
    if not vocabulary:
        return list(range(len(paragraphs)))
    token_ids = np.array([vocabulary[w] for ws in words for w in ws])  # (T,) all tokens, flat
    owner = np.repeat(np.arange(len(words)), [len(ws) for ws in words])  # (T,) paragraph of each token
    lengths = np.array([max(len(ws), 1) for ws in words], dtype=np.float64)
    probability = np.bincount(token_ids, minlength=len(vocabulary)) / len(token_ids)
    starts = np.concatenate([[0], np.cumsum([len(ws) for ws in words])])  # paragraph j: tokens starts[j]:starts[j+1]
    held_words = [np.unique(token_ids[starts[j] : starts[j + 1]]) for j in range(len(words))]
    available = np.ones(len(words), dtype=bool)
    order: list[int] = []
    for _ in range(len(words)):
        mean_probability = np.bincount(owner, weights=probability[token_ids], minlength=len(words)) / lengths
        mean_probability[~available] = -1.0
        best = int(np.argmax(mean_probability))  # argmax returns the first maximum: stable on ties
        order.append(best)
        available[best] = False
        held = held_words[best]
        probability[held] = probability[held] ** 2
    return order


def rank_sumbasic(title: str, paragraphs: list[str], lead: str = "") -> list[int]:
    return _capped(paragraphs, sumbasic_order)


RANKERS: dict[str, Ranker] = {
    "identity": rank_identity,
    "tfidf": rank_tfidf,
    "textrank": rank_textrank,
    "sumbasic": rank_sumbasic,
    "cheating": rank_cheating,
}


def get_ranker(name: str) -> Ranker:
    if name not in RANKERS:
        raise ValueError(f"unknown ranker {name!r}; choose from {sorted(RANKERS)}")
    return RANKERS[name]
