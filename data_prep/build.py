"""Orchestration of the single-machine WikiSum-style build (Liu et al. 2018, "Generating Wikipedia by
Summarizing Long Sequences"): read, process each article (pure stages), split, train the tokenizer,
encode, write the HF dataset, the data card and the extractive ROUGE table. Issue 8's Beam pipeline
reuses the per-record functions named in :data:`data_prep.__doc__`; only this file is single-machine.

Safe to interrupt and to run twice at once (:mod:`data_prep.build_output`): one build at a time holds
``<out>.lock``; everything is written under ``<out>.partial/`` (marked as ours) and moved into place with
a rename at the end, so ``<out>/`` either does not exist or is complete. A rerun removes a stale
``.partial`` of ours and redoes the job; a rerun over a complete build (every file of its manifest
present) with the same configuration and unchanged inputs (size + modification time) returns at once, a
changed input rebuilds, and a rebuild from scratch gives byte-identical files (no timestamps, no random
fingerprints, ordered parallel map; the manifest records the inputs' modification times).

The examples of one build are held in memory (the dump itself is streamed): fine up to ~10^5 articles;
the full English dump is issue 8's job.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from data_prep.articles_table import iter_table_rows, row_to_article
from data_prep.build_output import (
    check_output_path,
    exclusive_lock,
    inputs_fingerprint,
    is_current_build,
    prepare_partial,
    publish,
    write_manifest,
    writing,
)
from data_prep.data_card import HISTOGRAM_EDGES, length_histogram, write_card
from data_prep.dump import iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.example import DEFAULT_RANKERS, ExampleConfig, make_example
from data_prep.extractive_eval import DEFAULT_EVAL_LENGTHS, example_rouge_l, rouge_table, write_results
from data_prep.markup_check import example_markup_counters, markup_table
from data_prep.page_filter import DEFAULT_MAX_WIKITEXT_CHARS, page_skip_reason
from data_prep.reference_store import ReferenceStore, store_files
from data_prep.sources import (
    SOURCES,
    load_search_results,
    reference_documents,
    search_documents,
    wiki_body_documents,
)
from data_prep.splits import DEFAULT_FRACTIONS, SPLIT_NAMES, split_of_title
from data_prep.tokenizer import WordCachedEncoder, default_vocab_size, encode, special_token_ids, train_tokenizer
from data_prep.wikitext import parse_article

log = logging.getLogger(__name__)

DATASET_DIR = "dataset"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILE = "special_tokens.json"
CONFIG_FILE = "build_config.json"
DEFAULT_INPUT_LENGTHS = (100, 500, 2000, 11000)


@dataclass
class BuildConfig:
    """Everything that determines a build's bytes (saved as ``build_config.json``)."""

    out: str  # output folder (created atomically)
    dumps: list[str] = field(default_factory=list)  # MediaWiki XML dumps; none and no articles = embedded
    articles: list[str] = field(default_factory=list)  # JSONL/Parquet {title, text} files instead of dumps
    source: str = "wiki-body"  # wiki-body (offline stand-in) | references | search
    reference_store: list[str] = field(default_factory=list)  # WARC/WET/JSONL files or folders
    search_results: str | None = None  # JSONL {title, results} for source=search
    rankers: tuple[str, ...] = DEFAULT_RANKERS
    input_lengths: tuple[int, ...] = DEFAULT_INPUT_LENGTHS  # L values; token ids are stored up to max(L)
    eval_lengths: tuple[int, ...] = DEFAULT_EVAL_LENGTHS  # L (words) of the extractive ROUGE table; () = skip
    target_mode: str = "lead"
    vocab_size: int | None = None  # None: 2^15, smaller for a small corpus
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    max_articles: int | None = None  # stop after this many examples (a quick sample)
    max_wikitext_chars: int = DEFAULT_MAX_WIKITEXT_CHARS
    remove_clones: bool = True
    min_source_words: int = ExampleConfig.min_source_words  # see ExampleConfig: "source_too_short"
    min_source_target_ratio: float = ExampleConfig.min_source_target_ratio  # "source_shorter_than_target"
    num_proc: int = 1  # worker processes for the per-article stage and the ROUGE evaluation

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")
        if self.source == "references" and not self.reference_store:
            raise ValueError("--source references needs --reference-store (WARC/WET/JSONL files or folder)")
        if self.source == "search" and not self.search_results:
            raise ValueError("--source search needs --search-results (JSONL of results per title)")
        if self.dumps and self.articles:
            raise ValueError("give --dump or --articles, not both")
        if not self.input_lengths or min(self.input_lengths) < 1:
            raise ValueError("input_lengths must be positive token counts")
        self.rankers = tuple(self.rankers)
        self.input_lengths = tuple(sorted(set(self.input_lengths)))
        self.eval_lengths = tuple(sorted(set(self.eval_lengths)))
        self.split_fractions = tuple(self.split_fractions)
        self.example_config()  # validates rankers, target_mode and the minimum-source filters

    def example_config(self) -> ExampleConfig:
        """How each article of this build becomes an example (the same for the Beam pipeline)."""
        return ExampleConfig(
            rankers=self.rankers,
            max_input_words=max(self.input_lengths),
            target_mode=self.target_mode,
            remove_clones=self.remove_clones,
            source_is_article=self.source == "wiki-body",
            min_source_words=self.min_source_words,
            min_source_target_ratio=self.min_source_target_ratio,
        )

    def identity(self) -> dict:
        """The fields that decide the output (``num_proc`` and ``out`` do not)."""
        fields = asdict(self)
        fields.pop("num_proc")
        fields.pop("out")
        return json.loads(json.dumps(fields))


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


