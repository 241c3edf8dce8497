"""Run one WikiSum experiment end to end: build the data if missing, run every config of
``configs/<experiment>/`` through ``ut-train fit`` (:func:`experiments.wikisum.runner.run_config`), print the
table, write ``results.json`` and the report (Liu et al. 2018, Tables 3-4 and the L sweep, in shape).

The scripts ``table3.py``, ``table4.py`` and ``lsweep.py`` are this with their experiment; every option below is a
flag of each script::

    python -m experiments.wikisum.table4 [--out DIR] [--data-dir DIR] [--max-steps N] [--only NAME ...]
                                         [--jobs J] [--timeout-s S] [--logger csv|wandb|none] [--fast-dev-run]
                                         [-- more ut-train flags]

Defaults: the sample build at ``data/wikisum_sample`` (built on first use from the embedded real enwiki dump with
``data_prep``'s default configuration, the same as ``python -m data_prep build --out data/wikisum_sample``),
results under ``experiments/wikisum/results/<experiment>/``, run folders under ``outputs/``, the CSV logger (its
PNGs go into the report; ``--logger wandb`` logs them to W&B, offline unless the config says ``online``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.wikisum.configs.generate import CONFIG_DIR, runs_of
from experiments.wikisum.runner import (
    DEFAULT_DATA_DIR,
    REPO_ROOT,
    load_config,
    overrides_for,
    rel,
    relative_argv,
    run_config,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def ensure_dataset(data_dir: str | Path, num_proc: int = 2) -> Path:
    """The build at ``data_dir``; built from the embedded dump with data_prep's defaults when absent."""
    data_dir = Path(data_dir)
    if (data_dir / "build_config.json").is_file():
        return data_dir
    if data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        from ut.data.wikisum import check_built

        return check_built(data_dir)  # a custom folder is never built implicitly: the error names the command
    print(f"building the WikiSum sample at {rel(data_dir)} from the embedded enwiki dump (about a minute) ...",
          flush=True)
    from data_prep.build import build_dataset

    return build_dataset(out=str(data_dir), num_proc=num_proc)


