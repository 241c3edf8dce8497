"""The WikiSum parts of ``make demo`` (Liu et al. 2018, in shape), step-budgeted: the same output on any machine.

1. The extractive ranking table: ROUGE-L F1 of the first L words of each ranker's input against the lead (paper
   Figure 2 / Table 3 left), computed by the data build; no training.
2. T-ED (L=500), T-DMCA (L=1000) and the Universal Transformer with ACT (L=500) trained for the same number of
   steps (``configs/demo/*.yaml`` through ``ut-train fit``): validation log-perplexity LEARNING CURVES at equal
   steps, parameters, s/step, peak memory; one decoded sample per model, labelled as what it is (a barely trained
   model's output; no ROUGE comparison is made of such outputs).
3. The L-scaling of one training step: T-D (full attention) and T-DMCA (local + memory-compressed attention) at a
   few L, a few steps each (``configs/lsweep/*.yaml`` with a step override): time per step and peak memory.

Precision, accelerator and devices are the configs' (fp32 everywhere unless changed there); each run is its own
``ut-train`` process, ``--jobs`` of them at a time with one thread each.

    python -m experiments.wikisum.demo [--steps 160] [--jobs 2] [--out outputs/demo]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments.wikisum.configs.generate import CONFIG_DIR, runs_of
from experiments.wikisum.experiment import comparison_table, ensure_dataset, results_record, run_all
from experiments.wikisum.runner import DEFAULT_DATA_DIR, rel, relative_argv

DEFAULT_OUT = "outputs/demo"
DEFAULT_STEPS = 160
SCALING_LENGTHS = (500, 2000, 4000)
SCALING_FAMILIES = ("t_d", "t_dmca")
SCALING_STEPS = 4


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps per WikiSum model")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--out", default=DEFAULT_OUT, help="report, results and run folders")
    p.add_argument("--data-dir", default=rel(DEFAULT_DATA_DIR), help="a python -m data_prep build output")
    p.add_argument("--scaling-lengths", type=int, nargs="*", default=list(SCALING_LENGTHS),
                   help="L values of the step-scaling part (configs/lsweep has 100 500 2000 4000 11000)")
    p.add_argument("--timeout-s", type=float, help="per-run limit (default none: the budget is in steps)")
    p.add_argument("--fast-dev-run", action="store_true", help="1 step per run (a smoke test)")
    p.add_argument("extra", nargs="*", help="more ut-train flags for every WikiSum run, after --")
    return p


def _args_for_runs(args, out: Path) -> argparse.Namespace:
    return argparse.Namespace(data_dir=args.data_dir, max_steps=None, logger="csv", fast_dev_run=args.fast_dev_run,
                              jobs=args.jobs, timeout_s=args.timeout_s, extra=list(args.extra))


def extractive_table(data_dir: str | Path) -> str:
    """The build's extractive ROUGE-L table (``extractive_rouge.md``, written by ``python -m data_prep build``)."""
    path = Path(data_dir) / "extractive_rouge.md"
    if not path.is_file():
        return f"(no {rel(path)}: the build was made without --eval-lengths)"
    return path.read_text().strip()


