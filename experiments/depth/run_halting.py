"""Halting mechanisms side by side at CPU scale: the fixed-depth UT, ACT, PonderNet and stick-breaking halting, and
the sparse UT at equal active FLOPs, on copy length generalisation and on bAbI 1k tasks 1-3, >= 3 seeds, one
command, resumable.

    python -m experiments.depth.run_halting                     # the committed table: 5 models x 4 tasks x 3 seeds
    python -m experiments.depth.run_halting --jobs 2            # two runs (and evaluations) at a time
    python -m experiments.depth.run_halting --report-only       # rewrite the report from the finished runs
    python -m experiments.depth.run_halting --tasks copy --seeds 0 --copy-steps 100   # a quick look

The models (one config each, identical but for the recurrence lines; every key commented):

- ``ut``: fixed T = 4 (Dehghani et al. 2019, "UT base");
- ``ut_act``: Adaptive Computation Time per position, at most 8 steps (Graves 2016; UT §2.2);
- ``ut_pondernet``: PonderNet, at most 8 steps, expected task loss over the halting step + 0.01 KL to a truncated
  geometric prior of rate 0.2, halting at evaluation once the cumulative halting probability exceeds 0.5 (Banino et
  al. 2021; on bAbI one halting step per story, the classifier's per-example readout; on copy the encoder's
  p-weighted memory halts at 0.999, ``ut/nn/pondernet.py``);
- ``ut_stick_breaking``: the Sparse Universal Transformer's stick-breaking halting per position, at most 8 steps,
  threshold 0.999, expected-depth loss weight 0.01 (Tan et al. 2023);
- ``ut_moe``: the sparse UT, fixed T = 4, its shared layer's transition a mixture of 8 experts, top-2, each expert
  half the dense UT's d_ff wide, so its active FLOPs per token equal the dense UT's (Tan et al. 2023; Csordas et al.
  2024, "MoEUT"; ``ut/models/moe_transition.py``); the balancing loss is logged apart from the task loss.

Tasks:

- ``copy``: ``experiments/ut_paper/configs/algorithmic_<model>.yaml``, trained on lengths <= 40 with the settings
  of :mod:`experiments.ut_paper.run_algorithmic` (its spec builder: d 64, batch 32, peak lr 3e-3 after a fixed
  warmup of 150 steps, t2t's random start index of the UT's positions); the run itself tests at length exactly 400,
  then the FINAL checkpoint is evaluated on lengths U[1, 40] (the training distribution) and U[1, 400] (t2t's dev
  set) as run_algorithmic does (:func:`experiments.depth.evaluation.copy_eval`);
- ``task1`` .. ``task3``: bAbI 1k single task over fact vectors, ``experiments/ut_paper/configs/babi_1k_<model>.yaml``,
  with :mod:`experiments.ut_paper.run_babi`'s spec builder and step budgets (1000 steps; 3000 on tasks 2 and 3,
  ``run_babi.TASK_STEPS``); the final checkpoint's test error is also split at the median story length
  (:func:`experiments.depth.evaluation.babi_eval`).

Reported per model and task: quality (char-acc / seq-acc; error %), the mean executed steps per token (encoder and
decoder; bAbI: per item), forward FLOPs per token (``benchmarks/flops.py``'s convention), training wall time, the
computed "who wins, by how much, at what compute" lines and plots. Writes ``experiments/depth/results/halting/``:
``README.md``, ``quality_vs_flops.png``, ``copy_accuracy.png``, ``babi_error.png`` and one JSON per run under
``runs/`` (finished runs and finished evaluations are not redone; runs go seed 0 of everything first). The final
checkpoints stay under ``outputs/depth_halting/`` for :mod:`experiments.depth.run_test_time_depth`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from experiments.ablations.runner import RunSpec, collect, mean_std, metric, run_all
from experiments.depth import evaluation
from experiments.ut_paper import run_algorithmic, run_babi
from experiments.ut_paper.report import bar_plot, cpu_description, fmt, provenance, ranking

HERE = Path(__file__).resolve().parent
EXPERIMENT = "depth/halting"  # checkpoints under outputs/depth_halting/<run id>/ (experiment_for)
MECHANISMS = {"ut": "UT (fixed T = 4)", "ut_act": "UT+ACT", "ut_pondernet": "UT+PonderNet",
              "ut_stick_breaking": "UT+stick-breaking", "ut_moe": "sparse UT (MoE, T = 4)"}
SPARSE = ("ut_moe",)  # models whose transition is a mixture of experts: expert width = the dense d_ff / top-k
TASKS = {"copy": "copy", "task1": "bAbI task 1", "task2": "bAbI task 2", "task3": "bAbI task 3"}
COPY_SETS = {"test_le40": "len <= 40 (train dist.)", "test": "len = 400", "test_uniform400": "len U[1, 400]"}
COPY_EVALS = ("test_le40", "test_uniform400")  # evaluated after training ("test" by the run itself)
BABI_EVAL = "test_by_length"  # the bAbI evaluation of the final checkpoint (evaluation.babi_eval)
COPY_STEPS = 1000  # run_algorithmic.STEPS["copy"]
TIE_ACC, TIE_ERR = 0.01, 0.5  # leads of at most this much are called ties (char-acc; error %)


def mechanism_of(config_name: str) -> str:
    """``algorithmic_ut_pondernet`` / ``babi_1k_ut_pondernet`` -> ``ut_pondernet``."""
    for m in sorted(MECHANISMS, key=len, reverse=True):
        if config_name.endswith("_" + m):
            return m
    raise ValueError(f"cannot tell the halting mechanism of config {config_name!r}; known: {list(MECHANISMS)}")


def copy_spec_args(args) -> SimpleNamespace:
    """The namespace :func:`run_algorithmic.build_specs` reads, from this script's arguments."""
    return SimpleNamespace(tasks=["copy"], models=list(args.models), steps={"copy": args.copy_steps},
                           d_model=args.d_model, batch_size=args.batch_size, peak_lr=args.peak_lr,
                           warmup=args.warmup, n_400=args.n_400, eval_batch_size=args.eval_batch_size,
                           decode=args.decode, logger=args.logger)


