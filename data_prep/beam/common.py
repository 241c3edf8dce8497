"""What every module of the Beam build shares: the Apache Beam import (a clear error without the ``beam``
extra), the metrics namespace, the order key, and reading / writing small files on any Beam file system
(local, ``gs://``, ``s3://``, ``hdfs://``)."""

from __future__ import annotations

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

NAMESPACE = "wikisum"  # Beam metrics namespace of every count
WORK_DIR = "_beam"  # pipeline-written summaries, removed once the data card is written
DUMP_ERRORS_DIR = "dump_errors"  # under WORK_DIR: one file per dump that cannot be read to its end

__all__ = [
    "CompressionTypes", "FileSystems", "MetricsFilter", "PipelineOptions", "beam",
    "count", "is_remote", "open_raw", "order_key", "read_text", "write_text",
]


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to the ``wikisum`` counter ``name`` (the data card's counts)."""
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


def order_key(file_index: int, part: int, position: int) -> str:
    """A unique, sortable key: file order, then byte offset (or 0), then page / row / record ordinal."""
    return f"{file_index:06d}:{part:015d}:{position:010d}"


def is_remote(path: str) -> bool:
    return "://" in str(path)


def open_raw(path: str):
    return FileSystems.open(str(path), compression_type=CompressionTypes.UNCOMPRESSED)


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as file:
        file.write(text.encode("utf-8"))


def read_text(path: str) -> str | None:
    """The file's text, None when it does not exist."""
    if not FileSystems.exists(path):
        return None
    with open_raw(path) as file:
        return file.read().decode("utf-8")
