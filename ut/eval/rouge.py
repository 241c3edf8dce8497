"""ROUGE for WikiSum (Liu et al. 2018) with Google's `rouge-score`, plus output-diversity checks.

- ROUGE-1/2/L: `rouge_score.rouge_scorer` on the raw strings.
- ROUGE-Lsum: summary-level LCS over sentences; rouge-score splits sentences on newlines only, so each text is
  sentence-split first (`split_sentences`) and re-joined with "\\n" (what the scorer expects; without it
  Lsum silently equals ROUGE-L).
- `distinct_output_share`: distinct outputs / outputs; `repeated_sentence_share`: share of output sentences
  repeating an earlier sentence of the same output. Published WikiSum models degenerate into repeating one
  sentence or emitting the same summary for every article, and ROUGE alone hides it; report these beside it.

Scores are F-measures in [0, 1] averaged over examples (`rouge_scores` also returns precision / recall).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENT_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by whitespace, and on newlines; empty pieces dropped."""
    return [s.strip() for s in _SENT_END.split(text) if s and s.strip()]


def lsum_format(text: str) -> str:
    """One sentence per line, the input ROUGE-Lsum expects."""
    return "\n".join(split_sentences(text))


def rouge_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    rouge_types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = True,
) -> dict[str, float]:
    """Mean ROUGE over pairs: keys `<type>` (F-measure), `<type>_p`, `<type>_r`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} references")
    if not predictions:
        raise ValueError("rouge_scores: no predictions")
    unknown = set(rouge_types) - set(ROUGE_TYPES)
    if unknown:
        raise ValueError(f"unknown ROUGE types {sorted(unknown)}; choose from {ROUGE_TYPES}")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
    totals = {f"{t}{s}": 0.0 for t in rouge_types for s in ("", "_p", "_r")}
    for pred, ref in zip(predictions, references):
        if "rougeLsum" in rouge_types:
            pred, ref = lsum_format(pred), lsum_format(ref)  # newlines do not change the other types
        for t, score in scorer.score(ref, pred).items():  # score(target, prediction)
            totals[t] += score.fmeasure
            totals[f"{t}_p"] += score.precision
            totals[f"{t}_r"] += score.recall
    return {k: v / len(predictions) for k, v in totals.items()}


def distinct_output_share(predictions: Sequence[str]) -> float:
    """Distinct outputs / outputs (whitespace-normalised); 1.0 = all different, 1/n = one output for all."""
    if not predictions:
        raise ValueError("distinct_output_share: no predictions")
    return len({" ".join(p.split()) for p in predictions}) / len(predictions)


def repeated_sentence_share(predictions: Sequence[str]) -> float:
    """Share of sentences (over all outputs) that repeat an earlier sentence of the same output."""
    repeated = total = 0
    for p in predictions:
        seen: set[str] = set()
        for s in split_sentences(p):
            key = " ".join(s.lower().split())
            repeated += key in seen
            seen.add(key)
            total += 1
    return repeated / total if total else 0.0