def sparse_width(spec: RunSpec, d_model: int) -> RunSpec:
    """run_algorithmic's specs set ``d_ff = 4 d_model`` (the dense width); a sparse model's experts get that width
    divided by its config's ``moe_top_k``, so that its active FLOPs per token equal the dense UT's."""
    if mechanism_of(Path(spec.config).stem) not in SPARSE:
        return spec
    top_k = yaml.safe_load(Path(spec.config).read_text())["model"]["init_args"]["model_config"]["moe_top_k"]
    if (4 * d_model) % top_k:
        raise ValueError(f"{spec.config}: the dense width 4 * d_model = {4 * d_model} is not divisible by "
                         f"moe_top_k = {top_k}")
    return RunSpec(spec.config, spec.variant, spec.seed,
                   (*spec.args, f"--model.init_args.model_config.d_ff={4 * d_model // top_k}"))


def experiment_for(args) -> str:
    """The runner experiment, hence the checkpoint folder, of a sweep: ``outputs/depth_halting/`` under the configs'
    copy position policy, ``outputs/depth_halting_copy_start_zero/`` under ``--copy-position-start zero``. Its runs
    have the same run ids (``algorithmic_ut__copy__seed0``, ...) and other cache keys; apart, neither overwrites the
    other's checkpoints (give it its own ``--out`` as well)."""
    if args.copy_position_start == "random":
        return EXPERIMENT
    return f"{EXPERIMENT}_copy_start_{args.copy_position_start}"