# the data card's length histograms: card name -> row column
CARD_HISTOGRAMS = {
    "target words": "n_target_words",
    "target tokens": "n_target_tokens",
    "source words (all kept paragraphs)": "n_source_words",
    "paragraphs": "n_paragraphs",
}


def add_length_counts(length_counts: dict[str, collections.Counter], row: dict) -> None:
    """Count one row's lengths into ``{card histogram name: Counter(length -> rows)}``."""
    for name, column in CARD_HISTOGRAMS.items():
        length_counts.setdefault(name, collections.Counter())[row[column]] += 1


def _prefixed(counters: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}


def build_command(config: BuildConfig, runner: str | None = None) -> str:
    """The command line that reproduces ``config`` (``runner``: the Beam pipeline's ``--runner``)."""
    head = "python -m data_prep build" if runner is None else f"python -m data_prep beam --runner {runner}"
    return head + " " + " ".join(shlex.quote(a) for a in cli_args_of(config))


def data_card(
    config: BuildConfig, counters: dict, length_counts: dict, tokenizer_info: dict, runner: str | None = None
) -> dict:
    """The data card of a build (both engines): counts, skip reasons, coverage, histograms, tokenizer.

    ``counters`` holds the build's counts under the Beam metric names: ``records_read``, ``examples``,
    ``split_<split>``, ``skip_<reason>``, ``n_cited_urls``, ``n_found_documents``, ``n_clones_removed``,
    ``n_paragraphs_kept``, ``n_paragraphs_dropped``, ``articles_with_any_document``, ``store_urls``,
    ``store_skip_<reason>``, the leftover-markup counters of :mod:`data_prep.markup_check` (and, for Beam,
    ``dump_chunks``, ``dump_file_errors``, ``store_records``,
    ``store_file_errors``). ``length_counts``: see :func:`add_length_counts`. ``tokenizer_info``:
    ``vocab_size``, the special ids and ``trained_on``. ``runner``: the Beam runner, None for this module.
    """
    beam = runner is not None
    skip_reasons = _prefixed(counters, "skip_")
    cited, found = counters.get("n_cited_urls", 0), counters.get("n_found_documents", 0)
    counts = {
        "records_read": counters.get("records_read", 0),
        "examples": counters.get("examples", 0),
        "skipped": sum(skip_reasons.values()),
        "paragraphs_kept": counters.get("n_paragraphs_kept", 0),
        "paragraphs_dropped_by_filter": counters.get("n_paragraphs_dropped", 0),
        "documents_removed_as_clones": counters.get("n_clones_removed", 0),
    }
    coverage = {
        "source": config.source,
        "cited_or_searched_urls": cited,
        "documents_found": found,
        "url_coverage": round(found / cited, 4) if cited else None,
        "articles_with_any_document": counters.get("articles_with_any_document", 0),
        "reference_store_documents": counters.get("store_urls", 0),
    }
    if beam:
        counts.update(
            dump_chunks=counters.get("dump_chunks", 0), dump_file_errors=counters.get("dump_file_errors", 0)
        )
        coverage.update(
            reference_store_records=counters.get("store_records", 0),
            reference_store_file_errors=counters.get("store_file_errors", 0),
        )
    card = {
        "name": Path(str(config.out)).name,
        "description": (
            "WikiSum-style dataset (Liu et al. 2018)"
            + (", built with Apache Beam" if beam else "")
            + ": target = "
            + ("the lead section" if config.target_mode == "lead" else "the whole article")
            + f"; source = {config.source}"
            + (
                " (STAND-IN: the article's own non-lead sections, not its cited references)"
                if config.source == "wiki-body"
                else ""
            )
            + "."
            + (" Counts are Beam metrics (namespace 'wikisum')." if beam else "")
        ),
        "command": build_command(config, runner),
        "inputs": [Path(p).name for p in (config.dumps or config.articles)] or ["embedded enwiki excerpt"],
        "split_counts": {split: counters.get(f"split_{split}", 0) for split in SPLIT_NAMES},
        "counts": counts,
        "skip_reasons": skip_reasons,
        "coverage": coverage,
        "reference_store_skipped": _prefixed(counters, "store_skip_"),
        "histograms": {
            name: length_histogram(
                [length for length, n in sorted(length_counts.get(name, {}).items()) for _ in range(n)]
            )
            for name in CARD_HISTOGRAMS
        },
        "tokenizer": {"file": TOKENIZER_FILE, **tokenizer_info},
        "input_lengths": list(config.input_lengths),
        "leftover_markup": markup_table(counters),
    }
    if beam:
        card["histogram_edges"] = list(HISTOGRAM_EDGES)
    return card


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def build_dataset(config: BuildConfig | None = None, **kwargs) -> Path:
    """Build (or find already built) a WikiSum-style dataset; returns the output folder.

    ``build_dataset(out="data/wikisum_sample")`` builds the embedded sample with the defaults; every
    :class:`BuildConfig` field can be passed as a keyword. The layout is described in data_prep/README.md.
    """
    config = config or BuildConfig(**kwargs)
    out = Path(config.out)
    check_output_path(out)
    inputs = inputs_fingerprint(input_files(config))
    with writing(out), exclusive_lock(out):
        if is_current_build(out, config.identity(), inputs, CONFIG_FILE):
            log.info("%s is already built with this configuration and these inputs: nothing to do", out)
            return out
        partial = prepare_partial(out)
        with writing(out, partial):
            card = _build_into(config, partial, inputs)
            publish(partial, out)
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


