"""The ablation runner: a grid of configs x named overrides x seeds, run in sequence or in parallel processes,
cached (a run is skipped when a results JSON with the same cache key exists), aggregated into a mean ± std table
over seeds and a titled plot of the grid's metric.

    python -m experiments.ablations.runner experiments/ablations/grids/ut_steps.yaml --jobs 2
    python -m experiments.ablations.runner experiments/ablations/grids/ut_steps.yaml --aggregate-only
    python -m experiments.ablations.runner experiments/ablations/grids/ut_steps.yaml --commit-results

Results go to ``outputs/ablations/<name>/`` (not committed); ``--commit-results`` writes them to
``experiments/ablations/results/<name>/`` instead, ``--results DIR`` anywhere. The cache key of a run
(:func:`cache_key`) hashes the training config's content and the run's arguments, so a changed grid or config
reruns. Every result also records the code version it ran with (:func:`code_version`: the sources of ``ut/`` and
``experiments/run_training.py``); a result of an older code version is reused -- a table of 180 runs spans sessions
in which the code moves -- and the table names every such run, unless ``--rerun-code-changes`` (``run_all(...,
rerun_code_changes=True)``) reruns them. A run that fails makes the runner exit non-zero after the others finished,
and the table lists it. The grid is also the source of the W&B
sweeps (``python -m experiments.ablations.wandb_sweep write``).

A grid file (every key commented in the shipped ones)::

    name: ut_steps                      # results under <results_root>/<name>/
    configs: [experiments/ut_paper/configs/algorithmic_ut.yaml]
    overrides: {T2: [--model.init_args.model_config.n_steps=2], T4: [...]}
    seeds: [0, 1, 2]
    common: [--trainer.max_steps=300, --run.logger=csv]   # applied to every run, before the variant's
    metrics: [test/token_acc, test/seq_acc]               # table columns (stage/metric)
    plot: test/token_acc                                  # the plotted metric (default: the first of metrics)

Each run is one process (``python -m experiments.run_training``), so a crash or an OOM kills one run, not the grid;
its log is ``runs/<run id>.log``. Run ids are ``<config stem>__<variant>__seed<k>``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.run_training import repo_relative

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "outputs" / "ablations"  # not committed (.gitignore)
COMMITTED_RESULTS = REPO / "experiments" / "ablations" / "results"
CODE_SOURCES = ("ut", "experiments/run_training.py")  # what the code version of a run hashes


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
    plot: str | None = None  # the plotted metric (None: metrics[0])

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = {"name", "configs", "overrides", "seeds", "common", "metrics", "plot"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown grid keys {unknown}; valid keys are {sorted(known)}")
        for key in ("name", "configs"):
            if not raw.get(key):
                raise ValueError(f"{path}: the grid needs `{key}`")
        grid = cls(raw["name"], list(raw["configs"]), dict(raw.get("overrides") or {"default": []}),
                   [int(s) for s in raw.get("seeds", [0])], list(raw.get("common") or []),
                   list(raw.get("metrics") or ["test/loss"]), raw.get("plot"))
        if grid.plot is not None and grid.plot not in grid.metrics:
            raise ValueError(f"{path}: plot {grid.plot!r} is not one of the grid's metrics {grid.metrics}")
        for c in grid.configs:
            if not (REPO / c).is_file() and not Path(c).is_file():
                raise FileNotFoundError(f"{path}: config {c} does not exist")
        return grid

    @property
    def plot_metric(self) -> str:
        return self.plot or self.metrics[0]

    def specs(self) -> list[RunSpec]:
        return [RunSpec(c, v, s, (*self.common, *args, f"--seed_everything={s}"))
                for c in self.configs for v, args in self.overrides.items() for s in self.seeds]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (16 hex digits) of the code a run executes: every ``*.py`` under :data:`CODE_SOURCES`, by path."""
    h = hashlib.sha256()
    for src in CODE_SOURCES:
        root = REPO / src
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_key(spec: RunSpec) -> str:
    """The results cache key of ``spec``: its config file's content and its arguments (what the run was asked to
    do; the code version it ran with is recorded beside it, see the module docstring)."""
    config = REPO / spec.config if (REPO / spec.config).is_file() else Path(spec.config)
    h = hashlib.sha256()
    h.update(config.read_bytes() + b"\0")
    h.update(json.dumps([spec.config, list(spec.args)]).encode() + b"\0")
    return h.hexdigest()[:16]


