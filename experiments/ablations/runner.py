"""The ablation runner: a grid of configs x named overrides x seeds, run in sequence or in parallel processes,
resumable (a run whose results JSON exists is skipped), aggregated into a mean ± std table over seeds and a plot.

    python -m experiments.ablations.runner experiments/ablations/grids/ut_steps.yaml --jobs 2
    python -m experiments.ablations.runner experiments/ablations/grids/ut_steps.yaml --aggregate-only

A grid file (every key commented in the shipped ones)::

    name: ut_steps                      # results under <results_root>/<name>/
    configs: [experiments/ut_paper/configs/algorithmic_ut.yaml]
    overrides: {T2: [--model.init_args.model_config.n_steps=2], T4: [...]}
    seeds: [0, 1, 2]
    common: [--trainer.max_steps=300, --run.logger=csv]   # applied to every run, before the variant's
    metrics: [test/token_acc, test/seq_acc]               # table columns (stage/metric)

Each run is one process (``python -m experiments.run_training``), so a crash or an OOM kills one run, not the grid;
its log is ``runs/<run id>.log``. Run ids are ``<config stem>__<variant>__seed<k>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "experiments" / "ablations" / "results"


@dataclass(frozen=True)
class RunSpec:
    config: str  # training YAML
    variant: str  # name of the override set
    seed: int
    args: tuple[str, ...] = field(default=())  # ut-train arguments (common + variant)

    @property
    def run_id(self) -> str:
        return f"{Path(self.config).stem}__{self.variant}__seed{self.seed}"


@dataclass
class Grid:
    name: str
    configs: list[str]
    overrides: dict[str, list[str]]
    seeds: list[int]
    common: list[str]
    metrics: list[str]

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = {"name", "configs", "overrides", "seeds", "common", "metrics"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown grid keys {unknown}; valid keys are {sorted(known)}")
        for key in ("name", "configs"):
            if not raw.get(key):
                raise ValueError(f"{path}: the grid needs `{key}`")
        grid = cls(raw["name"], list(raw["configs"]), dict(raw.get("overrides") or {"default": []}),
                   [int(s) for s in raw.get("seeds", [0])], list(raw.get("common") or []),
                   list(raw.get("metrics") or ["test/loss"]))
        for c in grid.configs:
            if not (REPO / c).is_file() and not Path(c).is_file():
                raise FileNotFoundError(f"{path}: config {c} does not exist")
        return grid

    def specs(self) -> list[RunSpec]:
        return [RunSpec(c, v, s, (*self.common, *args, f"--seed_everything={s}"))
                for c in self.configs for v, args in self.overrides.items() for s in self.seeds]


def run_one(spec: RunSpec, out_dir: Path, experiment: str, threads: int = 1) -> dict:
    """Run ``spec`` in its own process unless its results file exists; returns the results."""
    out = out_dir / "runs" / f"{spec.run_id}.json"
    if out.is_file():
        return json.loads(out.read_text())
    log = out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [*spec.args, f"--run.name={spec.run_id}", f"--run.experiment={experiment}"]
    cmd = [sys.executable, "-m", "experiments.run_training", "--config", spec.config, "--out", str(out),
           "--threads", str(threads), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"run {spec.run_id} failed (exit {proc.returncode}); see {log}")
    print(f"[runner] {spec.run_id} done in {time.time() - start:.0f}s", flush=True)
    return json.loads(out.read_text())


def run_all(specs: list[RunSpec], out_dir: Path, experiment: str, jobs: int = 1, threads: int = 1) -> list[dict]:
    """Run every spec (``jobs`` processes at a time); failed runs are reported and left out."""
    results: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = {pool.submit(run_one, s, out_dir, experiment, threads): s for s in specs}
        for fut, spec in futures.items():
            try:
                res = fut.result()
            except RuntimeError as e:
                print(f"[runner] {e}", file=sys.stderr)
                continue
            results.append({**res, "run_id": spec.run_id, "variant": spec.variant, "seed": spec.seed,
                            "config_name": Path(spec.config).stem})
    return results


def metric(res: dict, name: str) -> float | None:
    stage, _, key = name.partition("/")
    v = res.get("metrics", {}).get(stage, {}).get(key)
    return None if v is None else float(v)


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def aggregate(results: list[dict], metrics: list[str]) -> list[dict]:
    """One row per (config, variant): n seeds and mean / std of every metric (sample std, 0 for one seed)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["config_name"], r["variant"]), []).append(r)
    rows = []
    for (cfg, variant), rs in groups.items():
        row = {"config": cfg, "variant": variant, "n": len(rs), "params": rs[0].get("params")}
        for m in metrics:
            vals = [v for v in (metric(r, m) for r in rs) if v is not None]
            row[m] = mean_std(vals) if vals else None
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], metrics: list[str]) -> str:
    head = "| config | variant | seeds | params | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (4 + len(metrics))]
    for r in rows:
        cells = [f"{r[m][0]:.3f} ± {r[m][1]:.3f}" if r[m] else "n/a" for m in metrics]
        lines.append(f"| {r['config']} | {r['variant']} | {r['n']} | {r['params']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], metric_name: str, path: Path) -> None:
    """Bar chart of one metric (mean ± std over seeds) per (config, variant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get(metric_name)]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows) + 1), 3.2))
    x = range(len(rows))
    ax.bar(x, [r[metric_name][0] for r in rows], yerr=[r[metric_name][1] for r in rows], capsize=3,
           color="tab:blue")
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{r['config']}\n{r['variant']}" for r in rows], fontsize=6)
    ax.set_ylabel(metric_name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def collect(out_dir: Path, specs: list[RunSpec]) -> list[dict]:
    """The finished runs among ``specs`` (for --aggregate-only)."""
    results = []
    for s in specs:
        p = out_dir / "runs" / f"{s.run_id}.json"
        if p.is_file():
            results.append({**json.loads(p.read_text()), "run_id": s.run_id, "variant": s.variant, "seed": s.seed,
                            "config_name": Path(s.config).stem})
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run a grid of configs x overrides x seeds and aggregate it.")
    p.add_argument("grid", help="grid YAML (see experiments/ablations/grids/)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="results root folder")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="override the grid's seeds")
    p.add_argument("--aggregate-only", action="store_true", help="only aggregate the finished runs")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ut-train arguments for every run")
    args = p.parse_args(argv)
    grid = Grid.load(args.grid)
    grid.common = [*grid.common, *args.extra]
    if args.seeds is not None:
        grid.seeds = args.seeds
    out_dir = Path(args.results) / grid.name
    specs = grid.specs()
    if args.aggregate_only:
        results = collect(out_dir, specs)
    else:
        results = run_all(specs, out_dir, f"ablations/{grid.name}", args.jobs, args.threads)
    rows = aggregate(results, grid.metrics)
    table = markdown_table(rows, grid.metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(
        f"# Ablation `{grid.name}`\n\n"
        f"Command: `python -m experiments.ablations.runner {' '.join(argv or sys.argv[1:])}`"
        f"\n\n{len(results)}/{len(specs)} runs finished; mean ± sample std over seeds.\n\n{table}")
    plot(rows, grid.metrics[0], out_dir / "plot.png")
    print(table)


if __name__ == "__main__":
    main()
