"""Orchestration of the single-machine WikiSum-style build (Liu et al. 2018, "Generating Wikipedia by
Summarizing Long Sequences"): read, process each article (pure stages), split, train the tokenizer,
encode, write the HF dataset, the data card and the extractive ROUGE table, one function per stage
(:func:`build_into`). The Beam build (:mod:`data_prep.beam`) reuses the per-record functions named in
:data:`data_prep.__doc__` (:func:`page_to_article`, :func:`article_documents`, :func:`example_row`,
:func:`fit_tokenizer`, :func:`dataset_features`; the card: :func:`data_prep.data_card.data_card`); the rest
of this file is single-machine.

Safe to interrupt and to run twice at once (:func:`data_prep.build_output.publish_build`): one build at a time holds
``<out>.lock``; everything is written under ``<out>.partial/`` (marked as ours) and moved into place with
a rename at the end, so ``<out>/`` either does not exist or is complete. A rerun removes a stale
``.partial`` of ours and redoes the job; a rerun over a complete build (every file of its manifest
present) with the same configuration and unchanged inputs (size + modification time) returns at once, a
changed input rebuilds, and a rebuild from scratch gives byte-identical files (no timestamps, no random
fingerprints, ordered parallel map; the manifest records the inputs' modification times).

The examples of one build are held in memory (the dump itself is streamed): fine up to ~10^5 articles;
the full English dump is the Beam build's job (docs/beam.md).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing
import sys
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from data_prep.articles_table import iter_table_rows, row_to_article
from data_prep.build_output import inputs_fingerprint, publish_build
from data_prep.cli import build_command
from data_prep.config import (
    CONFIG_FILE,
    DATASET_DIR,
    DEFAULT_INPUT_LENGTHS,
    SPECIAL_TOKENS_FILE,
    TOKENIZER_FILE,
    BuildConfig,
)
from data_prep.data_card import CARD_HISTOGRAMS, add_length_counts, data_card, write_card
from data_prep.dump import iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.example import ExampleConfig, make_example
from data_prep.extractive_eval import example_rouge_l, rouge_table, write_results
from data_prep.markup_check import example_markup_counters
from data_prep.page_filter import DEFAULT_MAX_WIKITEXT_CHARS, page_skip_reason
from data_prep.reference_store import ReferenceStore, store_files
from data_prep.sources import load_search_results, reference_documents, search_documents, wiki_body_documents
from data_prep.splits import SPLIT_NAMES, split_of_title
from data_prep.tokenizer import WordCachedEncoder, default_vocab_size, encode, special_token_ids, train_tokenizer
from data_prep.wikitext import parse_article

__all__ = [  # also the configuration, the card and its command, imported from here by callers of both builds
    "CARD_HISTOGRAMS", "CONFIG_FILE", "DATASET_DIR", "DEFAULT_INPUT_LENGTHS", "SPECIAL_TOKENS_FILE", "SUMMED_COUNTS",
    "TOKENIZER_FILE", "BuildConfig", "add_length_counts", "article_documents", "build_command", "build_dataset",
    "data_card", "dataset_features", "example_row", "fit_tokenizer", "page_to_article",
]

log = logging.getLogger(__name__)

# ---- the per-article stage, run in worker processes --------------------------------------------------------

_WORKER: dict = {}


def _init_worker(
    example_config: ExampleConfig, source: str, store, search_results, max_wikitext_chars
) -> None:
    _WORKER.update(
        example_config=example_config,
        source=source,
        store=store,
        search_results=search_results,
        max_wikitext_chars=max_wikitext_chars,
    )


def article_documents(article: dict, source: str, store, search_results) -> tuple[list[dict], dict]:
    """Source documents of one article for the chosen source."""
    if source == "wiki-body":
        return wiki_body_documents(article)
    lookup = store.get if store is not None else (lambda url: None)
    if source == "references":
        return reference_documents(article, lookup)
    return search_documents(article, search_results or {}, lookup)


def page_to_article(
    page: dict, max_wikitext_chars: int = DEFAULT_MAX_WIKITEXT_CHARS, with_reference_urls: bool = True
) -> tuple[dict | None, str | None]:
    """A dump page to ``(article, None)``, or ``(None, skip reason)`` (:func:`page_skip_reason`);
    ``with_reference_urls``: see :func:`data_prep.wikitext.parse_article`."""
    reason = page_skip_reason(page, max_wikitext_chars)
    if reason:
        return None, reason
    article = parse_article(page.get("title", ""), page["wikitext"], page.get("namespaces"), with_reference_urls)
    return article, None


def process_record(record: dict) -> dict:
    """A dump page or a parsed article in, ``{"title", "example" | "skip", "counts"}`` out."""
    title = record.get("title", "")
    if "wikitext" in record:  # a dump page
        article, reason = page_to_article(
            record, _WORKER["max_wikitext_chars"], with_reference_urls=_WORKER["source"] != "wiki-body"
        )
        if reason:
            return {"title": title, "skip": reason, "counts": {}}
    else:
        article = record
    documents, source_counts = article_documents(
        article, _WORKER["source"], _WORKER["store"], _WORKER["search_results"]
    )
    example, reason, counts = make_example(article, documents, source_counts, _WORKER["example_config"])
    if example is None:
        return {"title": title, "skip": reason, "counts": counts}
    return {"title": title, "example": example, "counts": counts}


def _rouge_worker(args) -> dict:
    example, rankers, lengths = args
    return example_rouge_l(example, rankers, lengths)


# ---- reading ------------------------------------------------------------------------------------------


def iter_input_records(config: BuildConfig):
    """Dump pages or article rows, in file order."""
    if config.articles:
        for path in config.articles:
            for row in iter_table_rows(path):
                yield row_to_article(row, Path(path).name)
    else:
        for path in config.dumps or [str(embedded_dump_path())]:
            yield from iter_dump_pages(path)


def _parallel_map(function, items, num_proc: int, initializer=None, initargs=(), desc="", total=None):
    """Ordered map with a progress bar; ``num_proc`` worker processes (1 = in this process)."""
    bar = dict(desc=desc, total=total, unit="rec", dynamic_ncols=True, disable=None)
    if num_proc <= 1:
        if initializer:
            initializer(*initargs)
        yield from tqdm(map(function, items), **bar)
        return
    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with context.Pool(num_proc, initializer=initializer, initargs=initargs) as pool:
        yield from tqdm(pool.imap(function, items, chunksize=4), **bar)


# ---- output ------------------------------------------------------------------------------------------


def dataset_features(rankers):
    """The HF features (hence the Arrow schema) of a build's rows; the Beam pipeline writes the same."""
    import datasets

    features = {"title": datasets.Value("string"), "target": datasets.Value("string")}
    for name in rankers:
        features[f"input_{name}"] = datasets.Value("string")
    features["target_ids"] = datasets.Sequence(datasets.Value("int32"))
    for name in rankers:
        features[f"input_ids_{name}"] = datasets.Sequence(datasets.Value("int32"))
    for name in (
        "n_target_words",
        "n_target_tokens",
        "n_source_words",
        "n_paragraphs",
        "n_documents",
        "n_cited_urls",
        "n_found_documents",
        "n_clones_removed",
    ):
        features[name] = datasets.Value("int32")
    return datasets.Features(features)


