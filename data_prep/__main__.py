"""Command line: ``python -m data_prep build ...`` (also installed as ``wikisum-prep``).

Examples::

    python -m data_prep build --out data/wikisum_sample                     # embedded enwiki excerpt
    python -m data_prep build --dump enwiki-...-pages-articles.xml.bz2 --out OUT --num-proc 8
    python -m data_prep build --dump D.xml.bz2 --source references --reference-store refs/ --out OUT
    python -m data_prep build --articles wiki.parquet --source search --search-results s.jsonl \\
        --reference-store refs/ --out OUT
    python -m data_prep stats OUT                                           # print the data card
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from data_prep.build import DEFAULT_INPUT_LENGTHS, BuildConfig, build_dataset
from data_prep.example import DEFAULT_RANKERS, ExampleConfig
from data_prep.extractive_eval import DEFAULT_EVAL_LENGTHS
from data_prep.sources import SOURCES


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a WikiSum-style dataset")
    build.add_argument("--out", required=True, help="output folder (written atomically)")
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
        "--source",
        choices=SOURCES,
        default="wiki-body",
        help="wiki-body = offline STAND-IN (the article's own sections); references/search = paper",
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
    build.add_argument(
        "--split-fractions", type=lambda s: tuple(float(x) for x in s.split(",")), default=(0.8, 0.1, 0.1)
    )
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
    build.add_argument("--num-proc", type=int, default=1, help="worker processes")
    build.add_argument("-v", "--verbose", action="store_true", help="log every skipped record")
    # issue 8: `beam` has its own parser (data_prep/beam_pipeline.py); listed here for --help only
    commands.add_parser(
        "beam", add_help=False, help="the same build on Apache Beam (--runner direct|dataflow|flink|spark)"
    )
    stats = commands.add_parser("stats", help="print the data card of a build")
    stats.add_argument("out")
    return root


def one_line(err: BaseException) -> str:
    """An error as one line (an OSError the system raised shows its cause and file)."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = str(err)
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["beam"]:  # issue 8: Beam options pass through, so the Beam module parses its own
        try:
            from data_prep.beam_pipeline import main as beam_main
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return beam_main(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "stats":
        card = Path(args.out) / "data_card.md"
        if not card.is_file():
            what = "does not exist" if not Path(args.out).exists() else "has no data_card.md (not a finished build)"
            print(f"error: {args.out} {what}", file=sys.stderr)
            return 2
        print(card.read_text())
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    fields = vars(args).copy()
    for key in ("command", "verbose"):
        fields.pop(key)
    fields["dumps"] = fields.pop("dump")
    try:
        out = build_dataset(BuildConfig(**fields))
    except (OSError, ValueError, RuntimeError) as err:  # one line each (bad input, output, disk)
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"built {out}")
    print((out / "data_card.md").read_text().split("## Skipped")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
