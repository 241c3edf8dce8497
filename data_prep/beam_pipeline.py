"""The WikiSum build on Apache Beam (issue 8): the same examples as :func:`data_prep.build.build_dataset`,
on the DirectRunner, Dataflow, Flink or Spark.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences", ICLR) built WikiSum by joining
~2.33M English articles against ~90M cited URLs found in CommonCrawl, on 1,000 VMs launched by a script of
their own (tensor2tensor ``data_generators/wikisum/parallel_launch.py``). This module expresses the same
build as one Beam pipeline. Every per-record step is the single-machine pipeline's own pure function
(listed in :mod:`data_prep`); this file only wires them::

    dump files ──(sharded read: data_prep.beam.dump_shards)──> page records
        ──page_skip_reason + parse_article──> articles (sections + cited URLs)
    reference store files (WARC/WET via warcio, JSONL) ──warc_record_to_document / json_line_to_document──>
        (canonical_url, text)
    articles' cited URLs  ⋈  store documents       CoGroupByKey on canonical_url
        ──> (article key, found documents)  ⋈  articles         CoGroupByKey on the article key
        ──article_documents + make_example──> examples (clone removal, paragraph filter, 5 rankers)
        ──duplicate titles dropped (first in dump order), split_of_title──>
        ──tokenizer trained on a sample of the train split (one worker), side input──> token ids
        ──> Parquet shards OUT/dataset/{train,validation,test}-SSSSS-of-NNNNN.parquet
    counts of every stage and skip reason: Beam metrics (namespace ``wikisum``) -> OUT/data_card.{md,json}

Bad records never fail the pipeline: a malformed XML page, an undecodable WET/WARC payload, a store record
without URL, an unreadable store file or a truncated dump are counted (``Metrics`` counters, listed in the
data card) and logged with their file, and skipped. Zero examples in the end is an error.

The tokenizer (a choice, documented in docs/beam.md): trained AFTER the join, on one worker, on a
deterministic sample of the train split (the ``tokenizer_sample`` train examples with the smallest
sha256 of the title, fed in dump order), as t2t built its vocabulary from a sample of the generated data.
With a sample at least as large as the train split (any small build) the tokenizer, hence every token id,
is the single-machine build's.

Deviations from the single-machine build (:mod:`data_prep.build`), each for scale:
- Parquet shards instead of ``save_to_disk``: ``datasets.load_dataset(str(OUT / "dataset"))`` loads them
  (or :func:`load_beam_dataset`). Row order within and across shards is the runner's, so files are not
  byte-identical across runs; the set of rows is (the same titles, targets, inputs and ids).
- A malformed XML page is a counted skip here; the single-machine reader stops the build with an error.
- ``--max-articles`` keeps the first N examples in dump order, like the single-machine build, but the whole
  input is still read (the counts cover all of it).
- The search source (``--search-results``) is loaded by every worker (it must fit in a worker's memory);
  articles tables (``--articles``) are read by one reader per file. Dumps, dumps' chunks and store files
  may be local or on any Beam file system (``gs://``, ``s3://``, ``hdfs://``).

Run: ``python -m data_prep beam --runner direct|dataflow|flink|spark [build options] [Beam options]``
(see :func:`main` and docs/beam.md).
"""

from __future__ import annotations

import argparse
import collections
import functools
import gzip
import hashlib
import io
import json
import logging
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

from data_prep.articles_table import iter_table_rows, row_to_article
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
from data_prep.build import (
    CARD_HISTOGRAMS,
    CONFIG_FILE,
    DATASET_DIR,
    SPECIAL_TOKENS_FILE,
    TOKENIZER_FILE,
    BuildConfig,
    add_length_counts,
    article_documents,
    data_card,
    dataset_features,
    example_row,
    fit_tokenizer,
    page_to_article,
)
from data_prep.build_output import (
    check_output_path,
    exclusive_lock,
    file_fingerprint,
    is_current_build,
    prepare_partial,
    publish,
    write_manifest,
    writing,
)
from data_prep.data_card import write_card
from data_prep.dump import DumpFormatError, iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.example import ExampleConfig, make_example
from data_prep.extractive_eval import example_rouge_l, rouge_table, write_results
from data_prep.markup_check import example_markup_counters
from data_prep.reference_store import (
    JSONL_SUFFIXES,
    WARC_SUFFIXES,
    canonical_url,
    json_line_to_document,
    store_files,
    warc_record_to_document,
)
from data_prep.sources import load_search_results
from data_prep.splits import SPLIT_NAMES, split_of_title
from data_prep.tokenizer import special_token_ids

BEAM_MISSING = (
    "the Beam pipeline needs Apache Beam: pip install 'universal-transformers[beam]' "
    "(or pip install 'apache-beam>=2.77')"
)
try:
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(BEAM_MISSING) from _err

log = logging.getLogger(__name__)