def _save_dataset(rows_by_split: dict[str, list[dict]], rankers, path: Path) -> None:
    """Save a DatasetDict with a content-derived fingerprint (HF would use a random one: not reproducible)."""
    import datasets

    features = dataset_features(rankers)
    splits = {}
    for split in SPLIT_NAMES:
        rows = rows_by_split[split]
        table = (
            pa.Table.from_pylist(rows, schema=features.arrow_schema)
            if rows
            else features.arrow_schema.empty_table()
        )
        digest = hashlib.sha256(json.dumps([r["title"] for r in rows]).encode()).hexdigest()[:16]
        splits[split] = datasets.Dataset(
            table,
            info=datasets.DatasetInfo(features=features),
            split=datasets.NamedSplit(split),
            fingerprint=f"{split}-{digest}",
        )
    # one shard per split, also for an empty split (HF would write zero shards, which it cannot load back)
    datasets.DatasetDict(splits).save_to_disk(str(path), num_shards={split: 1 for split in SPLIT_NAMES})


def fit_tokenizer(texts: list[str], vocab_size: int | None):
    """The build's BPE tokenizer on these texts; ``vocab_size`` None: :func:`default_vocab_size`."""
    distinct_words = len({w for t in texts for w in t.split()})
    return train_tokenizer(texts, vocab_size or default_vocab_size(distinct_words))