def _build_into(config: BuildConfig, partial: Path, inputs: list[dict]) -> dict:
    """The whole build written into ``partial`` (manifest last); returns the data card."""
    store = ReferenceStore.from_paths(config.reference_store) if config.reference_store else None
    search_results = load_search_results(config.search_results) if config.search_results else None
    example_config = config.example_config()

    # 1. the per-article stage
    skip_reasons: collections.Counter = collections.Counter()
    totals: collections.Counter = collections.Counter()
    examples: list[dict] = []
    seen_titles: set[str] = set()
    results = _parallel_map(
        process_record,
        iter_input_records(config),
        config.num_proc,
        _init_worker,
        (example_config, config.source, store, search_results, config.max_wikitext_chars),
        desc="articles",
    )
    for result in results:
        totals["records_read"] += 1
        for key in (
            "n_cited_urls",
            "n_found_documents",
            "n_clones_removed",
            "n_paragraphs_kept",
            "n_paragraphs_dropped",
        ):
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

    # 2. splits, tokenizer on the training split, token ids
    for example in examples:
        example["split"] = split_of_title(example["title"], config.split_fractions)
    train = [e for e in examples if e["split"] == "train"]
    tokenizer_texts = [t for e in train or examples for t in (e["target"], e[f"input_{config.rankers[0]}"])]
    tokenizer = fit_tokenizer(tokenizer_texts, config.vocab_size)
    tokenizer.save(str(partial / TOKENIZER_FILE))
    special_ids = special_token_ids(tokenizer)
    _write_json(partial / SPECIAL_TOKENS_FILE, special_ids)
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
    _save_dataset(rows_by_split, config.rankers, partial / DATASET_DIR)

    # 3. extractive-only ROUGE-L (paper Figure 2)
    if config.eval_lengths:
        jobs = [(e, config.rankers, config.eval_lengths) for e in examples]
        per_example = list(_parallel_map(_rouge_worker, jobs, config.num_proc, desc="rouge", total=len(jobs)))
        write_results(rouge_table(per_example, config.rankers, config.eval_lengths), partial)

    # 4. data card
    counters = {
        **totals,
        **markup,
        "examples": len(examples),
        **{f"split_{split}": len(rows) for split, rows in rows_by_split.items()},
        **{f"skip_{reason}": n for reason, n in skip_reasons.items()},
        "articles_with_any_document": sum(1 for e in examples if e["n_found_documents"] > 0),
        "store_urls": len(store) if store is not None else 0,
        **({f"store_skip_{reason}": n for reason, n in store.skipped.items()} if store is not None else {}),
    }
    tokenizer_info = {
        "vocab_size": tokenizer.get_vocab_size(),
        **special_ids,
        "trained_on": "train split" if train else "all examples (the train split was empty)",
    }
    card = data_card(config, counters, length_counts, tokenizer_info)
    write_card(card, partial)
    _write_json(partial / CONFIG_FILE, config.identity())
    write_manifest(partial, inputs)  # last: the files and the inputs' fingerprints mark completion
    return card


