"""The ``search`` source (Liu et al. 2018 used the top-10 Google results for the title): a user-supplied
JSONL of search results per title, resolved against the same local reference store.

File format, one line per article title::

    {"title": "Anarchism", "results": [{"url": "http://..."}, {"url": "...", "text": "inline page text"}]}

``"urls": [...]`` is accepted as a shorthand for results with only a URL. A result with inline ``text`` is
used as is; others are looked up in the store. Titles are matched exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def load_search_results(path: str | Path) -> dict[str, list[dict]]:
    """Title -> list of ``{"url", "text"?}`` from a JSONL file; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search results file not found: {path}")
    results: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                title = obj["title"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a {{title, results}} JSON object ({err})") from err
            entries = obj.get("results") or [{"url": url} for url in obj.get("urls", [])]
            results.setdefault(title, []).extend(entries)
    return results


def search_documents(
    article: dict, results_by_title: dict[str, list[dict]], lookup: Callable[[str], str | None]
) -> tuple[list[dict], dict]:
    """Documents for the article title's search results, and the counts."""
    entries = results_by_title.get(article["title"], [])
    documents = []
    for entry in entries:
        text = entry.get("text") or (lookup(entry["url"]) if entry.get("url") else None)
        if text:
            documents.append({"url": entry.get("url", ""), "text": text})
    return documents, {"n_cited_urls": len(entries), "n_found_documents": len(documents)}