def build_specs(args) -> list[RunSpec]:
    """Seed 0 of every (task, model) first, then seed 1, ...: copy through run_algorithmic's spec builder, bAbI
    through run_babi's (its configs ``babi_1k_<model>.yaml``, its per-task budgets)."""
    babi_tasks = [int(t[4:]) for t in args.tasks if t.startswith("task")]
    babi_steps = run_babi.parse_steps(args.babi_steps, "1k")
    specs = []
    for seed in args.seeds:
        if "copy" in args.tasks:
            copy = run_algorithmic.build_specs(SimpleNamespace(**vars(copy_spec_args(args)), seeds=[seed]))
            copy = [sparse_width(s, args.d_model) for s in copy]
            if args.copy_position_start != "random":  # the configs' (t2t's) policy adds nothing to the arguments
                extra = f"--model.init_args.model_config.position_start_index={args.copy_position_start}"
                copy = [RunSpec(s.config, s.variant, s.seed, (*s.args, extra)) for s in copy]
            specs += copy
        if babi_tasks:
            specs += run_babi.build_specs("1k", babi_tasks, list(args.models), [seed], [f"--run.logger={args.logger}"],
                                          babi_steps)
    return specs


# ------------------------------------------------------------------------------------------------------ evaluation
def missing_evals(result: dict) -> list[str]:
    """The evaluations of the final checkpoint that ``result`` lacks."""
    keys = COPY_EVALS if result["variant"] == "copy" else (BABI_EVAL,)
    return [k for k in keys if k not in result.get("metrics", {})]


def evaluate_run(item: tuple[dict, dict]) -> tuple[str, dict | None, str | None]:
    """Worker: evaluate the final checkpoint of ``result`` on the sets it lacks and store them in its JSON (one
    evaluation at a time, so an interrupted sweep keeps what it finished). Returns (run id, new metrics or None, a
    message when the checkpoint is missing)."""
    result, opts = item
    todo = missing_evals(result)
    ckpt = evaluation.checkpoint_path(result, opts["experiment"], Path(opts["outputs"]))
    if not ckpt.is_file():
        return result["run_id"], None, (f"{result['run_id']}: checkpoint {ckpt} missing; evaluations {todo} "
                                        "skipped, run left out of the report")
    module = evaluation.load_module(ckpt, "copy" if result["variant"] == "copy" else "babi")
    path = Path(opts["out"]) / "runs" / f"{result['run_id']}.json"
    new = {}
    for key in todo:
        if key == BABI_EVAL:
            m = evaluation.babi_eval(module, evaluation.babi_datamodule(result))
        else:
            m = evaluation.copy_eval(module, key, opts["sizes"][key], opts["eval_batch_size"], opts["decode"])
        new[key] = m
        saved = json.loads(path.read_text())
        saved.setdefault("metrics", {})[key] = m
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=1, sort_keys=True))
        tmp.replace(path)
        print(f"[halting] {result['run_id']} {key}: done in {m['seconds']:.0f}s", flush=True)
    return result["run_id"], new, None


def evaluate_all(results: list[dict], out: Path, args, experiment: str = EXPERIMENT,
                 outputs: Path = evaluation.OUTPUTS) -> list[dict]:
    """Add the missing final-checkpoint evaluations to ``results`` (``args.jobs`` processes); returns the results
    that have all of them (a run whose checkpoint is missing is named on stderr and left out)."""
    opts = {"experiment": experiment, "outputs": str(outputs), "out": str(out), "decode": args.decode,
            "eval_batch_size": args.eval_batch_size,
            "sizes": {"test_le40": args.n_le40, "test_uniform400": args.n_uniform}}
    by_id = {r["run_id"]: r for r in results}
    todo = [(r, opts) for r in results if missing_evals(r)]
    for run_id, new, message in evaluation.pool_map(evaluate_run, todo, args.jobs):
        if message:
            print(f"[halting] {message}", file=sys.stderr, flush=True)
            by_id.pop(run_id)
        else:
            by_id[run_id]["metrics"].update(new)
    return [r for r in results if r["run_id"] in by_id]


# ---------------------------------------------------------------------------------------------------------- report
def group(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(task, mechanism): [results over seeds]}."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        by.setdefault((r["variant"], mechanism_of(r["config_name"])), []).append(r)
    return by


