"""The one command line of both builds (data_prep/cli.py), the data card's command derived from it, the
shared publish step (data_prep.build_output.publish_build), and no import cycle under ``python -m``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import cli
from data_prep.build_output import MANIFEST_FILE, MARKER_FILE, partial_path, publish_build
from data_prep.config import CONFIG_FILE, BuildConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

# the data cards' command lines (pinned: they are part of every build's bytes)
PINNED_COMMANDS = [
    (
        BuildConfig(out="o"),
        "python -m data_prep build --out o --source wiki-body --rankers identity,tfidf,textrank,sumbasic,cheating "
        "--input-lengths 100,500,2000,11000 --eval-lengths 100,500 --target lead",
    ),
    (
        BuildConfig(out="o", dumps=["d.xml"], source="search", search_results="s.jsonl", rankers=("tfidf",),
                    input_lengths=(64, 8), eval_lengths=(), target_mode="article", vocab_size=600,
                    split_fractions=(0.5, 0.25, 0.25), max_articles=3, remove_clones=False),
        "python -m data_prep build --out o --source search --dump d.xml --search-results s.jsonl --rankers tfidf "
        "--input-lengths 8,64 --eval-lengths '' --target article --vocab-size 600 --split-fractions 0.5,0.25,0.25 "
        "--max-articles 3 --keep-clones",
    ),
    (
        BuildConfig(out="gs://b/o x", dumps=["a.xml", "b c.xml.bz2"], source="references",
                    reference_store=["r1", "r2/"], min_source_words=5, min_source_target_ratio=0.25, num_proc=4),
        "python -m data_prep build --out 'gs://b/o x' --source references --dump a.xml --dump 'b c.xml.bz2' "
        "--reference-store r1 --reference-store r2/ --rankers identity,tfidf,textrank,sumbasic,cheating "
        "--input-lengths 100,500,2000,11000 --eval-lengths 100,500 --target lead --min-source-words 5 "
        "--min-source-ratio 0.25",
    ),
]


@pytest.mark.parametrize("config, command", PINNED_COMMANDS)
def test_card_command_is_the_pinned_one(config, command):
    assert cli.build_command(config) == command
    assert cli.build_command(config, "direct") == command.replace(
        "python -m data_prep build", "python -m data_prep beam --runner direct"
    )


def _build_actions():
    probe = argparse.ArgumentParser(add_help=False)
    cli.add_build_options(probe)
    return [a for a in probe._actions if a.dest not in cli.NOT_IN_COMMAND]


def _other_value(action: argparse.Action, config: BuildConfig):
    """A value of the option's field unlike the default config's."""
    field = cli.FIELD_OF_DEST.get(action.dest, action.dest)
    if isinstance(action, argparse._AppendAction):
        return field, ["x1.xml", "x 2.xml"]
    if action.nargs == 0:
        return field, not getattr(config, field)
    if action.choices:
        return field, next(c for c in action.choices if c != getattr(config, field))
    others = {"out": "elsewhere", "search_results": "s.jsonl", "rankers": ("tfidf", "identity"),
              "input_lengths": (7, 64), "eval_lengths": (), "vocab_size": 300, "split_fractions": (0.6, 0.3, 0.1),
              "max_articles": 9, "min_source_words": 3, "min_source_target_ratio": 0.5}
    return field, others[field]


def test_every_build_option_reads_back_from_the_card_command():
    """The command is derived from the parser: each option set to a non-default value reaches the parsed
    configuration again (a new option that the card would drop fails here)."""
    base = BuildConfig(out="o")
    for action in _build_actions():
        field, value = _other_value(action, base)
        changes = {field: value}
        if field in ("source", "search_results", "reference_store"):  # a web source needs all three
            changes = {"source": "search", "search_results": "s.jsonl", "reference_store": ["store/"], **changes}
        config = BuildConfig(**{**base.__dict__, **changes})
        args, rest = cli.parse(shlex.split(cli.build_command(config))[3:])
        assert not rest
        assert cli.config_from_args(args).identity() == config.identity(), action.dest
        assert cli.config_from_args(args).out == config.out


def test_build_and_beam_take_the_same_build_options():
    subparsers = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    build, beam = subparsers.choices["build"], subparsers.choices["beam"]
    build_dests = {a.dest for a in build._actions}
    beam_dests = {a.dest for a in beam._actions}
    assert build_dests <= beam_dests
    assert beam_dests - build_dests == {"runner", *cli.BEAM_SETTINGS}


def test_beam_passes_unknown_options_to_beam_and_build_refuses_them(capsys):
    args, rest = cli.parse(["beam", "--out", "o", "--project", "p", "--temp_location=gs://t", "--num-shards", "2"])
    assert rest == ["--project", "p", "--temp_location=gs://t"]
    assert cli.beam_settings(args)["num_shards"] == 2 and cli.config_from_args(args).out == "o"
    with pytest.raises(SystemExit):
        cli.parse(["build", "--out", "o", "--project", "p"])
    assert "unrecognized arguments: --project p" in capsys.readouterr().err
    _, rest = cli.parse(["beam", "--out", "o", "--num-sh", "2"])  # no abbreviation: it goes to Beam
    assert rest == ["--num-sh", "2"]


def test_publish_build_writes_config_and_manifest_last_and_cleans_up_a_failed_build(tmp_path):
    out = tmp_path / "out"
    identity = {"k": 1}

    def fail(partial):
        (partial / "half.txt").write_text("half")
        raise RuntimeError("no example")

    with pytest.raises(RuntimeError, match="no example"):
        publish_build(out, identity, lambda: [], fail)
    assert not out.exists() and not partial_path(out).exists()

    def write(partial):
        (partial / "data.txt").write_text("rows")
        return "card"

    assert publish_build(out, identity, lambda: [], write) == "card"
    assert json.loads((out / CONFIG_FILE).read_text()) == identity
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["files"] == sorted([MARKER_FILE, CONFIG_FILE, "data.txt"])
    assert publish_build(out, identity, lambda: [], write) is None  # already built: nothing written
    with pytest.raises(FileExistsError, match="another configuration"):
        publish_build(out, {"k": 2}, lambda: [], write)


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT)


def test_no_import_cycle_under_python_m(tmp_path):
    """``python -m data_prep`` runs __main__ once: no module imports it back (runpy would warn, and the
    module would load twice)."""
    done = _python("-W", "error::RuntimeWarning", "-m", "data_prep", "--help")
    assert done.returncode == 0, done.stderr
    done = _python("-X", "importtime", "-c", "import data_prep.__main__")
    assert sum(line.endswith("| data_prep.__main__") for line in done.stderr.splitlines()) == 1
    pytest.importorskip("apache_beam")
    done = _python("-X", "importtime", "-m", "data_prep", "beam", "--out", str(tmp_path / "o"),
                   "--dump", str(tmp_path / "missing.xml"))
    assert done.returncode == 2 and "dump file not found" in done.stderr
    assert not [line for line in done.stderr.splitlines() if line.endswith("| data_prep.__main__")]