def curve_table(rows: list[dict]) -> str:
    """Validation log-ppl per step (rows) and model (columns), markdown."""
    steps = sorted({s for r in rows for s, _ in r.get("val_curve") or []})
    head = "| step | " + " | ".join(r["name"] for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    for s in steps:
        cells = []
        for r in rows:
            v = dict((int(a), b) for a, b in r.get("val_curve") or []).get(s)
            cells.append("-" if v is None else f"{v:.3f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_table(rows: list[dict]) -> str:
    """s/step (wall), CPU s/step and peak memory per L (rows) and model (columns), markdown."""
    lengths = sorted({r["L"] for r in rows if r.get("L")})
    groups = list(dict.fromkeys(r.get("group") or r["name"] for r in rows))
    head = "| L | " + " | ".join(f"{g} s/step | {g} CPU s/step | {g} peak MB" for g in groups) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(groups)]
    for L in lengths:
        cells = []
        for g in groups:
            r = next((r for r in rows if r.get("L") == L and (r.get("group") or r["name"]) == g), None)
            if r is None or r.get("status") != "ok":
                cells += [r["status"] if r else "-", "-", "-"]
            else:
                mem = r.get("peak_gpu_mb") or r.get("peak_rss_mb")
                cpu = r.get("cpu_per_step_s")
                cells += [f"{r['time_per_step_s']:.3f}", "-" if cpu is None else f"{cpu:.3f}", f"{mem:.0f}"]
        lines.append(f"| {L} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def samples_text(rows: list[dict], chars: int = 220) -> str:
    lines = []
    for r in rows:
        s = (r.get("samples") or [None])[0]
        if not s:
            continue
        ev = r.get("eval") or {}
        lines.append(f"- {r['name']}, greedy decoding (beam {ev.get('beam_size')}) of test article "
                     f"\"{s['title']}\" after {r.get('steps')} training steps: "
                     f"\"{' '.join(s['prediction'].split())[:chars] or '(empty)'}\"")
    return "\n".join(lines)


def run_models(args, out: Path) -> list[dict]:
    ns = _args_for_runs(args, out)
    configs = [r.path for r in runs_of("demo")]
    return run_all(configs, ns, out / "runs", max_steps=None if args.fast_dev_run else args.steps,
                   extra=[f"--trainer.val_check_interval={max(args.steps // 5, 1)}"] if not args.fast_dev_run else [])


def run_scaling(args, out: Path) -> list[dict]:
    ns = _args_for_runs(args, out)
    configs = [CONFIG_DIR / "lsweep" / f"{fam}_l{L}.yaml" for fam in SCALING_FAMILIES for L in args.scaling_lengths]
    missing = [rel(c) for c in configs if not c.is_file()]
    if missing:
        raise SystemExit(f"--scaling-lengths: no config {missing}")
    return run_all(configs, ns, out / "runs", max_steps=SCALING_STEPS, extra=["--trainer.limit_val_batches=0"])


def wikisum_parts(args, out: Path, say=print) -> dict:
    """Parts 1-3 (see the module docstring); prints as it goes and returns what the report needs."""
    data_dir = ensure_dataset(args.data_dir)
    say("\n== 1. Extractive ranking (no training): ROUGE-L F1 of each ranker's first L words against the lead ==\n")
    say(extractive_table(data_dir))
    say(f"\n== 2. WikiSum models at equal steps ({args.steps} each): validation log-ppl learning curves ==\n")
    t0 = time.perf_counter()
    models = run_models(args, out)
    say("\nvalidation log-ppl (nats per target token, teacher-forced) after n training steps:\n")
    say(curve_table(models))
    say("\n" + comparison_table(models))
    samples = samples_text(models)
    if samples:
        say("\nGenerated samples (NOT summaries: a model trained for minutes on 78 articles; shown to see what it "
            "does, not scored):\n" + samples)
    t1 = time.perf_counter()
    say(f"\n== 3. L-scaling of a training step (batch 1, {SCALING_STEPS} steps, median of the timed ones) ==\n")
    scaling = run_scaling(args, out)
    say(scaling_table(scaling))
    say("peak MB: the run process's peak resident memory (model, data, activations); on a GPU its peak allocation.")
    return {"data_dir": data_dir, "models": models, "scaling": scaling, "models_s": t1 - t0,
            "scaling_s": time.perf_counter() - t1}


def write_wikisum_report(parts: dict, out: Path, command: str, total_s: float, extra_md: str = "",
                         record: dict | None = None) -> Path:
    """``results.json`` (or ``record``, a saved one) and ``report.md`` with the figures of parts 1-3."""
    from ut.eval.report import plot_l_sweep, plot_learning_curves, write_report

    rows = parts["models"]
    res = record or results_record(
        "demo", "make demo: WikiSum models at equal steps, extractive ranking, L-scaling",
        [f"Step-budgeted: {rows[0].get('steps') if rows else '?'} steps per WikiSum model, the same on any machine.",
         "Generated samples are those of barely trained models; the comparison is the log-ppl curves."],
        None, parts["data_dir"], rows + parts["scaling"], total_s)
    res["command"] = command
    res["total_time_s"] = round(total_s, 1)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    report = write_report({**res, "rows": rows}, out)
    plot_learning_curves(rows, out / "learning_curves.png", "WikiSum sample: validation log-ppl at equal steps")
    scaling_png = plot_l_sweep(parts["scaling"], out / "l_scaling.png",
                               f"one training step against L ({SCALING_STEPS} steps, batch 1)")
    text = report.read_text()
    text += ("\n## Extractive ranking\n\n" + extractive_table(parts["data_dir"]) + "\n\n## L-scaling of a training "
             "step\n\n" + scaling_table(parts["scaling"]) + "\n" +
             ("\n![L scaling](l_scaling.png)\n" if scaling_png else "") + extra_md)
    report.write_text(text)
    return report


def main(argv: list[str] | None = None) -> int:
    p = add_arguments(argparse.ArgumentParser(prog="python -m experiments.wikisum.demo",
                                              description=__doc__.splitlines()[0]))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parts = wikisum_parts(args, out)
    total = time.perf_counter() - start
    report = write_wikisum_report(parts, out, "python -m experiments.wikisum.demo" + (
        " " + " ".join(relative_argv(argv)) if argv else ""), total)
    print(f"\nreport: {rel(report)} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
