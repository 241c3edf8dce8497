"""UT paper §3.1 at CPU scale: Transformer vs UT vs UT+ACT on bAbI QA over FACT vectors, one command per table.

    python -m experiments.ut_paper.run_babi --table 1k            # 20 tasks x 3 models x seeds 0 1 2 (resumable)
    python -m experiments.ut_paper.run_babi --table 10k           # tasks 1-3 on en-10k (task 3: 1k train file)
    python -m experiments.ut_paper.run_babi --table 1k_joint      # one model per seed trained on all 20 tasks
    python -m experiments.ut_paper.run_babi --table 1k --report-only   # rewrite the report from finished runs

Every run is one ``experiments.run_training`` process through the ablation runner
(:func:`experiments.ablations.runner.run_all`): a run whose results JSON exists is skipped, so a table can be
finished over several sittings. Runs are ordered so that a partial table is useful: seed 0 of every task and
model first, then seed 1, then seed 2. The configs are ``configs/babi_<table>_<model>.yaml`` (facts layout, peak
learning rate 3e-3 after a fixed 100-step warmup, whatever ``--steps``; see :mod:`ut.optim`).

The report (``results/babi_<table>/README.md``) has, per task, the best and the mean test error over seeds of each
model (the paper reports the best of 10 runs, and the mean for UT+ACT), the average error and the number of failed
tasks (error > 5%, Weston et al. 2015) beside the paper's, the in-distribution (validation: held-out train
stories) error of every model, the computed orderings, UT+ACT's ponder time per task, attention maps over the facts
and ponder maps of a few stories, plots, wall time, the command and the machine (``lscpu``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiments.ablations.runner import REPO, RunSpec, collect, metric, run_all
from experiments.ut_paper.report import (
    MODELS,
    bar_plot,
    cpu_description,
    fmt,
    mean,
    provenance,
    ranking,
)

HERE = Path(__file__).resolve().parent
ALL_TASKS = list(range(1, 21))
# Dehghani et al. 2019, Table 1 (and §3.1): avg error % (failed tasks) of the best of 10 seeds; UT+ACT's mean
# over seeds where the paper gives it
PAPER = {
    "1k": {"transformer": "21.8 (5/20)", "ut": "5.31 (5/20)", "ut_act": "4.55 (3/20)", "ut_act_mean": "6.34"},
    "10k": {"transformer": "15.2 (10/20)", "ut": "0.23 (0/20)", "ut_act": "0.21 (0/20)", "ut_act_mean": "0.73"},
    "1k_joint": {"transformer": "26.8 (14/20)", "ut": "8.50 (8/20)", "ut_act": "7.78 (5/20)",
                 "ut_act_mean": "11.21"},
}
PAPER_PONDER = {1: 2.3, 2: 3.1, 3: 3.8}  # UT+ACT ponder time on bAbI tasks 1 / 2 / 3 (paper §3.1)
TABLES = {  # table -> (results folder, default tasks, default seeds, what it is)
    "1k": ("babi_1k", ALL_TASKS, [0, 1, 2], "bAbI 1k, single-task training (one model per task)"),
    "10k": ("babi_10k", [1, 2, 3], [0, 1, 2], "bAbI 10k, single-task training (one model per task)"),
    "1k_joint": ("babi_1k_joint", ALL_TASKS, [0, 1, 2], "bAbI 1k, JOINT training (one model for all 20 tasks)"),
}
# Per-task training budgets of the 1k table where 1000 steps (the configs') leave a model above ~5% error on its own
# training batches (seed 0, 1000 steps: UT / UT+ACT train error task 2 10.6 / 15.0%, task 3 9.1 / 12.2%, task 7
# 5.6 / 5.6%, task 16 35.9 / 39.7%, task 17 15.6 / 19.4%; task 19, path finding, is the hardest bAbI task). Every
# model gets the same budget on a task. At 3000 steps the UT's training error on task 2 is 2.2% (1500-3000 steps).
# The 10k table's task 2: at the configs' 3000 steps every model's training accuracy is still rising (seed 0, mean
# over steps 2500-3000: Transformer 0.88, UT 0.82, UT+ACT 0.83), so task 2 gets 9000 steps; the 3000-step runs are
# kept in results/babi_10k/runs_3000_steps/.
TASK_STEPS = {"1k": {2: 3000, 3: 3000, 7: 3000, 16: 3000, 17: 3000, 19: 3000}, "10k": {2: 9000}}
BUDGET_WHY = {  # why the per-task budgets of a table differ (the report's settings sentence)
    "1k": "1000 leave the UT above ~5% error on its own training batches on the tasks given 3000",
    "10k": "at 3000 every model's training accuracy on task 2 is still rising (UT 0.82 over steps 2500-3000)",
}
MAP_TASKS = (1, 2, 3)  # tasks whose stories get attention and ponder maps in the report


def config_path(table: str, model: str) -> str:
    return f"experiments/ut_paper/configs/babi_{table}_{model}.yaml"


def steps_args(n: int | None) -> tuple[str, ...]:
    """The overrides that train for ``n`` steps and validate once at the end (none: the config's steps)."""
    return () if n is None else (f"--trainer.max_steps={n}", f"--trainer.val_check_interval={n}")


def parse_steps(items: list[str], table: str) -> dict[int | str, int]:
    """``--steps``: ``N`` (every run) and / or ``TASK=N`` items over the table's per-task defaults
    (:data:`TASK_STEPS`); key "all" holds a plain ``N``."""
    steps: dict[int | str, int] = dict(TASK_STEPS.get(table, {}))
    for item in items:
        task, sep, n = item.rpartition("=")
        if not n.isdigit() or (sep and not task.isdigit()):
            raise SystemExit(f"--steps expects N or TASK=N (TASK a bAbI task number), got {item!r}")
        if sep:
            steps[int(task)] = int(n)
        else:
            steps = {"all": int(n)}  # a plain N replaces every per-task default
    return steps


def build_specs(table: str, tasks: list[int], models: list[str], seeds: list[int], extra: list[str],
                steps: dict[int | str, int] | None = None) -> list[RunSpec]:
    """Seed-major order: every (task, model) of seed 0, then seed 1, ... ``steps``: see :func:`parse_steps`."""
    steps = steps or {}
    specs = []
    for seed in seeds:
        if table == "1k_joint":
            specs += [RunSpec(config_path(table, m), "joint", seed,
                              (*extra, *steps_args(steps.get("all")), f"--seed_everything={seed}"))
                      for m in models]
            continue
        for t in tasks:
            n = steps.get(t, steps.get("all"))
            specs += [RunSpec(config_path(table, m), f"task{t}", seed,
                              (*extra, *steps_args(n), f"--data.init_args.tasks={t}", f"--seed_everything={seed}"))
                      for m in models]
    return specs


def _model_key(config_name: str) -> str:
    for m in sorted(MODELS, key=len, reverse=True):  # "ut_act" before "ut"
        if config_name.endswith("_" + m):
            return m
    raise ValueError(f"cannot tell the model of config {config_name!r}")


def task_errors(result: dict, stage: str, tasks: list[int]) -> dict[int, float]:
    """Per-task error in % of one run (single-task runs: their one task; joint runs: every task)."""
    out = {}
    for t in tasks:
        v = metric(result, f"{stage}/error_task{t}")
        if v is not None:
            out[t] = 100 * v
    return out


def train_error(run_id: str, outputs: Path, last_rows: int = 10) -> float | None:
    """Training error % of a run: 1 - the mean ``train/acc`` of its last ``last_rows`` logged batches (the CSV
    log under outputs/; dropout and label smoothing on, so it slightly overstates the error), None without a log."""
    import csv

    logs = sorted(outputs.glob(f"*/{run_id}/csv/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    with open(logs[-1], newline="") as f:
        accs = [float(row["train/acc"]) for row in csv.DictReader(f) if row.get("train/acc")]
    return 100 * (1 - sum(accs[-last_rows:]) / len(accs[-last_rows:])) if accs else None


def gather(results: list[dict], tasks: list[int], outputs: Path) -> dict:
    """{(model, stage): {task: [error % per seed]}} and {model: {task: [ponder per seed]}}."""
    errors: dict[tuple[str, str], dict[int, list[float]]] = {}
    ponder: dict[str, dict[int, list[float]]] = {}
    for r in results:
        m = _model_key(r["config_name"])
        for stage in ("test", "val"):
            for t, e in task_errors(r, stage, tasks).items():
                errors.setdefault((m, stage), {}).setdefault(t, []).append(e)
        tr = train_error(r["run_id"], outputs)
        if tr is not None and r["variant"].startswith("task"):  # joint runs: one training error for all tasks
            errors.setdefault((m, "train"), {}).setdefault(int(r["variant"][4:]), []).append(tr)
        elif tr is not None:
            errors.setdefault((m, "train_joint"), {}).setdefault(0, []).append(tr)
        for t in tasks:
            p = metric(r, f"test/ponder_task{t}")
            if p is not None:
                ponder.setdefault(m, {}).setdefault(t, []).append(p)
    return {"errors": errors, "ponder": ponder}


def summary(per_task: dict[int, list[float]], tasks: list[int], how) -> tuple[float | None, int, int]:
    """(average error over the tasks that ran, failed tasks (> 5%), tasks that ran) with ``how`` = min or mean."""
    vals = [how(per_task[t]) for t in tasks if per_task.get(t)]
    return (sum(vals) / len(vals) if vals else None), sum(v > 5 for v in vals), len(vals)


def write_report(results: list[dict], args, out: Path, argv: list[str], specs: list[RunSpec],
                 outputs: Path = REPO / "outputs") -> str:
    """Write ``out/README.md`` (+ plots); ``outputs`` holds the runs' CSV logs and checkpoints (``--run.save_dir``)."""
    tasks, models = args.tasks, args.models
    g = gather(results, tasks, outputs)
    err, ponder = g["errors"], g["ponder"]
    n_seeds = {m: len({r["seed"] for r in results if _model_key(r["config_name"]) == m}) for m in models}

    def cell(m, t, stage="test", how=min):
        vals = err.get((m, stage), {}).get(t)
        return fmt(how(vals), 1) if vals else "n/a"

    names = [MODELS[m] for m in models]
    head = ("| task | " + " | ".join(f"{n} best" for n in names) + " | " + " | ".join(f"{n} mean" for n in names)
            + " | seeds |")
    lines = [head, "|---" * (2 + 2 * len(models)) + "|"]
    fit_head = ("| task | " + " | ".join(f"{n} train" for n in names) + " | " + " | ".join(f"{n} val" for n in names)
                + " |")
    fit_lines = [fit_head, "|---" * (1 + 2 * len(models)) + "|"]
    for t in tasks:
        seeds = "/".join(str(len(err.get((m, "test"), {}).get(t, []))) for m in models)
        lines.append(f"| {t} | " + " | ".join(cell(m, t) for m in models) + " | "
                     + " | ".join(cell(m, t, how=mean) for m in models) + f" | {seeds} |")
        fit_lines.append(f"| {t} | " + " | ".join(cell(m, t, "train", mean) for m in models) + " | "
                         + " | ".join(cell(m, t, "val", mean) for m in models) + " |")
    joint_train = [f"{MODELS[m]} {fmt(mean(v[0]), 1)}" for m in models if (v := err.get((m, "train_joint")))]
    if joint_train:
        fit_lines.append(f"\nJoint training error % (all tasks, last 250 steps): {', '.join(joint_train)}.")
    common = [t for t in tasks if all(err.get((m, "test"), {}).get(t) for m in models)]  # finished by every model
    summ = {}
    for m in models:
        per = err.get((m, "test"), {})
        summ[m] = {"best": summary(per, common, min), "mean": summary(per, common, mean),
                   "val": summary(err.get((m, "val"), {}), common, mean)}

    def avg_cell(s):
        avg, failed, n = s
        return f"{fmt(avg, 2)} ({failed}/{n})"

    paper = PAPER[args.table]
    avg_lines = ["| model | ours: best of seeds | ours: mean over seeds | ours: in-dist. (val) mean "
                 "| paper: best of 10 | paper: mean |", "|---|---|---|---|---|---|"]
    for m in models:
        pm = paper.get("ut_act_mean", "n/a") if m == "ut_act" else "n/a"
        avg_lines.append(f"| {MODELS[m]} | {avg_cell(summ[m]['best'])} | {avg_cell(summ[m]['mean'])} | "
                         f"{avg_cell(summ[m]['val'])} | {paper[m]} | {pm} |")

    reading = []
    for label, key in (("best of seeds", "best"), ("mean over seeds", "mean")):
        reading.append(f"average test error %, {label}: "
                       + ranking({MODELS[m]: summ[m][key][0] for m in models}, False, 2, tie=0.5))
        reading.append(f"failed tasks (error > 5%), {label}: "
                       + ranking({MODELS[m]: float(summ[m][key][1]) if summ[m][key][2] else None for m in models},
                                 False, 0, tie=0.0))
    wins = {m: 0 for m in models}
    for t in tasks:
        best = {m: min(v) for m in models if (v := err.get((m, "test"), {}).get(t))}
        if len(best) == len(models):
            lo = min(best.values())
            for m, v in best.items():
                wins[m] += v <= lo + 0.5
    reading.append("tasks where a model is best or within 0.5 of the best (best of seeds): "
                   + ", ".join(f"{MODELS[m]} {wins[m]}" for m in models))
    reading.append("paper's ordering (average error): UT+ACT < UT < Transformer; at this scale: "
                   + ("holds" if _ordered([summ[m]["best"][0] for m in ("ut_act", "ut", "transformer")
                                           if m in models]) else "does not hold (see the figures above)"))

    ponder_line = "n/a (no UT+ACT runs)"
    if "ut_act" in ponder:
        ponder_line = ", ".join(f"task {t}: {fmt(mean(v), 2)}" + (f" (paper {PAPER_PONDER[t]})" if t in PAPER_PONDER
                                                                    else "")
                                for t, v in sorted(ponder["ut_act"].items()))
    notes = sorted({n for r in results for n in r.get("notes", [])})
    series = {MODELS[m]: [min(v) if (v := err.get((m, "test"), {}).get(t)) else None for t in tasks] for m in models}
    bar_plot([str(t) for t in tasks], series, "test error %, best of seeds", f"bAbI {args.table}: error per task",
             out / "error.png")
    maps = draw_maps(results, args, out, outputs)
    folder, _, _, what = TABLES[args.table]
    steps_by_task: dict[int, set] = {}
    for r in results:
        if r["variant"].startswith("task") and r.get("global_step"):
            steps_by_task.setdefault(int(r["variant"][4:]), set()).add(r["global_step"])
    budgets: dict[int, list[int]] = {}
    for t, n in sorted(steps_by_task.items()):
        budgets.setdefault(max(n), []).append(t)
    steps_text = "; ".join(f"{n} steps" + (f" on tasks {', '.join(map(str, ts))}" if len(budgets) > 1 else "")
                           for n, ts in sorted(budgets.items())) or ", ".join(
        map(str, sorted({r.get("global_step") for r in results}))) + " steps"
    params = {}
    for m in models:
        counts = sorted({r["params"] for r in results if _model_key(r["config_name"]) == m and r.get("params")})
        if counts:  # the vocabulary and the answer set differ per task
            params[MODELS[m]] = f"{counts[0]:,}" + (f"-{counts[-1]:,}" if counts[-1] != counts[0] else "")
    done = {r["run_id"] for r in results}
    missing = [s.run_id for s in specs if s.run_id not in done]
    missing_text = ("; not (yet) run: " + ", ".join(missing[:12]) + (" ..." if len(missing) > 12 else "")
                    if missing else "")
    budget_why = (f"every model the same budget on a task: {BUDGET_WHY[args.table]}, `run_babi.TASK_STEPS`"
                  if TASK_STEPS.get(args.table) else "every model and task the same budget, the config's "
                  "`trainer.max_steps`")
    text = f"""# UT paper §3.1, {what}: Transformer vs UT vs UT+ACT over fact vectors, CPU scale

Each fact and the question are one vector (word embeddings under a learned multiplicative positional mask:
`ut/nn/fact_encoder.py`), and the encoder runs over `[question, facts]` (`ut/models/fact_qa.py`); the answer is
read from the question's final state. d_model 64, 4 heads, d_ff 128, 4 layers (Transformer) / T = 4 steps (UT) /
ACT with at most 8 steps; batch 32, {steps_text} ({budget_why}); Adam with peak lr
3e-3 after a 100-step warmup, then 1/sqrt(step); stories cut to their last 50 sentences (no supporting fact of
bAbI is further back: the data module counts cuts, see the notes).
Parameters: {", ".join(f"{k} {v}" for k, v in params.items())}.
Seeds run: {", ".join(f"{MODELS[m]} {n_seeds[m]}" for m in models)} (the paper: best of 10).
{len(results)}/{len(specs)} runs finished{missing_text}.

Test error % per task (best and mean over seeds):

{chr(10).join(lines)}

Does every model learn its training distribution? Error % on the training batches (mean of the last 10 logged
batches, i.e. the last 250 steps, dropout on) and on the validation stories (10% of the TRAIN file's stories held
out: the training distribution, unseen), mean over seeds:

{chr(10).join(fit_lines)}

Average error % (failed tasks = error > 5%) over the {len(common)} tasks that every model finished
({", ".join(map(str, common)) or "none yet"}), beside the paper's (full scale, 20 tasks):

{chr(10).join(avg_lines)}

Who wins, by how much (computed from the tables; lower is better):
{chr(10).join("- " + s for s in reading)}

UT+ACT mean ponder time (n + r, averaged over the question and the facts) per task: {ponder_line}. The paper: ponder
time grows with the number of supporting facts (tasks 1 / 2 / 3 need 1 / 2 / 3).
{chr(10).join("- data note: " + n for n in notes)}

![error per task](error.png)

## Attention over facts and ponder time per fact, a few stories
{maps}

## Provenance
{provenance(results, argv)}- CPU: {cpu_description()}
"""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    return text


def _ordered(vals: list[float | None]) -> bool:
    return None not in vals and all(a < b for a, b in zip(vals, vals[1:], strict=False))


def _run_datamodule(result: dict):
    """The run's BabiDataModule, rebuilt from its config file and data overrides."""
    import yaml

    from ut.data.babi import BabiDataModule

    cfg = yaml.safe_load((REPO / result["config"]).read_text())
    init = dict(cfg["data"]["init_args"])
    for o in result.get("overrides", []):
        if o.startswith("--data.init_args.") and "=" in o:
            key, value = o[len("--data.init_args."):].split("=", 1)
            init[key] = yaml.safe_load(value)
    return BabiDataModule(**init)


def _checkpoint(run_id: str, outputs: Path) -> Path | None:
    found = sorted(outputs.glob(f"*/{run_id}/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def draw_maps(results: list[dict], args, out: Path, outputs: Path, n_stories: int = 2) -> str:
    """For seed 0 of tasks 1-3: each model's attention of the QUESTION over the facts at every layer / step (mean
    over heads), UT+ACT's ponder time per fact; supporting facts starred. Returns the markdown."""
    import torch

    from experiments.ut_paper.report import fact_attention_figure
    from ut.lit.fact_qa import FactQAModule

    parts = []
    by_id = {r["run_id"]: r for r in results if r["seed"] == min(args.seeds)}
    for t in MAP_TASKS:
        if t not in args.tasks:
            continue
        runs = {m: r for m in args.models for r in by_id.values()
                if _model_key(r["config_name"]) == m and r["variant"] in (f"task{t}", "joint")}
        if len(runs) < len(args.models):
            continue
        dm, panels = None, {}
        for m, r in runs.items():
            ckpt = _checkpoint(r["run_id"], outputs)
            if ckpt is None:
                break
            if dm is None:
                dm = _run_datamodule(r)  # all of a joint run's tasks: its vocabulary is built from all of them
                dm.setup()
                stories = [e for e in dm.test_set if e.task == t][:n_stories]
                batch = dm._collate(stories)
            module = FactQAModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
            with torch.no_grad():
                o = module.forward_batch(batch, need_weights=True)
                pt = module.forward_batch(batch).ponder_time.get("encoder")
            panels[MODELS[m]] = (o, pt)
        if dm is None or len(panels) < len(runs):
            continue
        path = out / f"maps_task{t}.png"
        fact_attention_figure(stories, batch, panels, dm, path)
        parts.append(f"Task {t}, {len(stories)} test stories (seed {min(args.seeds)}):\n\n![task {t}]({path.name})\n")
    return "\n".join(parts) if parts else "(no checkpoints of finished runs found under outputs/)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default="1k", choices=list(TABLES))
    p.add_argument("--tasks", nargs="+", type=int, default=None, help="default: the table's")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2")
    p.add_argument("--steps", nargs="*", default=[], metavar="N|TASK=N",
                   help="training steps: N for every run and / or TASK=N per task (default: the config's steps, "
                        "and TASK_STEPS's per-task budgets for the tasks that need more to fit their training data)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished runs only")
    p.add_argument("--logger", default="csv", choices=["wandb", "csv", "tensorboard", "none"])
    p.add_argument("--out", default=None, help="default: experiments/ut_paper/results/babi_<table>")
    args = p.parse_args(argv)
    folder, tasks, seeds, _ = TABLES[args.table]
    args.tasks = args.tasks or tasks
    args.seeds = args.seeds if args.seeds is not None else seeds
    out = Path(args.out or HERE / "results" / folder)
    extra = [f"--run.logger={args.logger}"]
    specs = build_specs(args.table, args.tasks, args.models, args.seeds, extra, parse_steps(args.steps, args.table))
    if args.report_only:
        results = collect(out, specs)
    else:
        results = run_all(specs, out, f"ut_paper/babi_{args.table}", jobs=args.jobs)
    command = sys.argv if argv is None else ["run_babi", *argv]
    text = write_report(results, args, out, [a for a in command if a != "--report-only"], specs)
    print(text)
    print(json.dumps({"finished": len(results), "planned": len(specs), "out": str(out)}))
    if len(results) < len(specs) and not args.report_only:
        sys.exit(f"{len(specs) - len(results)} runs did not finish; rerun `{shlex.join(command)}` to resume")


if __name__ == "__main__":
    main()
