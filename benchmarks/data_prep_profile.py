"""Per-stage profile of the data_prep build on the embedded enwiki excerpt: ms per article and share of
each per-article stage (dump read, page filter, mwparserfromhell parse, reference URLs, wikitext ->
sections, the wiki-body source, paragraphs, each ranker, ranked-input assembly, leftover-markup check,
tokenizer encode), apart from the fixed costs (tokenizer training and saving, dataset saving, data card,
manifest), and optionally the same for an older revision of ``data_prep`` in the same process.

    python -m benchmarks.data_prep_profile [--repeats 2] [--baseline main] [--out benchmarks/results/data_prep_profile]

How: the real :func:`data_prep.build.build_dataset` runs (one process, ``num_proc=1``, no ROUGE table)
with its stage functions wrapped by timers that keep EXCLUSIVE time (a stage nested in another is
subtracted from its parent); the build's glue (``make_example``'s own lines, the per-record loop, the
progress bar) is the row ``other``. Times are process CPU seconds (``time.process_time``): on a shared,
loaded machine wall time counts the waits for a core, CPU time the work. ``--baseline REV`` copies
``data_prep/`` of git revision REV into a temporary package ``data_prep_baseline`` and alternates builds
(baseline, current, baseline, current, ...) so that both see the same machine load; the outputs of the
two builds are compared file by file (they must be byte-identical). The figures are medians over the
repeats. Tokenizer and BLAS threads are held to one (the target is articles per second per core).
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET_ARTICLES_PER_S = 50.0
# (module, attribute, stage row): the stage functions timed, as the build looks them up at call time
PER_ARTICLE_STAGES = [
    ("build", "page_skip_reason", "page filter"),
    ("wikitext", "parse_wikitext", "parse (mwparserfromhell)"),
    ("wikitext", "reference_urls", "reference URLs"),
    ("wikitext", "wikitext_to_sections", "wikitext -> sections"),
    ("build", "article_documents", "source (wiki-body)"),
    ("example", "document_paragraphs", "paragraphs (split, normalise, filter)"),
    ("example", "ranked_input", "ranked input (title <sep> paragraphs, cut)"),
    ("build", "example_markup_counters", "leftover-markup check"),
    ("build", "example_row", "tokenizer encode"),
]
RANKER_STAGE = "ranker {}"
READ_STAGE = "dump read (bz2 + XML)"
FIXED_STAGES = [
    ("build", "fit_tokenizer", "tokenizer training"),
    ("build", "_save_dataset", "dataset save (Arrow)"),
    ("build", "write_card", "data card"),
    ("build", "write_manifest", "manifest"),  # called from build.py up to the shared publish step
    ("build_output", "write_manifest", "manifest"),  # called from build_output.publish_build
]
OTHER_STAGE = "other (make_example glue, record loop)"
BUILD_STAGE = "whole build"


class StageClock:
    """Exclusive CPU time per stage: a stage entered inside another is not counted in its parent."""

    def __init__(self):
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self._stack: list[list] = []  # [stage, start, time of children]

    def enter(self, stage: str) -> None:
        self._stack.append([stage, time.process_time(), 0.0])

    def leave(self) -> None:
        stage, start, children = self._stack.pop()
        elapsed = time.process_time() - start
        self.seconds[stage] += elapsed - children
        self.calls[stage] += 1
        if self._stack:
            self._stack[-1][2] += elapsed

    def wrap(self, function, stage: str):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.enter(stage)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def wrap_iterator(self, function, stage: str):
        """A generator function whose every ``next`` is timed as ``stage``."""

        @functools.wraps(function)
        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                self.enter(stage)
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.leave()
                yield item

        return timed


def load_package(name: str):
    """``data_prep`` or the copy ``data_prep_baseline`` with its submodules imported."""
    modules = {}
    for sub in ("build", "build_output", "wikitext", "example", "rankers"):
        modules[sub] = importlib.import_module(f"{name}.{sub}")
    return modules


def instrument(modules: dict, clock: StageClock) -> list:
    """Wrap the stage functions (returns the undo list); an attribute absent in this revision is skipped."""
    undo = []

    def patch(owner, attr, new):
        undo.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, new)

    for module, attr, stage in PER_ARTICLE_STAGES + FIXED_STAGES:
        owner = modules[module]
        if hasattr(owner, attr):
            patch(owner, attr, clock.wrap(getattr(owner, attr), stage))
    build = modules["build"]
    patch(build, "iter_input_records", clock.wrap_iterator(build.iter_input_records, READ_STAGE))
    rankers = modules["rankers"].RANKERS
    for name in list(rankers):
        undo.append((rankers, name, rankers[name]))
        rankers[name] = clock.wrap(rankers[name], RANKER_STAGE.format(name))
    return undo


def restore(undo: list) -> None:
    for owner, attr, old in reversed(undo):
        if isinstance(owner, dict):
            owner[attr] = old
        else:
            setattr(owner, attr, old)


def profile_build(package: str, dump: Path, out: Path) -> dict:
    """One instrumented build; returns ``{"seconds": {stage: s}, "calls": ..., "articles", "digests"}``."""
    modules = load_package(package)
    clock = StageClock()
    undo = instrument(modules, clock)
    try:
        clock.enter(BUILD_STAGE)
        wall = time.perf_counter()
        modules["build"].build_dataset(out=str(out), dumps=[str(dump)], eval_lengths=(), num_proc=1)
        wall = time.perf_counter() - wall
        clock.leave()
    finally:
        restore(undo)
    card = json.loads((out / "data_card.json").read_text())
    n_articles = card["counts"]["records_read"] - sum(
        n for reason, n in card["skip_reasons"].items() if reason in PAGE_FILTER_REASONS
    )
    return {
        "seconds": dict(clock.seconds),
        "calls": dict(clock.calls),
        "wall_s": wall,
        "pages": card["counts"]["records_read"],
        "articles": n_articles,
        "examples": card["counts"]["examples"],
        "digests": output_digests(out),
    }


def parse_split(dump: Path) -> dict:
    """CPU ms per article of mwparserfromhell's two halves on the articles of ``dump``: the C tokenizer
    and the pure-Python tree builder (what :func:`data_prep.wikitext.parse_wikitext` runs)."""
    from mwparserfromhell.parser import CTokenizer
    from mwparserfromhell.parser.builder import Builder

    from data_prep.dump import iter_dump_pages
    from data_prep.page_filter import page_skip_reason
    from data_prep.wikitext import _INDENTED_TABLE_RE

    tokenize_s = build_s = 0.0
    n = 0
    for page in iter_dump_pages(dump):
        if page_skip_reason(page):
            continue
        text = _INDENTED_TABLE_RE.sub("", page["wikitext"])
        start = time.process_time()
        tokens = CTokenizer().tokenize(text, 0, True)
        middle = time.process_time()
        Builder().build(tokens)
        tokenize_s += middle - start
        build_s += time.process_time() - middle
        n += 1
    return {
        "tokenizer (C) ms_per_article": tokenize_s * 1000 / n,
        "tree builder (Python) ms_per_article": build_s * 1000 / n,
    }


# the page filter's reasons: pages that never reach the per-article stage (data_prep.page_filter)
PAGE_FILTER_REASONS = {"not_namespace_0", "redirect", "empty_page", "page_too_long", "disambiguation"}


def output_digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def baseline_package(revision: str, root: Path) -> Path:
    """``data_prep/`` of ``revision`` as the importable package ``data_prep_baseline`` under ``root``."""
    archive = subprocess.run(
        ["git", "archive", revision, "data_prep"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    package = root / "data_prep_baseline"
    (root / "data_prep").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bdata_prep\.", "data_prep_baseline.", text)
        text = re.sub(r"\bfrom data_prep import\b", "from data_prep_baseline import", text)
        path.write_text(text)
    sys.path.insert(0, str(root))
    return package


def stage_table(runs: list[dict], per_article: bool) -> list[dict]:
    """Median over runs of each stage: CPU ms per article and share of the per-article (or fixed) total."""
    stages = [READ_STAGE] + [s for _, _, s in PER_ARTICLE_STAGES[:6]]
    ranker_names = sorted(
        {s for run in runs for s in run["seconds"] if s.startswith("ranker ")},
        key=lambda s: ["identity", "tfidf", "textrank", "sumbasic", "cheating"].index(s[7:])
        if s[7:] in ("identity", "tfidf", "textrank", "sumbasic", "cheating") else 9,
    )
    stages += ranker_names + [s for _, _, s in PER_ARTICLE_STAGES[6:]] + [OTHER_STAGE]
    if not per_article:
        stages = list(dict.fromkeys(s for _, _, s in FIXED_STAGES))  # a stage may have two call sites
    rows = []
    for stage in stages:
        ms = statistics.median(run["seconds"].get(stage, 0.0) * 1000 / run["articles"] for run in runs)
        rows.append({"stage": stage, "ms_per_article": ms})
    total = sum(r["ms_per_article"] for r in rows)
    for row in rows:
        row["share"] = row["ms_per_article"] / total if total else 0.0
    return rows


def add_other(run: dict) -> None:
    """``other`` = the build's exclusive time: every line not inside a timed stage (per-article glue)."""
    run["seconds"][OTHER_STAGE] = run["seconds"].pop(BUILD_STAGE)