def mean_of(rs: list[dict], key: str, scale: float = 1.0) -> float | None:
    vals = [metric(r, key) for r in rs]
    if not vals or any(v is None for v in vals):
        return None
    return scale * mean_std(vals)[0]


def flops(r: dict, stage: str) -> float | None:
    """Forward FLOPs per token (copy: per target token; bAbI: per item) of run ``r`` on test set ``stage``."""
    m = r.get("metrics", {}).get(stage)
    if not m:
        return None
    if r["variant"] == "copy":
        return evaluation.copy_flops(r["model_config"], m)
    return evaluation.babi_flops(r["model_config"], m)


def mean_flops(rs: list[dict], stage: str) -> float | None:
    vals = [flops(r, stage) for r in rs]
    return None if not vals or None in vals else sum(vals) / len(vals)


def pair(rs: list[dict], stage: str, decoded: bool = False) -> str:
    """'char / seq' mean over seeds (min-max of char-acc in brackets with several seeds)."""
    pre = "decoded_" if decoded else ""
    ch, sq = mean_of(rs, f"{stage}/{pre}token_acc"), mean_of(rs, f"{stage}/{pre}seq_acc")
    if ch is None or sq is None:
        return "n/a"
    chars = [metric(r, f"{stage}/{pre}token_acc") for r in rs]
    return f"{ch:.2f} / {sq:.2f}" + (f" [{min(chars):.2f}-{max(chars):.2f}]" if len(rs) > 1 else "")


def steps_cell(rs: list[dict], stage: str, streams=("encoder", "decoder")) -> str:
    vals = [mean_of(rs, f"{stage}/steps_{s}") for s in streams]
    return " / ".join(fmt(v, 2) for v in vals)


def train_minutes(rs: list[dict]) -> float | None:
    vals = [r.get("total_seconds") for r in rs]
    return None if not vals or None in vals else sum(vals) / len(vals) / 60


def compute_ratio(value: float | None, ref: float | None) -> str:
    return "n/a" if value is None or not ref else f"{value / ref:.2f}x"


def who_wins(scores: dict[str, float | None], costs: dict[str, float | None], higher: bool, digits: int, tie: float,
             what: str) -> str:
    """"<what>: ranking (leader's lead); the leader at <x> the fixed UT's FLOPs per token"."""
    text = f"{what}: {ranking(scores, higher, digits, tie)}"
    done = [(v, k) for k, v in scores.items() if v is not None]
    ref = costs.get(MECHANISMS["ut"])
    if done and ref:
        best = (max if higher else min)(done)[1]
        text += f"; {best} at {compute_ratio(costs.get(best), ref)} the fixed UT's FLOPs per token"
    return text


