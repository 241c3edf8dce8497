"""Streaming reader for MediaWiki XML dumps (`pages-articles`, plain, `.bz2`, `.bz2` multistream, `.gz`).

Memory does not grow with the dump: pages are read with :func:`xml.etree.ElementTree.iterparse` and every
page element is cleared (and detached from the root) as soon as its record has been yielded.

Formats handled
- every export schema 0.3 to 0.11: tags are matched by their local name, never by the namespace URI;
- files that hold bare ``<page>`` elements with no ``<mediawiki>`` wrapper (one page per file);
- schema 0.3 has no ``<ns>`` element: the namespace is then derived from the title prefix and the
  ``<siteinfo><namespaces>`` table (or MediaWiki's standard English names when there is no siteinfo);
- the character encoding declared by the XML prolog (bytes are handed to expat, which honours it);
- multistream ``.bz2`` (concatenated bzip2 streams) is read by :mod:`bz2` transparently.

Errors name the file: a truncated compressed file or malformed XML raises :class:`DumpFormatError`;
pages already yielded before the error stay yielded (the caller decides whether to fail the build,
which :mod:`data_prep.build` does).

Records are plain dicts (see :func:`iter_dump_pages`) so that the Beam build (:mod:`data_prep.beam`) reuses this reader.
"""

from __future__ import annotations

import bz2
import gzip
import io
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# MediaWiki's canonical English namespace names, used when a file has no <siteinfo> (bare <page> files)
# and no <ns> element (schema 0.3).
STANDARD_NAMESPACES = {
    "Media": -2,
    "Special": -1,
    "Talk": 1,
    "User": 2,
    "User talk": 3,
    "Wikipedia": 4,
    "Wikipedia talk": 5,
    "File": 6,
    "Image": 6,
    "File talk": 7,
    "Image talk": 7,
    "MediaWiki": 8,
    "MediaWiki talk": 9,
    "Template": 10,
    "Template talk": 11,
    "Help": 12,
    "Help talk": 13,
    "Category": 14,
    "Category talk": 15,
    "Portal": 100,
    "Portal talk": 101,
    "Draft": 118,
    "Draft talk": 119,
    "Module": 828,
    "Module talk": 829,
}


class DumpFormatError(ValueError):
    """A dump file that cannot be read to its end: malformed XML, truncated or corrupt compression."""


def _local(tag: str) -> str:
    """Local name of an ElementTree tag, dropping any ``{namespace-uri}`` prefix."""
    return tag.rsplit("}", 1)[-1]


def open_dump(path: str | Path) -> io.BufferedIOBase:
    """Open a dump as a binary stream, decompressing ``.bz2`` (incl. multistream) and ``.gz`` by suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dump file not found: {path}")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def namespace_from_title(title: str, namespace_names: dict[str, int]) -> int:
    """Namespace number implied by a title's ``Prefix:`` (0 when the prefix is not a namespace)."""
    if ":" not in title:
        return 0
    prefix = title.split(":", 1)[0].strip()
    return namespace_names.get(prefix, namespace_names.get(prefix.capitalize(), 0))


def iter_dump_pages(path: str | Path) -> Iterator[dict]:
    """Stream the pages of one dump file as records.

    Each record: ``{"page_id": str, "title": str, "namespace": int, "redirect": bool, "wikitext": str,
    "source_file": str, "namespaces": {name: number}}``; ``namespaces`` is the dump's ``<siteinfo>`` table
    (every ``<namespace>`` name, so aliases declared with the same key too; MediaWiki's English names when
    the file has no siteinfo), one dict shared by all the pages of the file: memory stays flat. With
    several revisions per page (history dumps) the last one is kept.
    """
    path = Path(path)
    namespace_names: dict[str, int] = {}
    saw_siteinfo = False
    root = None
    page = None
    revision_text = None
    with _dump_errors(path):
        with open_dump(path) as stream:
            for event, elem in ET.iterparse(stream, events=("start", "end")):
                name = _local(elem.tag)
                if event == "start":
                    if root is None:
                        root = elem
                    if name == "page":
                        page = {"page_id": "", "title": "", "namespace": None, "redirect": False}
                        revision_text = ""
                    continue
                # event == "end"
                if name == "namespace" and page is None:
                    key = elem.get("key")
                    if key is not None and elem.text:
                        namespace_names[elem.text.strip()] = _number(key, path, "<namespace key>")
                elif name == "siteinfo":
                    saw_siteinfo = True
                elif page is not None:
                    if name == "title":
                        page["title"] = (elem.text or "").strip()
                    elif name == "ns":
                        page["namespace"] = _number(elem.text or "0", path, f"<ns> of {page['title']!r}")
                    elif name == "id" and not page["page_id"]:
                        page["page_id"] = (elem.text or "").strip()  # the first <id> is the page's
                    elif name == "redirect":
                        page["redirect"] = True
                    elif name == "text":
                        revision_text = elem.text or ""
                    elif name == "page":
                        yield _finished_page(page, revision_text, namespace_names if saw_siteinfo else None, path)
                        page = None
                        elem.clear()
                        if root is not None and root is not elem:
                            root.clear()  # detach finished pages: memory stays flat


def _finished_page(page: dict, revision_text: str, namespace_names: dict[str, int] | None, path: Path) -> dict:
    """Complete a page record at its ``</page>``: the text of its last revision, its source file, the dump's
    namespace table (``None``: the file has no siteinfo, MediaWiki's English names) and, without an ``<ns>``, the
    namespace its title implies."""
    names = STANDARD_NAMESPACES if namespace_names is None else namespace_names
    if page["namespace"] is None:
        page["namespace"] = namespace_from_title(page["title"], names)
    page["wikitext"] = revision_text
    page["source_file"] = path.name
    page["namespaces"] = names
    return page


@contextmanager
def _dump_errors(path: Path) -> Iterator[None]:
    """Re-raise a malformed, truncated or corrupt dump's error as :class:`DumpFormatError` naming ``path``."""
    try:
        yield
    except ET.ParseError as err:
        line, column = err.position
        raise DumpFormatError(f"{path}: malformed XML at line {line}, column {column}: {err}") from err
    except EOFError as err:
        raise DumpFormatError(f"{path}: compressed file is truncated ({err})") from err
    except (OSError, gzip.BadGzipFile, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DumpFormatError(f"{path}: cannot decompress ({err})") from err


def _number(text: str, path: Path, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DumpFormatError(f"{path}: {what} is not a number: {text!r}") from None