def summary(runs: list[dict]) -> dict:
    per_article = stage_table(runs, True)
    fixed = stage_table(runs, False)
    per_article_ms = sum(r["ms_per_article"] for r in per_article)
    parse_ms = next(r["ms_per_article"] for r in per_article if r["stage"].startswith("parse"))
    return {
        "per_article": per_article,
        "fixed": [
            {"stage": r["stage"], "seconds": r["ms_per_article"] * runs[0]["articles"] / 1000, "share": r["share"]}
            for r in fixed
        ],
        "per_article_ms": per_article_ms,
        "articles_per_s_per_core": 1000 / per_article_ms,
        "articles_per_s_without_parse": 1000 / (per_article_ms - parse_ms),
        "whole_build_wall_s": statistics.median(run["wall_s"] for run in runs),
        "pages": runs[0]["pages"],
        "articles": runs[0]["articles"],
        "examples": runs[0]["examples"],
    }


def machine() -> dict:
    """CPU model and the ISA flags that decide the kernels (read by :mod:`benchmarks.machine`), cores, load."""
    from benchmarks.machine import cpu_flags, cpu_vendor_and_model

    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_vendor_and_model()[1],
        "isa": isa,
        "logical_cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
    }


def markdown(result: dict) -> str:
    lines = [
        "# data_prep per-article profile (embedded enwiki excerpt)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']['cpu']}, ISA {', '.join(result['machine']['isa'])}, "
        f"{result['machine']['logical_cpus']} logical CPUs, load average at the end "
        f"{result['machine']['load_average_1_5_15']}, Python {result['machine']['python']}. "
        "Times are CPU ms of one process (one core; tokenizer and BLAS threads at 1), medians over "
        f"{result['repeats']} builds per revision{', interleaved with the baseline' if 'baseline' in result else ''}."
        " On a shared machine CPU time varies too (shared caches, the other hyperthread, the host): read "
        "the shares and the ratios, not the absolute figures; the speed-up of a stage whose code did not "
        "change is the run's noise floor (1.00x when quiet).",
        "",
    ]
    current = result["current"]
    base = result.get("baseline")
    head = "| stage | ms/article | share |" + (" baseline ms/article | baseline share | speed-up |" if base else "")
    lines += [f"{current['pages']} pages, {current['articles']} articles past the page filter, "
              f"{current['examples']} examples.", "", "## Per-article stages", "", head,
              "|---|---|---|" + ("---|---|---|" if base else "")]
    base_rows = {r["stage"]: r for r in base["per_article"]} if base else {}
    for row in current["per_article"]:
        line = f"| {row['stage']} | {row['ms_per_article']:.2f} | {row['share']:.1%} |"
        if base:
            b = base_rows.get(row["stage"], {"ms_per_article": 0.0, "share": 0.0})
            ratio = b["ms_per_article"] / row["ms_per_article"] if row["ms_per_article"] > 0.005 else float("nan")
            line += f" {b['ms_per_article']:.2f} | {b['share']:.1%} | {ratio:.2f}x |"
        lines.append(line)
    total = f"| **per-article total** | **{current['per_article_ms']:.1f}** | 100% |"
    if base:
        speedup = base["per_article_ms"] / current["per_article_ms"]
        total += f" **{base['per_article_ms']:.1f}** | 100% | **{speedup:.2f}x** |"
    lines += [total, ""]
    rate = (f"Per-article throughput: **{current['articles_per_s_per_core']:.1f} articles/s/core** "
            f"(target {TARGET_ARTICLES_PER_S:.0f})")
    if base:
        rate += f", baseline {base['articles_per_s_per_core']:.1f}"
    rate += (f"; without the mwparserfromhell parse {current['articles_per_s_without_parse']:.1f} articles/s/core. "
             f"Whole build (wall, including the fixed costs): {current['whole_build_wall_s']:.1f} s")
    if base:
        rate += f" (baseline {base['whole_build_wall_s']:.1f} s)"
    lines += [rate + ".", "", "## Fixed costs (once per build)", ""]
    lines += ["| stage | CPU s |" + (" baseline CPU s |" if base else ""), "|---|---|" + ("---|" if base else "")]
    base_fixed = {r["stage"]: r for r in base["fixed"]} if base else {}
    for row in current["fixed"]:
        line = f"| {row['stage']} | {row['seconds']:.2f} |"
        if base:
            line += f" {base_fixed[row['stage']]['seconds']:.2f} |"
        lines.append(line)
    split = result["parse_split"]
    tokenizer_ms, builder_ms = split["tokenizer (C) ms_per_article"], split["tree builder (Python) ms_per_article"]
    lines += ["", "## Inside the parse", "",
              f"mwparserfromhell {result['mwparserfromhell']}: C tokenizer {tokenizer_ms:.2f} ms/article, "
              f"pure-Python tree builder {builder_ms:.2f} ms/article "
              f"({builder_ms / (tokenizer_ms + builder_ms):.0%} of the parse; one separate pass)."]
    if base:
        lines += ["", f"Outputs of the two revisions: {result['outputs_identical']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", default=None, help="git revision of data_prep/ to compare with")
    parser.add_argument("--out", default="benchmarks/results/data_prep_profile", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    from data_prep.embedded_dump import embedded_dump_path

    dump = embedded_dump_path()
    work = Path(tempfile.mkdtemp())
    packages = ["data_prep"]
    if args.baseline:
        baseline_package(args.baseline, work / "pkg")
        packages = ["data_prep_baseline", "data_prep"]
    runs: dict[str, list[dict]] = {p: [] for p in packages}
    try:
        for repeat in range(args.repeats):
            for package in packages if repeat % 2 == 0 else packages[::-1]:
                run = profile_build(package, dump, work / "out")
                shutil.rmtree(work / "out")
                add_other(run)
                runs[package].append(run)
                print(f"{package} #{repeat}: {sum(run['seconds'].values()):.1f} CPU s, {run['wall_s']:.1f} s wall",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python -m benchmarks.data_prep_profile --repeats " + str(args.repeats) + (
        f" --baseline {args.baseline}" if args.baseline else "")
    result = {"command": command, "dump": dump.name, "machine": machine(), "repeats": args.repeats,
              "target_articles_per_s_per_core": TARGET_ARTICLES_PER_S, "current": summary(runs["data_prep"]),
              "mwparserfromhell": importlib.metadata.version("mwparserfromhell")}
    result["parse_split"] = parse_split(dump)
    if args.baseline:
        result["baseline_revision"] = args.baseline
        result["baseline"] = summary(runs["data_prep_baseline"])
        same = all(r["digests"] == runs["data_prep"][0]["digests"] for rs in runs.values() for r in rs)
        result["outputs_identical"] = "byte-identical" if same else "DIFFERENT"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    if args.baseline and result["outputs_identical"] != "byte-identical":
        raise SystemExit("the outputs of the two revisions differ")


if __name__ == "__main__":
    main()
