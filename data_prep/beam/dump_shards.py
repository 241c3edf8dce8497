"""Cut a MediaWiki dump into independent chunks of whole ``<page>`` elements, so that many workers parse it.

The page fields themselves are always read by the single-machine reader
:func:`data_prep.dump.iter_dump_pages` (schemas 0.3 to 0.11, bare pages, namespaces from ``<siteinfo>``);
this module only decides which bytes each call sees. A chunk is ``{"header", "pages", "first_page"}``:
the dump's head (XML prolog, ``<mediawiki ...>`` root and ``<siteinfo>``, the same for every chunk of a
file), the raw bytes of up to ``pages_per_chunk`` consecutive pages, and the ordinal of the first one.
``header + pages + </mediawiki>`` is a well-formed dump that ``iter_dump_pages`` reads like the original.

Two ways to get chunks:
- :func:`iter_dump_chunks`: one reader streams a (decompressed) file and cuts it at ``</page>``: the only
  way for plain ``.xml``, ``.gz`` and single-stream ``.bz2`` files (their compression cannot be split);
  the chunks are then parsed in parallel. Memory holds one chunk.
- multistream ``.bz2`` with its index (``...-multistream-index.txt.bz2``, lines ``offset:page_id:title``):
  :func:`multistream_ranges` groups the bzip2 streams (100 pages each in Wikimedia's dumps) into byte
  ranges that workers decompress independently (:func:`read_multistream_range`): the read itself is
  sharded.

Malformed XML: a chunk that ``iter_dump_pages`` cannot read to its end is re-read page by page from the
first page it did not return (:func:`read_chunk_pages`), so one bad page costs only itself; it comes back
as a ``{"skip": "malformed_xml"}`` record for the caller to count. Deviation from the single-machine
reader, which stops with :class:`data_prep.dump.DumpFormatError` (a Beam pipeline must not fail on one
page of a 20 GB dump).

Limitation: the cut works on the raw bytes, so the dump's encoding must be ASCII-compatible (UTF-8 and the
ISO-8859 / Windows code pages: every real dump). A UTF-16/32 file is detected by :func:`is_ascii_compatible`
and the caller then reads it whole with ``iter_dump_pages``.
"""

from __future__ import annotations

import bz2
import os
import re
import tempfile
from collections.abc import Iterator

from data_prep.dump import DumpFormatError, iter_dump_pages

PAGE_START_RE = re.compile(rb"<page[\s>]")
PAGE_END = b"</page>"
ROOT_END = b"</mediawiki>"
DEFAULT_PAGES_PER_CHUNK = 100  # the page count of one stream of Wikimedia's multistream dumps
DEFAULT_STREAMS_PER_SHARD = 10  # multistream: ~1,000 pages per shard
_TITLE_RE = re.compile(rb"<title>([^<]*)")
_READ_BLOCK = 1 << 20


