"""Running the Beam build: options, the pipeline run, its checks, the data card, the output protocol.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences", ICLR) built WikiSum on 1,000 VMs
launched by a script of their own (tensor2tensor ``data_generators/wikisum/parallel_launch.py``); here the
same examples as :func:`data_prep.build.build_dataset` come from one Beam pipeline
(:mod:`data_prep.beam.pipeline`) on the DirectRunner, Dataflow, Flink or Spark. Bad records never fail the
pipeline: they are counted (Beam metrics, namespace ``wikisum``, listed in the data card) and logged with
their file. Zero examples is an error; so is a dump that cannot be read to its end, unless partial dumps
are allowed. The deviations from the single-machine build are listed in :mod:`data_prep.beam`.

Run: ``python -m data_prep beam --runner direct|dataflow|flink|spark [build options] [Beam options]``
(:mod:`data_prep.cli`, docs/beam.md).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import tempfile
from pathlib import Path

from data_prep.beam.common import (
    NAMESPACE,
    WORK_DIR,
    FileSystems,
    MetricsFilter,
    PipelineOptions,
    beam,
    is_remote,
    read_text,
)
from data_prep.beam.options import (
    DEFAULT_PAGES_PER_CHUNK,
    DEFAULT_STREAMS_PER_SHARD,
    DEFAULT_TOKENIZER_SAMPLE,
    RUNNERS,
)
from data_prep.beam.pipeline import build_pipeline
from data_prep.beam.publishing import drop_empty_shards, inputs_fingerprint, publish_remote
from data_prep.beam.reading import dump_errors
from data_prep.build_output import publish_build
from data_prep.config import SPECIAL_TOKENS_FILE, BuildConfig
from data_prep.data_card import CARD_HISTOGRAMS, HISTOGRAM_EDGES, data_card, write_card
from data_prep.dump import DumpFormatError
from data_prep.extractive_eval import rouge_table, write_results

log = logging.getLogger(__name__)


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

    Local output: the single-machine build's protocol (:func:`data_prep.build_output.publish_build`): an
    exclusive lock, written under a marked ``OUT.partial/``, a manifest of files and input fingerprints,
    renamed to ``OUT/`` at the end. Remote output (``gs://`` ...): written in place, ``build_config.json``
    last (:func:`data_prep.beam.publishing.publish_remote`). A rerun over a finished build with the same
    configuration (and, locally, unchanged inputs) returns at once. A dump that cannot be read to its end
    (truncated, corrupt) fails the build with :class:`~data_prep.dump.DumpFormatError` naming it, unless
    ``keep_partial_dumps`` (then its pages before the error are used and ``dump_file_errors`` counts it in
    the data card).
    """
    if tokenizer_sample < 1:
        raise ValueError("tokenizer_sample must be positive")
    out = str(config.out).rstrip("/")
    identity = {"engine": "beam", "tokenizer_sample": tokenizer_sample, **config.identity()}
    if keep_partial_dumps:
        identity["keep_partial_dumps"] = True
    remote = is_remote(out)
    if runner == "dataflow" and not remote:
        raise ValueError(f"--runner dataflow writes from cloud workers: --out must be gs://..., not {out}")
    run = functools.partial(
        run_into,
        config,
        runner,
        pipeline_args,
        keep_partial_dumps,
        tokenizer_sample=tokenizer_sample,
        pages_per_chunk=pages_per_chunk,
        streams_per_shard=streams_per_shard,
        num_shards=num_shards,
    )
    if remote:
        card = publish_remote(out, identity, run)
    else:
        card = publish_build(Path(out), identity, lambda: inputs_fingerprint(config), lambda work: run(str(work)))
    if card is not None:
        log.info("built %s: %s", out, card["split_counts"])
    return out


