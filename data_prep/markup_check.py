"""Leftover wikitext markup in built targets and inputs: a check that the wikitext-to-text stage is clean.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") train on plain text; markup that
survives the conversion (:mod:`data_prep.wikitext`) is noise the model learns to copy. Each pattern of
:data:`LEFTOVER_PATTERNS` is counted over the text as stored (lower-cased, a space around every
punctuation character, see :func:`data_prep.paragraphs.normalize_text`), so the patterns allow spaces
inside the markup (``{ {``); entities are the named HTML 4 ones and numeric ones (``& nbsp ;``,
``& # 160 ;``), so that prose such as ``books i & ii ;`` is not counted. Fields: ``target``, and ``input``
= the stored input of the build's first ranker (every ranker stores the same paragraphs, reordered).

Both builds sum the per-example counters of the examples they keep (Beam: metrics of the ``wikisum``
namespace); the data card records the table and ``python -m data_prep stats`` prints it. The ``|``
pattern also counts the rare pipe of real prose (``\\ |`` in an article about ASCII): a clean build is near
zero, not always zero.
"""

from __future__ import annotations

import html.entities
import re

_ENTITY_NAMES = "|".join(sorted(html.entities.name2codepoint, key=len, reverse=True))
# counter key -> (the pattern as shown in the card, regex over normalised text)
LEFTOVER_PATTERNS: dict[str, tuple[str, re.Pattern]] = {
    "template_open": ("{{", re.compile(r"\{\s*\{")),
    "template_close": ("}}", re.compile(r"\}\s*\}")),
    "link_open": ("[[", re.compile(r"\[\s*\[")),
    "pipe": ("| (table cell, template or link pipe)", re.compile(r"\|")),
    "entity": ("&...; (HTML entity)", re.compile(r"&\s*(?:#\s*x?[0-9a-f]+|" + _ENTITY_NAMES + r")\s*;")),
    "ref_tag": ("< ref", re.compile(r"<\s*/?\s*ref\b", re.IGNORECASE)),
    "image_option": ("thumb |", re.compile(r"\bthumb\s*\|", re.IGNORECASE)),
    "orphan_separator": ("( ; (separator left by a removed template)", re.compile(r"\(\s*[;,]")),
}
FIELDS = ("target", "input")
COUNTER_PREFIX = "markup_"


def leftover_counts(text: str) -> dict[str, int]:
    """Occurrences of every :data:`LEFTOVER_PATTERNS` pattern in ``text``, by counter key."""
    return {key: len(regex.findall(text)) for key, (_, regex) in LEFTOVER_PATTERNS.items()}


def counter_name(field: str, key: str, kind: str = "hits") -> str:
    """The build counter of one (field, pattern): ``markup_<kind>_<field>_<key>``.

    ``kind`` is ``hits`` (occurrences) or ``examples`` (examples with at least one occurrence).
    """
    return f"{COUNTER_PREFIX}{kind}_{field}_{key}"


def example_markup_counters(example: dict, input_column: str) -> dict[str, int]:
    """The counters of one example (see :func:`counter_name`): its ``target`` and its ``input_column``."""
    counters: dict[str, int] = {}
    for field, text in (("target", example["target"]), ("input", example[input_column])):
        for key, hits in leftover_counts(text).items():
            counters[counter_name(field, key)] = hits
            counters[counter_name(field, key, "examples")] = int(hits > 0)
    return counters


def markup_table(counters: dict) -> dict:
    """``{pattern shown: {"target", "target_examples", "input", "input_examples"}}`` from the summed
    build counters (absent counters are zero)."""
    table = {}
    for key, (shown, _) in LEFTOVER_PATTERNS.items():
        row = {}
        for field in FIELDS:
            row[field] = int(counters.get(counter_name(field, key), 0))
            row[f"{field}_examples"] = int(counters.get(counter_name(field, key, "examples"), 0))
        table[shown] = row
    return table


def markup_markdown(table: dict) -> list[str]:
    """Markdown table lines of :func:`markup_table`: occurrences, and examples with any, per field."""
    lines = [
        "| pattern | target hits | targets with any | input hits | inputs with any |",
        "|---|---|---|---|---|",
    ]
    for shown, row in table.items():
        cell = shown.replace("|", "\\|")
        lines.append(
            f"| `{cell}` | {row['target']} | {row['target_examples']} | {row['input']} | {row['input_examples']} |"
        )
    return lines
