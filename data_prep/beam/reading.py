"""Reading the Beam build's inputs: dumps (cut into chunks of whole pages, :mod:`data_prep.beam.dump_shards`),
articles tables, reference store files, each on any Beam file system.

Every page is parsed by the single-machine build's :func:`data_prep.build.page_to_article`, every store
record converted by :func:`data_prep.reference_store.warc_record_to_document` /
:func:`~data_prep.reference_store.json_line_to_document`; only the opening differs (Beam file systems, and a
bad record or an unreadable rest of file is counted instead of raised). A dump that cannot be read to its
end is recorded by :func:`record_dump_error` (the build then fails naming it, unless partial dumps are
allowed: :func:`data_prep.beam.running.run_beam_build`).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import zlib
from pathlib import Path

from data_prep.articles_table import iter_table_rows, row_to_article
from data_prep.beam.common import (
    DUMP_ERRORS_DIR,
    WORK_DIR,
    FileSystems,
    count,
    is_remote,
    open_raw,
    order_key,
    read_text,
    write_text,
)
from data_prep.beam.dump_shards import (
    DEFAULT_PAGES_PER_CHUNK,
    DEFAULT_STREAMS_PER_SHARD,
    is_ascii_compatible,
    iter_dump_chunks,
    multistream_index_name,
    multistream_ranges,
    read_chunk_pages,
    read_multistream_header,
    read_multistream_range,
    stream_offsets,
)
from data_prep.build import page_to_article
from data_prep.config import BuildConfig
from data_prep.dump import DumpFormatError, iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.reference_store import (
    JSONL_SUFFIXES,
    WARC_SUFFIXES,
    canonical_url,
    json_line_to_document,
    store_files,
    warc_record_to_document,
)

log = logging.getLogger(__name__)


# ---- which files ----------------------------------------------------------------------------------------


def input_files(config: BuildConfig) -> tuple[list[str], list[str]]:
    """Dumps (default: the embedded excerpt) or articles tables, checked to exist (errors name the file)."""
    if config.articles:
        for path in config.articles:
            if not Path(path).is_file():
                raise FileNotFoundError(f"articles file not found: {path}")
        return [], list(config.articles)
    dumps = list(config.dumps) or [str(embedded_dump_path())]
    for path in dumps:
        if not (FileSystems.exists(path) if is_remote(path) else Path(path).is_file()):
            raise FileNotFoundError(f"dump file not found: {path}")
    return dumps, []


def store_file_list(roots) -> list[str]:
    """Store files in the single-machine order (roots in order, each sorted); remote roots are globs."""
    files: list[str] = []
    for root in roots:
        if is_remote(root):
            matched = sorted(m.path for m in FileSystems.match([root])[0].metadata_list)
            known = [p for p in matched if p.endswith(WARC_SUFFIXES + JSONL_SUFFIXES)]
            if not known:
                raise FileNotFoundError(f"reference store {root}: no WARC/WET/JSONL file matches")
            files += known
        else:
            files += [str(p) for p in store_files(root)]
    return files


def dumps_by_reader(dumps: list[str]) -> tuple[list[tuple], list[tuple]]:
    """``(file_index, path)`` of the dumps one reader cuts, ``(file_index, path, index_path)`` of the
    multistream ``.bz2`` dumps whose index sits beside them (read by byte ranges)."""
    single, multi = [], []
    for index, path in enumerate(dumps):
        index_name = multistream_index_name(Path(path).name)
        index_path = str(path)[: -len(Path(path).name)] + index_name if index_name else None
        if index_path and FileSystems.exists(index_path):
            multi.append((index, path, index_path))
        else:
            single.append((index, path))
    return single, multi


# ---- dumps ----------------------------------------------------------------------------------------------


def _open_decompressed(path: str):
    """A binary stream of the dump's XML (bz2 incl. multistream, gz, or plain by suffix, as ``open_dump``)."""
    raw = open_raw(path)
    if str(path).endswith(".bz2"):
        return bz2.BZ2File(raw)
    if str(path).endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)
    return raw


