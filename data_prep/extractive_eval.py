"""Extractive-only evaluation (Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences",
Figure 2): ROUGE-L F1 of each ranker's first L words against the lead, with Google's ``rouge-score``.

The "summary" of a ranker is the first L words of its ranked paragraphs (the title and separator are
not part of it). Scores are averaged over examples and reported x100 as in the paper. Stemming is on
(``use_stemmer=True``, the common setting for summarisation ROUGE); the paper does not state it.
Deviation: computed over every example of the build (no ranker is trained, so there is no leakage),
not over the test split only, to have enough articles on the small sample.
"""

from __future__ import annotations

import json
from pathlib import Path

from rouge_score import rouge_scorer

from data_prep.example import SEPARATOR

DEFAULT_EVAL_LENGTHS = (100, 500)
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def first_words_of_input(ranked_input: str, length: int) -> str:
    """The first ``length`` paragraph words of a stored ranked input (title and separator removed)."""
    _, _, body = ranked_input.partition(f" {SEPARATOR} ")
    return " ".join(body.split()[:length])


def example_rouge_l(example: dict, rankers: tuple[str, ...], lengths: tuple[int, ...]) -> dict[str, float]:
    """``{"<ranker>@<L>": ROUGE-L F1}`` for one example (pure; runs in worker processes)."""
    scores = {}
    for name in rankers:
        for length in lengths:
            summary = first_words_of_input(example[f"input_{name}"], length)
            scores[f"{name}@{length}"] = _SCORER.score(example["target"], summary)["rougeL"].fmeasure
    return scores


def rouge_table(per_example: list[dict[str, float]], rankers, lengths) -> dict:
    """Mean ROUGE-L F1 x100 by ranker and L: ``{"rankers", "lengths", "n_examples", "rouge_l"}``."""
    table = {name: {} for name in rankers}
    for name in rankers:
        for length in lengths:
            values = [scores[f"{name}@{length}"] for scores in per_example]
            table[name][str(length)] = round(100 * sum(values) / max(len(values), 1), 2)
    return {
        "rankers": list(rankers),
        "lengths": list(lengths),
        "n_examples": len(per_example),
        "rouge_l": table,
    }


def table_markdown(result: dict) -> str:
    header = "| ranker | " + " | ".join(f"ROUGE-L F1 @ L={length}" for length in result["lengths"]) + " |"
    rule = "|---|" + "---|" * len(result["lengths"])
    rows = [
        f"| {name} | "
        + " | ".join(f"{result['rouge_l'][name][str(length)]:.2f}" for length in result["lengths"])
        + " |"
        for name in result["rankers"]
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def write_results(result: dict, out_dir: Path, title: str = "Extractive ROUGE-L F1 by ranker") -> None:
    """``extractive_rouge.json``, ``extractive_rouge.md`` and the bar plot ``extractive_rouge.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "extractive_rouge.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (out_dir / "extractive_rouge.md").write_text(
        f"# {title}\n\n{result['n_examples']} examples; first L words of each ranker's input vs the lead.\n\n"
        + table_markdown(result)
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(result["lengths"]), 1)
    for k, length in enumerate(result["lengths"]):
        xs = [i + k * width for i in range(len(result["rankers"]))]
        ax.bar(
            xs,
            [result["rouge_l"][name][str(length)] for name in result["rankers"]],
            width,
            label=f"L={length}",
        )
    ax.set_xticks([i + width * (len(result["lengths"]) - 1) / 2 for i in range(len(result["rankers"]))])
    ax.set_xticklabels(result["rankers"])
    ax.set_ylabel("ROUGE-L F1 (x100)")
    ax.set_title(f"{title} (n={result['n_examples']})")
    ax.legend()
    fig.tight_layout()
    # fixed metadata: the PNG bytes do not depend on the date or the matplotlib version string
    fig.savefig(out_dir / "extractive_rouge.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