NAMESPACE = "wikisum"  # Beam metrics namespace of every count
RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
DEFAULT_TOKENIZER_SAMPLE = 10_000  # train examples; <= ~0.7 GB of text at the paper's lengths, one worker
WORK_DIR = "_beam"  # pipeline-written summaries, removed once the data card is written
DUMP_ERRORS_DIR = "dump_errors"  # under WORK_DIR: one file per dump that cannot be read to its end
_SUM_COUNTS = ("n_cited_urls", "n_found_documents", "n_clones_removed", "n_paragraphs_kept", "n_paragraphs_dropped")


def _count(name: str, n: int = 1) -> None:
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


def _order_key(file_index: int, part: int, position: int) -> str:
    """A unique, sortable key: file order, then byte offset (or 0), then page / row / record ordinal."""
    return f"{file_index:06d}:{part:015d}:{position:010d}"


def _is_remote(path: str) -> bool:
    return "://" in str(path)


# ---- reading dumps ---------------------------------------------------------------------------------------


def _open_raw(path: str):
    return FileSystems.open(str(path), compression_type=CompressionTypes.UNCOMPRESSED)


def _open_decompressed(path: str):
    """A binary stream of the dump's XML (bz2 incl. multistream, gz, or plain by suffix, as ``open_dump``)."""
    raw = _open_raw(path)
    if str(path).endswith(".bz2"):
        import bz2

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
    under ``work_dir`` so that :func:`run_beam_build` can name the file (and fail unless partial dumps
    are allowed)."""
    _count("dump_file_errors")
    log.error("dump %s: %s", path, message)
    if not work_dir:
        return
    digest = hashlib.sha1(f"{path}\n{message}".encode()).hexdigest()[:16]
    _write_text(f"{work_dir}/{WORK_DIR}/{DUMP_ERRORS_DIR}/{file_index:06d}-{digest}.txt", f"dump {path}: {message}")


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
                _count("dump_chunks")
                yield (file_index, 0), name, {"whole_file": str(path), "work_dir": work_dir}
                return
            for chunk in iter_dump_chunks(_Prefixed(head, stream), pages_per_chunk):
                _count("dump_chunks")
                if chunk.get("truncated"):
                    record_dump_error(work_dir, file_index, str(path), f"the file is truncated: {chunk['truncated']}")
                yield (file_index, 0), name, chunk
    except (OSError, EOFError, zlib.error) as err:
        message = f"cannot be read to its end ({err}); the pages after this point are lost"
        record_dump_error(work_dir, file_index, str(path), message)


def multistream_shards(item, streams_per_shard: int = DEFAULT_STREAMS_PER_SHARD):
    """Byte ranges of a multistream ``.bz2`` from its index: ``(file_index, path, start, end, header_end)``."""
    file_index, path, index_path = item
    import bz2

    with bz2.BZ2File(_open_raw(index_path)) as lines:
        offsets = stream_offsets(lines)
    for start, end in multistream_ranges(offsets, streams_per_shard):
        yield file_index, path, start, end, offsets[0]


def read_multistream_shard(shard, work_dir: str = ""):
    """Decompress one byte range of a multistream dump into chunks (a bad range: :func:`record_dump_error`)."""
    file_index, path, start, end, header_end = shard
    name = Path(str(path)).name
    try:
        with _open_raw(path) as raw:
            data = read_multistream_header(raw, header_end) + read_multistream_range(raw, start, end)
    except (OSError, EOFError, ValueError) as err:
        record_dump_error(work_dir, file_index, str(path), f"bytes {start}..{end} cannot be decompressed ({err})")
        return
    for chunk in iter_dump_chunks(io.BytesIO(data), pages_per_chunk=10**9, whole_file=False):
        if chunk.get("truncated"):
            record_dump_error(work_dir, file_index, str(path), f"bytes {start}..{end}: {chunk['truncated']}")
        _count("dump_chunks")
        yield (file_index, start), name, chunk


def parse_chunk(element, max_wikitext_chars: int):
    """A chunk in, ``(order key, article)`` out; skipped pages counted as ``skip_<reason>``."""
    (file_index, part), name, chunk = element
    if "whole_file" in chunk:
        pages = _whole_file_pages(chunk["whole_file"], file_index, chunk["work_dir"])
    else:
        pages = read_chunk_pages(chunk, name)
    for ordinal, page in pages:
        _count("records_read")
        if "skip" in page:
            _count(f"skip_{page['skip']}")
            log.warning("%s: page %r skipped: %s (%s)", name, page["title"], page["skip"], page.get("error"))
            continue
        article, reason = page_to_article(page, max_wikitext_chars)
        if reason:
            _count(f"skip_{reason}")
            continue
        article["source_file"] = name
        yield _order_key(file_index, part, ordinal), article


def _whole_file_pages(path: str, file_index: int, work_dir: str):
    """``(ordinal, page)`` of a dump read whole (not cut into chunks), streamed; an error ends the file
    (:func:`record_dump_error`), the pages before it are kept."""
    try:
        yield from enumerate(iter_dump_pages(path))
    except DumpFormatError as err:
        record_dump_error(work_dir, file_index, path, str(err).removeprefix(f"{path}: "))


def read_articles_file(item):
    """An articles table (JSONL/Parquet ``{title, text}``), one reader per file."""
    file_index, path = item
    for ordinal, row in enumerate(iter_table_rows(path)):
        _count("records_read")
        yield _order_key(file_index, 0, ordinal), row_to_article(row, Path(path).name)


# ---- reading reference stores ------------------------------------------------------------------------------


def read_store_file(item):
    """``(canonical_url, (order key, text))`` for every usable document of one store file.

    The per-record conversion is the single-machine store's (:func:`warc_record_to_document`,
    :func:`json_line_to_document`); only the opening differs (Beam file systems, and a bad record or an
    unreadable rest of file is counted instead of raised). Counters: ``store_records``,
    ``store_documents``, ``store_skip_<reason>`` (``undecodable_bytes``, ``no_url``, ``empty_document``,
    ``not_a_document_record``, ``malformed_json``, ``record_error``), ``store_file_errors``.
    """
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    file_index, path = item
    name = str(path)
    is_jsonl = name.endswith(JSONL_SUFFIXES)
    ordinal = -1
    try:
        with _open_raw(path) as raw:
            if is_jsonl:
                stream = gzip.GzipFile(fileobj=raw) if name.endswith(".gz") else raw
                records = (line for line in stream if line.strip())
            else:
                records = ArchiveIterator(raw)
            for ordinal, record in enumerate(records):
                _count("store_records")
                try:
                    if is_jsonl:
                        line = record.decode("utf-8")
                        document = json_line_to_document(line)
                    else:
                        document = warc_record_to_document(record)
                except UnicodeDecodeError:
                    document = {"url": "", "skip": "undecodable_bytes"}
                except Exception as err:  # noqa: BLE001 - one bad record must not stop the store
                    document = {"url": "", "skip": "record_error"}
                    log.warning("reference store %s: record %d: %s", name, ordinal, err)
                if "skip" in document:
                    _count(f"store_skip_{document['skip']}")
                    log.info("reference store %s: skipped %r (%s)", name, document["url"], document["skip"])
                    continue
                _count("store_documents")
                yield canonical_url(document["url"]), (_order_key(file_index, 0, ordinal), document["text"])
    except (ArchiveLoadFailed, OSError, EOFError, zlib.error) as err:
        _count("store_file_errors")
        log.error(
            "reference store %s: unreadable after record %d (%s); the rest of the file is skipped", name, ordinal, err
        )


# ---- the join --------------------------------------------------------------------------------------------


class _SourceDoFn(beam.DoFn):
    """A DoFn that knows the source; with ``search`` it loads the search results once per worker."""

    def __init__(self, source: str, search_results_path: str | None):
        self.source, self.search_results_path = source, search_results_path
        self.search_results = None

    def setup(self):
        if self.source == "search":
            self.search_results = load_search_results(self.search_results_path)


class CitedUrls(_SourceDoFn):
    """``(canonical_url, article key)`` for every URL an article looks up in the store."""

    def process(self, element):
        key, article = element
        if self.source == "references":
            urls = article.get("reference_urls") or []
        else:
            urls = [
                e["url"] for e in self.search_results.get(article["title"], []) if e.get("url") and not e.get("text")
            ]
        for url in sorted({canonical_url(u) for u in urls}):
            yield url, key


def match_documents(element):
    """One URL's citing articles and store documents in; ``(article key, (url, text))`` for each citer.

    Of several store documents with one URL the first in store order wins, as in ``ReferenceStore``.
    """
    url, groups = element
    keys = sorted(set(groups["cites"]))
    documents = list(groups["docs"])
    _count("store_urls", int(bool(documents)))  # distinct URLs with a usable document (the store's size)
    if not keys:
        return
    if not documents:
        _count("cited_urls_not_in_store", len(keys))
        return
    text = min(documents)[1]
    for key in keys:
        yield key, (url, text)


class _FoundDocuments:
    """The ``store.get`` that :func:`data_prep.build.article_documents` expects, over the joined documents."""

    def __init__(self, found: dict[str, str]):
        self.found = found

    def get(self, url: str) -> str | None:
        return self.found.get(canonical_url(url))


class MakeExample(_SourceDoFn):
    """``article_documents`` + ``make_example``: target, clone removal, paragraph filter, rankers."""

    def __init__(self, example_config: ExampleConfig, source: str, search_results_path: str | None):
        super().__init__(source, search_results_path)
        self.example_config = example_config

    def process(self, element):
        key, groups = element
        article = next(iter(groups["article"]))  # every key of the join comes from an article
        store = _FoundDocuments(dict(groups["found"]))
        documents, source_counts = article_documents(article, self.source, store, self.search_results)
        example, reason, counts = make_example(article, documents, source_counts, self.example_config)
        for name in _SUM_COUNTS:
            _count(name, counts.get(name, 0))
        if example is None:
            _count(f"skip_{reason}")
        else:
            yield example["title"], (key, example)


def first_of_title(element):
    """Keep the first example of a title in dump order (the single-machine rule); count the others."""
    title, keyed = element
    keyed = sorted(keyed, key=lambda kv: kv[0])
    _count("skip_duplicate_title", len(keyed) - 1)
    yield keyed[0]


def with_split(keyed, fractions, input_column: str):
    """The example's split; counts it (``examples``, ``split_<split>``) and its leftover markup."""
    key, example = keyed
    example = dict(example, split=split_of_title(example["title"], fractions))
    _count("examples")
    _count(f"split_{example['split']}")
    for name, n in example_markup_counters(example, input_column).items():
        _count(name, n)
    return key, example


