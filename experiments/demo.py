"""``make demo``: what the repository shows in minutes on a CPU, STEP-budgeted (the same models on any machine).

1-3. WikiSum (Liu et al. 2018, in shape; :mod:`experiments.wikisum.demo`): the extractive ranking table; T-ED,
     T-DMCA and the Universal Transformer (ACT) as validation log-ppl learning curves at equal steps; the
     L-scaling of a training step (time and memory of T-D and T-DMCA).
4.   Where the UT paper's ordering appears in minutes (Dehghani et al. 2019 §3.3): the copy task, trained on
     inputs of length <= 40 with random position offsets and tested on inputs of length 400 (the configs
     experiments/ut_paper/configs/algorithmic_{transformer,ut}.yaml through ``ut-train fit``, at d_model 64).
     Both models get the SAME data-side offsets (``position_offsets: shared``: one random offset per example for
     source and target) and the UT no in-step start index (``position_start_index: zero``): a named deviation
     from the configs' tensor2tensor policy, under which the UT needs thousands of steps to fit its training
     lengths (experiments/ut_paper/README.md), so that 800 steps show the length generalisation;
     with ``--ut-task babi1``, bAbI task 1 instead (experiments/ut_paper/configs/babi_1k_{transformer,ut}.yaml
     with ``--data.init_args.tasks=1``).

Every training run is ``ut-train fit`` on a repository config in its own process, ``--jobs`` at a time with one
thread each; precision and accelerator are the configs' (fp32 on any CPU). W&B is not used (CSV logs under
``--out``). Writes ``<out>/report.md`` with the tables and figures.

    python -m experiments.demo [--steps 160] [--ut-steps 800] [--ut-task copy|babi1] [--jobs 2] [--out outputs/demo]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.wikisum import demo as wikisum_demo
from experiments.wikisum.runner import REPO_ROOT, rel, relative_argv

UT_CONFIGS = {
    "copy": {"Transformer": "experiments/ut_paper/configs/algorithmic_transformer.yaml",
             "Universal Transformer": "experiments/ut_paper/configs/algorithmic_ut.yaml"},
    "babi1": {"Transformer": "experiments/ut_paper/configs/babi_1k_transformer.yaml",
              "Universal Transformer": "experiments/ut_paper/configs/babi_1k_ut.yaml"},
}
# per-model flags of the UT part: the data-side shared offsets replace the UT's in-step random start (see above)
MODEL_OVERRIDES = {"copy": {"Universal Transformer": ["--model.init_args.model_config.position_start_index=zero"]}}
DEFAULT_UT_STEPS = 800
PEAK_LR = 3e-3  # the schedule's peak for the copy runs (experiments/ut_paper/run_algorithmic.py's default)


def ut_overrides(task: str, steps: int, save_dir: str, fast_dev_run: bool = False) -> list[str]:
    """The ``ut-train`` flags of the UT comparison (task, step budget, CPU-scale width, where to write)."""
    common = [f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps}",
              "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", "--run.logger=csv",
              f"--run.save_dir={save_dir}", f"--run.experiment=demo/{task}"]
    if fast_dev_run:
        common.append("--trainer.fast_dev_run=true")
    if task == "copy":
        warmup = max(steps // 4, 1)
        d = 64
        return common + ["--data.init_args.task=copy", "--data.init_args.position_offsets=shared",
                         "--data.init_args.test_size=64", "--data.init_args.val_size=16",
                         f"--model.init_args.model_config.d_model={d}", "--model.init_args.model_config.d_ff=256",
                         f"--model.init_args.optimizer.warmup_steps={warmup}",
                         f"--model.init_args.optimizer.lr_scale={PEAK_LR * d**0.5 * warmup**0.5:.4g}"]
    if task == "babi1":
        return common + ["--data.init_args.tasks=1"]
    raise ValueError(f"unknown --ut-task {task!r}; one of {sorted(UT_CONFIGS)}")


def run_ut_comparison(task: str, steps: int, jobs: int, out: Path, fast_dev_run: bool = False) -> list[dict]:
    """Transformer and UT through ``experiments.run_training`` (``ut-train fit`` + test), ``jobs`` at a time."""
    save_dir = rel(out / "runs")

    def one(item):
        name, config = item
        result = out / "ut" / f"{task}_{Path(config).stem}.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "experiments.run_training", "--config", config, "--out", rel(result),
               "--threads", "1", "--", *ut_overrides(task, steps, save_dir, fast_dev_run),
               *MODEL_OVERRIDES.get(task, {}).get(name, []), f"--run.name={Path(config).stem}"]
        log = out / "ut" / f"{task}_{Path(config).stem}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
        start = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        row = {"name": name, "config": config, "log": rel(log), "wall_s": time.perf_counter() - start,
               "command": "python " + " ".join(cmd[1:])}
        if proc.returncode != 0 or not result.is_file():
            tail = log.read_text(errors="replace").strip().splitlines()[-10:]
            print(f"  {name}: failed (exit {proc.returncode}); last lines of {rel(log)}:\n    " + "\n    ".join(tail))
            return {**row, "status": f"failed (exit {proc.returncode})"}
        res = json.loads(result.read_text())
        return {**row, "status": "ok", "params": res["params"], "steps": res["global_step"],
                "test": res["metrics"].get("test", {})}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, UT_CONFIGS[task].items()))


def ut_table(task: str, rows: list[dict]) -> str:
    if task == "copy":
        head = "| model | params | steps | char-acc, length 400 | seq-acc, length 400 | test loss | seconds |"
        keys = ("token_acc", "seq_acc", "loss")
    else:
        head = "| model | params | steps | accuracy | error | test loss | seconds |"
        keys = ("acc", "error", "loss")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | - | - | - | - | - | {r['status']} |")
            continue
        vals = " | ".join(f"{r['test'].get(k, float('nan')):.3f}" for k in keys)
        lines.append(f"| {r['name']} | {r['params']:,} | {r['steps']} | {vals} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


UT_TITLES = {
    "copy": "copy: trained on inputs of length <= 40 (one random position offset per example, shared by source and "
            "target, for both models), tested on 64 inputs of length 400; "
            "teacher-forced char / sequence accuracy of the final model (UT paper §3.3: UT 0.91 vs Transformer "
            "0.53 char-acc)",
    "babi1": "bAbI 1k task 1 (single supporting fact), test accuracy of the final model (UT paper Table 1)",
}


def main(argv: list[str] | None = None) -> int:
    p = wikisum_demo.add_arguments(argparse.ArgumentParser(prog="python -m experiments.demo",
                                                           description=__doc__.splitlines()[0]))
    p.add_argument("--ut-task", default="copy", choices=sorted(UT_CONFIGS), help="the UT-vs-Transformer part")
    p.add_argument("--ut-steps", type=int, default=DEFAULT_UT_STEPS, help="training steps of each UT-part model")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite report.md from the results of an earlier run in --out (no training)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return rewrite_report(out)
    start = time.perf_counter()
    parts = wikisum_demo.wikisum_parts(args, out)
    print(f"\n== 4. Universal Transformer vs Transformer at {args.ut_steps} steps each: {UT_TITLES[args.ut_task]} ==\n")
    t_ut = time.perf_counter()
    ut_rows = run_ut_comparison(args.ut_task, args.ut_steps, args.jobs, out, args.fast_dev_run)
    ut_s = time.perf_counter() - t_ut
    print(ut_table(args.ut_task, ut_rows))
    total = time.perf_counter() - start
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    timing = (f"wall time {total:.0f} s (build + WikiSum models {parts['models_s']:.0f} s, L-scaling "
              f"{parts['scaling_s']:.0f} s, UT part {ut_s:.0f} s); {os.cpu_count()} CPUs, load average now {load}")
    command = "python -m experiments.demo" + (" " + shlex.join(relative_argv(argv)) if argv else "")
    ut = {"task": args.ut_task, "steps": args.ut_steps, "rows": ut_rows, "timing": timing}
    (out / "ut_comparison.json").write_text(json.dumps(ut, indent=1) + "\n")
    report = wikisum_demo.write_wikisum_report(parts, out, command, total, ut_markdown(ut))
    print(f"\n{timing}\nreport: {rel(report)}")
    return 0


def ut_markdown(ut: dict) -> str:
    return (f"\n## 4. Universal Transformer vs Transformer ({ut.get('steps', '?')} steps each)\n\n"
            f"{UT_TITLES[ut['task']]}\n\n{ut_table(ut['task'], ut['rows'])}\n\nCommands:\n\n" +
            "\n".join(f"- `{r['command']}`" for r in ut["rows"]) + f"\n\n## Time\n\n{ut.get('timing', '')}\n")


def rewrite_report(out: Path) -> int:
    """``report.md`` again from ``results.json`` and ``ut_comparison.json`` of an earlier run in ``out``."""
    res = json.loads((out / "results.json").read_text())
    ut = json.loads((out / "ut_comparison.json").read_text())
    demo = [r for r in res["rows"] if str(r.get("config", "")).startswith("experiments/wikisum/configs/demo/")]
    parts = {"data_dir": REPO_ROOT / res["data"]["build"], "models": demo,
             "scaling": [r for r in res["rows"] if r not in demo]}
    report = wikisum_demo.write_wikisum_report(parts, out, res["command"], res["total_time_s"], ut_markdown(ut),
                                               record=res)
    print(f"report: {rel(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