def machine_info() -> dict:
    import os

    import torch

    from benchmarks.machine import cpu_flags

    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    info = {"cpus": os.cpu_count(), "machine": platform.machine(), "isa": isa, "python": platform.python_version(),
            "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average"] = [round(x, 1) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def comparison_table(rows: list[dict]) -> str:
    """The printed table: model, L, params, steps, s/step (wall), cpu s (CPU time per step), peak MB, log-ppl,
    ROUGE-L, distinct outputs, status."""
    head = f"{'model':<20}{'L':>6}{'params':>8}{'steps':>6}{'s/step':>8}{'cpu s':>7}{'peak MB':>8}{'log-ppl':>8}" \
           f"{'ROUGE-L':>8}{'distinct':>9}  status"
    lines = [head, "-" * len(head)]

    def f(x, spec):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    for r in rows:
        m = r.get("metrics") or {}
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else "-"
        lines.append(f"{r['name']:<20}{f(r.get('L'), 'd'):>6}{params:>8}{f(r.get('steps'), 'd'):>6}"
                     f"{f(r.get('time_per_step_s'), '.3f'):>8}{f(r.get('cpu_per_step_s'), '.3f'):>7}"
                     f"{f(r.get('peak_gpu_mb') or r.get('peak_rss_mb'), '.0f'):>8}"
                     f"{f(m.get('log_ppl'), '.3f'):>8}{f(m.get('rougeL'), '.1f'):>8}"
                     f"{f(m.get('distinct_outputs'), '.2f'):>9}  {r.get('status', 'ok')}")
    return "\n".join(lines)


def parser(name: str, doc: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m experiments.wikisum.{name}",
                                description=(doc or __doc__).split("\n")[0])
    p.add_argument("--out", default=rel(RESULTS_DIR / name), help="results folder (results.json, report.md)")
    p.add_argument("--save-dir", default="outputs", help="where ut-train writes the run folders")
    p.add_argument("--data-dir", default=rel(DEFAULT_DATA_DIR), help="a python -m data_prep build output")
    p.add_argument("--max-steps", type=int, help="training steps per run (overrides the configs)")
    p.add_argument("--only", nargs="*", help="run only these runs (config names, e.g. t_dmca_l11000)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (s/step is then measured side by side)")
    p.add_argument("--timeout-s", type=float, help="per-run limit; a run over it is reported as such")
    p.add_argument("--logger", default="csv", choices=("csv", "wandb", "tensorboard", "none"))
    p.add_argument("--fast-dev-run", action="store_true", help="1 step + 1 decoded example per run (a smoke test)")
    p.add_argument("extra", nargs="*", help="more ut-train flags for every run, after --")
    return p


def configs_of(name: str, only: list[str] | None = None) -> list[Path]:
    runs = runs_of(name)
    if only:
        missing = sorted(set(only) - {r.name for r in runs})
        if missing:
            raise SystemExit(f"--only: no run named {missing}; runs: {[r.name for r in runs]}")
        runs = [r for r in runs if r.name in only]
    return [r.path for r in runs]


def run_all(configs: list[Path], args, save_dir: str | Path, extra: list[str] | None = None,
            max_steps: int | None = None) -> list[dict]:
    """Every config through :func:`run_config` (``args.jobs`` at a time), in the given order."""
    steps = max_steps if max_steps is not None else args.max_steps
    jobs = []
    for path in configs:
        ov = overrides_for(load_config(path), args.data_dir, steps, args.logger, args.fast_dev_run,
                           [*(getattr(args, "extra", None) or []), *(extra or [])])
        jobs.append((path, ov))
    done = [0]

    def one(job):
        path, ov = job
        row = run_config(path, save_dir, ov, args.timeout_s)
        done[0] += 1
        print(f"[{done[0]}/{len(jobs)}] " + comparison_table([row]).splitlines()[-1], flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        return list(pool.map(one, jobs))


def results_record(name: str, title: str, notes: list[str], argv: list[str] | None, data_dir: Path, rows: list,
                   total_s: float, jobs: int = 1) -> dict:
    card_path = Path(data_dir) / "data_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return {
        "experiment": name, "title": title, "notes": notes,
        "command": f"python -m experiments.wikisum.{name}" + (" " + shlex.join(relative_argv(argv)) if argv else ""),
        "machine": machine_info(), "jobs": jobs,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "total_time_s": round(total_s, 1),
        "data": {"build": rel(data_dir), "splits": card.get("split_counts"),
                 "source": (card.get("coverage") or {}).get("source")},
        "rows": rows,
    }


TITLES = {
    "table3": ("Table 3 in shape: T-ED (L=500) by extractor (Liu et al. 2018)",
               ["Paper (ROUGE-L / log-ppl): cheating 59.3 / 1.73, tf-idf 34.2 / 2.47, identity 4.0 / 4.80 (full "
                "WikiSum, GPUs).",
                "Here: the embedded enwiki sample (wiki-body stand-in source), a small T-ED, the same step budget per "
                "run."]),
    "table4": ("Table 4 in shape: models on the same data and step budget (Liu et al. 2018)",
               ["Paper (log-ppl / ROUGE-L): T-ED L=500 2.47 / 34.2; T-D L=4000 2.22 / 33.6; T-DMCA L=11000 2.05 / "
                "36.2; T-DMCA-MoE-256 L=7500 1.90 / 38.8.",
                "Here: tf-idf inputs, the same steps per model; T-D at L=2000 (CPU), T-DMCA at L=2000 and 11000.",
                "UT rows (Dehghani et al. 2019) share one layer over T steps; ACT adds the ponder loss."]),
    "lsweep": ("The L sweep: log-ppl, time per step and peak memory against input length (Liu et al. 2018 §5)",
               ["Paper: T-ED stops improving beyond L=2000, T-D runs out of memory beyond L=4000 on a 16 GB GPU, "
                "T-DMCA scales to 11000.",
                "Batch 1 of training examples with at least L input tokens; log-ppl on the validation split after the "
                "step budget (equal for every run)."]),
}


def run_experiment(name: str, argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the experiment ``name`` and write its results and report; returns the results dict."""
    args = parser(name).parse_args(argv)
    configs = configs_of(name, args.only)
    data_dir = ensure_dataset(args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = run_all(configs, args, args.save_dir)
    title, notes = TITLES.get(name, (name, []))
    results = results_record(name, title, notes, argv, data_dir, rows, time.perf_counter() - start, args.jobs)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    from ut.eval.report import write_report

    report = write_report(out / "results.json")
    print("\n" + comparison_table(rows))
    print(f"\nresults: {rel(out / 'results.json')}\nreport:  {rel(report)}  ({results['total_time_s']:.0f} s in all)")
    failed = [r["name"] for r in rows if r.get("status") != "ok"]
    if failed and all(r.get("status") != "ok" for r in rows):
        raise SystemExit(f"every run failed: {failed}")
    return results


def main_for(name: str) -> int:
    run_experiment(name, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit("run one of: python -m experiments.wikisum.{table3,table4,lsweep,demo}")


__all__ = ["CONFIG_DIR", "REPO_ROOT", "comparison_table", "ensure_dataset", "run_experiment"]