def code_changed(res: dict) -> bool:
    """Whether the result ``res`` ran with another code version than the current one."""
    return res.get("code_version") != code_version()


def _cached(out: Path, key: str) -> dict | None:
    if not out.is_file():
        return None
    res = json.loads(out.read_text())
    return res if res.get("cache_key") == key else None


def _argv_text(argv: list[str]) -> str:
    return repo_relative(shlex.join(argv))


class _Progress:
    """n/N progress lines of one run_all call (thread-safe)."""

    def __init__(self, total: int):
        self.total, self.done, self.lock = total, 0, threading.Lock()

    def report(self, spec: RunSpec, what: str) -> None:
        with self.lock:
            self.done += 1
            print(f"[runner] {self.done}/{self.total} {spec.run_id}: {what}", flush=True)


def run_one(spec: RunSpec, out_dir: Path, experiment: str, threads: int = 1, *,
            rerun_code_changes: bool = False) -> dict:
    """Run ``spec`` in its own process unless a results file with its :func:`cache_key` exists (and, with
    ``rerun_code_changes``, the current code version); returns the results. Progress bars are off (a log file,
    not a terminal)."""
    out = out_dir / "runs" / f"{spec.run_id}.json"
    key = cache_key(spec)
    cached = _cached(out, key)
    if cached is not None and not (rerun_code_changes and code_changed(cached)):
        return {**cached, "_cached": True, "code_changed": code_changed(cached)}
    log = out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [*spec.args, f"--run.name={spec.run_id}", f"--run.experiment={experiment}",
            "--trainer.enable_progress_bar=false"]
    cmd = [sys.executable, "-m", "experiments.run_training", "--config", spec.config, "--out", str(out),
           "--threads", str(threads), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"run {spec.run_id} failed (exit {proc.returncode}); see {repo_relative(str(log))}")
    res = json.loads(out.read_text())
    res.update(cache_key=key, code_version=code_version(), seconds=round(time.time() - start, 1))
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True))
    tmp.replace(out)
    return res


def run_all(specs: list[RunSpec], out_dir: Path, experiment: str, jobs: int = 1, threads: int = 1, *,
            failed: list[tuple[RunSpec, str]] | None = None, rerun_code_changes: bool = False) -> list[dict]:
    """Run every spec (``jobs`` processes at a time), printing n/N progress; returns the finished runs' results in
    ``specs`` order (a reused result of an older code version carries ``"code_changed": True``). A failed run is
    reported on stderr, left out, and appended (with its error) to ``failed`` when given: callers decide the exit
    status (the runner's ``main`` exits 1)."""
    progress = _Progress(len(specs))
    done: dict[RunSpec, dict] = {}
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = {pool.submit(run_one, s, out_dir, experiment, threads, rerun_code_changes=rerun_code_changes): s
                   for s in specs}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                res = fut.result()
            except RuntimeError as e:
                progress.report(spec, "FAILED")
                print(f"[runner] {e}", file=sys.stderr, flush=True)
                if failed is not None:
                    failed.append((spec, str(e)))
                continue
            cached = res.pop("_cached", False)
            progress.report(spec, "cached" if cached else f"done in {res.get('seconds', 0):.0f}s")
            done[spec] = {**res, "run_id": spec.run_id, "variant": spec.variant, "seed": spec.seed,
                          "config_name": Path(spec.config).stem}
    return [done[s] for s in specs if s in done]


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