# ---- tokenizer, encoding, summaries ----------------------------------------------------------------------


def _sample_hash(title: str) -> str:
    return hashlib.sha256(b"tokenizer-sample:" + title.encode("utf-8")).hexdigest()


def tokenizer_sample_row(keyed, first_ranker: str):
    """What the tokenizer sample keeps of an example: sort key (train first, then a hash), order, texts."""
    key, example = keyed
    return (
        (example["split"] != "train", _sample_hash(example["title"])),
        key,
        example["target"],
        example[f"input_{first_ranker}"],
    )


def train_and_save_tokenizer(sample, vocab_size: int | None, work_dir: str):
    """Train the BPE tokenizer on the sample (one worker), write it beside the dataset, return its JSON.

    The texts are the single-machine build's (target and first ranker's input of each train example, in
    dump order; all examples when the train split is empty); the vocabulary size rule is the same too.
    """
    if not sample:
        return ""
    rows = [r for r in sample if not r[0][0]] or list(sample)
    rows.sort(key=lambda r: r[1])
    tokenizer = fit_tokenizer([t for r in rows for t in (r[2], r[3])], vocab_size)
    _write_text(f"{work_dir}/{TOKENIZER_FILE}", tokenizer.to_str(pretty=True))
    _write_text(
        f"{work_dir}/{SPECIAL_TOKENS_FILE}", json.dumps(special_token_ids(tokenizer), indent=2, sort_keys=True) + "\n"
    )
    info = {
        "sample_examples": len(rows),
        "sample_is_train": not rows[0][0][0],
        "vocab_size": tokenizer.get_vocab_size(),
    }
    _write_text(f"{work_dir}/{WORK_DIR}/tokenizer_sample.json", json.dumps(info, sort_keys=True))
    return tokenizer.to_str()


