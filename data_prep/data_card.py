"""The data card written beside every build: counts, skip reasons, length histograms, coverage, leftover
markup (:mod:`data_prep.markup_check`).

t2t's WikiSum wrote per-shard ``stats.json`` (wikis skipped for no references / a short lead, references
found); users complained that missing shards silently shrank evaluation. This card states every count,
so an empty or shrunken dataset cannot pass unnoticed. No timestamps: rebuilding gives identical bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_prep.markup_check import markup_markdown

HISTOGRAM_EDGES = (0, 25, 50, 100, 200, 500, 1000, 2000, 5000, 11000, 50000, 10**9)


def length_histogram(lengths: list[int]) -> dict:
    """Counts per fixed bin ``[lo, hi)`` plus min / median / max."""
    counts, _ = np.histogram(np.asarray(lengths, dtype=np.int64), bins=np.asarray(HISTOGRAM_EDGES))
    bins = {f"[{lo}, {hi})": int(c) for lo, hi, c in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], counts)}
    summary = (
        {"min": int(min(lengths)), "median": float(np.median(lengths)), "max": int(max(lengths))}
        if lengths
        else {"min": 0, "median": 0.0, "max": 0}
    )
    return {"bins": bins, **summary}


def card_markdown(card: dict) -> str:
    lines = [
        f"# Data card: {card['name']}",
        "",
        card["description"],
        "",
        "## Build",
        "",
        "```",
        card["command"],
        "```",
        "",
        "## Counts",
        "",
        "| split | examples |",
        "|---|---|",
    ]
    lines += [f"| {split} | {n} |" for split, n in card["split_counts"].items()]
    lines += ["", "| stage | count |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in card["counts"].items()]
    lines += ["", "## Skipped (reason: count)", "", "| reason | count |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in card["skip_reasons"].items()] or ["| (none) | 0 |"]
    lines += ["", "## Coverage of the sources", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in card["coverage"].items()]
    if card.get("reference_store_skipped"):
        lines += ["", "Reference store records skipped: " + json.dumps(card["reference_store_skipped"])]
    lines += ["", "## Length histograms (words / tokens per example)", ""]
    for name, hist in card["histograms"].items():
        lines += [
            f"### {name}",
            "",
            f"min {hist['min']}, median {hist['median']}, max {hist['max']}",
            "",
            "| bin | examples |",
            "|---|---|",
        ]
        lines += [f"| {b} | {c} |" for b, c in hist["bins"].items() if c]
        lines.append("")
    if "leftover_markup" in card:
        lines += [
            "## Leftover markup (occurrences in targets and in the first ranker's inputs; 0 = clean)",
            "",
            *markup_markdown(card["leftover_markup"]),
            "",
        ]
    lines += ["## Tokenizer", "", json.dumps(card["tokenizer"], sort_keys=True), ""]
    return "\n".join(lines)


def write_card(card: dict, out_dir: Path) -> None:
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out_dir / "data_card.md").write_text(card_markdown(card))