class _Prefixed(io.RawIOBase):
    """``head`` then the rest of ``stream`` (to look at a file's first bytes without seeking)."""

    def __init__(self, head: bytes, stream):
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._stream.read(size)

    def read1(self, size: int = -1) -> bytes:
        if self._head:
            return self.read(size)
        return getattr(self._stream, "read1", self._stream.read)(size)


def record_dump_error(work_dir: str, file_index: int, path: str, message: str) -> None:
    """A dump file that cannot be read to its end: counted (``dump_file_errors``), logged, and written
    under ``work_dir`` so that :func:`data_prep.beam.running.run_beam_build` can name the file (and fail
    unless partial dumps are allowed)."""
    count("dump_file_errors")
    log.error("dump %s: %s", path, message)
    if not work_dir:
        return
    digest = hashlib.sha1(f"{path}\n{message}".encode()).hexdigest()[:16]
    write_text(f"{work_dir}/{WORK_DIR}/{DUMP_ERRORS_DIR}/{file_index:06d}-{digest}.txt", f"dump {path}: {message}")


def dump_errors(work_dir: str) -> list[str]:
    """The messages :func:`record_dump_error` left under ``work_dir``, sorted (file order)."""
    pattern = f"{work_dir}/{WORK_DIR}/{DUMP_ERRORS_DIR}/*.txt"
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    return [" ".join((read_text(path) or "").split()) for path in paths]


def read_dump_file(item, pages_per_chunk: int = DEFAULT_PAGES_PER_CHUNK, work_dir: str = ""):
    """One reader per file (plain / .gz / single-stream .bz2): ``(order base, source name, chunk)`` out.

    A decompression error or a file that ends early (inside a page, or before ``</mediawiki>``) stops
    this file only; it is recorded by :func:`record_dump_error`.
    """
    file_index, path = item
    name = Path(str(path)).name
    try:
        with _open_decompressed(path) as stream:
            head = stream.read(4)
            if not is_ascii_compatible(head):
                count("dump_chunks")
                yield (file_index, 0), name, {"whole_file": str(path), "work_dir": work_dir}
                return
            for chunk in iter_dump_chunks(_Prefixed(head, stream), pages_per_chunk):
                count("dump_chunks")
                if chunk.get("truncated"):
                    record_dump_error(work_dir, file_index, str(path), f"the file is truncated: {chunk['truncated']}")
                yield (file_index, 0), name, chunk
    except (OSError, EOFError, zlib.error) as err:
        message = f"cannot be read to its end ({err}); the pages after this point are lost"
        record_dump_error(work_dir, file_index, str(path), message)


def multistream_shards(item, streams_per_shard: int = DEFAULT_STREAMS_PER_SHARD):
    """Byte ranges of a multistream ``.bz2`` from its index: ``(file_index, path, start, end, header_end)``."""
    file_index, path, index_path = item
    with bz2.BZ2File(open_raw(index_path)) as lines:
        offsets = stream_offsets(lines)
    for start, end in multistream_ranges(offsets, streams_per_shard):
        yield file_index, path, start, end, offsets[0]


def read_multistream_shard(shard, work_dir: str = ""):
    """Decompress one byte range of a multistream dump into chunks (a bad range: :func:`record_dump_error`)."""
    file_index, path, start, end, header_end = shard
    name = Path(str(path)).name
    try:
        with open_raw(path) as raw:
            data = read_multistream_header(raw, header_end) + read_multistream_range(raw, start, end)
    except (OSError, EOFError, ValueError) as err:
        record_dump_error(work_dir, file_index, str(path), f"bytes {start}..{end} cannot be decompressed ({err})")
        return
    for chunk in iter_dump_chunks(io.BytesIO(data), pages_per_chunk=10**9, whole_file=False):
        if chunk.get("truncated"):
            record_dump_error(work_dir, file_index, str(path), f"bytes {start}..{end}: {chunk['truncated']}")
        count("dump_chunks")
        yield (file_index, start), name, chunk