class Encode(beam.DoFn):
    """Token ids of the target and of every ranked input (cut at max L), with the side-input tokenizer."""

    def __init__(self, rankers, max_tokens: int):
        self.rankers, self.max_tokens = tuple(rankers), max_tokens
        self._tokenizer, self._source = None, None

    def process(self, keyed, tokenizer_json):
        from tokenizers import Tokenizer

        from data_prep.tokenizer import WordCachedEncoder

        if tokenizer_json != self._source:
            self._tokenizer = WordCachedEncoder(Tokenizer.from_str(tokenizer_json))
            self._source = tokenizer_json
        _, example = keyed
        row = example_row(example, self._tokenizer, self.rankers, self.max_tokens)
        yield beam.pvalue.TaggedOutput(example["split"], row)


class SummaryFn(beam.CombineFn):
    """Exact length counts for the data card's histograms (a Counter per quantity: small at any scale)."""

    def create_accumulator(self):
        return {name: collections.Counter() for name in (*CARD_HISTOGRAMS, "articles_with_any_document")}

    def add_input(self, accumulator, row):
        add_length_counts(accumulator, row)
        accumulator["articles_with_any_document"][int(row["n_found_documents"] > 0)] += 1
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for name, counter in accumulator.items():
                merged[name].update(counter)
        return merged

    def extract_output(self, accumulator):
        return {name: {str(k): v for k, v in sorted(c.items())} for name, c in accumulator.items()}


class MeanFn(beam.CombineFn):
    """Mean of each key of per-example score dicts, and their number (extractive ROUGE-L)."""

    def create_accumulator(self):
        return collections.Counter(), 0

    def add_input(self, accumulator, scores):
        sums, n = accumulator
        sums.update(scores)
        return sums, n + 1

    def merge_accumulators(self, accumulators):
        sums, n = collections.Counter(), 0
        for s, k in accumulators:
            sums.update(s)
            n += k
        return sums, n

    def extract_output(self, accumulator):
        sums, n = accumulator
        return {"means": {k: v / n for k, v in sums.items()} if n else {}, "n": n}


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as file:
        file.write(text.encode("utf-8"))


def _read_text(path: str) -> str | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
        return file.read().decode("utf-8")


# ---- the pipeline ----------------------------------------------------------------------------------------


def _input_files(config: BuildConfig) -> tuple[list[str], list[str]]:
    """Dumps (default: the embedded excerpt) or articles tables, checked to exist (errors name the file)."""
    if config.articles:
        for path in config.articles:
            if not Path(path).is_file():
                raise FileNotFoundError(f"articles file not found: {path}")
        return [], list(config.articles)
    dumps = list(config.dumps) or [str(embedded_dump_path())]
    for path in dumps:
        if not (FileSystems.exists(path) if _is_remote(path) else Path(path).is_file()):
            raise FileNotFoundError(f"dump file not found: {path}")
    return dumps, []


