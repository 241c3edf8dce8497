"""Test-time depth: the FINAL checkpoints of :mod:`experiments.depth.run_halting`, evaluated WITHOUT retraining at
other depths than they were trained with. Does more depth at test time help longer inputs?

    python -m experiments.depth.run_test_time_depth           # every run of run_halting's (trains missing ones)
    python -m experiments.depth.run_test_time_depth --jobs 2  # two checkpoints evaluated at a time
    python -m experiments.depth.run_test_time_depth --report-only

The knobs (:mod:`experiments.depth.knobs`, set on the loaded model):

- fixed UT trained with T steps: T' in {T/2, T, 2T, 3T, 4T} (``--depth-multipliers``; the sinusoidal timestep
  signal of the configs is defined at every step; a learned table would be refused with an error);
- ACT (threshold 1 - eps, Graves 2016), PonderNet (the cumulative halting probability that halts, Banino et al.
  2021) and stick-breaking (the cumulative halting that halts, Tan et al. 2023): the threshold swept over
  :data:`THRESHOLDS` at the trained cap of 8 steps, and the trained and the highest threshold again with the cap
  raised to 2x (``--cap-multipliers``), so that a halting model may also run deeper than it ever did in training.
  PonderNet's copy encoder keeps its threshold of 0.999 (its p-weighted memory approximates the training readout
  only near 1; :mod:`experiments.depth.knobs`): the threshold moves the decoder, the cap both.

Quality vs executed steps (and forward FLOPs per token) on copy length generalisation (trained on lengths <= 40;
tested on U[1, 40] and U[1, 400], teacher-forced char-acc / seq-acc, ``--sweep-decode`` adds greedy decoding) and
on bAbI 1k tasks 1-3 (test error, and the error on the stories longer / shorter than the task's median). A run that is
missing is trained first through run_halting's cache (``--halting-out``), with run_halting's arguments.

Writes ``experiments/depth/results/test_time_depth/``: ``README.md`` (the tables, the computed answer per model and
task, provenance), ``quality_vs_steps.png`` and one JSON per checkpoint under ``runs/`` (resumable: settings already
evaluated for the same training run are not redone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from experiments.ablations.runner import collect, mean_std, run_all
from experiments.depth import evaluation, knobs, run_halting
from experiments.depth.run_halting import COPY_EVALS, COPY_SETS, MECHANISMS, TASKS, mechanism_of
from experiments.ut_paper.report import cpu_description, fmt, provenance

HERE = Path(__file__).resolve().parent
DEPTH_MULTIPLIERS = (0.5, 1, 2, 3, 4)  # T' / T for the fixed UT
THRESHOLDS = {  # test-time thresholds per halting mechanism (the trained one is always added)
    "ut_act": (0.5, 0.7, 0.9, 0.99, 0.999),  # 1 - eps; trained 0.99
    "ut_pondernet": (0.1, 0.3, 0.5, 0.7, 0.9, 0.99),  # cumulative p that halts; trained 0.5
    "ut_stick_breaking": (0.5, 0.9, 0.99, 0.999, 1.0),  # cumulative halting that halts; trained 0.999
}
CAP_MULTIPLIERS = (1, 2)  # halting cap / the trained cap (x2: only the trained and the highest threshold)
TIE_ACC, TIE_ERR = 0.01, 0.5  # a change of at most this much is "no change" (char-acc; error %)


# -------------------------------------------------------------------------------------------------------- settings
def label(setting: dict) -> str:
    if setting["kind"] == "fixed":
        return f"T'={setting['n_steps']}"
    return f"thr={setting['threshold']:g}, cap {setting['max_steps']}"


def settings_for(mechanism: str, trained: dict, depth_multipliers=DEPTH_MULTIPLIERS,
                 cap_multipliers=CAP_MULTIPLIERS) -> list[dict]:
    """The test-time settings of one checkpoint. ``trained``: its training depth, ``{"n_steps": T}`` (fixed) or
    ``{"threshold": thr, "max_steps": cap}`` (a halting loop)."""
    if "n_steps" in trained:  # a fixed-depth UT, dense or sparse
        steps = sorted({max(1, round(k * trained["n_steps"])) for k in depth_multipliers} | {trained["n_steps"]})
        return [{"kind": "fixed", "n_steps": n} for n in steps]
    thresholds = sorted(set(THRESHOLDS[mechanism]) | {trained["threshold"]})
    out = []
    for k in sorted(set(cap_multipliers) | {1}):
        cap = max(1, round(k * trained["max_steps"]))
        for thr in thresholds if k == 1 else sorted({trained["threshold"], thresholds[-1]}):
            out.append({"kind": "halting", "threshold": thr, "max_steps": cap})
    return out


def trained_depth(module) -> dict:
    """The depth a loaded checkpoint was trained with (see :func:`settings_for`)."""
    steps = evaluation.fixed_steps(module)
    if steps is not None:
        return {"n_steps": steps}
    return {"threshold": knobs.threshold_of(module.model), "max_steps": knobs.halting_loops(module.model)[0].max_steps}


def apply(module, setting: dict) -> None:
    """Set ``module``'s model to ``setting`` (absolute values: settings may be applied in any order)."""
    if setting["kind"] == "fixed":
        knobs.set_fixed_depth(module.model, setting["n_steps"])
    else:
        knobs.set_max_steps(module.model, setting["max_steps"])
        knobs.set_threshold(module.model, setting["threshold"])


