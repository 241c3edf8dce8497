"""The command line of both builds, defined once: ``python -m data_prep build|beam|stats``.

``build`` and ``beam`` share every build option (:func:`add_build_options`, one per
:class:`~data_prep.config.BuildConfig` field but ``max_wikitext_chars``); ``beam`` adds the Beam build's own
(:func:`add_beam_options`) and passes every option it does not know to Beam (``--project``, ``--region``,
``--temp_location`` for Dataflow, ``--flink_master``, ...; docs/beam.md). The data card's command line
(:func:`build_command`) is derived from the same parser, so it reads back to the same configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex

from data_prep.beam.options import (
    DEFAULT_PAGES_PER_CHUNK,
    DEFAULT_STREAMS_PER_SHARD,
    DEFAULT_TOKENIZER_SAMPLE,
    RUNNERS,
)
from data_prep.config import DEFAULT_INPUT_LENGTHS, BuildConfig
from data_prep.example import DEFAULT_RANKERS, ExampleConfig
from data_prep.extractive_eval import DEFAULT_EVAL_LENGTHS
from data_prep.sources import SOURCES
from data_prep.splits import DEFAULT_FRACTIONS

DESCRIPTION = "Build WikiSum-style datasets (Liu et al. 2018) from Wikipedia dumps and reference documents."
# build options written in the data card's command even at their default value (the rest only when set)
ALWAYS_IN_COMMAND = ("out", "source", "rankers", "input_lengths", "eval_lengths", "target_mode")
NOT_IN_COMMAND = ("num_proc", "verbose")  # how a build runs, not what it builds
FIELD_OF_DEST = {"dump": "dumps"}  # argparse dest -> BuildConfig field where the names differ
BEAM_SETTINGS = ("tokenizer_sample", "pages_per_chunk", "streams_per_shard", "num_shards", "keep_partial_dumps")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def add_build_options(build: argparse.ArgumentParser) -> None:
    """The options of a build (both engines), in the order the data card's command writes them."""
    build.add_argument("--out", required=True, help="output folder (written atomically)")
    build.add_argument(
        "--source",
        choices=SOURCES,
        default="wiki-body",
        help="wiki-body = offline STAND-IN (the article's own sections); references/search = paper",
    )
    build.add_argument(
        "--dump",
        action="append",
        default=[],
        help="MediaWiki XML dump (.xml/.bz2/.gz); repeatable. "
        "Default: the enwiki excerpt shipped in the gensim wheel",
    )
    build.add_argument(
        "--articles", action="append", default=[], help="JSONL/Parquet {title, text} instead of a dump"
    )
    build.add_argument(
        "--reference-store",
        action="append",
        default=[],
        help="WARC/WET/JSONL {url, text|html} file or folder; repeatable",
    )
    build.add_argument("--search-results", help="JSONL {title, results:[{url}]} for --source search")
    build.add_argument("--rankers", type=_names, default=DEFAULT_RANKERS, help="comma-separated, default all")
    build.add_argument(
        "--input-lengths",
        type=_ints,
        default=DEFAULT_INPUT_LENGTHS,
        help="L values (tokens); ids are stored up to the largest",
    )
    build.add_argument(
        "--eval-lengths",
        type=_ints,
        default=DEFAULT_EVAL_LENGTHS,
        help="L values (words) of the extractive ROUGE-L table; empty to skip",
    )
    build.add_argument("--target", dest="target_mode", choices=("lead", "article"), default="lead")
    build.add_argument("--vocab-size", type=int, help="default: 32768, smaller for a small corpus")
    build.add_argument("--split-fractions", type=_floats, default=DEFAULT_FRACTIONS)
    build.add_argument("--max-articles", type=int, help="stop after this many examples")
    build.add_argument(
        "--keep-clones",
        dest="remove_clones",
        action="store_false",
        help="do not drop reference documents that copy the article",
    )
    build.add_argument(
        "--min-source-words",
        type=int,
        default=ExampleConfig.min_source_words,
        help="skip an article with fewer source words (after the paragraph filter); default %(default)s",
    )
    build.add_argument(
        "--min-source-ratio",
        dest="min_source_target_ratio",
        type=float,
        default=ExampleConfig.min_source_target_ratio,
        help="skip an article whose source has fewer than this times its target's words; default %(default)s",
    )
    build.add_argument("--num-proc", type=int, default=1, help="worker processes (beam: DirectRunner workers)")
    build.add_argument("-v", "--verbose", action="store_true", help="log every skipped record")