def _store_file_list(roots) -> list[str]:
    """Store files in the single-machine order (roots in order, each sorted); remote roots are globs."""
    files: list[str] = []
    for root in roots:
        if _is_remote(root):
            matched = sorted(m.path for m in FileSystems.match([root])[0].metadata_list)
            known = [p for p in matched if p.endswith(WARC_SUFFIXES + JSONL_SUFFIXES)]
            if not known:
                raise FileNotFoundError(f"reference store {root}: no WARC/WET/JSONL file matches")
            files += known
        else:
            files += [str(p) for p in store_files(root)]
    return files


def build_pipeline(
    pipeline,
    config: BuildConfig,
    work_dir: str,
    *,
    tokenizer_sample: int = DEFAULT_TOKENIZER_SAMPLE,
    pages_per_chunk: int = DEFAULT_PAGES_PER_CHUNK,
    streams_per_shard: int = DEFAULT_STREAMS_PER_SHARD,
    num_shards: int = 0,
) -> None:
    """Add the WikiSum build to ``pipeline``, writing under ``work_dir`` (see the module docstring)."""
    dumps, tables = _input_files(config)
    example_config = config.example_config()
    p = pipeline

    # 1. articles ------------------------------------------------------------------------------------------
    if tables:
        articles = (
            p
            | "ArticleTables" >> beam.Create(list(enumerate(tables)))
            | "ReadArticleTables" >> beam.FlatMap(read_articles_file)
            | "SpreadArticles" >> beam.Reshuffle()
        )
    else:
        single, multi = [], []
        for index, path in enumerate(dumps):
            index_name = multistream_index_name(Path(path).name)
            index_path = str(path)[: -len(Path(path).name)] + index_name if index_name else None
            if index_path and FileSystems.exists(index_path):
                multi.append((index, path, index_path))
            else:
                single.append((index, path))
        chunk_sets = []
        if single:
            chunk_sets.append(
                p
                | "DumpFiles" >> beam.Create(single)
                | "CutDumps" >> beam.FlatMap(read_dump_file, pages_per_chunk, work_dir)
            )
        if multi:
            chunk_sets.append(
                p
                | "MultistreamDumps" >> beam.Create(multi)
                | "IndexShards" >> beam.FlatMap(multistream_shards, streams_per_shard)
                | "SpreadShards" >> beam.Reshuffle()
                | "ReadShards" >> beam.FlatMap(read_multistream_shard, work_dir)
            )
        chunks = chunk_sets[0] if len(chunk_sets) == 1 else tuple(chunk_sets) | "AllChunks" >> beam.Flatten()
        articles = (
            chunks
            | "SpreadChunks" >> beam.Reshuffle()
            | "ParsePages" >> beam.FlatMap(parse_chunk, config.max_wikitext_chars)
        )

    # 2. source documents: the URL join (references / search) -------------------------------------------------
    if config.source == "wiki-body":
        grouped = articles | "NoJoin" >> beam.Map(lambda kv: (kv[0], {"article": [kv[1]], "found": []}))
    else:
        roots = list(config.reference_store)
        store = (
            p
            | "StoreFiles" >> beam.Create(list(enumerate(_store_file_list(roots))) if roots else [])
            | "SpreadStoreFiles" >> beam.Reshuffle()
            | "ReadStore" >> beam.FlatMap(read_store_file)
        )
        cites = articles | "CitedUrls" >> beam.ParDo(CitedUrls(config.source, config.search_results))
        found = (
            {"cites": cites, "docs": store}
            | "JoinByUrl" >> beam.CoGroupByKey()
            | "MatchDocuments" >> beam.FlatMap(match_documents)
        )
        grouped = {"article": articles, "found": found} | "JoinByArticle" >> beam.CoGroupByKey()

    # 3. examples, one per title, split -------------------------------------------------------------------------
    examples = (
        grouped
        | "MakeExamples" >> beam.ParDo(MakeExample(example_config, config.source, config.search_results))
        | "ByTitle" >> beam.GroupByKey()
        | "FirstOfTitle" >> beam.FlatMap(first_of_title)
    )
    if config.max_articles:
        examples = (
            examples
            | "FirstN" >> beam.combiners.Top.Smallest(config.max_articles, key=lambda kv: kv[0])
            | "UnlistFirstN" >> beam.FlatMap(lambda rows: rows)
        )
    examples = examples | "Split" >> beam.Map(with_split, config.split_fractions, f"input_{config.rankers[0]}")

    # 4. tokenizer on a sample, after the join ----------------------------------------------------------------
    tokenizer_json = (
        examples
        | "TokenizerRows" >> beam.Map(tokenizer_sample_row, config.rankers[0])
        | "TokenizerSample" >> beam.combiners.Top.Smallest(tokenizer_sample)
        | "TrainTokenizer" >> beam.Map(train_and_save_tokenizer, config.vocab_size, work_dir)
    )
    rows = examples | "Encode" >> beam.ParDo(
        Encode(config.rankers, max(config.input_lengths)), beam.pvalue.AsSingleton(tokenizer_json)
    ).with_outputs(*SPLIT_NAMES)

    # 5. Parquet shards per split (HF datasets' file naming: <split>-SSSSS-of-NNNNN.parquet) --------------------
    schema = dataset_features(config.rankers).arrow_schema
    for split in SPLIT_NAMES:
        rows[split] | f"Write_{split}" >> beam.io.WriteToParquet(
            f"{work_dir}/{DATASET_DIR}/{split}",
            schema=schema,
            file_name_suffix=".parquet",
            num_shards=num_shards,
            shard_name_template="-SSSSS-of-NNNNN",
        )

    # 6. summaries for the data card and the extractive ROUGE-L table ----------------------------------------
    all_rows = tuple(rows[s] for s in SPLIT_NAMES) | "AllRows" >> beam.Flatten()
    (
        all_rows
        | "Summary" >> beam.CombineGlobally(SummaryFn())
        | "WriteSummary" >> beam.Map(lambda s: _write_text(f"{work_dir}/{WORK_DIR}/summary.json", json.dumps(s)))
    )
    if config.eval_lengths:
        rankers, lengths = tuple(config.rankers), tuple(config.eval_lengths)
        (
            examples
            | "Rouge" >> beam.Map(lambda kv: example_rouge_l(kv[1], rankers, lengths))
            | "RougeMeans" >> beam.CombineGlobally(MeanFn())
            | "WriteRouge" >> beam.Map(lambda s: _write_text(f"{work_dir}/{WORK_DIR}/rouge.json", json.dumps(s)))
        )


