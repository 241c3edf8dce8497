"""Run one WikiSum experiment file end to end: build the data if missing, train + evaluate every run, print the
table, write ``results.json`` and the report (Liu et al. 2018, Tables 3-4 and the L sweep, in shape).

The scripts ``table3.py``, ``table4.py``, ``lsweep.py`` and ``demo.py`` are this with their config; every option
below is a flag of each script::

    python -m experiments.wikisum.table4 [--out DIR] [--data-dir DIR] [--minutes M] [--max-steps N]
                                         [--only NAME ...] [--no-isolate] [--logger wandb|none] [--fast-dev-run]

Defaults: the sample build at ``data/wikisum_sample`` (built on first use from the embedded real enwiki dump with
``data_prep``'s default configuration, the same as ``python -m data_prep build --out data/wikisum_sample``),
results under ``experiments/wikisum/results/<experiment>/``, each run in its own process (its own peak memory and
time limit), W&B in offline mode.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
import time
from pathlib import Path

from experiments.wikisum.runner import (
    CONFIG_DIR,
    DEFAULT_DATA_DIR,
    deep_merge,
    load_experiment,
    machine_info,
    run,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FAST_DEV_RUN = {"train": {"max_steps": 1, "max_time_s": None, "precision": "32-true"},
                "eval": {"max_examples": 1, "max_len": 4, "beam_size": 2}}


def ensure_dataset(data_dir: str | Path, num_proc: int = 2) -> Path:
    """The build at ``data_dir``; built from the embedded dump with data_prep's defaults when absent."""
    data_dir = Path(data_dir)
    if (data_dir / "build_config.json").is_file():
        return data_dir
    if data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        from ut.data.wikisum import check_built

        return check_built(data_dir)  # a custom folder is never built implicitly: the error names the command
    print(f"building the WikiSum sample at {data_dir} from the embedded enwiki dump (about a minute) ...", flush=True)
    from data_prep.build import build_dataset

    return build_dataset(out=str(data_dir), num_proc=num_proc)


def comparison_table(rows: list[dict]) -> str:
    """The printed table: model, L, params, s/step, train time, log-ppl, ROUGE-L, distinct outputs, status."""
    head = f"{'model':<22}{'L':>6}{'params':>9}{'s/step':>8}{'train s':>9}{'log-ppl':>9}{'ROUGE-L':>9}" \
           f"{'distinct':>9}  status"
    lines = [head, "-" * len(head)]

    def f(x, spec):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    for r in rows:
        m = r.get("metrics", {})
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else "-"
        lines.append(f"{r['name']:<22}{f(r.get('L'), 'd'):>6}{params:>9}{f(r.get('time_per_step_s'), '.2f'):>8}"
                     f"{f(r.get('train_time_s'), '.0f'):>9}{f(m.get('log_ppl'), '.3f'):>9}"
                     f"{f(m.get('rougeL'), '.1f'):>9}"
                     f"{f(m.get('distinct_outputs'), '.2f'):>9}  {r.get('status', 'ok')}")
    return "\n".join(lines)


def parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m experiments.wikisum.{name}", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(CONFIG_DIR / f"{name}.yaml"))
    p.add_argument("--out", default=str(RESULTS_DIR / name), help="results folder (results.json, report.md)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="a python -m data_prep build output")
    p.add_argument("--minutes", type=float, help="training wall time per run (overrides the config)")
    p.add_argument("--max-steps", type=int, help="training steps per run (overrides the config)")
    p.add_argument("--only", nargs="*", help="run only these run names")
    p.add_argument("--timeout-s", type=float, help="per-run limit (isolated runs); a run over it is reported as such")
    p.add_argument("--decode-max-len", type=int, help="decoded tokens per example (overrides the config)")
    p.add_argument("--no-isolate", action="store_true", help="run in this process (peak memory then accumulates)")
    p.add_argument("--logger", default="wandb", choices=("wandb", "none"), help="W&B runs in offline mode")
    p.add_argument("--fast-dev-run", action="store_true", help="1 step + 1 decoded example per run (a smoke test)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_experiment(name: str, argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the experiment ``name`` and write its results and report; returns the results dict."""
    args = parser(name).parse_args(argv)
    config = load_experiment(args.config)
    timeout = args.timeout_s or (config.get("sweep") or {}).get("timeout_s")
    runs = config["runs"]
    if args.only:
        missing = sorted(set(args.only) - {r["name"] for r in runs})
        if missing:
            raise SystemExit(f"--only: no run named {missing}; runs: {[r['name'] for r in runs]}")
        runs = [r for r in runs if r["name"] in args.only]
    override: dict = {"train": {}}
    if args.minutes is not None:
        override["train"]["max_time_s"] = args.minutes * 60
    if args.max_steps is not None:
        override["train"]["max_steps"] = args.max_steps
    runs = [deep_merge(r, override) for r in runs]
    if args.decode_max_len is not None:
        runs = [deep_merge(r, {"eval": {"max_len": args.decode_max_len}}) if r.get("eval") else r for r in runs]
    if args.fast_dev_run:
        runs = [deep_merge(r, {k: v for k, v in FAST_DEV_RUN.items() if k != "eval" or r.get("eval")}) for r in runs]
    data_dir = ensure_dataset(args.data_dir)
    out = Path(args.out)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    command = "python -m experiments.wikisum." + name + (" " + shlex.join(argv) if argv else "")
    start = time.perf_counter()
    rows = []
    for i, spec in enumerate(runs, 1):
        print(f"\n[{i}/{len(runs)}] {spec['name']}", flush=True)
        row = run(spec, out / "maps", logger=args.logger, progress=not args.no_progress, isolate=not args.no_isolate,
                  timeout_s=timeout, data_dir=data_dir)
        rows.append(row)
        print(comparison_table([row]).splitlines()[-1], flush=True)
    card_path = Path(data_dir) / "data_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    results = {
        "experiment": name, "title": config.get("title", name), "notes": config.get("notes", []),
        "command": command, "machine": machine_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "total_time_s": round(time.perf_counter() - start, 1),
        "data": {"build": str(data_dir), "splits": card.get("split_counts"),
                 "source": (card.get("coverage") or {}).get("source")},
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    from ut.eval.report import write_report

    report = write_report(out / "results.json")
    print("\n" + comparison_table(rows))
    print(f"\nresults: {out / 'results.json'}\nreport:  {report}  ({results['total_time_s']:.0f} s in all)")
    return results


def main_for(name: str) -> int:
    run_experiment(name, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit("run one of: python -m experiments.wikisum.{table3,table4,lsweep,demo}")
