"""A tiny WikiSum build made by the tests themselves: synthetic articles through the real data_prep pipeline."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("river castle museum garden engine harbour valley tower bridge market library forest island station "
         "theatre college village mountain temple canal").split()
PEOPLE = ("monks merchants farmers builders sailors artists students soldiers").split()


def _sentence(i: int, j: int) -> str:
    a, b = WORDS[(i + j) % len(WORDS)], WORDS[(i * 3 + j) % len(WORDS)]
    p = PEOPLE[(i + 2 * j) % len(PEOPLE)]
    return f"The {a} near the {b} was visited by the {p} in the year {1700 + 7 * i + j}."


def tiny_articles(n: int = 24) -> list[dict]:
    """``n`` articles with a lead and three sections (``{title, sections}`` rows for ``--articles``)."""
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i + 5) % len(WORDS)]
        lead = f"Topic {i} is a famous {a} close to the old {b}. " + " ".join(_sentence(i, j) for j in range(2))
        sections = [{"title": "", "text": lead}]
        for s, name in enumerate(("History", "Geography", "Culture")):
            body = " ".join(_sentence(i, 3 * s + j) for j in range(4))
            sections.append({"title": name, "text": f"The {a} of topic {i} is known for its {b}. {body}"})
        rows.append({"title": f"Topic {i}", "sections": sections})
    return rows


def build_tiny_wikisum(root: Path, n_articles: int = 24, rankers=("identity", "tfidf", "cheating")) -> Path:
    """Build a tiny dataset under ``root/tiny`` with data_prep (a few seconds); returns the build folder."""
    from data_prep.build import build_dataset

    root.mkdir(parents=True, exist_ok=True)
    articles = root / "articles.jsonl"
    articles.write_text("".join(json.dumps(r) + "\n" for r in tiny_articles(n_articles)))
    return build_dataset(out=str(root / "tiny"), articles=[str(articles)], rankers=tuple(rankers),
                         input_lengths=(64, 128), eval_lengths=(), vocab_size=300,
                         split_fractions=(0.6, 0.2, 0.2))
