"""UT paper §3.2: Transformer vs UT vs UT+ACT decoder-only language models on LAMBADA: target-word perplexity and
last-word accuracy on LAMBADA test passages (Dehghani et al. 2019, Table 2; Paperno et al. 2016).

    python -m experiments.ut_paper.run_lambada                       # the committed CPU-scale runs (both local setups)
    python -m experiments.ut_paper.run_lambada --setups test_split --seeds 0 1 2
    python -m experiments.ut_paper.run_lambada --train-corpus /data/lambada/train-novels \\
        --val-path /data/lambada/lambada_development.jsonl --steps 100000   # the paper's protocol, your corpus

Setups (each one a column group of the report; every one tests on LAMBADA test passages):

- ``test_split``: NOT the paper's protocol. Train on 80% of the passages of ``lambada_test.jsonl`` (seeded), test on
  a disjoint 10% (``LambadaDataModule(protocol="test_split")``): same domain as the test, but ~370k training tokens.
- ``enwiki``: the paper's protocol (train on a separate corpus, test on LAMBADA passages) with the only local
  corpus: the plain text of the 106 articles of the Wikipedia dump excerpt in ``<data dir>/wiki`` (~520k tokens,
  extracted with ``data_prep``), evaluated on the first ``--eval-passages`` (1030) test passages: 10% validation,
  90% test (the full 5,153 cost five times more evaluation than training at this size). Wikipedia is not
  LAMBADA's domain (novels): many target words (names) are out of its vocabulary.
- ``corpus``: the paper's protocol on the training corpus you name (``--train-corpus``: .jsonl / .txt / a directory
  of .txt, e.g. LAMBADA's ``train-novels/``), validated on ``--val-path`` (LAMBADA's development set) if given.

Each run is one ``experiments.run_training`` process (:mod:`experiments.ablations.runner`: resumable, a run whose
JSON exists is not rerun; delete it to rerun). The learning-rate warmup is a fixed number of steps (``--warmup``),
so the peak learning rate does not depend on the run length. Writes ``experiments/ut_paper/results/lambada/
README.md``, ``ppl.png`` and ``runs/*.json``; a hand-written ``reading.md`` beside them is included verbatim.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from pathlib import Path

from experiments.ablations.runner import REPO, RunSpec, collect, mean_std, metric, run_all
from experiments.ut_paper.report import MODELS, bar_plot, cpu_description, provenance, ranking

HERE = Path(__file__).resolve().parent
CONFIGS = {"transformer": "lambada_decoder_only", "ut": "lambada_ut", "ut_act": "lambada_ut_act"}
PAPER = {"transformer": "7321 (0)", "ut": "319 (0.17)", "ut_act": "142 (0.19)"}  # Table 2: test ppl (accuracy)
SETUPS = ("test_split", "enwiki", "corpus")
WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DESCRIPTIONS = {
    "test_split": "train on 80% of lambada_test.jsonl's passages, test on a disjoint 10% (NOT the paper's protocol)",
    "enwiki": "the paper's protocol with a Wikipedia excerpt as the training corpus (106 articles, not novels); "
              "the first {eval_passages} passages of lambada_test.jsonl, 10% for validation, the rest test",
    "corpus": "the paper's protocol: train on {train_corpus}, test on the LAMBADA test passages",
}


def write_wiki_corpus(out: Path, dump: Path | None = None) -> Path:
    """The article text of the local Wikipedia dump excerpt as a corpus jsonl (one article per line); reused when
    it exists. Redirects and non-article namespaces are skipped; sections as ``data_prep.wikitext`` cleans them."""
    if out.is_file():
        return out
    from data_prep.dump import iter_dump_pages
    from data_prep.wikitext import wikitext_to_sections
    from ut.data.paths import find_data_dir

    dump = dump or find_data_dir("wiki") / WIKI_DUMP
    lines = []
    for page in iter_dump_pages(dump):
        if page["namespace"] != 0 or page["redirect"]:
            continue
        text = "\n".join(s["text"] for s in wikitext_to_sections(page["wikitext"]) if s["text"])
        if text.strip():
            lines.append(json.dumps({"text": text}, ensure_ascii=False))
    if not lines:
        raise ValueError(f"{dump}: no article text")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def setup_overrides(setup: str, args) -> list[str]:
    d = "--data.init_args."
    if setup == "test_split":
        return [f"{d}protocol=test_split"]
    if setup == "enwiki":
        corpus = write_wiki_corpus(Path(args.work_dir) / "enwiki_excerpt_articles.jsonl")
        return [f"{d}protocol=train_corpus", f"{d}train_path={corpus}", f"{d}corpus_window={args.window}",
                f"{d}limit={args.eval_passages}"]
    if not args.train_corpus:
        raise SystemExit("setup 'corpus' needs --train-corpus FILE_OR_DIR")
    if not Path(args.train_corpus).exists():
        raise SystemExit(f"--train-corpus {args.train_corpus}: no such file or directory")
    out = [f"{d}protocol=train_corpus", f"{d}train_path={Path(args.train_corpus).resolve()}",
           f"{d}corpus_window={args.window}"]
    if args.val_path:
        out.append(f"{d}val_path={Path(args.val_path).resolve()}")
    if args.eval_passages_corpus:
        out.append(f"{d}limit={args.eval_passages_corpus}")
    return out


def test_target_stats(setup: str, args) -> dict[str, float]:
    """:func:`ut.data.lambada.target_stats` of a setup's test passages (the configs' data defaults, split seed 0)."""
    from ut.data.lambada import LambadaDataModule, target_stats

    kwargs = {}
    for override in setup_overrides(setup, args):
        key, _, value = override.removeprefix("--data.init_args.").partition("=")
        kwargs[key] = int(value) if key in ("corpus_window", "limit") else value
    dm = LambadaDataModule(**kwargs)
    dm.setup()
    return target_stats(dm.test_set, dm.vocab)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", nargs="+", choices=SETUPS, default=None,
                   help="default: corpus with --train-corpus, else test_split and enwiki")
    p.add_argument("--train-corpus", default=None, help="training corpus (.jsonl / .txt / directory of .txt)")
    p.add_argument("--val-path", default=None, help="LAMBADA-format validation passages (the development set)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--warmup", type=int, default=150,
                   help="warmup steps (fixed: the peak lr does not depend on --steps)")
    p.add_argument("--window", type=int, default=100, help="training window of the corpus setups (tokens)")
    p.add_argument("--eval-passages", type=int, default=1030,
                   help="enwiki: evaluate on the first N passages of lambada_test.jsonl (10%% val, the rest test)")
    p.add_argument("--eval-passages-corpus", type=int, default=None,
                   help="corpus: evaluate on the first N test passages only (default: all, the paper's protocol)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished runs only")
    p.add_argument("--logger", default="wandb", choices=["wandb", "csv", "tensorboard", "none"])
    p.add_argument("--work-dir", default=str(REPO / "outputs" / "lambada"), help="prepared corpora (not committed)")
    p.add_argument("--out", default=str(HERE / "results" / "lambada"))
    args = p.parse_args(argv)
    if args.setups is None:
        args.setups = ["corpus"] if args.train_corpus else ["test_split", "enwiki"]
    out = Path(args.out)
    common = [f"--trainer.max_steps={args.steps}", f"--trainer.val_check_interval={args.steps}",
              f"--model.init_args.optimizer.warmup_steps={args.warmup}", f"--run.logger={args.logger}"]
    specs = [RunSpec(f"experiments/ut_paper/configs/{CONFIGS[m]}.yaml", setup, seed,
                     (*common, *setup_overrides(setup, args), f"--seed_everything={seed}"))
             for setup in args.setups for m in args.models for seed in args.seeds]
    if args.report_only:
        results = collect(out, specs)
    else:
        results = run_all(specs, out, "ut_paper/lambada", jobs=args.jobs)
    command = sys.argv if argv is None else ["run_lambada", *argv]
    write_report(results, args, out, [a for a in command if a != "--report-only"])
    if len(results) < len(specs) and not args.report_only:
        sys.exit(f"{len(specs) - len(results)} runs did not finish; rerun `{shlex.join(command)}` to resume")


def train_ppl(run: dict, last: int = 4) -> float | None:
    """Perplexity over all tokens of the last ``last`` logged training batches (dropout on): the in-distribution
    fit, read from the run's CSV log under ``outputs/`` when it is there (the results JSON has eval metrics only)."""
    log = REPO / "outputs" / "ut_paper_lambada" / run.get("run_id", "") / "csv" / "metrics.csv"
    if not run.get("run_id") or not log.is_file():
        return None
    with open(log) as f:
        nll = [float(row["train/nll"]) for row in csv.DictReader(f) if row.get("train/nll")]
    return math.exp(sum(nll[-last:]) / len(nll[-last:])) if nll else None


