"""A LOCAL store of reference documents, looked up by URL: WARC/WET files (warcio) or JSONL.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") fetched the cited pages from
CommonCrawl WET files. This pipeline never downloads: the user points it at files already on disk.

Accepted files (a path may also be a folder, read recursively in sorted order):
- ``*.warc``, ``*.warc.gz``, ``*.wet``, ``*.wet.gz``: WARC ``response`` records (HTTP + HTML, reduced to
  text by :mod:`data_prep.html_text`), ``conversion`` records (WET plain text) and ``resource`` records;
- ``*.jsonl``, ``*.jsonl.gz``: one ``{"url": ..., "text": ...}`` or ``{"url": ..., "html": ...}`` per line.

Per-record functions (:func:`warc_record_to_document`, :func:`json_line_to_document`) are pure, so the
Beam build (:mod:`data_prep.beam.reading`) runs them on sharded stores and join by :func:`canonical_url`.
Bad records (undecodable bytes, no URL, empty page) are counted in :attr:`ReferenceStore.skipped` and
logged; an unreadable store file raises an error naming it.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from data_prep.html_text import decode_html_bytes, html_to_text

log = logging.getLogger(__name__)

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


class ReferenceStoreError(ValueError):
    """A reference store file that cannot be read."""


def canonical_url(url: str) -> str:
    """The join key: scheme and host lowercased, default port and fragment dropped, no trailing slash."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower()
    if (parts.scheme == "http" and host.endswith(":80")) or (
        parts.scheme == "https" and host.endswith(":443")
    ):
        host = host.rsplit(":", 1)[0]
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for field in content_type.split(";"):
        key, _, value = field.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def warc_record_to_document(record) -> dict:
    """One warcio record to ``{"url", "text"}`` or ``{"url", "skip": reason}``."""
    url = record.rec_headers.get_header("WARC-Target-URI") or ""
    if record.rec_type not in ("response", "conversion", "resource"):
        return {"url": url, "skip": "not_a_document_record"}
    if not url:
        return {"url": "", "skip": "no_url"}
    payload = record.content_stream().read()
    if record.rec_type == "response":
        content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
    else:
        content_type = record.rec_headers.get_header("Content-Type")
    is_html = bool(content_type) and "html" in content_type.lower()
    text = decode_html_bytes(payload, _charset(content_type) or (None if is_html else "utf-8"))
    if text is None:
        return {"url": url, "skip": "undecodable_bytes"}
    if is_html or text.lstrip()[:1] == "<":
        text = html_to_text(text)
    if not text.strip():
        return {"url": url, "skip": "empty_document"}
    return {"url": url, "text": text}


def json_line_to_document(line: str) -> dict:
    """One JSONL line ``{"url", "text" | "html"}`` to ``{"url", "text"}`` or ``{"url", "skip": reason}``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return {"url": "", "skip": "malformed_json"}
    if not isinstance(obj, dict):  # a JSON list, string or number: not a {url, text} record
        return {"url": "", "skip": "malformed_json"}
    url = obj.get("url") or ""
    if not isinstance(url, str) or not isinstance(obj.get("text") or "", str) or not isinstance(
        obj.get("html") or "", str
    ):
        return {"url": str(url), "skip": "malformed_json"}
    if not url:
        return {"url": "", "skip": "no_url"}
    if obj.get("text"):
        return {"url": url, "text": obj["text"]}
    if obj.get("html"):
        text = html_to_text(obj["html"])
        return {"url": url, "text": text} if text.strip() else {"url": url, "skip": "empty_document"}
    return {"url": url, "skip": "empty_document"}


def store_files(path: str | Path) -> list[Path]:
    """The store files under a path (a file or a folder), sorted, checked to exist and be known formats."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reference store not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    known = [p for p in files if p.name.endswith(WARC_SUFFIXES + JSONL_SUFFIXES)]
    if not known:
        raise ReferenceStoreError(
            f"{path}: no WARC/WET ({', '.join(WARC_SUFFIXES)}) or JSONL "
            f"({', '.join(JSONL_SUFFIXES)}) files in the reference store"
        )
    return known


def iter_store_documents(path: str | Path) -> Iterator[dict]:
    """Stream ``{"url", "text"}`` / ``{"url", "skip"}`` records from one store file."""
    path = Path(path)
    try:
        if path.name.endswith(JSONL_SUFFIXES):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", errors="strict") as lines:
                for line in lines:
                    if line.strip():
                        yield json_line_to_document(line)
        else:
            with open(path, "rb") as stream:
                for record in ArchiveIterator(stream):
                    yield warc_record_to_document(record)
    except (ArchiveLoadFailed, OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        raise ReferenceStoreError(f"{path}: cannot read reference store file ({err})") from err


class ReferenceStore:
    """URL -> document text, loaded from local store files (the single-machine join)."""

    def __init__(self, documents: dict[str, str] | None = None):
        self.documents: dict[str, str] = {}
        self.skipped: collections.Counter = collections.Counter()
        for url, text in (documents or {}).items():
            self.documents[canonical_url(url)] = text

    @classmethod
    def from_paths(cls, paths) -> ReferenceStore:
        store = cls()
        for root in [paths] if isinstance(paths, (str, Path)) else paths:
            for file in store_files(root):
                for doc in iter_store_documents(file):
                    if "skip" in doc:
                        store.skipped[doc["skip"]] += 1
                        log.info("reference store %s: skipped %r (%s)", file, doc["url"], doc["skip"])
                    else:
                        store.documents.setdefault(canonical_url(doc["url"]), doc["text"])
        if not store.documents:
            raise ReferenceStoreError(
                f"reference store {paths} holds no usable document (skipped: {dict(store.skipped)})"
            )
        return store

    def get(self, url: str) -> str | None:
        return self.documents.get(canonical_url(url))

    def __len__(self) -> int:
        return len(self.documents)