# ---- running, the data card, the CLI -----------------------------------------------------------------------


def pipeline_options(runner: str, pipeline_args: list[str], num_proc: int = 1) -> PipelineOptions:
    """Beam options: the runner, pass-through options, and for ``direct`` ``--num-proc`` worker processes."""
    if runner not in RUNNERS:
        raise ValueError(f"--runner must be one of {sorted(RUNNERS)}, not {runner!r}")
    args = [f"--runner={RUNNERS[runner]}"]
    if runner == "direct" and num_proc > 1 and not any(a.startswith("--direct_") for a in pipeline_args):
        args += [f"--direct_num_workers={num_proc}", "--direct_running_mode=multi_processing"]
    return PipelineOptions(args + list(pipeline_args))


def query_counters(result) -> dict[str, int]:
    """The pipeline's ``wikisum`` counters, summed over steps (committed values where the runner has them)."""
    totals: collections.Counter = collections.Counter()
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] += int(value or 0)
    return dict(totals)


def beam_card(config: BuildConfig, counters: dict, summary: dict, tokenizer_info: dict, special_ids: dict, runner):
    """The data card (:func:`data_prep.build.data_card`) from the Beam metrics and the pipeline's summaries."""
    length_counts = {name: {int(k): n for k, n in summary.get(name, {}).items()} for name in CARD_HISTOGRAMS}
    with_documents = summary.get("articles_with_any_document", {}).get("1", 0)
    trained_on = (
        f"a sample of {tokenizer_info.get('sample_examples')} examples of the "
        + ("train split" if tokenizer_info.get("sample_is_train") else "build (the train split was empty)")
        + f" ({counters.get('split_train', 0)} train examples; sample cap {tokenizer_info.get('cap')})"
    )
    return data_card(
        config,
        {**counters, "articles_with_any_document": with_documents},
        length_counts,
        {**special_ids, "vocab_size": tokenizer_info.get("vocab_size"), "trained_on": trained_on},
        runner=runner,
    )


def run_beam_build(
    config: BuildConfig,
    runner: str = "direct",
    pipeline_args: list[str] | None = None,
    *,
    tokenizer_sample: int = DEFAULT_TOKENIZER_SAMPLE,
    pages_per_chunk: int = DEFAULT_PAGES_PER_CHUNK,
    streams_per_shard: int = DEFAULT_STREAMS_PER_SHARD,
    num_shards: int = 0,
    keep_partial_dumps: bool = False,
) -> str:
    """Run the build and write the data card; returns the output folder.

    Local output: the single-machine build's protocol (:mod:`data_prep.build_output`): an exclusive lock,
    written under a marked ``OUT.partial/``, a manifest of files and input fingerprints, renamed to
    ``OUT/`` at the end. Remote output (``gs://`` ...): written in place, ``build_config.json`` last.
    A rerun over a finished build with the same configuration (and, locally, unchanged inputs) returns at
    once. A dump that cannot be read to its end (truncated, corrupt) fails the build with
    :class:`~data_prep.dump.DumpFormatError` naming it, unless ``keep_partial_dumps`` (then its pages
    before the error are used and ``dump_file_errors`` counts it in the data card).
    """
    if tokenizer_sample < 1:
        raise ValueError("tokenizer_sample must be positive")
    out = str(config.out).rstrip("/")
    identity = {"engine": "beam", "tokenizer_sample": tokenizer_sample, **config.identity()}
    if keep_partial_dumps:
        identity["keep_partial_dumps"] = True
    remote = _is_remote(out)
    if runner == "dataflow" and not remote:
        raise ValueError(f"--runner dataflow writes from cloud workers: --out must be gs://..., not {out}")
    run = functools.partial(
        _run_into,
        config,
        runner,
        pipeline_args,
        identity,
        keep_partial_dumps,
        tokenizer_sample=tokenizer_sample,
        pages_per_chunk=pages_per_chunk,
        streams_per_shard=streams_per_shard,
        num_shards=num_shards,
    )
    if remote:
        previous = _read_text(f"{out}/{CONFIG_FILE}")
        if previous is not None:
            if json.loads(previous) == identity:
                log.info("%s is already built with this configuration: nothing to do", out)
                return out
            raise FileExistsError(f"{out} holds a build with another configuration; remove it or choose --out")
        _remove_stale_outputs(out)
        card = run(out)
    else:
        out_path = Path(out)
        check_output_path(out_path)
        inputs = _inputs_fingerprint(config)
        with writing(out_path), exclusive_lock(out_path):
            if is_current_build(out_path, identity, inputs, CONFIG_FILE):
                log.info("%s is already built with this configuration and these inputs: nothing to do", out)
                return out
            work = prepare_partial(out_path)
            with writing(out_path, work):
                try:
                    card = run(str(work))
                except DumpFormatError:
                    shutil.rmtree(work, ignore_errors=True)
                    raise
                write_manifest(work, inputs)
                publish(work, out_path)
    log.info("built %s: %s", out, card["split_counts"])
    return out


