"""Matplotlib figures for training runs: attention maps per layer/step and head, ACT ponder maps, histograms.

Pure functions from arrays to figures (Agg backend, no display needed); logging lives in
:mod:`ut.lit.image_logging`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def attention_grid(maps: Sequence[np.ndarray], title: str, row_label: str = "layer",
                   q_tokens: Sequence[str] | None = None, k_tokens: Sequence[str] | None = None):
    """One row per layer (or UT step), one column per head. ``maps[l]`` is (H, Lq, Lk) for one example."""
    n_rows, n_heads = len(maps), maps[0].shape[0]
    fig, axes = plt.subplots(n_rows, n_heads, figsize=(1.8 * n_heads + 0.5, 1.8 * n_rows + 0.6), squeeze=False)
    for r, m in enumerate(maps):
        for h in range(n_heads):
            ax = axes[r][h]
            ax.imshow(m[h], cmap="viridis", vmin=0.0, vmax=max(float(m[h].max()), 1e-6), aspect="auto",
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {h}", fontsize=7)
            if h == 0:
                ax.set_ylabel(f"{row_label} {r}", fontsize=7)
    if k_tokens is not None and len(k_tokens) <= 40:
        ax = axes[-1][0]
        ax.set_xticks(range(len(k_tokens)))
        ax.set_xticklabels(k_tokens, fontsize=4, rotation=90)
    if q_tokens is not None and len(q_tokens) <= 40:
        ax = axes[-1][0]
        ax.set_yticks(range(len(q_tokens)))
        ax.set_yticklabels(q_tokens, fontsize=4)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def ponder_map(ponder: Sequence[np.ndarray], title: str, tokens: Sequence[Sequence[str]] | None = None):
    """Ponder time (n + r) per position, one row per example (the UT paper's Fig. 5-style ponder plot)."""
    n = len(ponder)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 * n + 0.6), squeeze=False)
    for i, p in enumerate(ponder):
        ax = axes[i][0]
        ax.bar(np.arange(len(p)), p, color="tab:orange")
        ax.set_ylabel("n + r", fontsize=7)
        ax.set_xlim(-0.5, max(len(p), 1) - 0.5)
        if tokens is not None and len(tokens[i]) == len(p) and len(p) <= 80:
            ax.set_xticks(range(len(p)))
            ax.set_xticklabels(tokens[i], fontsize=5, rotation=90)
        else:
            ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
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
