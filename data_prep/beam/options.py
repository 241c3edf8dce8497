"""The Beam build's own settings and their defaults, apart from :class:`data_prep.config.BuildConfig` (no Beam
import: the command line, :mod:`data_prep.cli`, reads them without Apache Beam installed)."""

from data_prep.beam.dump_shards import DEFAULT_PAGES_PER_CHUNK, DEFAULT_STREAMS_PER_SHARD

RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
DEFAULT_TOKENIZER_SAMPLE = 10_000  # train examples; <= ~0.7 GB of text at the paper's lengths, one worker

__all__ = ["DEFAULT_PAGES_PER_CHUNK", "DEFAULT_STREAMS_PER_SHARD", "DEFAULT_TOKENIZER_SAMPLE", "RUNNERS"]