def _cell(runs: list[dict], name: str, digits: int) -> str:
    vals = [v for v in (metric(r, name) for r in runs) if v is not None]
    if not vals:
        return "n/a"
    m, sd = mean_std(vals)
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if len(vals) > 1 else f"{m:.{digits}f}"


def _train_cell(runs: list[dict], train_ppl_fn) -> str:
    vals = [v for v in (train_ppl_fn(r) for r in runs) if v is not None]
    if not vals:
        return "n/a"
    m, sd = mean_std(vals)
    return f"{m:.0f} ± {sd:.0f}" if len(vals) > 1 else f"{m:.0f}"


def _mean(runs: list[dict], name: str) -> float | None:
    vals = [v for v in (metric(r, name) for r in runs) if v is not None]
    return sum(vals) / len(vals) if vals else None


def write_report(results: list[dict], args, out: Path, argv: list[str], stats_fn=None, train_ppl_fn=None) -> None:
    """README.md (+ ppl.png) from the finished runs; ``stats_fn(setup, args)`` gives the test targets' UNK /
    in-context shares (default :func:`test_target_stats`), ``train_ppl_fn(run)`` the training fit
    (:func:`train_ppl`)."""
    stats_fn, train_ppl_fn = stats_fn or test_target_stats, train_ppl_fn or train_ppl
    model_of = {v: k for k, v in CONFIGS.items()}
    by: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        by.setdefault((r["variant"], model_of[r["config_name"]]), []).append(r)
    sections, series = [], {MODELS[m]: [] for m in args.models}
    for setup in args.setups:
        rows = ["| model | params | seeds | test ppl (target word) | test accuracy | val ppl | val accuracy | "
                "train ppl (all tokens) | ACT updates (test) | paper: ppl (accuracy) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for m in args.models:
            runs = by.get((setup, m), [])
            series[MODELS[m]].append(_mean(runs, "test/ppl"))
            params = runs[0]["params"] if runs else None
            rows.append(f"| {MODELS[m]} | {params or 'n/a'} | {len(runs)} | {_cell(runs, 'test/ppl', 0)} | "
                        f"{_cell(runs, 'test/seq_acc', 3)} | {_cell(runs, 'val/ppl', 0)} | "
                        f"{_cell(runs, 'val/seq_acc', 3)} | {_train_cell(runs, train_ppl_fn)} | "
                        f"{_cell(runs, 'test/n_updates_decoder', 2) if m == 'ut_act' else '-'} | {PAPER[m]} |")
        ppl = {MODELS[m]: _mean(by.get((setup, m), []), "test/ppl") for m in args.models}
        acc = {MODELS[m]: _mean(by.get((setup, m), []), "test/seq_acc") for m in args.models}
        notes = sorted({n for m in args.models for r in by.get((setup, m), []) for n in r.get("notes", [])})
        stats = stats_fn(setup, args) if any(by.get((setup, m)) for m in args.models) else None
        sections.append(
            f"### {setup}: {DESCRIPTIONS[setup].format(**vars(args))}\n\n" + "\n".join(rows) + "\n\n"
            f"- who wins on perplexity (lower is better): {ranking(ppl, False, 0, tie=0.0)}\n"
            f"- who wins on accuracy: {ranking(acc, True, 3, tie=0.0)}\n"
            + "".join(f"- data: {n}\n" for n in notes)
            + (f"- the {stats['n']} test targets: {100 * stats['target_unk']:.1f}% are out of the training vocabulary "
               f"(UNK: never right), {100 * stats['target_in_context']:.1f}% occur in their passage's context; "
               f"guessing a random context word scores {stats['random_context_word']:.3f} accuracy\n"
               if stats else ""))
    if any(v is not None for vals in series.values() for v in vals):
        bar_plot(list(args.setups), series, "test target-word perplexity", "LAMBADA: target-word perplexity",
                 out / "ppl.png")
    reading = out / "reading.md"
    steps = {r.get("global_step") for r in results}
    text = f"""# UT paper §3.2 LAMBADA language modelling, CPU scale

Decoder-only LMs with FULL causal attention, d_model 128, 4 heads, d_ff 512, word level (10k most frequent
training words, the rest UNK; an UNK target is always wrong), passages up to 256 tokens: the Transformer (4 distinct
layers), the UT (one shared layer, T = 4 steps) and UT+ACT (one shared layer, at most 8 steps).
{sorted(steps)} steps at batch 16, warmup {args.warmup}, seeds {args.seeds} (mean ± sample std over seeds).
Test perplexity is the perplexity of the target word given its passage, accuracy the share of passages whose target
word is the greedy prediction (Paperno et al. 2016); an UNK target's probability is P(UNK), so perplexities are
comparable between models of one setup (same vocabulary), not between setups. Train ppl: all next-token predictions
of the last 4 logged training batches (dropout on), the in-distribution fit. The paper's column is the full-scale
model trained on LAMBADA's ~200M-word novel corpus: compare the SHAPE (who wins), not the values.

{chr(10).join(sections)}
![target-word perplexity](ppl.png)

{"## Reading" + chr(10) + chr(10) + reading.read_text() if reading.is_file() else ""}
## Provenance
{provenance(results, argv)}- CPU: {cpu_description()}
"""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