def add_beam_options(beam: argparse.ArgumentParser) -> None:
    """The Beam build's own options (:func:`data_prep.beam.running.run_beam_build`)."""
    beam.add_argument("--runner", choices=sorted(RUNNERS), default="direct", help="Beam runner (default direct)")
    beam.add_argument(
        "--tokenizer-sample",
        type=int,
        default=DEFAULT_TOKENIZER_SAMPLE,
        help="train examples the tokenizer is trained on, after the join (default %(default)s)",
    )
    beam.add_argument(
        "--pages-per-chunk",
        type=int,
        default=DEFAULT_PAGES_PER_CHUNK,
        help="pages per parallel parse chunk of a non-multistream dump (default %(default)s)",
    )
    beam.add_argument(
        "--streams-per-shard",
        type=int,
        default=DEFAULT_STREAMS_PER_SHARD,
        help="bzip2 streams (100 pages each) per read shard of a multistream dump (default %(default)s)",
    )
    beam.add_argument("--num-shards", type=int, default=0, help="Parquet files per split (0: the runner decides)")
    beam.add_argument(
        "--keep-partial-dumps",
        action="store_true",
        help="build from the pages read before a dump's error (truncated or corrupt file) instead of failing; "
        "the data card counts such files as dump_file_errors",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m data_prep", description=DESCRIPTION)
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a WikiSum-style dataset")
    add_build_options(build)
    beam = commands.add_parser(
        "beam",
        allow_abbrev=False,  # an abbreviation could take a Beam option meant for the runner
        help="the same build on Apache Beam (--runner direct|dataflow|flink|spark)",
        description="Build a WikiSum-style dataset with Apache Beam: the build options, the Beam options below, "
        "and every other option passed to Beam (e.g. --project, --region, --temp_location for Dataflow; "
        "--flink_master; --spark_master_url; --environment_type). See docs/beam.md.",
    )
    add_build_options(beam)
    add_beam_options(beam)
    stats = commands.add_parser("stats", help="print the data card of a build")
    stats.add_argument("out")
    return root


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The parsed arguments and, for ``beam``, the options passed through to Beam (an error for the others)."""
    root = parser()
    args, rest = root.parse_known_args(argv)
    if rest and args.command != "beam":
        root.error(f"unrecognized arguments: {' '.join(rest)}")
    return args, rest


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The :class:`BuildConfig` of parsed ``build`` / ``beam`` arguments."""
    fields = {FIELD_OF_DEST.get(dest, dest): value for dest, value in vars(args).items()}
    return BuildConfig(**{f.name: fields[f.name] for f in dataclasses.fields(BuildConfig) if f.name in fields})


def beam_settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`data_prep.beam.running.run_beam_build` among parsed ``beam`` arguments."""
    return {name: getattr(args, name) for name in BEAM_SETTINGS}


def _build_actions() -> list[argparse.Action]:
    probe = argparse.ArgumentParser(add_help=False)
    add_build_options(probe)
    return probe._actions


def _as_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def cli_args_of(config: BuildConfig) -> list[str]:
    """The build options that reproduce ``config``, read off :func:`add_build_options` (for the data card):
    :data:`ALWAYS_IN_COMMAND` always, every other option only when it differs from its default."""
    args: list[str] = []
    for action in _build_actions():
        if action.dest in NOT_IN_COMMAND:
            continue
        flag = max(action.option_strings, key=len)
        value = getattr(config, FIELD_OF_DEST.get(action.dest, action.dest))
        if isinstance(action, argparse._AppendAction):
            args += [a for item in value for a in (flag, str(item))]
        elif action.nargs == 0:  # a flag (store_true / store_false)
            args += [flag] if value == action.const else []
        elif action.dest in ALWAYS_IN_COMMAND or _normal(value) != _normal(action.default):
            args += [flag, _as_text(value)]
    return args


def _normal(value):
    return tuple(value) if isinstance(value, list) else value


def build_command(config: BuildConfig, runner: str | None = None) -> str:
    """The command line that reproduces ``config`` (``runner``: the Beam build's ``--runner``)."""
    head = "python -m data_prep build" if runner is None else f"python -m data_prep beam --runner {runner}"
    return head + " " + " ".join(shlex.quote(a) for a in cli_args_of(config))


def one_line(err: BaseException) -> str:
    """An error as one line (an OSError the system raised shows its cause and file)."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = str(err)
    return " ".join(text.split())