def quality_plot(by: dict, tasks: list[str], mechanisms: list[str], path: Path) -> None:
    """Quality vs forward FLOPs per token, one panel per (task, test set): each seed a small dot, the mean over
    seeds a large marker, one colour per mechanism."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for task in tasks:
        if task == "copy":
            panels += [(task, s, f"{s}/token_acc", f"copy {COPY_SETS[s]}", "char-acc (teacher-forced)", 1.0)
                       for s in COPY_EVALS]
        else:
            panels.append((task, BABI_EVAL, f"{BABI_EVAL}/error", TASKS[task], "test error %", 100.0))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False)
    for ax, (task, stage, key, title, ylabel, scale) in zip(axes[0], panels, strict=True):
        for i, m in enumerate(mechanisms):
            pts = [(flops(r, stage), metric(r, key)) for r in by.get((task, m), [])]
            pts = [(x / 1e6, scale * y) for x, y in pts if x is not None and y is not None]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", color=f"C{i}", alpha=0.5)
            ax.plot(sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts), "o", color=f"C{i}",
                    markersize=8, label=MECHANISMS[m])
        ax.set_xlabel("forward MFLOPs per token" if task == "copy" else "forward MFLOPs per item")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("halting mechanisms: quality vs compute (dots: seeds; circles: means)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: list[dict], args, out: Path, argv: list[str], specs: list[RunSpec]) -> str:
    by = group(results)
    mechs = list(args.models)
    names = {m: MECHANISMS[m] for m in mechs}
    sections, reading = [], []
    if "copy" in args.tasks:
        head = ("| model | seeds | " + " | ".join(COPY_SETS.values()) + " | decoded U[1, 400] | executed steps enc / "
                "dec, len <= 40 | executed steps enc / dec, U[1, 400] | MFLOPs / token, U[1, 400] | vs fixed UT "
                "| train min |")
        lines = [head, "|---" * 11 + "|"]
        ref = mean_flops(by.get(("copy", "ut"), []), "test_uniform400")
        for m in mechs:
            rs = by.get(("copy", m), [])
            if not rs:
                continue
            fl = mean_flops(rs, "test_uniform400")
            lines.append(f"| {names[m]} | {len(rs)} | " + " | ".join(pair(rs, s) for s in COPY_SETS)
                         + f" | {pair(rs, 'test_uniform400', True) if args.decode else 'not run'} | "
                         f"{steps_cell(rs, 'test_le40')} | {steps_cell(rs, 'test_uniform400')} | "
                         f"{fmt(fl and fl / 1e6, 3)} | {compute_ratio(fl, ref)} | {fmt(train_minutes(rs), 1)} |")
        not_learned = [f"{names[m]}, seed {r['seed']}: char-acc {v:.2f}" for m in mechs for r in by.get(("copy", m), [])
                       if (v := metric(r, "test_le40/token_acc")) is not None and v < run_algorithmic.LEARNED]
        learned = (f"Did every model learn its training distribution (char-acc on len <= 40 >= "
                   f"{run_algorithmic.LEARNED})? " + ("NOT LEARNED: " + "; ".join(not_learned) if not_learned
                                                      else "yes, every finished run") + ".")
        sections.append("## Copy: char-acc / seq-acc (teacher-forced; t2t's metrics), mean over seeds [char-acc "
                        "range]\n\nTrained on lengths <= 40. Executed steps: the mean over tokens of the steps each "
                        "token ran (encoder / decoder; fixed UT: T).\n\n" + "\n".join(lines) + "\n\n" + learned)
        for stage in COPY_EVALS:
            for name, label in (("token_acc", "char-acc"), ("seq_acc", "seq-acc")):
                scores = {names[m]: mean_of(by[("copy", m)], f"{stage}/{name}") for m in mechs if ("copy", m) in by}
                costs = {names[m]: mean_flops(by[("copy", m)], stage) for m in mechs if ("copy", m) in by}
                reading.append(who_wins(scores, costs, True, 2, TIE_ACC, f"copy, {label}, {COPY_SETS[stage]}"))
    babi = [t for t in args.tasks if t.startswith("task")]
    if babi:
        head = ("| task | model | seeds | error % mean | best | short stories | long stories | held-out train "
                "stories | executed steps / item | kFLOPs / item | vs fixed UT | train min |")
        lines = [head, "|---" * 12 + "|"]
        for t in babi:
            ref = mean_flops(by.get((t, "ut"), []), BABI_EVAL)
            for m in mechs:
                rs = by.get((t, m), [])
                if not rs:
                    continue
                errs = [metric(r, f"{BABI_EVAL}/error") for r in rs]
                best = fmt(100 * min(errs), 1) if None not in errs else "n/a"
                fl = mean_flops(rs, BABI_EVAL)
                lines.append(f"| {t[4:]} | {names[m]} | {len(rs)} | {fmt(mean_of(rs, f'{BABI_EVAL}/error', 100), 1)} "
                             f"| {best} | {fmt(mean_of(rs, f'{BABI_EVAL}/error_short', 100), 1)} | "
                             f"{fmt(mean_of(rs, f'{BABI_EVAL}/error_long', 100), 1)} | "
                             f"{fmt(mean_of(rs, 'val/error', 100), 1)} | "
                             f"{fmt(mean_of(rs, f'{BABI_EVAL}/steps_encoder'), 2)} | {fmt(fl and fl / 1e3, 1)} | "
                             f"{compute_ratio(fl, ref)} | {fmt(train_minutes(rs), 1)} |")
            scores = {names[m]: mean_of(by[(t, m)], f"{BABI_EVAL}/error", 100) for m in mechs if (t, m) in by}
            costs = {names[m]: mean_flops(by[(t, m)], BABI_EVAL) for m in mechs if (t, m) in by}
            reading.append(who_wins(scores, costs, False, 1, TIE_ERR, f"{TASKS[t]}, test error % (mean over seeds)"))
        medians = sorted({metric(r, f"{BABI_EVAL}/median_facts") for r in results if r["variant"] in babi} - {None})
        sections.append("## bAbI 1k tasks 1-3 over fact vectors: test error %\n\nMean over seeds, best seed beside "
                        "it; short / long stories: the test questions whose story has at most / more than the "
                        f"median number of facts of its task's test set (medians {', '.join(map(fmt, medians))}). "
                        "Held-out train stories: the validation split (10% of the train file's stories), the "
                        "training distribution unseen. Executed steps: per item (the question and each fact); "
                        "PonderNet halts each story as one (its per-example readout).\n\n" + "\n".join(lines))
    tasks_done = [t for t in args.tasks if any((t, m) in by for m in mechs)]
    quality_plot(by, tasks_done, mechs, out / "quality_vs_flops.png")
    plots = ["![quality vs compute](quality_vs_flops.png)"]
    if "copy" in by_tasks(by):
        series = {names[m]: [mean_of(by.get(("copy", m), []), f"{s}/token_acc") for s in COPY_EVALS] for m in mechs}
        bar_plot([COPY_SETS[s] for s in COPY_EVALS], series, "char-acc (mean over seeds)",
                 "copy: char-acc by test set", out / "copy_accuracy.png")
        plots.append("![copy accuracy](copy_accuracy.png)")
    if babi and any(t in by_tasks(by) for t in babi):
        series = {names[m]: [mean_of(by.get((t, m), []), f"{BABI_EVAL}/error", 100) for t in babi] for m in mechs}
        bar_plot([TASKS[t] for t in babi], series, "test error % (mean over seeds)", "bAbI 1k: error per task",
                 out / "babi_error.png")
        plots.append("![bAbI error](babi_error.png)")
    done = {r["run_id"] for r in results}
    missing = [s.run_id for s in specs if s.run_id not in done]
    eval_s = sum(m.get("seconds", 0) for r in results for k, m in r.get("metrics", {}).items()
                 if k in (*COPY_EVALS, BABI_EVAL) and isinstance(m, dict))
    train_s = sum(r.get("total_seconds", 0) for r in results)
    older = [r["run_id"] for r in results if r.get("code_changed")]
    text = f"""# Depth as a knob: fixed UT, ACT, PonderNet, stick-breaking and the sparse UT side by side (CPU scale)

