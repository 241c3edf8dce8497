"""Already-parsed articles as JSONL or Parquet rows ``{title, text}`` (the layout of the published
Wikipedia datasets on the HF Hub, e.g. ``wikimedia/wikipedia``), read as a stream of article records.

A row may carry ``sections: [{title, text}, ...]`` (lead first), used as is. Otherwise the sections are
recovered from ``text``: those datasets keep each section heading as a line of its own, so a line of at
most ``MAX_HEADING_WORDS`` words with no sentence punctuation at its end, followed by more text, starts a
section. Deviation: this is a heuristic (a one-line paragraph such as "Gallery" is taken for a heading);
the dump path parses real headings. Reference URLs are not in those datasets: only the ``wiki-body`` and
``search`` sources work from this input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAX_HEADING_WORDS = 10
_SENTENCE_END = tuple(".!?:;,\"')]”")


def _is_heading(line: str) -> bool:
    return 0 < len(line.split()) <= MAX_HEADING_WORDS and not line.rstrip().endswith(_SENTENCE_END)


def text_to_sections(text: str) -> list[dict]:
    """Recover ``[{title, text}]`` (lead first) from plain text with headings on lines of their own."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    sections = [{"title": "", "lines": []}]
    for i, line in enumerate(lines):
        if _is_heading(line) and i + 1 < len(lines) and not _is_heading(lines[i + 1]):
            sections.append({"title": line, "lines": []})
        elif _is_heading(line) and i + 1 < len(lines):
            continue  # a heading directly followed by a sub-heading: the sub-heading starts the section
        else:
            sections[-1]["lines"].append(line)
    return [
        {"title": s["title"], "text": "\n".join(s["lines"])} for s in sections if s["lines"] or not s["title"]
    ]


def row_to_article(row: dict, source_file: str) -> dict:
    """One ``{title, text | sections}`` row to an article record (same shape as the dump path's)."""
    if row.get("sections"):
        sections = [{"title": s.get("title") or "", "text": s.get("text") or ""} for s in row["sections"]]
    else:
        sections = text_to_sections(row.get("text") or "")
    return {
        "title": str(row.get("title") or ""),
        "sections": sections,
        "reference_urls": list(row.get("reference_urls") or []),
        "source_file": source_file,
    }


def iter_table_rows(path: str | Path) -> Iterator[dict]:
    """Stream rows of a ``.jsonl``/``.json`` (one object per line) or ``.parquet`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"articles file not found: {path}")
    if path.suffix == ".parquet":
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=256)
            for batch in batches:
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path}: cannot read the Parquet file ({err})") from err
    elif path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: malformed JSON line ({err})") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: not a {{title, text}} JSON object")
                yield row
    else:
        raise ValueError(f"{path}: articles table must be .jsonl or .parquet")
