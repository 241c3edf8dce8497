"""The data card written beside every build (both engines, :func:`data_card`): counts, skip reasons, length
histograms, coverage, leftover markup (:mod:`data_prep.markup_check`), the command that reproduces it.

t2t's WikiSum wrote per-shard ``stats.json`` (wikis skipped for no references / a short lead, references
found); users complained that missing shards silently shrank evaluation. This card states every count,
so an empty or shrunken dataset cannot pass unnoticed. No timestamps: rebuilding gives identical bytes.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from data_prep.cli import build_command
from data_prep.config import TOKENIZER_FILE, BuildConfig
from data_prep.markup_check import markup_markdown, markup_table
from data_prep.splits import SPLIT_NAMES

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


# the data card's length histograms: card name -> row column
CARD_HISTOGRAMS = {
    "target words": "n_target_words",
    "target tokens": "n_target_tokens",
    "source words (all kept paragraphs)": "n_source_words",
    "paragraphs": "n_paragraphs",
}


def add_length_counts(length_counts: dict[str, collections.Counter], row: dict) -> None:
    """Count one row's lengths into ``{card histogram name: Counter(length -> rows)}``."""
    for name, column in CARD_HISTOGRAMS.items():
        length_counts.setdefault(name, collections.Counter())[row[column]] += 1


def _prefixed(counters: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}


def data_card(
    config: BuildConfig, counters: dict, length_counts: dict, tokenizer_info: dict, runner: str | None = None
) -> dict:
    """The data card of a build (both engines): counts, skip reasons, coverage, histograms, tokenizer.

    ``counters`` holds the build's counts under the Beam metric names: ``records_read``, ``examples``,
    ``split_<split>``, ``skip_<reason>``, ``n_cited_urls``, ``n_found_documents``, ``n_clones_removed``,
    ``n_paragraphs_kept``, ``n_paragraphs_dropped``, ``articles_with_any_document``, ``store_urls``,
    ``store_skip_<reason>``, the leftover-markup counters of :mod:`data_prep.markup_check`.
    ``length_counts``: see :func:`add_length_counts`. ``tokenizer_info``: ``vocab_size``, the special ids and
    ``trained_on``. ``runner``: the Beam runner (named in the description and the command), None for this
    single-machine build; the Beam build adds its own counts (:func:`data_prep.beam.running.beam_card`).
    """
    beam = runner is not None
    skip_reasons = _prefixed(counters, "skip_")
    cited, found = counters.get("n_cited_urls", 0), counters.get("n_found_documents", 0)
    return {
        "name": Path(str(config.out)).name,
        "description": _card_description(config, beam),
        "command": build_command(config, runner),
        "inputs": [Path(p).name for p in (config.dumps or config.articles)] or ["embedded enwiki excerpt"],
        "split_counts": {split: counters.get(f"split_{split}", 0) for split in SPLIT_NAMES},
        "counts": {
            "records_read": counters.get("records_read", 0),
            "examples": counters.get("examples", 0),
            "skipped": sum(skip_reasons.values()),
            "paragraphs_kept": counters.get("n_paragraphs_kept", 0),
            "paragraphs_dropped_by_filter": counters.get("n_paragraphs_dropped", 0),
            "documents_removed_as_clones": counters.get("n_clones_removed", 0),
        },
        "skip_reasons": skip_reasons,
        "coverage": {
            "source": config.source,
            "cited_or_searched_urls": cited,
            "documents_found": found,
            "url_coverage": round(found / cited, 4) if cited else None,
            "articles_with_any_document": counters.get("articles_with_any_document", 0),
            "reference_store_documents": counters.get("store_urls", 0),
        },
        "reference_store_skipped": _prefixed(counters, "store_skip_"),
        "histograms": {
            name: length_histogram(
                [length for length, n in sorted(length_counts.get(name, {}).items()) for _ in range(n)]
            )
            for name in CARD_HISTOGRAMS
        },
        "tokenizer": {"file": TOKENIZER_FILE, **tokenizer_info},
        "input_lengths": list(config.input_lengths),
        "leftover_markup": markup_table(counters),
    }


def _card_description(config: BuildConfig, beam: bool) -> str:
    return (
        "WikiSum-style dataset (Liu et al. 2018)"
        + (", built with Apache Beam" if beam else "")
        + ": target = "
        + ("the lead section" if config.target_mode == "lead" else "the whole article")
        + f"; source = {config.source}"
        + (
            " (STAND-IN: the article's own non-lead sections, not its cited references)"
            if config.source == "wiki-body"
            else ""
        )
        + "."
        + (" Counts are Beam metrics (namespace 'wikisum')." if beam else "")
    )


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