def is_ascii_compatible(head: bytes) -> bool:
    """False for UTF-16/32 (a BOM, or NUL bytes in the first characters): the byte-level cut cannot work."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return False
    return b"\x00" not in head[:4]


def iter_dump_chunks(
    stream, pages_per_chunk: int = DEFAULT_PAGES_PER_CHUNK, whole_file: bool = True
) -> Iterator[dict]:
    """Cut a decompressed binary stream into chunks of whole pages (see the module docstring).

    An unterminated last page (a truncated file) is returned in the last chunk, where the reader reports
    it as malformed. Whitespace and the closing root tag between and after pages are dropped.
    A stream that ends early marks its last chunk with ``"truncated": <what is missing>`` (an extra chunk
    without pages when the last one was already full): it ends inside a page, or, when ``whole_file``
    and the file has a ``<mediawiki>`` root, before ``</mediawiki>``.
    """
    if pages_per_chunk < 1:
        raise ValueError("pages_per_chunk must be positive")
    buffer = bytearray()
    position = 0  # where the next search starts in buffer
    header: bytes | None = None
    pages: list[bytes] = []
    first_page = 0
    eof = False
    truncated = ""
    # read1: one decompression step per call, so a truncated file loses only its last few kB
    read = getattr(stream, "read1", stream.read)
    while True:
        start_match = PAGE_START_RE.search(buffer, position)
        end = buffer.find(PAGE_END, start_match.start()) if start_match else -1
        if start_match and end >= 0:
            if header is None:
                header = bytes(buffer[: start_match.start()])
            end += len(PAGE_END)
            pages.append(bytes(buffer[start_match.start() : end]))
            position = end
            if len(pages) == pages_per_chunk:
                yield {"header": header, "pages": pages, "first_page": first_page}
                first_page += len(pages)
                pages = []
            continue
        if eof:
            if start_match:  # unterminated page: let the reader report it as malformed
                header = bytes(buffer[: start_match.start()]) if header is None else header
                pages.append(bytes(buffer[start_match.start() :]))
                truncated = "it ends inside a page"
            elif whole_file and b"<mediawiki" in (header or buffer) and ROOT_END not in buffer[position:]:
                truncated = "it ends before </mediawiki>"
            break
        del buffer[:position]
        position = 0
        data = read(_READ_BLOCK)
        eof = not data
        buffer += data
    if pages or truncated:
        chunk = {"header": header or b"", "pages": pages, "first_page": first_page}
        if truncated:
            chunk["truncated"] = truncated
        yield chunk


def chunk_xml(header: bytes, pages: list[bytes]) -> bytes:
    """A well-formed document of these pages: the header, the pages, the closing root tag.

    A header without a ``<mediawiki>`` root (files of bare ``<page>`` elements) gets one after the prolog;
    with no ``<siteinfo>`` the reader then uses MediaWiki's standard namespace names, as for a bare page.
    """
    if b"<mediawiki" not in header:
        header = header.rstrip() + b"\n<mediawiki>\n"
    return header + b"\n".join(pages) + b"\n" + ROOT_END + b"\n"


def _parse_pages(xml: bytes, source_name: str) -> Iterator[dict]:
    """``iter_dump_pages`` over bytes (it reads files: a temporary one), ``source_file`` set to the dump's."""
    handle, path = tempfile.mkstemp(suffix=".xml", prefix="wikisum-chunk-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(xml)
        for page in iter_dump_pages(path):
            page["source_file"] = source_name
            yield page
    finally:
        os.unlink(path)


def page_title(page: bytes) -> str:
    """The raw ``<title>`` of a page's bytes, for error messages ("" when there is none)."""
    match = _TITLE_RE.search(page)
    return match.group(1).decode("utf-8", "replace").strip() if match else ""


def read_chunk_pages(chunk: dict, source_name: str) -> Iterator[tuple[int, dict]]:
    """``(page ordinal, record)`` for every page of a chunk, in order.

    A record is a page as :func:`data_prep.dump.iter_dump_pages` returns it, or
    ``{"title", "skip": "malformed_xml", "error", "source_file"}`` for a page that cannot be parsed.
    """
    header, pages, first = chunk["header"], chunk["pages"], chunk["first_page"]
    done = 0
    try:
        for page in _parse_pages(chunk_xml(header, pages), source_name):
            yield first + done, page
            done += 1
        if done == len(pages):
            return
    except DumpFormatError:
        pass
    # the chunk is broken somewhere at or after page `done`: read the rest one page at a time
    for index in range(done, len(pages)):
        try:
            parsed = list(_parse_pages(chunk_xml(header, [pages[index]]), source_name))
        except DumpFormatError as err:
            message = str(err).split(": ", 1)[-1]
            parsed = [{"skip": "malformed_xml", "error": message}]
        for record in parsed[:1]:  # one page in, at most one record out
            record.setdefault("title", page_title(pages[index]))
            record.setdefault("source_file", source_name)
            yield first + index, record


# ---- multistream .bz2 --------------------------------------------------------------------------------


def multistream_index_name(dump_name: str) -> str | None:
    """Wikimedia's name of a multistream dump's index (``X-multistream.xml.bz2`` -> ``X-multistream-index.txt.bz2``)."""
    suffix = "-multistream.xml.bz2"
    if not dump_name.endswith(suffix):
        return None
    return dump_name[: -len(".xml.bz2")] + "-index.txt.bz2"


def stream_offsets(index_lines) -> list[int]:
    """Distinct stream start offsets from index lines ``offset:page_id:title`` (bytes or str), sorted."""
    offsets = set()
    for number, line in enumerate(index_lines, 1):
        line = line.decode("utf-8") if isinstance(line, bytes) else line
        if not line.strip():
            continue
        head = line.split(":", 1)[0]
        if not head.isdigit():
            raise DumpFormatError(f"multistream index line {number}: expected 'offset:page_id:title', got {line!r}")
        offsets.add(int(head))
    if not offsets:
        raise DumpFormatError("multistream index holds no stream offset")
    return sorted(offsets)


def multistream_ranges(offsets: list[int], streams_per_shard: int = DEFAULT_STREAMS_PER_SHARD) -> list[tuple]:
    """Byte ranges ``(start, end)`` of ``streams_per_shard`` consecutive streams; the last ``end`` is None (EOF).

    The bytes before ``offsets[0]`` are the header stream (``<mediawiki>`` + ``<siteinfo>``), read once per
    shard by :func:`read_multistream_header`. The last range runs to the end of the file, so the footer
    stream (``</mediawiki>``) is in it.
    """
    if streams_per_shard < 1:
        raise ValueError("streams_per_shard must be positive")
    starts = offsets[::streams_per_shard]
    return [(start, starts[i + 1] if i + 1 < len(starts) else None) for i, start in enumerate(starts)]


def read_multistream_header(file, first_offset: int) -> bytes:
    """Decompressed bytes before the first indexed stream (the dump's head)."""
    file.seek(0)
    return bz2.decompress(file.read(first_offset)) if first_offset else b""


def read_multistream_range(file, start: int, end: int | None) -> bytes:
    """Decompressed bytes of the concatenated bzip2 streams in ``[start, end)`` (``end`` None = to EOF)."""
    file.seek(start)
    data = file.read() if end is None else file.read(end - start)
    return bz2.decompress(data)
