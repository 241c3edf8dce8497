"""The Beam build's public names in one place (the build itself is the package :mod:`data_prep.beam`):
``run_beam_build`` (run it), ``load_beam_dataset`` (read its shards), ``build_pipeline`` (add it to a
pipeline of your own), and the single-machine functions it calls (the same objects)."""

from data_prep.beam.joins import article_documents
from data_prep.beam.pipeline import build_pipeline, dataset_features
from data_prep.beam.publishing import drop_empty_shards, load_beam_dataset
from data_prep.beam.reading import page_to_article
from data_prep.beam.running import beam_card, data_card, pipeline_options, query_counters, run_beam_build
from data_prep.beam.tokenizing import example_row, fit_tokenizer

__all__ = [
    "article_documents", "beam_card", "build_pipeline", "data_card", "dataset_features", "drop_empty_shards",
    "example_row", "fit_tokenizer", "load_beam_dataset", "page_to_article", "pipeline_options", "query_counters",
    "run_beam_build",
]