{len(results)}/{len(specs)} runs finished{("; not (yet) run: " + ", ".join(missing[:12]) + (" ..." if len(missing) > 12
                                            else "")) if missing else ""}. Seeds: {", ".join(map(str, args.seeds))}.
Every model: d_model 64, 4 heads, one shared layer; fixed UT T = 4; the halting ones at most 8 steps (ACT: threshold
1 - 0.01, ponder weight 0.01; PonderNet: lambda_p 0.2, beta 0.01, evaluation threshold 0.5, the copy encoder's
0.999; stick-breaking: threshold 0.999, expected-depth weight 0.01). Copy: {args.copy_steps} training steps, the
UT's position start index per step `{args.copy_position_start}` (random: t2t's policy, the configs'); bAbI:
{babi_steps_text(args)}.
Quality of the FINAL model of every run (no checkpoint selection).

{chr(10).join(chr(10) + s + chr(10) for s in sections)}
## Who wins where, by how much, at what compute (computed from the tables)

{chr(10).join("- " + s for s in reading) or "- no finished runs"}

FLOPs: forward model FLOPs (matrix products, 2 per multiply-add; `benchmarks/flops.py`'s per-layer counts) times
the mean executed steps, at the test set's mean lengths (copy: per target token, encoder + decoder + softmax; bAbI:
per item, the encoder); the halting units are not counted.