def example_row(example: dict, tokenizer, rankers, max_tokens: int) -> dict:
    """The dataset row of an example: its columns (no ``split``) plus token ids cut at ``max_tokens``.

    ``tokenizer``: a ``tokenizers.Tokenizer`` or, faster with the same ids, a
    :class:`data_prep.tokenizer.WordCachedEncoder` over it."""
    row = {k: v for k, v in example.items() if k != "split"}
    row["target_ids"] = encode(tokenizer, example["target"])
    row["n_target_tokens"] = len(row["target_ids"])
    for name in rankers:
        row[f"input_ids_{name}"] = encode(tokenizer, example[f"input_{name}"], max_tokens)
    return row


# the per-example counts (make_example's) summed into the data card
SUMMED_COUNTS = ("n_cited_urls", "n_found_documents", "n_clones_removed", "n_paragraphs_kept", "n_paragraphs_dropped")

def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ---- the build, one function per stage ------------------------------------------------------------------


def build_dataset(config: BuildConfig | None = None, **kwargs) -> Path:
    """Build (or find already built) a WikiSum-style dataset; returns the output folder.

    ``build_dataset(out="data/wikisum_sample")`` builds the embedded sample with the defaults; every
    :class:`BuildConfig` field can be passed as a keyword. The layout is described in data_prep/README.md.
    """
    config = config or BuildConfig(**kwargs)
    out = Path(config.out)
    card = publish_build(
        out, config.identity(), lambda: inputs_fingerprint(input_files(config)), lambda p: build_into(config, p)
    )
    if card is not None:
        log.info("built %s: %s", out, card["split_counts"])
    return out


def input_files(config: BuildConfig) -> list[str]:
    """Every input file of a build, in a fixed order: dumps (or the embedded excerpt) or articles tables,
    reference store files, the search results (their fingerprints decide whether a build is current)."""
    files = list(config.articles) if config.articles else list(config.dumps) or [str(embedded_dump_path())]
    for root in config.reference_store:
        files += [str(path) for path in store_files(root)]
    if config.search_results:
        files.append(config.search_results)
    return files


def build_into(config: BuildConfig, partial: Path) -> dict:
    """The build's files written into ``partial`` (:func:`publish_build` adds the configuration and the
    manifest); returns the data card."""
    store = ReferenceStore.from_paths(config.reference_store) if config.reference_store else None
    search_results = load_search_results(config.search_results) if config.search_results else None
    examples, counters = make_examples(config, store, search_results)
    for example in examples:
        example["split"] = split_of_title(example["title"], config.split_fractions)
    tokenizer, tokenizer_info = train_build_tokenizer(examples, config, partial)
    rows_by_split, length_counts, markup = encode_examples(examples, tokenizer, config)
    _save_dataset(rows_by_split, config.rankers, partial / DATASET_DIR)
    if config.eval_lengths:
        write_extractive_rouge(examples, config, partial)
    counters.update(markup)
    counters.update({f"split_{split}": len(rows) for split, rows in rows_by_split.items()})
    counters["articles_with_any_document"] = sum(1 for e in examples if e["n_found_documents"] > 0)
    counters["store_urls"] = len(store) if store is not None else 0
    if store is not None:
        counters.update({f"store_skip_{reason}": n for reason, n in store.skipped.items()})
    card = data_card(config, counters, length_counts, tokenizer_info)
    write_card(card, partial)
    return card