def _fingerprint(path: str) -> dict:
    """A local file's :func:`~data_prep.build_output.file_fingerprint`; a remote one's size and update time."""
    if not _is_remote(path):
        return file_fingerprint(path)
    metadata = FileSystems.match([path])[0].metadata_list[0]
    return {"path": path, "size": metadata.size_in_bytes, "mtime": metadata.last_updated_in_seconds}


def _inputs_fingerprint(config: BuildConfig) -> list[dict]:
    """Fingerprints of every input: dumps or articles tables, reference store files, search results."""
    dumps, tables = _input_files(config)
    files = (tables or dumps) + (_store_file_list(config.reference_store) if config.reference_store else [])
    if config.search_results:
        files.append(config.search_results)
    return [_fingerprint(str(path)) for path in files]


def dump_errors(work_dir: str) -> list[str]:
    """The messages :func:`record_dump_error` left under ``work_dir``, sorted (file order)."""
    pattern = f"{work_dir}/{WORK_DIR}/{DUMP_ERRORS_DIR}/*.txt"
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    return [" ".join((_read_text(path) or "").split()) for path in paths]


def _run_into(
    config: BuildConfig,
    runner: str,
    pipeline_args,
    identity: dict,
    keep_partial_dumps: bool,
    work_dir: str,
    *,
    tokenizer_sample: int,
    pages_per_chunk: int,
    streams_per_shard: int,
    num_shards: int,
) -> dict:
    """Run the pipeline writing into ``work_dir``, then the data card and ``build_config.json`` (last)."""
    options = pipeline_options(runner, list(pipeline_args or []), config.num_proc)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(
        pipeline,
        config,
        work_dir,
        tokenizer_sample=tokenizer_sample,
        pages_per_chunk=pages_per_chunk,
        streams_per_shard=streams_per_shard,
        num_shards=num_shards,
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = query_counters(result)
    errors = dump_errors(work_dir)
    if errors and not keep_partial_dumps:
        raise DumpFormatError(
            "; ".join(errors) + ". Nothing was published: fix or replace the dump, or pass --keep-partial-dumps "
            "to build from the pages read before the error"
        )
    if not counters.get("examples"):
        raise RuntimeError(
            f"no example was produced from {config.dumps or config.articles or 'the embedded dump'} "
            f"(Beam counters: {dict(sorted(counters.items()))})"
        )

    drop_empty_shards(work_dir)
    summary = json.loads(_read_text(f"{work_dir}/{WORK_DIR}/summary.json") or "{}")
    tokenizer_info = json.loads(_read_text(f"{work_dir}/{WORK_DIR}/tokenizer_sample.json") or "{}")
    tokenizer_info["cap"] = tokenizer_sample
    special_ids = json.loads(_read_text(f"{work_dir}/{SPECIAL_TOKENS_FILE}") or "{}")
    card = beam_card(config, counters, summary, tokenizer_info, special_ids, runner)
    rouge = json.loads(_read_text(f"{work_dir}/{WORK_DIR}/rouge.json") or "null")
    with tempfile.TemporaryDirectory() as local:
        local_dir = Path(local)
        write_card(card, local_dir)
        if rouge and rouge["n"]:
            table = rouge_table([rouge["means"]], config.rankers, config.eval_lengths)
            table["n_examples"] = rouge["n"]
            write_results(table, local_dir)
        for file in sorted(local_dir.iterdir()):
            with FileSystems.create(f"{work_dir}/{file.name}") as target:
                target.write(file.read_bytes())
    FileSystems.delete([f"{work_dir}/{WORK_DIR}"])
    _write_text(f"{work_dir}/{CONFIG_FILE}", json.dumps(identity, indent=2, sort_keys=True) + "\n")  # last
    return card


# what a build writes in its output folder (a remote output is written in place)
_OUTPUT_PATTERNS = (
    f"{DATASET_DIR}/*.parquet",
    f"{WORK_DIR}/*",
    f"{WORK_DIR}/{DUMP_ERRORS_DIR}/*",
    TOKENIZER_FILE,
    SPECIAL_TOKENS_FILE,
    "data_card.*",
    "extractive_rouge.*",
)


def _remove_stale_outputs(work_dir: str) -> None:
    """Delete what an interrupted build left in a remote output (no ``build_config.json``): stale Parquet
    shards of another shard count would otherwise be loaded beside the new ones."""
    stale = [
        m.path
        for result in FileSystems.match([f"{work_dir}/{pattern}" for pattern in _OUTPUT_PATTERNS])
        for m in result.metadata_list
    ]
    if stale:
        log.warning("removing %d files left in %s by an interrupted build", len(stale), work_dir)
        FileSystems.delete(stale)


def drop_empty_shards(work_dir: str) -> int:
    """Delete Parquet shards with no row (Beam writes one for an empty split; ``datasets`` rejects a split
    of empty files). Returns how many were deleted."""
    import pyarrow.parquet as pq

    empty = []
    for match in FileSystems.match([f"{work_dir}/{DATASET_DIR}/*.parquet"])[0].metadata_list:
        with FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
            if pq.ParquetFile(io.BytesIO(file.read())).metadata.num_rows == 0:
                empty.append(match.path)
    if empty:
        FileSystems.delete(empty)
    return len(empty)


def load_beam_dataset(out: str):
    """The Parquet shards of a Beam build as a ``datasets.DatasetDict`` (the splits that have examples).

    Equivalent to ``datasets.load_dataset(OUT + "/dataset")``, which finds the splits by the file names.
    """
    import datasets

    base = f"{str(out).rstrip('/')}/{DATASET_DIR}"
    files = {split: f"{base}/{split}-*.parquet" for split in SPLIT_NAMES}
    files = {split: pattern for split, pattern in files.items() if FileSystems.match([pattern])[0].metadata_list}
    return datasets.load_dataset("parquet", data_files=files)


def beam_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep beam",
        allow_abbrev=False,
        description=(
            "Build a WikiSum-style dataset with Apache Beam. Takes every option of `python -m data_prep build` "
            "(--out, --dump, --articles, --source, --reference-store, --search-results, --rankers, "
            "--input-lengths, --eval-lengths, --target, --vocab-size, --split-fractions, --max-articles, "
            "--keep-clones, --num-proc = DirectRunner worker processes, -v), the options below, and passes "
            "every other option to Beam (e.g. --project, --region, --temp_location for Dataflow; "
            "--flink_master; --spark_master_url; --environment_type). See docs/beam.md."
        ),
    )
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="direct", help="Beam runner (default direct)")
    parser.add_argument(
        "--tokenizer-sample",
        type=int,
        default=DEFAULT_TOKENIZER_SAMPLE,
        help="train examples the tokenizer is trained on, after the join (default %(default)s)",
    )
    parser.add_argument(
        "--pages-per-chunk",
        type=int,
        default=DEFAULT_PAGES_PER_CHUNK,
        help="pages per parallel parse chunk of a non-multistream dump (default %(default)s)",
    )
    parser.add_argument(
        "--streams-per-shard",
        type=int,
        default=DEFAULT_STREAMS_PER_SHARD,
        help="bzip2 streams (100 pages each) per read shard of a multistream dump (default %(default)s)",
    )
    parser.add_argument("--num-shards", type=int, default=0, help="Parquet files per split (0: the runner decides)")
    parser.add_argument(
        "--keep-partial-dumps",
        action="store_true",
        help="build from the pages read before a dump's error (truncated or corrupt file) instead of failing; "
        "the data card counts such files as dump_file_errors",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m data_prep beam ...``: build options parsed by data_prep's own ``build`` parser."""
    from data_prep.__main__ import one_line
    from data_prep.__main__ import parser as build_parser

    beam_args, rest = beam_parser().parse_known_args(argv)
    build_args, pipeline_args = build_parser().parse_known_args(["build", *rest])
    level = logging.INFO if build_args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    logging.getLogger().setLevel(level)
    fields = vars(build_args).copy()
    for key in ("command", "verbose"):
        fields.pop(key)
    fields["dumps"] = fields.pop("dump")
    try:
        config = BuildConfig(**fields)
        out = run_beam_build(
            config,
            beam_args.runner,
            pipeline_args,
            tokenizer_sample=beam_args.tokenizer_sample,
            pages_per_chunk=beam_args.pages_per_chunk,
            streams_per_shard=beam_args.streams_per_shard,
            num_shards=beam_args.num_shards,
            keep_partial_dumps=beam_args.keep_partial_dumps,
        )
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"built {out}")
    card = _read_text(f"{out}/data_card.md") or ""
    print(card.split("## Skipped")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