def plot(rows: list[dict], metric_name: str, path: Path, title: str | None = None) -> str | None:
    """Bar chart of one metric (mean ± std over seeds) per (config, variant), titled; a metric that is the same
    for every bar says so in the title (nothing to compare). Returns the title (None: nothing to plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get(metric_name)]
    if not rows:
        print(f"[runner] no finished run has {metric_name}: no plot", file=sys.stderr)
        return None
    means = [r[metric_name][0] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows) + 1), 3.4))
    x = range(len(rows))
    ax.bar(x, means, yerr=[r[metric_name][1] for r in rows], capsize=3, color="tab:blue")
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{r['config']}\n{r['variant']}" for r in rows], fontsize=6)
    ax.set_ylabel(metric_name)
    seeds = sorted({r["n"] for r in rows})
    full = f"{title or 'ablation'}: {metric_name} (mean ± std over {'/'.join(map(str, seeds))} seed(s))"
    if len(set(means)) == 1 and len(rows) > 1:
        full += f"\nevery variant gives {means[0]:.4g}: nothing to compare"
    ax.set_title(full, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return full


def collect(out_dir: Path, specs: list[RunSpec], *, current_only: bool = False) -> list[dict]:
    """The finished runs among ``specs`` (for --aggregate-only). A result whose cache key no longer matches (the
    config or the arguments changed) is kept with ``"stale": True`` and counted on stderr, or left out with
    ``current_only``; one of an older code version carries ``"code_changed": True``."""
    results, stale = [], 0
    for s in specs:
        p = out_dir / "runs" / f"{s.run_id}.json"
        if p.is_file():
            res = json.loads(p.read_text())
            res["code_changed"] = code_changed(res)
            if res.get("cache_key") != cache_key(s):
                stale += 1
                if current_only:
                    continue
                res["stale"] = True
            results.append({**res, "run_id": s.run_id, "variant": s.variant, "seed": s.seed,
                            "config_name": Path(s.config).stem})
    if stale:
        print(f"[runner] {stale} of the finished runs in {repo_relative(str(out_dir))} are stale (their config "
              f"or arguments changed since){'; left out' if current_only else ''}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run (or aggregate) a grid; returns (and as a script exits with) 1 when a run failed, else 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description="Run a grid of configs x overrides x seeds and aggregate it.")
    p.add_argument("grid", help="grid YAML (see experiments/ablations/grids/)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--results", default=None,
                   help=f"results root folder (default {repo_relative(str(DEFAULT_RESULTS))}, not committed)")
    p.add_argument("--commit-results", action="store_true",
                   help=f"write into {repo_relative(str(COMMITTED_RESULTS))} (the committed results)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="override the grid's seeds")
    p.add_argument("--aggregate-only", action="store_true", help="only aggregate the finished runs")
    p.add_argument("--rerun-code-changes", action="store_true",
                   help="rerun finished runs whose code version differs from the current one (default: reuse, listed)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ut-train arguments for every run")
    args = p.parse_args(argv)
    if args.results and args.commit_results:
        p.error("--results and --commit-results exclude each other")
    grid = Grid.load(args.grid)
    grid.common = [*grid.common, *args.extra]
    if args.seeds is not None:
        grid.seeds = args.seeds
    root = Path(args.results) if args.results else COMMITTED_RESULTS if args.commit_results else DEFAULT_RESULTS
    out_dir = root / grid.name
    specs = grid.specs()
    failed: list[tuple[RunSpec, str]] = []
    if args.aggregate_only:
        results = collect(out_dir, specs)
    else:
        results = run_all(specs, out_dir, f"ablations/{grid.name}", args.jobs, args.threads, failed=failed,
                          rerun_code_changes=args.rerun_code_changes)
    rows = aggregate(results, grid.metrics)
    table = markdown_table(rows, grid.metrics)
    failures = "".join(f"- `{s.run_id}`: {e}\n" for s, e in failed)
    stale = [r["run_id"] for r in results if r.get("stale")]
    older = [f"{r['run_id']} ({r.get('code_version') or 'unrecorded'})" for r in results if r.get("code_changed")]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(
        f"# Ablation `{grid.name}`\n\n"
        f"Command: `{_argv_text(['python', '-m', 'experiments.ablations.runner', *argv])}`"
        f"\n\nCode version {code_version()}. {len(results)}/{len(specs)} runs finished"
        f"{f', {len(failed)} FAILED' if failed else ''}; mean ± sample std over seeds.\n\n{table}"
        + (f"\nFailed runs:\n\n{failures}" if failed else "")
        + (f"\nStale results (config or arguments changed since): {', '.join(stale)}\n" if stale else "")
        + (f"\nRuns of an older code version (reused; --rerun-code-changes reruns them): {', '.join(older)}\n"
           if older else ""))
    plot(rows, grid.plot_metric, out_dir / "plot.png", title=f"ablation {grid.name}")
    print(table)
    if failed:
        print(f"[runner] {len(failed)}/{len(specs)} runs FAILED: {', '.join(s.run_id for s, _ in failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