def make_examples(config: BuildConfig, store, search_results) -> tuple[list[dict], dict]:
    """Stage 1, the per-article stage: one example per title (the first in input order), up to
    ``max_articles``; returns them and the counters (``records_read``, ``examples``, :data:`SUMMED_COUNTS`,
    ``skip_<reason>``). Zero examples is an error."""
    totals: collections.Counter = collections.Counter()
    skip_reasons: collections.Counter = collections.Counter()
    examples: list[dict] = []
    seen_titles: set[str] = set()
    results = _parallel_map(
        process_record,
        iter_input_records(config),
        config.num_proc,
        _init_worker,
        (config.example_config(), config.source, store, search_results, config.max_wikitext_chars),
        desc="articles",
    )
    for result in results:
        totals["records_read"] += 1
        for key in SUMMED_COUNTS:
            totals[key] += result["counts"].get(key, 0)
        if "skip" in result:
            skip_reasons[result["skip"]] += 1
            log.info("skipped %r: %s", result["title"], result["skip"])
            continue
        if result["title"] in seen_titles:
            skip_reasons["duplicate_title"] += 1
            continue
        seen_titles.add(result["title"])
        examples.append(result["example"])
        if config.max_articles and len(examples) >= config.max_articles:
            break
    if not examples:
        raise RuntimeError(
            f"no example was produced from {config.dumps or config.articles or 'the embedded dump'} "
            f"(records read: {totals['records_read']}, skipped: {dict(skip_reasons)})"
        )
    counters = {**totals, "examples": len(examples), **{f"skip_{r}": n for r, n in skip_reasons.items()}}
    return examples, counters


def train_build_tokenizer(examples: list[dict], config: BuildConfig, partial: Path):
    """Stage 2: the BPE tokenizer on the train split (all examples when it is empty), saved with the special
    ids; returns it and the card's tokenizer entry."""
    train = [e for e in examples if e["split"] == "train"]
    texts = [t for e in train or examples for t in (e["target"], e[f"input_{config.rankers[0]}"])]
    tokenizer = fit_tokenizer(texts, config.vocab_size)
    tokenizer.save(str(partial / TOKENIZER_FILE))
    special_ids = special_token_ids(tokenizer)
    _write_json(partial / SPECIAL_TOKENS_FILE, special_ids)
    info = {
        "vocab_size": tokenizer.get_vocab_size(),
        **special_ids,
        "trained_on": "train split" if train else "all examples (the train split was empty)",
    }
    return tokenizer, info


def encode_examples(examples: list[dict], tokenizer, config: BuildConfig):
    """Stage 3: the dataset rows by split (token ids cut at max L), the card's length counts and the
    leftover-markup counters."""
    max_tokens = max(config.input_lengths)
    encoder = WordCachedEncoder(tokenizer)
    rows_by_split: dict[str, list[dict]] = {split: [] for split in SPLIT_NAMES}
    length_counts: dict[str, collections.Counter] = {}
    markup: collections.Counter = collections.Counter()
    for example in tqdm(examples, desc="tokenize", unit="ex", dynamic_ncols=True, disable=None):
        markup.update(example_markup_counters(example, f"input_{config.rankers[0]}"))
        row = example_row(example, encoder, config.rankers, max_tokens)
        add_length_counts(length_counts, row)
        rows_by_split[example["split"]].append(row)
    return rows_by_split, length_counts, markup


def write_extractive_rouge(examples: list[dict], config: BuildConfig, partial: Path) -> None:
    """Stage 4: the extractive-only ROUGE-L table (paper Figure 2)."""
    jobs = [(e, config.rankers, config.eval_lengths) for e in examples]
    per_example = list(_parallel_map(_rouge_worker, jobs, config.num_proc, desc="rouge", total=len(jobs)))
    write_results(rouge_table(per_example, config.rankers, config.eval_lengths), partial)
