"""Writing the UT paper comparisons' results: paper-shaped markdown tables, plots, and the provenance block (exact
command, machine, date, wall time) that every results file carries."""

from __future__ import annotations

import datetime
import shlex
import sys
from collections import Counter
from pathlib import Path

MODELS = {"transformer": "Transformer", "ut": "UT", "ut_act": "UT+ACT"}


def provenance(results: list[dict], argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    machine = results[0]["machine"] if results else "n/a"
    total = sum(r.get("total_seconds", 0) for r in results)
    return (f"- command: `python -m {_module(argv[0])} {shlex.join(argv[1:])}`\n"
            f"- machine: {machine}\n"
            f"- report written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {len(results)} runs, "
            f"{total / 60:.1f} min of run time in total\n"
            f"- one run: `{results[0]['command']}`\n{code_versions(results)}" if results else "- no finished runs\n")


def code_versions(results: list[dict]) -> str:
    """A provenance line naming the runs that ran another code version (``code_version``, the runner's hash of
    ut/ and the training script) than most of the table's runs; empty when all ran the same one."""
    counts = Counter(r.get("code_version", "unrecorded") for r in results)
    if len(counts) < 2:
        return ""
    main, n = counts.most_common(1)[0]
    others = sorted(r["run_id"] if "run_id" in r else r.get("config_name", "?") for r in results
                    if r.get("code_version", "unrecorded") != main)
    return (f"- code version: {n} runs at `{main}`; {len(others)} at another (an older cached result, reused): "
            + ", ".join(others) + "\n")


def _module(path: str) -> str:
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path(__file__).resolve().parents[2])
        return ".".join(rel.with_suffix("").parts)
    except ValueError:
        return p.stem


def bar_plot(groups: list[str], series: dict[str, list[float | None]], ylabel: str, title: str, path: Path) -> None:
    """Grouped bars: one group per task, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 2, 3.2))
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=name)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def ranking(scores: dict[str, float | None], higher_is_better: bool = True, digits: int = 2, tie: float = 0.0) -> str:
    """Who wins, by how much: "UT 0.91 > UT+ACT 0.80 > Transformer 0.50 (UT leads by 0.11)"; models without a
    score are left out; a lead of at most ``tie`` is called a tie."""
    done = sorted(((v, k) for k, v in scores.items() if v is not None), reverse=higher_is_better)
    if not done:
        return "n/a"
    sign = ">" if higher_is_better else "<"
    text = f" {sign} ".join(f"{k} {v:.{digits}f}" for v, k in done)
    if len(done) > 1:
        lead = abs(done[0][0] - done[1][0])
        text += (f" ({done[0][1]} and {done[1][1]} tie within {tie:.{digits}f})" if lead <= tie
                 else f" ({done[0][1]} leads by {lead:.{digits}f})")
    return text


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def cpu_description() -> str:
    """CPU model, cores and the ISA flags that change CPU speed, e.g. for a results file (read through
    :mod:`benchmarks.machine`, the repository's one /proc/cpuinfo reader)."""
    import os

    from benchmarks.machine import cpu_vendor_and_model
    from ut.precision import cpu_flags

    _, model = cpu_vendor_and_model()
    flags = cpu_flags()
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs; flags: {' '.join(shown) or 'none of avx2/avx512/amx'}"


def fact_attention_figure(stories, batch, panels: dict, datamodule, path: Path) -> None:
    """bAbI stories over facts: per model, the QUESTION's attention over the items (rows: layers / steps, mean over
    heads) and, for ACT models, the ponder time per item; supporting facts are starred in the labels.

    ``panels``: model name -> (ModelOutput with attentions, ponder time (B, 1+F) or None); ``batch`` the fact
    layout batch of ``stories`` (``ut.data.babi``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(stories)
    n_cols = len(panels) + any(pt is not None for _, pt in panels.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 0.9 + 2.2 * n_rows), squeeze=False)
    collate = datamodule._collate
    for i, e in enumerate(stories):
        kept = [j for j in range(len(e.story))][-(collate.max_sentences or len(e.story)):]
        order = kept[::-1] if getattr(collate, "fact_order", "") == "newest_first" else kept
        support = set(e.supporting_idx)
        labels = ["Q: " + " ".join(e.question)] + [("* " if j in support else "") + " ".join(e.story[j])
                                                    for j in order]
        n_items = int(batch["src_mask"][i].sum())
        col = 0
        for name, (out, _pt) in panels.items():
            att = out.attentions["encoder"]
            rows = [a[i].float().mean(0)[0, :n_items].numpy() for a in att]  # the question's row
            ax = axes[i][col]
            ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0)
            ax.set_title(f"{name}: question -> items (answer {e.answer})", fontsize=7)
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([str(k + 1) for k in range(len(rows))], fontsize=6)
            ax.set_ylabel("layer" if name == "Transformer" else "step", fontsize=7)
            ax.set_xticks(range(n_items))
            ax.set_xticklabels(labels[:n_items], rotation=80, fontsize=5)
            col += 1
        for name, (_out, pt) in panels.items():
            if pt is None:
                continue
            ax = axes[i][col]
            ax.bar(range(n_items), pt[i, :n_items].float().numpy())
            ax.set_title(f"{name}: ponder time n + r per item", fontsize=7)
            ax.set_xticks(range(n_items))
            ax.set_xticklabels(labels[:n_items], rotation=80, fontsize=5)
            break
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