def is_trained(setting: dict, trained: dict) -> bool:
    return all(setting.get(k) == v for k, v in trained.items())


# ------------------------------------------------------------------------------------------------------ evaluation
def evaluate_checkpoint(item: tuple[dict, dict]) -> tuple[str, dict | None, str | None]:
    """Worker: every test-time setting of one training run's final checkpoint that its sweep JSON lacks, each
    stored as soon as it is done. Returns (run id, the sweep record or None, a message when the checkpoint is
    missing)."""
    result, opts = item
    ckpt = evaluation.checkpoint_path(result, opts["experiment"], Path(opts["outputs"]))
    if not ckpt.is_file():
        return result["run_id"], None, f"{result['run_id']}: checkpoint {ckpt} missing; left out of the report"
    task = result["variant"]
    module = evaluation.load_module(ckpt, "copy" if task == "copy" else "babi")
    trained = trained_depth(module)
    path = Path(opts["out"]) / "runs" / f"{result['run_id']}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("train_cache_key") != result.get("cache_key"):  # a new training run: start over
        record = {}
    record.update(run_id=result["run_id"], train_cache_key=result.get("cache_key"), task=task, seed=result["seed"],
                  mechanism=mechanism_of(result["config_name"]), model_config=result["model_config"],
                  trained=trained, checkpoint=str(ckpt.relative_to(evaluation.REPO)) if ckpt.is_relative_to(
                      evaluation.REPO) else str(ckpt))
    record.setdefault("settings", {})
    datamodule = None if task == "copy" else evaluation.babi_datamodule(result)
    for setting in settings_for(record["mechanism"], trained, opts["depth_multipliers"], opts["cap_multipliers"]):
        name = label(setting)
        if name in record["settings"]:
            continue
        start = time.time()
        apply(module, setting)
        if task == "copy":
            metrics = {k: evaluation.copy_eval(module, k, opts["sizes"][k], opts["eval_batch_size"], opts["decode"])
                       for k in COPY_EVALS}
        else:
            metrics = {run_halting.BABI_EVAL: evaluation.babi_eval(module, datamodule)}
        record["settings"][name] = {"setting": setting, "trained": is_trained(setting, trained), "metrics": metrics,
                                    "seconds": round(time.time() - start, 1)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(path)
        print(f"[depth] {result['run_id']} {name}: {time.time() - start:.0f}s", flush=True)
    return result["run_id"], record, None


def sweep(results: list[dict], out: Path, args, experiment: str = run_halting.EXPERIMENT,
          outputs: Path = evaluation.OUTPUTS) -> list[dict]:
    """The sweep record of every training run in ``results`` (``args.jobs`` processes)."""
    opts = {"experiment": experiment, "outputs": str(outputs), "out": str(out), "decode": args.sweep_decode,
            "eval_batch_size": args.eval_batch_size, "sizes": {"test_le40": args.n_le40,
                                                               "test_uniform400": args.n_uniform},
            "depth_multipliers": tuple(args.depth_multipliers), "cap_multipliers": tuple(args.cap_multipliers)}
    records = {}
    for run_id, record, message in evaluation.pool_map(evaluate_checkpoint, [(r, opts) for r in results], args.jobs):
        if message:
            print(f"[depth] {message}", file=sys.stderr, flush=True)
        else:
            records[run_id] = record
    return [records[r["run_id"]] for r in results if r["run_id"] in records]


def load_records(out: Path, results: list[dict]) -> list[dict]:
    """The sweep records on disk of the training runs in ``results`` (for --report-only)."""
    records = []
    for r in results:
        path = out / "runs" / f"{r['run_id']}.json"
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("train_cache_key") == r.get("cache_key"):
                records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------------------- report
def quality_key(task: str) -> list[tuple[str, str, str, bool, float]]:
    """(stage, metric, label, higher is better, scale) of the quality columns of ``task``."""
    if task == "copy":
        return [(s, n, f"{COPY_SETS[s]} {what}", True, 1.0) for s in COPY_EVALS
                for n, what in (("token_acc", "char-acc"), ("seq_acc", "seq-acc"))]
    b = run_halting.BABI_EVAL
    return [(b, "error", "error %", False, 100.0), (b, "error_short", "short stories error %", False, 100.0),
            (b, "error_long", "long stories error %", False, 100.0)]


def executed_steps(metrics: dict, task: str, stage: str | None = None) -> float | None:
    """Mean executed steps per token of one setting (copy: encoder and decoder averaged, on ``stage``, default
    U[1, 400]; bAbI: per item)."""
    if task == "copy":
        m = metrics.get(stage or "test_uniform400", {})
        vals = [m.get("steps_encoder"), m.get("steps_decoder")]
        return None if None in vals else sum(vals) / 2
    return metrics.get(run_halting.BABI_EVAL, {}).get("steps_encoder")


def setting_flops(metrics: dict, task: str, model_config: dict) -> float | None:
    if task == "copy":
        return evaluation.copy_flops(model_config, metrics.get("test_uniform400", {}))
    return evaluation.babi_flops(model_config, metrics.get(run_halting.BABI_EVAL, {}))


def table_rows(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(task, mechanism): [one row per setting: label, setting, trained, n seeds, mean steps, flops, and the mean
    over seeds of every quality column]}, sorted by executed steps."""
    grouped: dict[tuple[str, str], dict[str, list]] = {}
    for rec in records:
        for name, entry in rec["settings"].items():
            grouped.setdefault((rec["task"], rec["mechanism"]), {}).setdefault(name, []).append((rec, entry))
    out = {}
    for (task, mech), by_setting in grouped.items():
        rows = []
        for name, entries in by_setting.items():
            row = {"label": name, "setting": entries[0][1]["setting"], "trained": entries[0][1]["trained"],
                   "n": len(entries)}
            per_seed = {"steps": [executed_steps(e["metrics"], task) for _, e in entries],
                        "steps_short": [executed_steps(e["metrics"], task, "test_le40") for _, e in entries],
                        "flops": [setting_flops(e["metrics"], task, r["model_config"]) for r, e in entries]}
            for key, vals in per_seed.items():
                row[key] = None if None in vals else mean_std(vals)[0]
            for stage, metric_name, _, _, scale in quality_key(task):
                vals = [e["metrics"].get(stage, {}).get(metric_name) for _, e in entries]
                row[f"{stage}/{metric_name}"] = None if None in vals else scale * mean_std(vals)[0]
            rows.append(row)
        rows.sort(key=lambda r: (r["steps"] is None, r["steps"] or 0, r["setting"].get("max_steps", 0),
                                 r["setting"].get("threshold", 0), r["setting"].get("n_steps", 0)))
        out[(task, mech)] = rows
    return out


def answer(rows: list[dict], task: str) -> tuple[str, str] | None:
    """(verdict, sentence): does running deeper than trained help the longer inputs? Compares the trained setting
    with the best setting that executes more steps, on the long and on the short inputs (copy: char-acc on
    U[1, 400] and U[1, 40]; bAbI: error on the stories longer / shorter than the median). Verdicts: "helps" (the
    long inputs gain more than the tie margin), "hurts" (even the best deeper setting loses more than it), "no
    change"."""
    trained = next((r for r in rows if r["trained"]), None)
    if trained is None or trained["steps"] is None:
        return None
    deeper = [r for r in rows if r["steps"] is not None and r["steps"] > trained["steps"] + 0.05]
    if task == "copy":
        long_key, short_key, higher, tie = "test_uniform400/token_acc", "test_le40/token_acc", True, TIE_ACC
    else:
        b = run_halting.BABI_EVAL
        long_key, short_key, higher, tie = f"{b}/error_long", f"{b}/error_short", False, TIE_ERR
    if not deeper or trained[long_key] is None:
        return "n/a", "no setting runs deeper than the trained one"
    sign = 1 if higher else -1
    best = max((r for r in deeper if r[long_key] is not None), key=lambda r: sign * r[long_key], default=None)
    if best is None:
        return None
    gain_long = sign * (best[long_key] - trained[long_key])
    verdict = "helps" if gain_long > tie else "hurts" if gain_long < -tie else "no change"
    what = "char-acc" if task == "copy" else "error %"
    long_name = "U[1, 400]" if task == "copy" else "long stories"
    short_name = "len <= 40" if task == "copy" else "short stories"
    d = 3 if task == "copy" else 1  # one digit more than the tables: the change, not only the values

    def change(key: str) -> str:
        if best[key] is None or trained[key] is None:
            return "n/a"
        return f"{fmt(trained[key], d)} -> {fmt(best[key], d)} ({best[key] - trained[key]:+.{d}f})"

    text = (f"{verdict}: from the trained setting ({trained['label']}, {fmt(trained['steps'], 2)} steps) to the best "
            f"deeper one on the long inputs ({best['label']}, {fmt(best['steps'], 2)} steps), {what} on {long_name} "
            f"{change(long_key)}, on {short_name} {change(short_key)}")
    return verdict, text


def depth_plot(tables: dict, tasks: list[str], mechanisms: list[str], path: Path) -> None:
    """Quality vs executed steps: one panel per (task, test set), one line per mechanism through its test-time
    settings (mean over seeds), the trained setting starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for task in tasks:
        if task == "copy":
            panels += [("copy", "test_le40/token_acc", "steps_short", "copy len <= 40 (train dist.)", "char-acc"),
                       ("copy", "test_uniform400/token_acc", "steps", "copy len U[1, 400]", "char-acc")]
        else:
            b = run_halting.BABI_EVAL
            panels += [(task, f"{b}/error_short", "steps", f"{TASKS[task]}, short stories", "test error %"),
                       (task, f"{b}/error_long", "steps", f"{TASKS[task]}, long stories", "test error %")]
    panels = [p for p in panels if any((p[0], m) in tables for m in mechanisms)]
    if not panels:
        return
    cols = min(4, len(panels))
    n_rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3.0 * n_rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (task, key, steps_key, title, ylabel) in zip(axes.flat, panels, strict=False):
        for i, m in enumerate(mechanisms):
            rows = [r for r in tables.get((task, m), []) if r[key] is not None and r[steps_key] is not None]
            rows.sort(key=lambda r: r[steps_key])
            if not rows:
                continue
            ax.plot([r[steps_key] for r in rows], [r[key] for r in rows], "o-", color=f"C{i}", markersize=3,
                    label=MECHANISMS[m])
            ax.plot([r[steps_key] for r in rows if r["trained"]], [r[key] for r in rows if r["trained"]], "*",
                    color=f"C{i}", markersize=12)
        ax.set_xlabel("mean executed steps per token" if task == "copy" else "mean executed steps per item")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle("test-time depth, no retraining (star: the trained setting; mean over seeds)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(records: list[dict], results: list[dict], args, out: Path, argv: list[str]) -> str:
    tables = table_rows(records)
    tasks = [t for t in args.tasks if any((t, m) in tables for m in args.models)]
    sections, answers, verdicts = [], [], []
    for task in tasks:
        cols = quality_key(task)
        flops_head = "MFLOPs / token (U[1, 400])" if task == "copy" else "kFLOPs / item"
        steps_head = "steps / token, len <= 40 / U[1, 400]" if task == "copy" else "steps / item"
        head = f"| model | setting | seeds | {steps_head} | {flops_head} | " + " | ".join(c[2] for c in cols) + " |"
        lines = [head, "|---" * (5 + len(cols)) + "|"]
        for m in args.models:
            rows = tables.get((task, m), [])
            for r in rows:
                steps = (f"{fmt(r['steps_short'], 2)} / {fmt(r['steps'], 2)}" if task == "copy"
                         else fmt(r["steps"], 2))
                fl = r["flops"] and r["flops"] / (1e6 if task == "copy" else 1e3)
                digits = 2 if task == "copy" else 1
                lines.append(f"| {MECHANISMS[m]} | {r['label']}{' (trained)' if r['trained'] else ''} | {r['n']} | "
                             f"{steps} | {fmt(fl, 3 if task == 'copy' else 1)} | "
                             + " | ".join(fmt(r[f"{c[0]}/{c[1]}"], digits) for c in cols) + " |")
            got = answer(rows, task) if rows else None
            if got:
                verdicts.append(got[0])
                answers.append(f"{TASKS[task]}, {MECHANISMS[m]}: {got[1]}")
        sections.append(f"## {TASKS[task]}\n\n" + "\n".join(lines))
    counted = [v for v in verdicts if v != "n/a"]
    headline = (f"More depth at test time helped the longer inputs in {counted.count('helps')} of {len(counted)} "
                f"(model, task) pairs, hurt them in {counted.count('hurts')}, changed nothing (within "
                f"{TIE_ACC} char-acc / {TIE_ERR} error points) in {counted.count('no change')}."
                if counted else "No finished sweep yet.")
    eval_s = sum(e.get("seconds", 0) for rec in records for e in rec["settings"].values())
    depth_plot(tables, tasks, list(args.models), out / "quality_vs_steps.png")
    text = f"""# Test-time depth: more steps than trained, no retraining (CPU scale)

{len(records)} checkpoints of `experiments/depth/run_halting` ({len(results)} finished training runs) evaluated at
other depths. Fixed UT trained with T = 4: T' in {{{", ".join(f"{k:g}T" for k in args.depth_multipliers)}}}; ACT /
PonderNet / stick-breaking: the halting threshold swept at the trained cap of 8 steps, and the trained and highest
threshold with the cap at {", ".join(f"{k:g}x" for k in args.cap_multipliers if k != 1) or "(none)"} (ACT's
threshold is 1 - eps, trained 0.99; PonderNet's the cumulative halting probability, trained 0.5, its copy encoder
kept at 0.999 (the p-weighted memory); stick-breaking's the cumulative halting, trained 0.999). Quality: copy
teacher-forced char-acc / seq-acc on lengths U[1, 40] ({args.n_le40} examples) and U[1, 400] ({args.n_uniform}),
trained on lengths <= 40; bAbI test error % overall and on the stories with at most / more than the median number of
facts. Mean over seeds; steps: mean executed steps per token (copy: encoder and decoder averaged) or per bAbI item;
FLOPs: forward, `benchmarks/flops.py`'s convention.

## Does more depth at test time help longer inputs? (computed from the tables below)

{headline}

{chr(10).join("- " + a for a in answers) or "- n/a"}

![quality vs executed steps](quality_vs_steps.png)

{chr(10).join(chr(10) + s + chr(10) for s in sections)}
## Provenance
{provenance(results, argv)}- test-time evaluations: {eval_s / 60:.1f} min of run time (a shared machine: 1-minute load
  average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs when this report was written)
- CPU: {cpu_description()}
"""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_halting.add_arguments(p)
    p.add_argument("--depth-multipliers", nargs="+", type=float, default=list(DEPTH_MULTIPLIERS),
                   help="fixed UT: T' / T")
    p.add_argument("--cap-multipliers", nargs="+", type=float, default=list(CAP_MULTIPLIERS),
                   help="halting: cap / trained cap (beyond 1: the trained and the highest threshold only)")
    p.add_argument("--n-uniform", type=int, default=64, help="copy: test examples of length U[1, 400]")
    p.add_argument("--n-le40", type=int, default=128, help="copy: test examples of length U[1, 40]")
    p.add_argument("--sweep-decode", action="store_true", help="copy: also greedy-decode at every setting (slow at "
                                                                  "length 400)")
    p.add_argument("--halting-out", default=str(HERE / "results" / "halting"), help="run_halting's results")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished sweeps only")
    p.add_argument("--out", default=str(HERE / "results" / "test_time_depth"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    out, halting_out = Path(args.out), Path(args.halting_out)
    specs = run_halting.build_specs(args)
    if args.report_only:
        results = collect(halting_out, specs, current_only=True)
        records = load_records(out, results)
    else:
        experiment = run_halting.experiment_for(args)
        results = run_all(specs, halting_out, experiment, jobs=args.jobs)
        records = sweep(results, out, args, experiment)
    command = sys.argv if argv is None else ["run_test_time_depth", *argv]
    print(write_report(records, results, args, out, [a for a in command if a != "--report-only"]))
    if len(records) < len(specs) and not args.report_only:
        sys.exit(f"{len(specs) - len(records)} checkpoints are not in the sweep (see above); rerun to resume")


if __name__ == "__main__":
    main()
