"""The Beam build's graph, one function per stage (:func:`build_pipeline` wires them)::

    dump files ──(sharded read: data_prep.beam.dump_shards)──> page records
        ──page_skip_reason + parse_article──> articles (sections + cited URLs)          read_articles
    reference store files (WARC/WET via warcio, JSONL) ──> (canonical_url, text)
    articles' cited URLs  ⋈  store documents       CoGroupByKey on canonical_url
        ──> (article key, found documents)  ⋈  articles         CoGroupByKey on the article key    join_documents
        ──article_documents + make_example──> examples (clone removal, paragraph filter, 5 rankers)
        ──duplicate titles dropped (first in dump order), split_of_title──>              make_examples
        ──tokenizer trained on a sample of the train split (one worker), side input──> token ids   encode_rows
        ──> Parquet shards OUT/dataset/{train,validation,test}-SSSSS-of-NNNNN.parquet    write_dataset
    length counts, extractive ROUGE-L means ──> OUT/_beam/*.json                         write_summaries

The step labels are the graph's names on every runner (and in its metrics).
"""

from __future__ import annotations

import json

from data_prep.beam.combiners import MeanFn, SummaryFn
from data_prep.beam.common import WORK_DIR, beam, write_text
from data_prep.beam.joins import CitedUrls, MakeExample, first_of_title, match_documents, with_split
from data_prep.beam.options import DEFAULT_PAGES_PER_CHUNK, DEFAULT_STREAMS_PER_SHARD, DEFAULT_TOKENIZER_SAMPLE
from data_prep.beam.reading import (
    dumps_by_reader,
    input_files,
    multistream_shards,
    parse_chunk,
    read_articles_file,
    read_dump_file,
    read_multistream_shard,
    read_store_file,
    store_file_list,
)
from data_prep.beam.tokenizing import Encode, tokenizer_sample_row, train_and_save_tokenizer
from data_prep.build import dataset_features
from data_prep.config import DATASET_DIR, BuildConfig
from data_prep.extractive_eval import example_rouge_l
from data_prep.splits import SPLIT_NAMES


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
    articles = read_articles(pipeline, config, work_dir, pages_per_chunk, streams_per_shard)
    examples = make_examples(join_documents(pipeline, articles, config), config)
    rows = encode_rows(examples, config, tokenizer_sample, work_dir)
    write_dataset(rows, config, work_dir, num_shards)
    write_summaries(rows, examples, config, work_dir)


def read_articles(p, config: BuildConfig, work_dir: str, pages_per_chunk: int, streams_per_shard: int):
    """``(order key, article)`` of every page kept (or of every row of the articles tables)."""
    dumps, tables = input_files(config)
    if tables:
        return (
            p
            | "ArticleTables" >> beam.Create(list(enumerate(tables)))
            | "ReadArticleTables" >> beam.FlatMap(read_articles_file)
            | "SpreadArticles" >> beam.Reshuffle()
        )
    single, multi = dumps_by_reader(dumps)
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
    return (
        chunks
        | "SpreadChunks" >> beam.Reshuffle()
        | "ParsePages" >> beam.FlatMap(parse_chunk, config.max_wikitext_chars)
    )


def join_documents(p, articles, config: BuildConfig):
    """``(article key, {"article": [article], "found": [(url, text), ...]})``: the URL join of the web
    sources (references / search); wiki-body needs none."""
    if config.source == "wiki-body":
        return articles | "NoJoin" >> beam.Map(lambda kv: (kv[0], {"article": [kv[1]], "found": []}))
    roots = list(config.reference_store)
    store = (
        p
        | "StoreFiles" >> beam.Create(list(enumerate(store_file_list(roots))) if roots else [])
        | "SpreadStoreFiles" >> beam.Reshuffle()
        | "ReadStore" >> beam.FlatMap(read_store_file)
    )
    cites = articles | "CitedUrls" >> beam.ParDo(CitedUrls(config.source, config.search_results))
    found = (
        {"cites": cites, "docs": store}
        | "JoinByUrl" >> beam.CoGroupByKey()
        | "MatchDocuments" >> beam.FlatMap(match_documents)
    )
    return {"article": articles, "found": found} | "JoinByArticle" >> beam.CoGroupByKey()


def make_examples(grouped, config: BuildConfig):
    """``(order key, example)``: one per title (the first in dump order), the first ``max_articles``, with
    its split."""
    examples = (
        grouped
        | "MakeExamples" >> beam.ParDo(MakeExample(config.example_config(), config.source, config.search_results))
        | "ByTitle" >> beam.GroupByKey()
        | "FirstOfTitle" >> beam.FlatMap(first_of_title)
    )
    if config.max_articles:
        examples = (
            examples
            | "FirstN" >> beam.combiners.Top.Smallest(config.max_articles, key=lambda kv: kv[0])
            | "UnlistFirstN" >> beam.FlatMap(lambda rows: rows)
        )
    return examples | "Split" >> beam.Map(with_split, config.split_fractions, f"input_{config.rankers[0]}")


def encode_rows(examples, config: BuildConfig, tokenizer_sample: int, work_dir: str):
    """The dataset rows, one output per split: the tokenizer on a sample, after the join, as a side input."""
    tokenizer_json = (
        examples
        | "TokenizerRows" >> beam.Map(tokenizer_sample_row, config.rankers[0])
        | "TokenizerSample" >> beam.combiners.Top.Smallest(tokenizer_sample)
        | "TrainTokenizer" >> beam.Map(train_and_save_tokenizer, config.vocab_size, work_dir)
    )
    return examples | "Encode" >> beam.ParDo(
        Encode(config.rankers, max(config.input_lengths)), beam.pvalue.AsSingleton(tokenizer_json)
    ).with_outputs(*SPLIT_NAMES)


def write_dataset(rows, config: BuildConfig, work_dir: str, num_shards: int) -> None:
    """Parquet shards per split, HF datasets' file naming ``<split>-SSSSS-of-NNNNN.parquet``, the schema of
    :func:`data_prep.build.dataset_features`."""
    schema = dataset_features(config.rankers).arrow_schema
    for split in SPLIT_NAMES:
        rows[split] | f"Write_{split}" >> beam.io.WriteToParquet(
            f"{work_dir}/{DATASET_DIR}/{split}",
            schema=schema,
            file_name_suffix=".parquet",
            num_shards=num_shards,
            shard_name_template="-SSSSS-of-NNNNN",
        )


def write_summaries(rows, examples, config: BuildConfig, work_dir: str) -> None:
    """The data card's length counts and the extractive ROUGE-L means, as JSON under ``work_dir/_beam``."""
    all_rows = tuple(rows[s] for s in SPLIT_NAMES) | "AllRows" >> beam.Flatten()
    (
        all_rows
        | "Summary" >> beam.CombineGlobally(SummaryFn())
        | "WriteSummary" >> beam.Map(lambda s: write_text(f"{work_dir}/{WORK_DIR}/summary.json", json.dumps(s)))
    )
    if config.eval_lengths:
        rankers, lengths = tuple(config.rankers), tuple(config.eval_lengths)
        (
            examples
            | "Rouge" >> beam.Map(lambda kv: example_rouge_l(kv[1], rankers, lengths))
            | "RougeMeans" >> beam.CombineGlobally(MeanFn())
            | "WriteRouge" >> beam.Map(lambda s: write_text(f"{work_dir}/{WORK_DIR}/rouge.json", json.dumps(s)))
        )
