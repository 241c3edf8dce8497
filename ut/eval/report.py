"""Markdown report of one WikiSum experiment (Liu et al. 2018 Tables 3-4 and the L sweep, in shape).

Input: a *recorded run*, the ``results.json`` an experiment script writes::

    {"experiment": "table4", "title": "...", "command": "python -m ...", "machine": {...}, "date": "...",
     "notes": ["..."], "data": {...}, "rows": [row, ...]}

where each row is what :func:`experiments.wikisum.runner.run` returns (``name``, ``model``, ``L``, ``extractor``,
``params``, ``steps``, ``time_per_step_s``, ``peak_rss_mb``, ``status``, ``curve`` [[step, loss], ...],
``metrics`` {log_ppl, rouge1, rouge2, rougeL, rougeLsum, distinct_outputs, ...}, ``samples`` [{title, reference,
prediction}], ``maps`` [names in ``<maps_dir>/<slug>.npz``], optional ``group`` for the L sweep).
Rows whose ``status`` is not ``ok`` stay in the tables with the reason (the paper's "OOM" cells).

Output (:func:`write_report`): ``report.md`` beside PNG figures: the results table, the learning curves, the
L-sweep plot (time per step and peak memory against L, one line per model, when rows of one group span several
L), attention maps (last layer, mean over heads) and ACT ponder maps, and sample outputs next to references.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULT_COLUMNS = (  # (header, getter) of the results table
    ("model", lambda r: r["name"]),
    ("L", lambda r: r.get("L")),
    ("extractor", lambda r: r.get("extractor")),
    ("params", lambda r: _millions(r.get("params"))),
    ("steps", lambda r: r.get("steps")),
    ("s/step", lambda r: _num(r.get("time_per_step_s"), 3)),
    ("peak MB", lambda r: _num(r.get("peak_rss_mb"), 0)),
    ("log-ppl", lambda r: _num(r.get("metrics", {}).get("log_ppl"), 3)),
    ("ROUGE-1", lambda r: _num(r.get("metrics", {}).get("rouge1"), 1)),
    ("ROUGE-2", lambda r: _num(r.get("metrics", {}).get("rouge2"), 1)),
    ("ROUGE-L", lambda r: _num(r.get("metrics", {}).get("rougeL"), 1)),
    ("ROUGE-Lsum", lambda r: _num(r.get("metrics", {}).get("rougeLsum"), 1)),
    ("distinct", lambda r: _num(r.get("metrics", {}).get("distinct_outputs"), 2)),
    ("status", lambda r: r.get("status", "ok")),
)


def _num(x, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _millions(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def results_table(rows: list[dict], columns=RESULT_COLUMNS) -> str:
    """A markdown table of the rows (``-`` where a value is missing, e.g. a run that did not fit)."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for _, get in columns:
            try:
                v = get(r)
            except (KeyError, TypeError):
                v = None
            cells.append("-" if v is None else str(v).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(rows: list[dict], path: Path) -> Path | None:
    """Training loss against step, one line per row with a curve (a 10-step running mean)."""
    curves = [(r["name"], r["curve"]) for r in rows if r.get("curve")]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves:
        steps = [s for s, _ in curve]
        losses = [v for _, v in curve]
        smooth = [sum(losses[max(0, i - 9): i + 1]) / len(losses[max(0, i - 9): i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (label-smoothed, 10-step mean)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by ``group`` (default: the model name), for groups that span more than one L."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("L") is not None:
            groups[r.get("group") or r["name"]].append(r)
    return {g: sorted(rs, key=lambda r: r["L"]) for g, rs in groups.items() if len({r["L"] for r in rs}) > 1}


def plot_l_sweep(rows: list[dict], path: Path) -> Path | None:
    """Seconds per step and peak memory against L (log axes); runs that did not fit are marked with an x."""
    groups = sweep_groups(rows)
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for g, rs in groups.items():
        ok = [r for r in rs if r.get("status", "ok") == "ok" and r.get("time_per_step_s") is not None]
        line = axes[0].plot([r["L"] for r in ok], [r["time_per_step_s"] for r in ok], marker="o", label=g)[0]
        axes[1].plot([r["L"] for r in ok], [r.get("peak_rss_mb") or math.nan for r in ok], marker="o", label=g,
                     color=line.get_color())
        failed = [r["L"] for r in rs if r.get("status", "ok") != "ok"]
        for ax in axes:
            for L in failed:
                ax.axvline(L, color=line.get_color(), linestyle=":", alpha=0.6)
                ax.plot([L], [ax.get_ylim()[1] if ok else 1], marker="x", color=line.get_color())
    for ax, label in zip(axes, ("seconds per training step", "peak resident memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input length L (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_maps(name: str, npz: Path, out_dir: Path) -> list[Path]:
    """One PNG per attention map / ponder map stored in ``npz``."""
    import numpy as np

    plt = _plt()
    paths = []
    with np.load(npz) as maps:
        for key in sorted(maps.files):
            a = maps[key]
            fig, ax = plt.subplots(figsize=(6, 3.2))
            if a.ndim == 1:
                ax.bar(range(len(a)), a, width=1.0)
                ax.set_xlabel("position")
                ax.set_ylabel("ponder time (N + R)")
            else:
                im = ax.imshow(a, aspect="auto", cmap="viridis", interpolation="nearest")
                ax.set_xlabel("key position")
                ax.set_ylabel("query position")
                fig.colorbar(im, ax=ax)
            ax.set_title(f"{name}: {key.replace('_', ' ')}", fontsize=9)
            fig.tight_layout()
            path = out_dir / f"{slug(name)}_{key}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
    return paths


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split()).replace("|", "/")  # a "|" would end the markdown cell
    return text if len(text) <= n else text[: n - 1] + "…"


def load_results(results: dict | str | Path) -> tuple[dict, Path | None]:
    if isinstance(results, dict):
        return results, None
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json at {path}: run the experiment script first")
    return json.loads(path.read_text()), path.parent


def write_report(results: dict | str | Path, out_dir: str | Path | None = None, maps_dir: str | Path | None = None,
                 n_samples: int = 3, sample_chars: int = 500) -> Path:
    """Write ``report.md`` (+ figures) for a recorded run; returns the report's path."""
    res, where = load_results(results)
    out = Path(out_dir) if out_dir is not None else where
    if out is None:
        raise ValueError("write_report: give out_dir when results is a dict")
    out.mkdir(parents=True, exist_ok=True)
    maps_dir = Path(maps_dir) if maps_dir is not None else (where / "maps" if where else out / "maps")
    rows: list[dict] = res.get("rows", [])
    md: list[str] = [f"# {res.get('title') or res.get('experiment', 'WikiSum experiment')}", ""]
    if res.get("command"):
        md += ["Command:", "", "```", res["command"], "```", ""]
    machine: Any = res.get("machine")
    if machine:
        text = ", ".join(f"{k} {v}" for k, v in machine.items()) if isinstance(machine, dict) else str(machine)
        md += [f"Machine: {text}" + (f"; date {res['date']}" if res.get("date") else ""), ""]
    for note in res.get("notes", []):
        md.append(f"- {note}")
    if res.get("notes"):
        md.append("")
    if res.get("data"):
        md += ["Data: " + ", ".join(f"{k} {v}" for k, v in res["data"].items()), ""]
    md += ["## Results", "", results_table(rows)]
    md += ["log-ppl: nats per target subword token (teacher-forced, unsmoothed). ROUGE: F1 x 100 of the beam-decoded "
           "output (beam 4, alpha 0.6 unless noted) against the full reference lead. distinct: share of distinct "
           "outputs (1/n = the same output for every input). peak MB: resident memory of the run's process.", ""]
    for r in rows:  # the known failure of published WikiSum models, said in words rather than left in a column
        m = r.get("metrics") or {}
        n = m.get("decoded_examples") or 0
        if n > 1 and m.get("distinct_outputs", 1.0) * n <= 1.0 + 1e-9:
            md += [f"**Warning: {r['name']} produced the same output for all {int(n)} inputs** (the degenerate "
                   "summaries of the original WikiSum models; its ROUGE says nothing about the input).", ""]
        elif m.get("repeated_sentences", 0.0) > 0.5:
            md += [f"**Warning: {r['name']} repeats sentences** ({m['repeated_sentences']:.0%} of its output "
                   "sentences repeat an earlier one).", ""]
    figures = []
    curves = plot_learning_curves(rows, out / "learning_curves.png")
    if curves:
        figures += ["## Learning curves", "", f"![learning curves]({curves.name})", ""]
    sweep = plot_l_sweep(rows, out / "l_sweep.png")
    if sweep:
        figures += ["## The L sweep", "", f"![L sweep]({sweep.name})", "",
                    "Dotted lines: an L at which the model did not run here (see the status column).", ""]
    md += figures
    map_lines: list[str] = []
    for r in rows:
        npz = maps_dir / f"{slug(r['name'])}.npz"
        if r.get("maps") and npz.is_file():
            for p in plot_maps(r["name"], npz, out):
                map_lines.append(f"![{p.stem}]({p.name})")
        elif r.get("maps_error"):
            map_lines.append(f"- {r['name']}: no attention map ({r['maps_error']})")
    if map_lines:
        md += ["## Attention and ponder maps", "",
               "Last layer (or last recurrent step), mean over heads, first test example; ponder maps: ACT's "
               "N + R per position.", ""] + map_lines + [""]
    sample_rows = [r for r in rows if r.get("samples")]
    if sample_rows:
        md += ["## Sample outputs", ""]
        for r in sample_rows:
            md += [f"### {r['name']}", "", "| article | reference | generated |", "|---|---|---|"]
            for s in r["samples"][:n_samples]:
                md.append(f"| {_clip(s.get('title', ''), 60)} | {_clip(s.get('reference', ''), sample_chars)} | "
                          f"{_clip(s.get('prediction', ''), sample_chars) or '(empty)'} |".replace("\n", " "))
            md.append("")
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
