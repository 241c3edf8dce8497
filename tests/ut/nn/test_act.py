"""Adaptive Computation Time: a hand-computed case, the invariants, padding, the forced remainder, the gradient."""

import math

import pytest
import torch

from ut.nn.act import (
    ACTState,
    AdaptiveComputationTime,
    gather_positions,
    pack_active,
    scatter_positions,
)


def logit(p):
    return math.log(p / (1 - p))


def carrier_act(combine, max_steps=4):
    """ACT whose halting probability is sigmoid(channel 0): channel 0 of the state carries each position's logit."""
    act = AdaptiveComputationTime(2, max_steps, epsilon=0.01, combine=combine).double()
    with torch.no_grad():
        act.halting.weight.copy_(torch.tensor([[1.0, 0.0]]))
        act.halting.bias.zero_()
    return act


def plus_one(state, step, running):
    """transformed = state + [0, 1]: channel 1 counts the applications, channel 0 (the logit) is kept."""
    return state, state + torch.tensor([0.0, 1.0], dtype=state.dtype)


@pytest.mark.parametrize("combine", ["basic", "accumulated"])
def test_hand_computed_two_steps(combine):
    # position A: p = 0.6 at every step -> step 0: hp 0.6 (w 0.6); step 1: 0.6 + 0.6 > 0.99 halts, r = 0.4 (w 0.4)
    # position B: p = 0.995 > 0.99 at step 0 -> halts at once with r = 1 (t2t), w = 1; then frozen
    act = carrier_act(combine)
    state = torch.tensor([[[logit(0.6), 0.0], [logit(0.995), 0.0]]], dtype=torch.float64)
    out = act(state, None, plus_one)
    assert out.n_steps == 2
    torch.testing.assert_close(out.n_updates, torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(out.remainders, torch.tensor([[0.4, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(out.ponder_time, torch.tensor([[2.4, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(torch.stack(out.weights), torch.tensor([[[0.6, 1.0]], [[0.4, 0.0]]],
                                                                      dtype=torch.float64))
    # transformed counts: A saw 1 then 2; B saw 1 and was then frozen (UT paper: state copied)
    torch.testing.assert_close(out.state[0, :, 1], torch.tensor([2.0, 1.0], dtype=torch.float64))
    expected_a = 0.6 * 1 + 0.4 * 2 if combine == "accumulated" else 0.4 * 2 + (1 - 0.4) * (0.6 * 1)
    torch.testing.assert_close(out.output[0, :, 1], torch.tensor([expected_a, 1.0], dtype=torch.float64))


def test_max_steps_gives_the_remainder_so_weights_sum_to_one():
    act = carrier_act("accumulated", max_steps=3)
    state = torch.tensor([[[logit(0.01), 0.0]]], dtype=torch.float64)  # would need ~99 steps to halt
    out = act(state, None, plus_one)
    assert out.n_steps == 3
    torch.testing.assert_close(torch.stack(out.weights)[:, 0, 0],
                               torch.tensor([0.01, 0.01, 0.98], dtype=torch.float64))
    torch.testing.assert_close(out.ponder_time, torch.tensor([[3.98]], dtype=torch.float64))
    torch.testing.assert_close(out.output[0, 0, 1], torch.tensor(0.01 * 1 + 0.01 * 2 + 0.98 * 3, dtype=torch.float64))


def mixing_step(state, step, running):
    """A step that mixes positions (like attention) so that halting interacts across positions."""
    return state, torch.tanh(state + state.mean(1, keepdim=True) * 0.5 + 0.1 * (step + 1))


@pytest.mark.parametrize("bias", [-2.0, 0.0, 1.0])
def test_invariants_weights_sum_to_one_hp_monotone_steps_bounded(bias):
    torch.manual_seed(int(bias) + 3)
    act = AdaptiveComputationTime(8, max_steps=6, halting_bias_init=bias).double()
    with torch.no_grad():
        act.halting.weight.mul_(4.0)
    state = torch.randn(3, 7, 8, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    out = act(state, mask, mixing_step)
    w = torch.stack(out.weights)  # (N, B, L)
    torch.testing.assert_close(w.sum(0), mask.double())  # 1 on real positions, 0 on padding
    assert (w >= 0).all()
    hp = torch.stack(out.halting_probability)
    assert (hp[1:] >= hp[:-1]).all() and (hp <= 1 + 1e-12).all()
    assert out.n_steps <= 6 and (out.n_updates <= 6).all() and (out.n_updates[mask] >= 1).all()
    assert (out.remainders[mask] > 0).all()
    torch.testing.assert_close(out.ponder_time, out.n_updates + out.remainders)
    # padding: zero ponder time and updates
    assert (out.ponder_time[~mask] == 0).all() and (out.n_updates[~mask] == 0).all()


def test_padding_takes_no_part_in_halting():
    """Padding that would never halt must not keep the loop running, nor count in the ponder cost."""
    act = carrier_act("basic", max_steps=8)
    real = torch.tensor([[[logit(0.6), 0.0], [logit(0.7), 0.0]]], dtype=torch.float64)
    pad = torch.tensor([[[logit(0.001), 0.0]]], dtype=torch.float64)
    ref = act(real, None, plus_one)
    out = act(torch.cat([real, pad], 1), torch.tensor([[True, True, False]]), plus_one)
    assert out.n_steps == ref.n_steps == 2
    torch.testing.assert_close(out.output[:, :2], ref.output)
    torch.testing.assert_close(out.ponder_cost(torch.tensor([[True, True, False]])), ref.ponder_cost())
    assert out.ponder_time[0, 2] == 0


def test_ponder_loss_has_gradient_on_the_halting_unit():
    torch.manual_seed(0)
    act = AdaptiveComputationTime(8, max_steps=5, halting_bias_init=0.0)
    state = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out = act(state, mask, mixing_step)
    (0.01 * out.ponder_cost(mask)).backward()
    assert act.halting.weight.grad is not None and act.halting.weight.grad.abs().sum() > 0
    assert act.halting.bias.grad is not None and act.halting.bias.grad.abs() > 0


def test_act_state_alone_matches_the_loop():
    """ACTState is the bookkeeping without a loop (for models that drive their own)."""
    s = ACTState(torch.tensor([[True, True, False]]), threshold=0.99, max_steps=3)
    w0, a0 = s.update(torch.tensor([[0.5, 0.995, 0.5]]))
    torch.testing.assert_close(w0, torch.tensor([[0.5, 1.0, 0.0]]))
    assert a0.tolist() == [[True, True, False]] and s.running.tolist() == [[True, False, False]]
    w1, a1 = s.update(torch.tensor([[0.2, 0.9, 0.9]]))
    torch.testing.assert_close(w1, torch.tensor([[0.2, 0.0, 0.0]]))
    w2, _ = s.update(torch.tensor([[0.1, 0.9, 0.9]]))  # last allowed step: forced halt with r = 1 - 0.7
    torch.testing.assert_close(w2, torch.tensor([[0.3, 0.0, 0.0]]))
    torch.testing.assert_close(s.ponder_time, torch.tensor([[3.3, 2.0, 0.0]]))
    assert not s.any_running()


def test_pack_gather_scatter_round_trip():
    active = torch.tensor([[True, False, True, False], [False, False, False, True], [False] * 4])
    index, valid = pack_active(active)
    assert index.shape == (3, 2)
    assert index[0].tolist() == [0, 2] and index[1, 0] == 3 and valid.tolist() == [[True, True], [True, False],
                                                                                    [False, False]]
    for row in index.tolist():  # no duplicates: a scatter never collides
        assert len(set(row)) == len(row)
    x = torch.randn(3, 4, 5)
    g = gather_positions(x, index)
    torch.testing.assert_close(g[0, 1], x[0, 2])
    y = scatter_positions(x, index, g * 2)
    expected = torch.where(active[..., None], x * 2, x)
    torch.testing.assert_close(torch.where(active[..., None], y, x), expected)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="combine"):
        AdaptiveComputationTime(4, 3, combine="mean")
    with pytest.raises(ValueError, match="max_steps"):
        AdaptiveComputationTime(4, 0)