def cli_args_of(config: BuildConfig) -> list[str]:
    """The ``python -m data_prep build`` arguments that reproduce ``config`` (for the data card)."""
    args = ["--out", config.out, "--source", config.source]
    for dump in config.dumps:
        args += ["--dump", dump]
    for path in config.articles:
        args += ["--articles", path]
    for path in config.reference_store:
        args += ["--reference-store", path]
    if config.search_results:
        args += ["--search-results", config.search_results]
    args += [
        "--rankers",
        ",".join(config.rankers),
        "--input-lengths",
        ",".join(map(str, config.input_lengths)),
        "--eval-lengths",
        ",".join(map(str, config.eval_lengths)),
        "--target",
        config.target_mode,
    ]
    if config.vocab_size:
        args += ["--vocab-size", str(config.vocab_size)]
    if tuple(config.split_fractions) != DEFAULT_FRACTIONS:
        args += ["--split-fractions", ",".join(map(str, config.split_fractions))]
    if config.max_articles:
        args += ["--max-articles", str(config.max_articles)]
    if not config.remove_clones:
        args.append("--keep-clones")
    if config.min_source_words != ExampleConfig.min_source_words:
        args += ["--min-source-words", str(config.min_source_words)]
    if config.min_source_target_ratio != ExampleConfig.min_source_target_ratio:
        args += ["--min-source-ratio", repr(config.min_source_target_ratio)]
    return args