def parse_chunk(element, max_wikitext_chars: int):
    """A chunk in, ``(order key, article)`` out; skipped pages counted as ``skip_<reason>``."""
    (file_index, part), name, chunk = element
    if "whole_file" in chunk:
        pages = _whole_file_pages(chunk["whole_file"], file_index, chunk["work_dir"])
    else:
        pages = read_chunk_pages(chunk, name)
    for ordinal, page in pages:
        count("records_read")
        if "skip" in page:
            count(f"skip_{page['skip']}")
            log.warning("%s: page %r skipped: %s (%s)", name, page["title"], page["skip"], page.get("error"))
            continue
        article, reason = page_to_article(page, max_wikitext_chars)
        if reason:
            count(f"skip_{reason}")
            continue
        article["source_file"] = name
        yield order_key(file_index, part, ordinal), article


def _whole_file_pages(path: str, file_index: int, work_dir: str):
    """``(ordinal, page)`` of a dump read whole (not cut into chunks), streamed; an error ends the file
    (:func:`record_dump_error`), the pages before it are kept."""
    try:
        yield from enumerate(iter_dump_pages(path))
    except DumpFormatError as err:
        record_dump_error(work_dir, file_index, path, str(err).removeprefix(f"{path}: "))


# ---- articles tables and reference stores ---------------------------------------------------------------


def read_articles_file(item):
    """An articles table (JSONL/Parquet ``{title, text}``), one reader per file."""
    file_index, path = item
    for ordinal, row in enumerate(iter_table_rows(path)):
        count("records_read")
        yield order_key(file_index, 0, ordinal), row_to_article(row, Path(path).name)


def read_store_file(item):
    """``(canonical_url, (order key, text))`` for every usable document of one store file.

    Counters: ``store_records``, ``store_documents``, ``store_skip_<reason>`` (``undecodable_bytes``,
    ``no_url``, ``empty_document``, ``not_a_document_record``, ``malformed_json``, ``record_error``),
    ``store_file_errors``.
    """
    from warcio.exceptions import ArchiveLoadFailed

    file_index, path = item
    name = str(path)
    ordinal = -1
    try:
        with open_raw(path) as raw:
            for ordinal, document in enumerate(_store_documents(raw, name)):
                count("store_records")
                if "skip" in document:
                    count(f"store_skip_{document['skip']}")
                    log.info("reference store %s: skipped %r (%s)", name, document["url"], document["skip"])
                    continue
                count("store_documents")
                yield canonical_url(document["url"]), (order_key(file_index, 0, ordinal), document["text"])
    except (ArchiveLoadFailed, OSError, EOFError, zlib.error) as err:
        count("store_file_errors")
        log.error(
            "reference store %s: unreadable after record %d (%s); the rest of the file is skipped", name, ordinal, err
        )


def _store_documents(raw, name: str):
    """The records of an opened store file (JSONL lines or WARC/WET records), each converted to a document
    by the single-machine store's function; a record that fails to convert is a ``skip``."""
    from warcio.archiveiterator import ArchiveIterator

    is_jsonl = name.endswith(JSONL_SUFFIXES)
    if is_jsonl:
        stream = gzip.GzipFile(fileobj=raw) if name.endswith(".gz") else raw
        records = (line for line in stream if line.strip())
    else:
        records = ArchiveIterator(raw)
    for ordinal, record in enumerate(records):
        try:
            yield json_line_to_document(record.decode("utf-8")) if is_jsonl else warc_record_to_document(record)
        except UnicodeDecodeError:
            yield {"url": "", "skip": "undecodable_bytes"}
        except Exception as err:  # noqa: BLE001 - one bad record must not stop the store
            log.warning("reference store %s: record %d: %s", name, ordinal, err)
            yield {"url": "", "skip": "record_error"}
