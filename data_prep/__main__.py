"""Command line: ``python -m data_prep build|beam|stats ...`` (also installed as ``wikisum-prep``); the options
are defined once, in :mod:`data_prep.cli`.

Examples::

    python -m data_prep build --out data/wikisum_sample                     # embedded enwiki excerpt
    python -m data_prep build --dump enwiki-...-pages-articles.xml.bz2 --out OUT --num-proc 8
    python -m data_prep build --dump D.xml.bz2 --source references --reference-store refs/ --out OUT
    python -m data_prep build --articles wiki.parquet --source search --search-results s.jsonl \\
        --reference-store refs/ --out OUT
    python -m data_prep beam --runner direct --dump D.xml.bz2 --out OUT    # the same build on Apache Beam
    python -m data_prep stats OUT                                           # print the data card
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from data_prep.cli import beam_settings, config_from_args, one_line, parse


def _stats(out: str) -> int:
    card = Path(out) / "data_card.md"
    if not card.is_file():
        what = "does not exist" if not Path(out).exists() else "has no data_card.md (not a finished build)"
        print(f"error: {out} {what}", file=sys.stderr)
        return 2
    print(card.read_text())
    return 0


def _local_build(args, pipeline_args: list[str]) -> tuple[str, str]:
    """The single-machine build; returns the output folder and its data card (Markdown)."""
    from data_prep.build import build_dataset

    out = build_dataset(config_from_args(args))
    return str(out), (out / "data_card.md").read_text()


def _beam_build():
    """The Beam build, as :func:`_local_build` (importing Apache Beam: an ImportError says what to install)."""
    from data_prep.beam.common import read_text  # Beam file systems: the output may be gs://...
    from data_prep.beam.running import run_beam_build

    def build(args, pipeline_args: list[str]) -> tuple[str, str]:
        out = run_beam_build(config_from_args(args), args.runner, pipeline_args, **beam_settings(args))
        return out, read_text(f"{out}/data_card.md") or ""

    return build


def main(argv: list[str] | None = None) -> int:
    args, pipeline_args = parse(sys.argv[1:] if argv is None else list(argv))
    if args.command == "stats":
        return _stats(args.out)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    build = _local_build
    if args.command == "beam":
        logging.getLogger().setLevel(level)  # also when a handler was installed before (basicConfig is then a no-op)
        try:
            build = _beam_build()
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        out, card = build(args, pipeline_args)
    except (OSError, ValueError, RuntimeError) as err:  # one line each (bad input, output, disk)
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"built {out}")
    print(card.split("## Skipped")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
