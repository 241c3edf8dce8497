"""Position and timestep signals, and the lecture's point: a one-hot position times [W_x W_p] = adding a table."""

import math

import pytest
import torch

from ut.nn.embedding import TokenEmbedding
from ut.nn.positions import (
    LearnedPositions,
    PositionSignal,
    TimestepSignal,
    draw_start_index,
    position_ids,
    shift_sinusoid,
    sinusoid,
)


def test_one_hot_position_times_block_matrix_equals_adding_the_learned_table():
    """Appending a one-hot position p_i to x_i and multiplying by W = [W_x W_p] equals W_x x_i + (row i of W_p):
    the learned position table IS W_p."""
    torch.manual_seed(0)
    d_in, d_model, max_len, length = 6, 8, 10, 5
    w_x = torch.randn(d_model, d_in, dtype=torch.float64)
    table = LearnedPositions(max_len, d_model).double()
    w_p = table.table.weight.T  # (D, max_len)
    x = torch.randn(length, d_in, dtype=torch.float64)
    one_hot = torch.nn.functional.one_hot(torch.arange(length), max_len).double()
    block = torch.cat([w_x, w_p], dim=1)  # [W_x W_p]
    via_block = torch.cat([x, one_hot], dim=1) @ block.T
    via_addition = x @ w_x.T + table(torch.arange(length))
    torch.testing.assert_close(via_block, via_addition)


def test_sinusoid_matches_closed_form():
    d = 8
    pos = torch.arange(5)
    sig = sinusoid(pos, d)
    half = d // 2
    for i in range(half):
        inv = math.exp(-i * math.log(1e4) / (half - 1))
        torch.testing.assert_close(sig[:, i], torch.sin(pos * inv).float())
        torch.testing.assert_close(sig[:, half + i], torch.cos(pos * inv).float())
    assert sinusoid(torch.arange(3), 7).shape == (3, 7)


def test_sinusoid_relative_positions_are_linear_maps():
    """Vaswani §3.5: PE(pos + k) is a linear (rotation) function of PE(pos) for a fixed k."""
    d, k = 16, 3
    a, b = sinusoid(torch.arange(0, 20), d), sinusoid(torch.arange(k, 20 + k), d)
    m = torch.linalg.lstsq(a.double(), b.double()).solution
    torch.testing.assert_close(a.double() @ m, b.double(), atol=1e-6, rtol=1e-6)


def test_position_ids_with_per_example_offsets():
    pos = position_ids(4, 2, torch.tensor([0, 10]))
    assert pos.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_timestep_signals_differ_per_step(kind):
    sig = TimestepSignal(kind, 16, max_steps=6)
    steps = torch.stack([sig(t) for t in range(6)])
    assert steps.shape == (6, 16)
    assert torch.cdist(steps, steps).add(torch.eye(6)).min() > 1e-3


def test_learned_timestep_is_scaled_table_and_bounded():
    sig = TimestepSignal("learned", 16, max_steps=3)
    torch.testing.assert_close(sig(1), sig.table[1] * 4.0)
    with pytest.raises(ValueError, match="max_steps"):
        sig(3)


def test_learned_positions_reject_positions_past_the_table():
    with pytest.raises(ValueError, match="max_len"):
        PositionSignal("learned", 8, 4)(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="position kind"):
        PositionSignal("rotary", 8, 4)


def test_token_embedding_scales_by_sqrt_d_and_adds_positions():
    emb = TokenEmbedding(10, 16, "sinusoidal", 32, dropout=0.0, pad_id=0)
    tok = torch.tensor([[3, 4, 0]])
    pos = torch.tensor([[0, 1, 2]])
    expected = emb.tokens(tok) * 4.0 + sinusoid(pos, 16)
    torch.testing.assert_close(emb(tok, pos), expected)
    assert torch.all(emb.weight[0] == 0), "padding embedding must start at zero"


@pytest.mark.parametrize("d_model", [8, 9, 64])
def test_shift_sinusoid_equals_the_sinusoid_of_shifted_positions(d_model):
    pos = position_ids(7, 3, torch.tensor([0, 5, 40]))  # (B, L), per-example bases
    signal = sinusoid(pos, d_model)
    for k in (0, 1, 6, 399):
        torch.testing.assert_close(shift_sinusoid(signal, k), sinusoid(pos + k, d_model), atol=2e-5, rtol=0)
    per_example = torch.tensor([[2], [0], [17]])  # Long[B, 1]: one shift per example
    torch.testing.assert_close(shift_sinusoid(signal, per_example), sinusoid(pos + per_example, d_model),
                               atol=2e-5, rtol=0)
    assert not torch.allclose(shift_sinusoid(signal, 3), signal)  # a shift is not the identity
    if d_model % 2:
        assert (shift_sinusoid(signal, 5)[..., -1] == 0).all()  # the pad channel stays zero


def test_draw_start_index_is_uniform_over_the_length_and_seeded():
    torch.manual_seed(0)
    draws = torch.stack([draw_start_index(10) for _ in range(2000)])
    assert draws.dtype == torch.long and draws.shape == (2000,)
    assert int(draws.min()) == 0 and int(draws.max()) == 9  # [0, length), both ends reached
    counts = torch.bincount(draws, minlength=10).float()
    assert (counts - 200).abs().max() < 60  # roughly uniform (binomial sd ~13)
    torch.manual_seed(0)
    again = torch.stack([draw_start_index(10) for _ in range(2000)])
    assert torch.equal(draws, again)