{chr(10).join(plots)}

## Provenance
{provenance(results, argv)}- training {train_s / 60:.1f} min, final-checkpoint evaluations {eval_s / 60:.1f} min of run
  time (a shared machine: 1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs when this report
  was written)
- CPU: {cpu_description()}
{("- runs of an older code version (reused): " + ", ".join(older) + chr(10)) if older else ""}"""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    return text


def by_tasks(by: dict) -> set[str]:
    return {t for t, _ in by}


def babi_steps_text(args) -> str:
    steps = run_babi.parse_steps(args.babi_steps, "1k")
    babi = [int(t[4:]) for t in args.tasks if t.startswith("task")]
    if not babi:
        return "not run"
    per = {t: steps.get(t, steps.get("all", 1000)) for t in babi}  # 1000: the babi_1k configs' max_steps
    return ", ".join(f"task {t} {n} steps" for t, n in per.items())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's arguments (shared with run_test_time_depth, which trains missing runs through the same cache)."""
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--models", nargs="+", default=list(MECHANISMS), choices=list(MECHANISMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--copy-steps", type=int, default=COPY_STEPS, help="copy training steps")
    p.add_argument("--babi-steps", nargs="*", default=[], metavar="N|TASK=N",
                   help="bAbI training steps: N for every task and / or TASK=N (default: run_babi.TASK_STEPS over "
                        "the configs' 1000)")
    p.add_argument("--copy-position-start", default="random", choices=["random", "zero"],
                   help="copy: the UT's position start index per step (random: t2t's, the configs'; zero: positions "
                        "from 0 at every step, which fits the training lengths ~10x faster, run_algorithmic.PROBES)")
    p.add_argument("--d-model", type=int, default=64, help="copy models' width (run_algorithmic's)")
    p.add_argument("--batch-size", type=int, default=32, help="copy training batch")
    p.add_argument("--peak-lr", type=float, default=3e-3, help="copy: peak of the warmup / inverse-sqrt schedule")
    p.add_argument("--warmup", type=int, default=150, help="copy: FIXED warmup steps")
    p.add_argument("--n-400", type=int, default=32, help="copy: test examples of length exactly 400 (the run's test)")
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--logger", default="csv", choices=["wandb", "csv", "tensorboard", "none"])
    p.add_argument("--no-decode", dest="decode", action="store_false",
                   help="copy: no greedy decoding in the runs' tests and run_halting's evaluations")
    p.add_argument("--jobs", type=int, default=1, help="runs (and evaluations) in parallel processes")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--n-uniform", type=int, default=64, help="copy: test examples of length U[1, 400]")
    p.add_argument("--n-le40", type=int, default=128, help="copy: test examples of length U[1, 40]")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished runs only")
    p.add_argument("--out", default=str(HERE / "results" / "halting"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    out = Path(args.out)
    specs = build_specs(args)
    experiment = experiment_for(args)
    results = collect(out, specs) if args.report_only else run_all(specs, out, experiment, jobs=args.jobs)
    results = evaluate_all(results, out, args, experiment)
    command = sys.argv if argv is None else ["run_halting", *argv]
    print(write_report(results, args, out, [a for a in command if a != "--report-only"], specs))
    if len(results) < len(specs) and not args.report_only:
        sys.exit(f"{len(specs) - len(results)} runs did not finish; rerun `{shlex.join(command)}` to resume")


if __name__ == "__main__":
    main()
