"""Matplotlib figures for training runs: attention maps per layer/step and head, ACT ponder maps, histograms.

Pure functions from arrays to figures (Agg backend, no display needed); logging lives in
:mod:`ut.lit.image_logging`.

Attention maps (Vaswani et al. 2017, Figs. 3-5; Dehghani et al. 2019, Appendix) are drawn as a grid with one row
per layer (Transformer) or recurrent step (Universal Transformer) and one column per head, every panel on ONE
colour scale with one colour bar, so that panels can be compared; the scale is logarithmic when most of the
attention mass is near zero (long inputs), linear otherwise. Query tokens label the rows of the left column and key
tokens the columns of the bottom row (the first ``max_tokens`` tokens, so that the labels stay readable). Ponder
maps (Dehghani et al. 2019 Fig. 5) colour each token by its ACT ponder time n + r on one shared scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

SCALES = ("auto", "linear", "log")
LOG_FLOOR = 1e-4  # smallest weight a log colour scale resolves; smaller ones are drawn at the floor


def attention_norm(maps: Sequence[np.ndarray], scale: str = "auto") -> Normalize:
    """One colour normalisation for every panel of ``maps``.

    ``auto`` picks ``log`` when the median weight is below a tenth of the largest one (most mass near zero, e.g.
    a long input where each query spreads over hundreds of keys), else ``linear``. Linear runs from 0 to the
    largest weight; log from max(smallest positive weight, :data:`LOG_FLOOR`) to the largest.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]) if maps else np.zeros(1)
    vmax = max(float(values.max()), 1e-6)
    if scale == "auto":
        scale = "log" if float(np.median(values)) < 0.1 * vmax else "linear"
    if scale == "linear":
        return Normalize(vmin=0.0, vmax=vmax)
    positive = values[values > 0]
    vmin = max(float(positive.min()) if positive.size else LOG_FLOOR, LOG_FLOOR)
    return LogNorm(vmin=min(vmin, vmax / 10), vmax=vmax)


def _tick_labels(ax, axis: str, tokens: Sequence[str] | None, n: int, fontsize: float) -> None:
    if tokens is None or len(tokens) != n:
        (ax.set_xticks if axis == "x" else ax.set_yticks)([])
        return
    labels = [str(t) if len(str(t)) <= 12 else str(t)[:11] + "…" for t in tokens]
    if axis == "x":
        ax.set_xticks(range(n))
        ax.set_xticklabels(labels, fontsize=fontsize, rotation=90)
    else:
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=fontsize)


def attention_grid(maps: Sequence[np.ndarray], title: str, row_label: str = "layer",
                   q_tokens: Sequence[str] | None = None, k_tokens: Sequence[str] | None = None,
                   scale: str = "auto", row_names: Sequence[str] | None = None,
                   head_names: Sequence[str] | None = None):
    """Attention of one example: one row per layer (or UT step), one column per head, one colour scale.

    Args:
        maps: ``maps[r]`` is an ``(H, Lq, Lk)`` array (rows of weights summing to 1) for row ``r``.
        title: the figure title (say which example, stream and training step).
        row_label: "layer" or "step": the rows are called ``f"{row_label} {r}"`` unless ``row_names`` is given.
        q_tokens, k_tokens: query / key token strings (length Lq / Lk) for the axis labels; ``k_tokens`` may also be
            one list per row (rows whose keys differ, e.g. memory-compressed attention): then every row's x axis is
            labelled with its own keys.
        scale: "auto", "linear" or "log" (see :func:`attention_norm`).
        head_names: column titles (default ``head h``; e.g. ``["mean of 4 heads"]`` for a head-averaged map).
    """
    if not maps:
        raise ValueError("attention_grid: no maps to draw")
    n_rows, n_heads = len(maps), maps[0].shape[0]
    lq, lk = maps[0].shape[1], max(m.shape[2] for m in maps)
    per_row = k_tokens is not None and len(k_tokens) == n_rows and all(
        t is None or isinstance(t, list | tuple) for t in k_tokens)
    row_keys = list(k_tokens) if per_row else [k_tokens if r == n_rows - 1 else None for r in range(n_rows)]
    norm = attention_norm(maps, scale)
    fs = 7 if max(lq, lk) <= 24 else 6 if max(lq, lk) <= 48 else 5
    cell = max(2.0, 0.12 * max(lq, lk))  # inches per panel: room for one readable label per token
    fig, axes = plt.subplots(n_rows, n_heads, figsize=(cell * n_heads + 1.6, cell * n_rows + 1.0), squeeze=False)
    image = None
    for r, m in enumerate(maps):
        for h in range(n_heads):
            ax = axes[r][h]
            data = np.asarray(m[h], dtype=np.float64)
            if isinstance(norm, LogNorm):
                data = np.maximum(data, norm.vmin)
            image = ax.imshow(data, cmap="viridis", norm=norm, aspect="auto", interpolation="nearest")
            _tick_labels(ax, "x", row_keys[r], data.shape[1], fs)
            _tick_labels(ax, "y", q_tokens if h == 0 else None, lq, fs)
            if r == 0:
                ax.set_title(head_names[h] if head_names else f"head {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(row_names[r] if row_names else f"{row_label} {r}", fontsize=8)
    kind = "log" if isinstance(norm, LogNorm) else "linear"
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
    bar.set_label(f"attention weight ({kind} scale, shared by all panels)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.supxlabel("key token", fontsize=7)
    fig.supylabel("query token", fontsize=7)
    return fig


def ponder_map(ponder: Sequence[np.ndarray], title: str, tokens: Sequence[Sequence[str]] | None = None,
               max_tokens: int = 64):
    """ACT ponder time n + r of every token, one strip per example, on one colour scale with a colour bar.

    Args:
        ponder: one 1-D array of ponder times per example (real tokens only).
        tokens: the tokens of each example (same lengths) for the x-axis labels.
        max_tokens: draw the first this many tokens of each example.
    """
    if not ponder:
        raise ValueError("ponder_map: no ponder times to draw")
    rows = [np.asarray(p, dtype=np.float64)[:max_tokens] for p in ponder]
    width = max(len(p) for p in rows)
    values = np.concatenate([p for p in rows if p.size]) if any(p.size for p in rows) else np.ones(1)
    norm = Normalize(vmin=min(1.0, float(values.min())), vmax=max(float(values.max()), 1.0 + 1e-6))
    fs = 7 if width <= 32 else 5
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(6.0, 0.16 * width + 1.8), 1.1 * len(rows) + 1.0),
                             squeeze=False)
    image = None
    for i, p in enumerate(rows):
        ax = axes[i][0]
        strip = np.full((1, width), np.nan)
        strip[0, :len(p)] = p
        image = ax.imshow(strip, cmap="magma", norm=norm, aspect="auto", interpolation="nearest")
        tok = list(tokens[i])[:max_tokens] if tokens is not None else None
        _tick_labels(ax, "x", tok, len(p), fs)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_yticks([])
        ax.set_ylabel(f"example {i}", fontsize=7, rotation=0, ha="right", va="center")
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
    bar.set_label("ponder time n + r (shared scale)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return fig


def histogram(counts: np.ndarray, title: str, xlabel: str = "updates n per position"):
    """Bar chart of integer-valued counts (bin k = value k)."""
    last = int(np.nonzero(counts)[0].max()) + 1 if counts.any() else 1
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(np.arange(last), counts[:last], color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("positions")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