def pipeline_options(runner: str, pipeline_args: list[str], num_proc: int = 1):
    """Beam options: the runner, pass-through options, and for ``direct`` ``--num-proc`` worker processes."""
    if runner not in RUNNERS:
        raise ValueError(f"--runner must be one of {sorted(RUNNERS)}, not {runner!r}")
    args = [f"--runner={RUNNERS[runner]}"]
    if runner == "direct" and num_proc > 1 and not any(a.startswith("--direct_") for a in pipeline_args):
        args += [f"--direct_num_workers={num_proc}", "--direct_running_mode=multi_processing"]
    return PipelineOptions(args + list(pipeline_args))


def run_into(
    config: BuildConfig,
    runner: str,
    pipeline_args,
    keep_partial_dumps: bool,
    work_dir: str,
    *,
    tokenizer_sample: int,
    pages_per_chunk: int,
    streams_per_shard: int,
    num_shards: int,
) -> dict:
    """Run the pipeline writing into ``work_dir``, check it, then write the data card and the ROUGE table
    (the caller writes ``build_config.json``); returns the card."""
    pipeline = beam.Pipeline(options=pipeline_options(runner, list(pipeline_args or []), config.num_proc))
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
    card = write_card_and_rouge(config, counters, work_dir, runner, tokenizer_sample)
    FileSystems.delete([f"{work_dir}/{WORK_DIR}"])
    return card


def query_counters(result) -> dict[str, int]:
    """The pipeline's ``wikisum`` counters, summed over steps (committed values where the runner has them)."""
    totals: collections.Counter = collections.Counter()
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] += int(value or 0)
    return dict(totals)


def write_card_and_rouge(config: BuildConfig, counters: dict, work_dir: str, runner: str, tokenizer_sample: int):
    """The data card (from the counters and the pipeline's summaries) and the extractive ROUGE-L table,
    written into ``work_dir`` on its file system; returns the card."""
    summary = json.loads(read_text(f"{work_dir}/{WORK_DIR}/summary.json") or "{}")
    tokenizer_info = json.loads(read_text(f"{work_dir}/{WORK_DIR}/tokenizer_sample.json") or "{}")
    tokenizer_info["cap"] = tokenizer_sample
    special_ids = json.loads(read_text(f"{work_dir}/{SPECIAL_TOKENS_FILE}") or "{}")
    card = beam_card(config, counters, summary, tokenizer_info, special_ids, runner)
    rouge = json.loads(read_text(f"{work_dir}/{WORK_DIR}/rouge.json") or "null")
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
    return card


def beam_card(config: BuildConfig, counters: dict, summary: dict, tokenizer_info: dict, special_ids: dict, runner):
    """The data card (:func:`data_prep.data_card.data_card`) from the Beam metrics and the pipeline's summaries,
    with the Beam build's own counts (dump chunks and errors, store records and file errors)."""
    length_counts = {name: {int(k): n for k, n in summary.get(name, {}).items()} for name in CARD_HISTOGRAMS}
    with_documents = summary.get("articles_with_any_document", {}).get("1", 0)
    trained_on = (
        f"a sample of {tokenizer_info.get('sample_examples')} examples of the "
        + ("train split" if tokenizer_info.get("sample_is_train") else "build (the train split was empty)")
        + f" ({counters.get('split_train', 0)} train examples; sample cap {tokenizer_info.get('cap')})"
    )
    card = data_card(
        config,
        {**counters, "articles_with_any_document": with_documents},
        length_counts,
        {**special_ids, "vocab_size": tokenizer_info.get("vocab_size"), "trained_on": trained_on},
        runner=runner,
    )
    card["counts"].update(
        dump_chunks=counters.get("dump_chunks", 0), dump_file_errors=counters.get("dump_file_errors", 0)
    )
    card["coverage"].update(
        reference_store_records=counters.get("store_records", 0),
        reference_store_file_errors=counters.get("store_file_errors", 0),
    )
    card["histogram_edges"] = list(HISTOGRAM_EDGES)
    return card
