"""Attention and ponder figures: token labels on the axes, one colour scale shared by every panel, a colour bar,
titles that say layer / step / head (Vaswani et al. 2017 Figs. 3-5; Dehghani et al. 2019 Fig. 5)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import LogNorm

from ut.lit.figures import attention_grid, attention_norm, close, ponder_map


def _softmax_maps(rng, layers, heads, lq, lk, sharp=1.0):
    x = rng.normal(size=(layers, heads, lq, lk)) * sharp
    w = np.exp(x - x.max(-1, keepdims=True))
    return list(w / w.sum(-1, keepdims=True))


def _panels(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_attention_grid_shares_one_scale_and_labels_tokens():
    rng = np.random.default_rng(0)
    maps = _softmax_maps(rng, 2, 3, 5, 6)
    maps[1][2] *= 0.2  # one panel much fainter: it must NOT be stretched to its own maximum
    q = [f"q{i}" for i in range(5)]
    k = [f"k{i}" for i in range(6)]
    fig = attention_grid(maps, "encoder attention, example 0 (training step 7)", "step", q, k, scale="linear")
    panels = _panels(fig)
    assert len(panels) == 6
    limits = {im.get_clim() for ax in panels for im in ax.images}
    assert len(limits) == 1, limits  # one colour scale for every panel
    vmin, vmax = limits.pop()
    assert vmin == 0.0 and vmax == pytest.approx(max(float(m.max()) for m in maps))
    assert len(fig.axes) == 7  # 6 panels + one colour bar
    bottom_left = panels[3]  # row 1, head 0: both axes labelled
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == k
    assert [t.get_text() for t in bottom_left.get_yticklabels()] == q
    assert [t.get_text() for t in panels[0].get_xticklabels()] == []  # only the bottom row carries key labels
    assert [ax.get_title() for ax in panels[:3]] == ["head 0", "head 1", "head 2"]
    assert panels[0].get_ylabel() == "step 0" and panels[3].get_ylabel() == "step 1"
    assert "training step 7" in fig._suptitle.get_text()
    close(fig)


def test_log_scale_when_most_mass_is_near_zero():
    rng = np.random.default_rng(1)
    diffuse = _softmax_maps(rng, 1, 2, 4, 400, sharp=0.1)  # ~1/400 each, but a few peaks
    diffuse[0][0, :, 0] = 0.9
    norm = attention_norm(diffuse)
    assert isinstance(norm, LogNorm) and norm.vmax == pytest.approx(0.9)
    fig = attention_grid(diffuse, "long input", head_names=["mean of 4 heads", "x"])
    assert all(isinstance(im.norm, LogNorm) for ax in _panels(fig) for im in ax.images)
    assert _panels(fig)[0].get_title() == "mean of 4 heads"
    assert "log scale" in fig.axes[-1].get_ylabel()
    close(fig)
    flat = [np.full((1, 3, 3), 1 / 3)]
    assert not isinstance(attention_norm(flat), LogNorm)
    with pytest.raises(ValueError, match="scale"):
        attention_norm(flat, "cubic")


def test_ponder_map_tokens_colour_bar_and_shared_scale():
    rows = [np.array([1.2, 2.5, 3.9]), np.array([1.0, 4.0])]
    tokens = [["mary", "went", "home"], ["john", "left"]]
    fig = ponder_map(rows, "encoder ACT ponder time (training step 3)", tokens)
    panels = _panels(fig)
    assert len(panels) == 2 and len(fig.axes) == 3
    assert {im.get_clim() for ax in panels for im in ax.images} == {(1.0, 4.0)}
    assert [t.get_text() for t in panels[0].get_xticklabels()] == tokens[0]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == tokens[1]
    close(fig)


def test_rows_with_their_own_keys_are_labelled_each():
    """A memory-compressed layer attends over compressed blocks, not tokens: its row gets its own key labels."""
    rng = np.random.default_rng(2)
    full = _softmax_maps(rng, 1, 2, 4, 6)[0]
    compressed = _softmax_maps(rng, 1, 2, 4, 2)[0]
    tokens = [f"t{i}" for i in range(6)]
    fig = attention_grid([full, compressed], "decoder_self", "layer", k_tokens=[tokens, ["c0", "c1"]],
                         row_names=["layer 0", "layer 1 (compressed keys)"])
    panels = _panels(fig)
    assert [t.get_text() for t in panels[0].get_xticklabels()] == tokens
    assert [t.get_text() for t in panels[2].get_xticklabels()] == ["c0", "c1"]
    assert panels[2].get_ylabel() == "layer 1 (compressed keys)"
    assert len({im.get_clim() for ax in panels for im in ax.images}) == 1
    close(fig)
