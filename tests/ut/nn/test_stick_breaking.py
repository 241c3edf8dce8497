"""Stick-breaking halting: the loop against a float64 reference written from the SUT's equations (plain Python per
position), weights sum to 1, padding, the threshold changed at test time, frozen states, gradients."""

import math

import pytest
import torch

from ut.nn.stick_breaking import StickBreakingHalting

B, L, D = 3, 5, 6


def mixing_step(state, step, running):
    return state, torch.tanh(state + 0.5 * state.mean(1, keepdim=True) + 0.1 * (step + 1))


def position_wise(state, step, running):
    return state, torch.tanh(1.3 * state + 0.2)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def reference(module, x, mask, step_fn, threshold):
    """alpha_t from h_t; p_t = alpha_t prod_{j<t}(1 - alpha_j); a position halts once its cumulative halting reaches
    the threshold (or at the last step) and takes the rest of the stick; output sum_t p_t h_t; frozen states."""
    w, bias = module.halting.weight[0].tolist(), module.halting.bias.item()
    state, running = x.clone(), mask.clone()
    weights = [[[] for _ in range(L)] for _ in range(B)]
    stick = [[1.0] * L for _ in range(B)]
    output = torch.zeros_like(x)
    for t in range(module.max_steps):
        if not running.any():
            break
        _, new = step_fn(state, t, running.clone())
        new = torch.where(running[..., None], new, state)
        for b in range(B):
            for i in range(L):
                if not running[b, i]:
                    continue
                alpha = sigmoid(sum(wi * hi for wi, hi in zip(w, new[b, i].tolist())) + bias)
                if t == module.max_steps - 1 or 1 - stick[b][i] * (1 - alpha) >= threshold:
                    piece = stick[b][i]
                    running[b, i] = False
                else:
                    piece = alpha * stick[b][i]
                    stick[b][i] *= 1 - alpha
                weights[b][i].append(piece)
                output[b, i] += piece * new[b, i]
        state = new
    return weights, output, state


def make(threshold=0.9, max_steps=6, seed=0):
    torch.manual_seed(seed)
    m = StickBreakingHalting(D, max_steps, threshold=threshold, loss_weight=0.1).double()
    with torch.no_grad():
        m.halting.weight.normal_(0.0, 1.5)
        m.halting.bias.fill_(-1.0)
    return m


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 1:] = False
    return x, mask


@pytest.mark.parametrize("threshold", [0.6, 0.9, 1.0])
def test_matches_the_float64_reference_loop(threshold):
    m = make(threshold)
    x, mask = inputs()
    out = m(x, mask, mixing_step)
    w_ref, out_ref, state_ref = reference(m, x, mask, mixing_step, threshold)
    depths = []
    for b in range(B):
        for i in range(L):
            ref = w_ref[b][i]
            got = out.weights[:, b, i].tolist()
            assert got[:len(ref)] == pytest.approx(ref, abs=1e-12) and all(v == 0 for v in got[len(ref):])
            assert out.n_updates[b, i].item() == len(ref)
            depth = sum((t + 1) * q for t, q in enumerate(ref))
            assert out.ponder_time[b, i].item() == pytest.approx(depth, abs=1e-12)
            if mask[b, i]:
                depths.append(depth)
    torch.testing.assert_close(out.output, out_ref)
    torch.testing.assert_close(out.state, state_ref)
    assert out.expected_depth.item() == pytest.approx(sum(depths) / len(depths), abs=1e-12)
    assert out.loss.item() == pytest.approx(0.1 * out.expected_depth.item(), abs=1e-14)
    if threshold < 1:
        assert len(set(out.n_updates[mask].tolist())) > 1, "test setup: positions should halt at different steps"


def test_weights_sum_to_one_on_real_positions_and_are_zero_on_padding():
    x, mask = inputs()
    out = make(0.8)(x, mask, mixing_step)
    torch.testing.assert_close(out.weights.sum(0), mask.double())
    assert (out.weights >= 0).all() and (out.output[~mask] == 0).all()


def test_padding_runs_no_step_and_adds_no_loss():
    m = make(0.9)

    def step(state, t, running):
        seen.append(running.clone())
        return state, torch.tanh(state + 0.5 * state[:, :3].mean(1, keepdim=True) + 0.1 * (t + 1))

    seen = []
    real = torch.randn(1, 3, D, dtype=torch.float64)
    ref = m(real, None, step)
    seen = []
    out = m(torch.cat([real, torch.randn(1, 2, D, dtype=torch.float64)], 1),
            torch.tensor([[True, True, True, False, False]]), step)
    assert all(not r[0, 3:].any() for r in seen)
    torch.testing.assert_close(out.output[:, :3], ref.output)
    torch.testing.assert_close(out.loss, ref.loss)
    assert (out.n_updates[0, 3:] == 0).all() and out.n_steps == ref.n_steps


def test_lowering_the_threshold_after_training_lowers_the_executed_depth_monotonically():
    m = make(0.999)
    x, mask = inputs()
    counts = []
    for thr in (1.0, 0.999, 0.9, 0.7, 0.5, 0.2):
        m.threshold = thr  # an attribute read at every forward: a test-time depth sweep
        counts.append(m(x, mask, position_wise).n_updates)
    for a, b in zip(counts, counts[1:]):
        assert (b <= a).all()
    assert (counts[-1] < counts[0])[mask].any() and (counts[0][mask] == 6).all()


def test_halted_states_are_frozen():
    m = make(0.7)
    x, mask = inputs()
    out = m(x, mask, lambda s, t, r: (s, s + 1))  # the state counts the steps run
    torch.testing.assert_close(out.state, x + out.n_updates[..., None])


def test_gradients_reach_the_halting_unit_through_the_expected_depth_and_the_output():
    m = make(0.95).train()
    x, mask = inputs()
    m(x, mask, mixing_step).loss.backward()
    assert m.halting.weight.grad.abs().sum() > 0 and m.halting.bias.grad.abs() > 0
    m.zero_grad()
    m(x, mask, mixing_step).output.pow(2).sum().backward()
    assert m.halting.weight.grad.abs().sum() > 0


def test_zero_initialised_unit_halves_the_stick():
    m = StickBreakingHalting(D, 3, threshold=1.0).double()
    out = m(torch.randn(1, 2, D, dtype=torch.float64), None, position_wise)
    torch.testing.assert_close(out.weights[:, 0, 0], torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="threshold"):
        StickBreakingHalting(4, 3, threshold=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        StickBreakingHalting(4, 0)
