"""Markdown report of one WikiSum experiment (Liu et al. 2018 Tables 3-4 and the L sweep, in shape).

Input: a *recorded run*, the ``results.json`` an experiment script writes::

    {"experiment": "table4", "title": "...", "command": "python -m ...", "machine": {...}, "date": "...",
     "notes": ["..."], "data": {...}, "rows": [row, ...]}

where each row is what :func:`experiments.wikisum.runner.run_config` returns (``name``, ``config``, ``command``,
``model``, ``L``, ``extractor``, ``params``, ``steps``, ``time_per_step_s``, ``peak_rss_mb`` / ``peak_gpu_mb``,
``precision``, ``status``, ``curve`` [[step, training loss], ...], ``val_curve`` [[step, val log-ppl], ...],
``metrics`` {log_ppl, rouge1, rouge2, rougeL, rougeLsum, distinct_outputs, ...}, ``samples`` [{title, reference,
prediction}], ``figures`` [PNG paths relative to the repository root], optional ``group`` for the L sweep).
Rows whose ``status`` is not ``ok`` stay in the tables with the reason (the paper's "OOM" cells).

Output (:func:`write_report`): ``report.md`` beside PNG figures: the commands, the results table, the learning
curves (validation log-ppl at equal steps, training loss), the L-sweep plot (log-ppl, time per step and peak memory
against L, one line per model, when rows of one group span several L), the runs' attention and ponder maps, and
sample outputs next to references, labelled as what they are.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

RESULT_COLUMNS = (  # (header, getter) of the results table
    ("model", lambda r: r["name"]),
    ("L", lambda r: r.get("L")),
    ("extractor", lambda r: r.get("extractor")),
    ("params", lambda r: _millions(r.get("params"))),
    ("steps", lambda r: r.get("steps")),
    ("s/step", lambda r: _num(r.get("time_per_step_s"), 3)),
    ("peak MB", lambda r: _num(_memory_mb(r), 0)),
    ("log-ppl", lambda r: _num(r.get("metrics", {}).get("log_ppl"), 3)),
    ("ROUGE-1", lambda r: _num(r.get("metrics", {}).get("rouge1"), 1)),
    ("ROUGE-2", lambda r: _num(r.get("metrics", {}).get("rouge2"), 1)),
    ("ROUGE-L", lambda r: _num(r.get("metrics", {}).get("rougeL"), 1)),
    ("ROUGE-Lsum", lambda r: _num(r.get("metrics", {}).get("rougeLsum"), 1)),
    ("distinct", lambda r: _num(r.get("metrics", {}).get("distinct_outputs"), 2)),
    ("precision", lambda r: r.get("precision")),
    ("device", lambda r: r.get("gpu") or r.get("accelerator")),
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


def _running_mean(values: list[float], n: int = 10) -> list[float]:
    return [sum(values[max(0, i - n + 1): i + 1]) / len(values[max(0, i - n + 1): i + 1]) for i in range(len(values))]


def plot_learning_curves(rows: list[dict], path: Path, title: str | None = None) -> Path | None:
    """Validation log-perplexity against training step (the models compared at equal steps) and the training loss
    (label-smoothed, 10-step running mean), one line per row; None when no row has a curve."""
    rows = [r for r in rows if r.get("curve") or r.get("val_curve")]
    if not rows:
        return None
    plt = _plt()
    have_val = any(r.get("val_curve") for r in rows)
    fig, axes = plt.subplots(1, 2 if have_val else 1, figsize=(12 if have_val else 7, 4), squeeze=False)
    axes = axes[0]
    for r in rows:
        line = None
        if have_val and r.get("val_curve"):
            line = axes[0].plot([s for s, _ in r["val_curve"]], [v for _, v in r["val_curve"]], marker="o",
                                label=r["name"])[0]
        if r.get("curve"):
            ax = axes[-1]
            ax.plot([s for s, _ in r["curve"]], _running_mean([v for _, v in r["curve"]]), label=r["name"],
                    color=line.get_color() if line is not None else None, alpha=0.8)
    if have_val:
        axes[0].set_ylabel("validation log-ppl (nats per target token)")
        axes[0].set_title("validation log-perplexity at equal training steps", fontsize=9)
    axes[-1].set_ylabel("training loss (label-smoothed, 10-step mean)")
    axes[-1].set_title("training loss", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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


def _memory_mb(r: dict) -> float | None:
    return r.get("peak_gpu_mb") or r.get("peak_rss_mb")


def plot_l_sweep(rows: list[dict], path: Path, title: str | None = None) -> Path | None:
    """Write :func:`l_sweep_figure` to ``path``; None when no model spans several L."""
    fig = l_sweep_figure(rows, title)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def l_sweep_figure(rows: list[dict], title: str | None = None):
    """Log-ppl (when the rows have one), seconds per step and peak memory against L (log L axis), one line per
    model; an L at which a model did not run is a dotted vertical line. Peak memory is the GPU's when the runs used
    one, else the process's RSS."""
    groups = sweep_groups(rows)
    if not groups:
        return None
    plt = _plt()
    have_ppl = any((r.get("metrics") or {}).get("log_ppl") is not None for rs in groups.values() for r in rs)
    fig, axes = plt.subplots(1, 3 if have_ppl else 2, figsize=(15 if have_ppl else 10, 4.2))
    if not have_ppl:
        axes = [None, *axes]
    gpu = any(r.get("peak_gpu_mb") for rs in groups.values() for r in rs)
    for g, rs in groups.items():
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        ppl = [(r["L"], (r.get("metrics") or {}).get("log_ppl")) for r in ok]
        ppl = [(L, v) for L, v in ppl if v is not None]
        timed = [r for r in ok if r.get("time_per_step_s") is not None]
        line = axes[1].plot([r["L"] for r in timed], [r["time_per_step_s"] for r in timed], marker="o", label=g)[0]
        color = line.get_color()
        if axes[0] is not None:
            axes[0].plot([L for L, _ in ppl], [v for _, v in ppl], marker="o", label=g, color=color)
        mem = [(r["L"], _memory_mb(r)) for r in ok if _memory_mb(r)]
        axes[2].plot([L for L, _ in mem], [m for _, m in mem], marker="o", label=g, color=color)
        for r in rs:
            if r.get("status", "ok") != "ok":
                for ax in axes:
                    if ax is not None:
                        ax.axvline(r["L"], color=color, linestyle=":", alpha=0.7)
    steps = sorted({r.get("steps") for rs in groups.values() for r in rs if r.get("steps")})
    after = f" after {steps[0]} steps" if len(steps) == 1 else ""
    labels = (f"validation log-ppl{after}", "seconds per training step",
              "peak GPU memory (MB)" if gpu else "peak resident memory (MB)")
    for ax, label in zip(axes, labels):
        if ax is None:
            continue
        ax.set_xscale("log")
        ax.set_xlabel("input length L (tokens)")
        ax.set_ylabel(label)
        ax.set_title(label + " vs L", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in axes[1:]:
        ax.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def copy_figures(row: dict, out_dir: Path, root: Path) -> list[Path]:
    """Copy the attention / ponder pictures of a row (``figures``: paths relative to ``root``) next to the report."""
    import shutil

    paths = []
    for f in row.get("figures") or []:
        src = root / f
        if src.is_file():
            dst = out_dir / f"{slug(row['name'])}__{src.name}"
            shutil.copyfile(src, dst)
            paths.append(dst)
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


def write_report(results: dict | str | Path, out_dir: str | Path | None = None, root: str | Path | None = None,
                 n_samples: int = 3, sample_chars: int = 500) -> Path:
    """Write ``report.md`` (+ figures) for a recorded run; returns the report's path. ``root``: the folder the
    rows' paths are relative to (default: the repository root)."""
    res, where = load_results(results)
    out = Path(out_dir) if out_dir is not None else where
    if out is None:
        raise ValueError("write_report: give out_dir when results is a dict")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(root) if root is not None else REPO_ROOT
    rows: list[dict] = res.get("rows", [])
    md = _header_lines(res, rows) + ["## Results", "", results_table(rows)]
    md += ["log-ppl: nats per target subword token (teacher-forced, unsmoothed). ROUGE: F1 x 100 of the beam-decoded "
           "output (beam 4, alpha 0.6 unless noted) against the full reference lead. distinct: share of distinct "
           "outputs (1/n = the same output for every input). peak MB: resident memory of the run's process.", ""]
    md += _degenerate_output_warnings(rows)
    md += _figure_lines(rows, out, root, res.get("title") or res.get("experiment"))
    md += _failure_lines(rows) + _sample_lines(rows, n_samples, sample_chars)
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def _header_lines(res: dict, rows: list[dict]) -> list[str]:
    """Title, the experiment's command and each run's, machine and date, notes, data."""
    md: list[str] = [f"# {res.get('title') or res.get('experiment', 'WikiSum experiment')}", ""]
    if res.get("command"):
        md += ["Command (from the repository root):", "", "```", res["command"], "```", ""]
    commands = [f"- {r['name']}: `{r['command']}`" for r in rows if r.get("command")]
    if commands:
        md += ["Each run (what the command ran):", ""] + commands + [""]
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
    return md


def _degenerate_output_warnings(rows: list[dict]) -> list[str]:
    """The known failure of published WikiSum models, said in words rather than left in a column: one output for
    every input, or mostly repeated sentences."""
    md = []
    for r in rows:
        m = r.get("metrics") or {}
        n = m.get("decoded_examples") or 0
        if n > 1 and m.get("distinct_outputs", 1.0) * n <= 1.0 + 1e-9:
            md += [f"**Warning: {r['name']} produced the same output for all {int(n)} inputs** (the degenerate "
                   "summaries of the original WikiSum models; its ROUGE says nothing about the input).", ""]
        elif m.get("repeated_sentences", 0.0) > 0.5:
            md += [f"**Warning: {r['name']} repeats sentences** ({m['repeated_sentences']:.0%} of its output "
                   "sentences repeat an earlier one).", ""]
    return md


def _figure_lines(rows: list[dict], out: Path, root: Path, title: str | None) -> list[str]:
    """Draw the learning curves and the L sweep into ``out``, copy the runs' attention / ponder maps there, and
    return the sections that show them."""
    md = []
    curves = plot_learning_curves(rows, out / "learning_curves.png", title)
    if curves:
        md += ["## Learning curves", "", f"![learning curves]({curves.name})", ""]
    sweep = plot_l_sweep(rows, out / "l_sweep.png", title)
    if sweep:
        md += ["## The L sweep", "", f"![L sweep]({sweep.name})", "",
               "Dotted lines: an L at which the model did not run here (see the status column).", ""]
    map_lines = [f"![{p.stem}]({p.name})" for r in rows for p in copy_figures(r, out, root)]
    if map_lines:
        md += ["## Attention and ponder maps", "",
               "Drawn by the runs' callbacks on the first validation example at the last validation: one panel per "
               "layer (or UT step) and head, the first tokens on the axes, one colour scale per figure (log when "
               "most weights are near zero); ponder maps: ACT's n + r per token.", ""] + map_lines + [""]
    return md


def _failure_lines(rows: list[dict]) -> list[str]:
    """The runs that did not finish, each with its log path and error."""
    failures = [r for r in rows if r.get("status", "ok") != "ok" and r.get("error")]
    if not failures:
        return []
    md = ["## Runs that did not finish", ""]
    for r in failures:
        md += [f"### {r['name']}: {r['status']}", "", f"Log: `{r.get('log')}`", "", "```", str(r["error"]), "```", ""]
    return md


def _sample_lines(rows: list[dict], n_samples: int, sample_chars: int) -> list[str]:
    """Up to ``n_samples`` decoded outputs per run next to their reference leads (cells clipped to
    ``sample_chars``)."""
    sample_rows = [r for r in rows if r.get("samples")]
    if not sample_rows:
        return []
    md = ["## Sample outputs", ""]
    for r in sample_rows:
        ev = r.get("eval") or {}
        how = f"beam {ev.get('beam_size')}, alpha {ev.get('alpha')}, at most {ev.get('max_len')} tokens" \
            if ev else "beam search"
        md += [f"### {r['name']}", "", f"Decoded by the model after {r.get('steps')} training steps ({how}); "
               "at a CPU budget these are samples of a barely trained model, not summaries.", "",
               "| article | reference | generated |", "|---|---|---|"]
        for s in r["samples"][:n_samples]:
            md.append(f"| {_clip(s.get('title', ''), 60)} | {_clip(s.get('reference', ''), sample_chars)} | "
                      f"{_clip(s.get('prediction', ''), sample_chars) or '(empty)'} |".replace("\n", " "))
        md.append("")
    return md
