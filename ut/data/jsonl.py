"""JSON-lines text records: one ``{"text": ...}`` object a line, the format of LAMBADA's files, of training
corpora and of prediction inputs. A malformed line is an error naming the file and the line; empty lines are
skipped (and counted)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def iter_text_records(lines: Iterable[str], where: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of every non-empty line of ``lines`` (read from ``where``, named in errors); each
    record is a JSON object with a string ``"text"`` field."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}:{lineno}: not valid JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{where}:{lineno}: expected an object with a string 'text' field")
        yield lineno, record
