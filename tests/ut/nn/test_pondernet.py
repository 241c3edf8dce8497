"""PonderNet: the loop against a float64 reference written from the paper's equations (plain Python per position),
p sums to 1, padding, the two evaluation rules, the readouts, frozen states, gradients into the halting unit."""

import math

import pytest
import torch

from ut.nn.pondernet import EXPECTED_STATE_THRESHOLD, PonderNet, truncated_geometric_log_prior

B, L, D = 3, 5, 6


def mixing_step(state, step, running):
    """A step that mixes positions (like attention), so that frozen states matter to the others."""
    return state, torch.tanh(state + 0.5 * state.mean(1, keepdim=True) + 0.1 * (step + 1))


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def unit_logit(module, h_vec):
    """The halting unit's logit on one state vector, in plain Python."""
    w, b = module.halting.weight[0].tolist(), module.halting.bias.item()
    return sum(wi * hi for wi, hi in zip(w, h_vec)) + b


def prior(lambda_p, n_steps):
    g = [lambda_p * (1 - lambda_p) ** n for n in range(n_steps)]
    return [x / sum(g) for x in g]


def reference(module, x, mask, step_fn, training, threshold=0.5):
    """The paper's loop, one position at a time in Python: lambda_n from h_n, p_n = lambda_n prod(1 - lambda_j),
    lambda_N = 1; at evaluation halt after the step whose cumulative p exceeds the threshold (that step takes the
    remainder) and freeze the state. Returns per position: p list, halting step count, final state, states."""
    n_max = module.max_steps
    state = x.clone()
    running = mask.clone()
    p = [[[] for _ in range(L)] for _ in range(B)]
    not_halted = [[1.0] * L for _ in range(B)]
    states = []
    for t in range(n_max):
        if not running.any():
            break
        _, new = step_fn(state, t, running.clone())
        new = torch.where(running[..., None], new, state)
        for b in range(B):
            for i in range(L):
                if not running[b, i]:
                    continue
                lam = 1.0 if t == n_max - 1 else sigmoid(unit_logit(module, new[b, i].tolist()))
                cum_after = 1 - not_halted[b][i] * (1 - lam)
                if t == n_max - 1 or (not training and cum_after > threshold):
                    p[b][i].append(not_halted[b][i])  # the remainder
                    running[b, i] = False
                else:
                    p[b][i].append(lam * not_halted[b][i])
                    not_halted[b][i] *= 1 - lam
        state = new
        states.append(new)
    return p, state, states


def kl_of(p_list, g):
    return sum(pn * math.log(pn / gn) for pn, gn in zip(p_list, g) if pn > 0)


def make(readout="per_position", max_steps=5, seed=0, **kw):
    torch.manual_seed(seed)
    m = PonderNet(D, max_steps, lambda_p=0.3, beta=0.05, readout=readout, **kw).double()
    with torch.no_grad():
        m.halting.weight.mul_(3.0)
        m.halting.bias.fill_(-0.5)
    return m


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 1:] = False
    return x, mask


@pytest.mark.parametrize("training", [True, False])
def test_matches_the_float64_reference_loop(training):
    m = make().train(training)
    x, mask = inputs()
    out = m(x, mask, mixing_step)
    p_ref, state_ref, states_ref = reference(m, x, mask, mixing_step, training)
    g = prior(0.3, 5)
    kls = []
    for b in range(B):
        for i in range(L):
            ref = p_ref[b][i]
            got = out.halting_distribution[:, b, i].tolist()
            assert got[:len(ref)] == pytest.approx(ref, abs=1e-12) and all(v == 0 for v in got[len(ref):])
            assert out.n_updates[b, i].item() == len(ref)
            assert out.ponder_time[b, i].item() == pytest.approx(sum((n + 1) * q for n, q in enumerate(ref)), abs=1e-12)
            if mask[b, i]:
                kls.append(kl_of(ref, g))
    assert out.kl.item() == pytest.approx(sum(kls) / len(kls), abs=1e-12)
    assert out.loss.item() == pytest.approx(0.05 * out.kl.item(), abs=1e-14)
    torch.testing.assert_close(out.state, state_ref)
    torch.testing.assert_close(out.output, state_ref)  # per-position readout: the final (frozen) state
    if training:  # every step's state, for the expectation; all N steps run
        assert out.n_steps == 5 and len(out.states) == 5
        for a, r in zip(out.states, states_ref):
            torch.testing.assert_close(a, r)
    else:
        assert out.states == []
        assert len(set(out.n_updates[mask].tolist())) > 1, "test setup: positions should halt at different steps"


def test_truncated_geometric_prior_is_a_distribution():
    logg = truncated_geometric_log_prior(0.3, 6)
    assert logg.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert logg.exp().tolist() == pytest.approx(prior(0.3, 6), abs=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_p_sums_to_one_on_real_positions_and_is_zero_on_padding(training):
    m = make().train(training)
    x, mask = inputs()
    dist = m(x, mask, mixing_step).halting_distribution
    torch.testing.assert_close(dist.sum(0), mask.double())
    assert (dist >= 0).all()


def test_padding_runs_no_step_and_adds_no_loss():
    m = make().eval()
    real = torch.randn(1, 3, D, dtype=torch.float64)
    pad = torch.full((1, 2, D), -5.0, dtype=torch.float64)  # would never halt
    seen = []

    def spy(state, step, running):
        seen.append(running.clone())
        return mixing_step_masked(state, step, running)

    ref = m(real, None, mixing_step_masked)
    mask = torch.tensor([[True, True, True, False, False]])
    out = m(torch.cat([real, pad], 1), mask, spy)
    assert all(not r[0, 3:].any() for r in seen)
    assert out.n_steps == ref.n_steps and (out.n_updates[0, 3:] == 0).all() and (out.ponder_time[0, 3:] == 0).all()
    torch.testing.assert_close(out.output[:, :3], ref.output)
    torch.testing.assert_close(out.kl, ref.kl)


def mixing_step_masked(state, step, running):
    """Mixing over the first three positions only (the real ones in the padding test)."""
    return state, torch.tanh(state + 0.5 * state[:, :3].mean(1, keepdim=True) + 0.1 * (step + 1))


def test_threshold_halting_freezes_states_and_a_higher_threshold_never_runs_fewer_steps():
    x, mask = inputs()
    m = make().eval()

    def position_wise(state, step, running):
        return state, torch.tanh(1.3 * state + 0.2)

    counts = []
    for thr in (0.2, 0.5, 0.8, 0.95, 1.0):
        m.threshold = thr  # changed after construction: read at every forward
        counts.append(m(x, mask, position_wise).n_updates)
    for a, b in zip(counts, counts[1:]):
        assert (a <= b).all()
    assert (counts[0] < counts[-1]).any() and (counts[-1][mask] == 5).all()


def test_sample_halting_draws_per_position_with_probability_lambda():
    m = PonderNet(D, 3, lambda_p=0.5).double().eval()
    m.eval_halting = "sample"
    with torch.no_grad():
        m.halting.weight.zero_()
        m.halting.bias.zero_()  # lambda = 0.5 everywhere
    torch.manual_seed(0)
    x = torch.randn(40, 50, D, dtype=torch.float64)
    out = m(x, None, lambda s, t, r: (s, s + 1))
    share = (out.n_updates == 1).double().mean().item()
    assert 0.45 < share < 0.55  # P(halt after step 1) = lambda_1 = 0.5
    assert ((out.n_updates == 2).double().mean().item()) == pytest.approx(0.25, abs=0.04)
    torch.testing.assert_close(out.halting_distribution.sum(0), torch.ones(40, 50, dtype=torch.float64))
    # the state is the one of the halting step: it counts the steps run
    torch.testing.assert_close(out.state, x + out.n_updates[..., None])


def test_per_example_readout_shares_the_halting_of_a_row():
    m = make("per_example").eval()
    x, mask = inputs()
    out = m(x, mask, mixing_step)
    for b in range(B):
        real = out.halting_distribution[:, b][:, mask[b]]
        torch.testing.assert_close(real, real[:, :1].expand_as(real))
        assert len(set(out.n_updates[b][mask[b]].tolist())) == 1
    w = out.step_weights
    assert w.shape == (out.n_steps, B)
    torch.testing.assert_close(w.sum(0), torch.ones(B, dtype=torch.float64))
    # the halting unit reads the mean of the new state over the real positions
    _, h1 = mixing_step(x, 0, mask)
    pooled = (h1 * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    lam = torch.sigmoid(m.halting(pooled)).squeeze(-1)
    torch.testing.assert_close(w[0], lam)
    m.eval_halting = "sample"
    torch.manual_seed(3)
    out = m(x, mask, mixing_step)
    for b in range(B):
        assert len(set(out.n_updates[b][mask[b]].tolist())) == 1  # one coin per row


@pytest.mark.parametrize("training,threshold", [(True, None), (False, None), (False, 0.5)])
def test_expected_state_readout_is_the_p_weighted_state(training, threshold):
    m = make("expected_state", threshold=threshold).train(training)
    x, mask = inputs()
    out = m(x, mask, mixing_step)
    p_ref, _, _ = reference(m, x, mask, mixing_step, training, m.threshold)
    # rebuild the per-step states with frozen semantics, then weight them by the reference p
    state, running, expected = x.clone(), mask.clone(), torch.zeros_like(x)
    for t in range(out.n_steps):
        _, new = mixing_step(state, t, running)
        new = torch.where(running[..., None], new, state)
        for b in range(B):
            for i in range(L):
                if running[b, i]:
                    expected[b, i] += p_ref[b][i][t] * new[b, i]
                    if t + 1 == len(p_ref[b][i]):
                        running[b, i] = False
        state = new
    torch.testing.assert_close(out.output, expected)
    assert out.states == []


def position_wise(state, step, running):
    return state, torch.tanh(1.3 * state + 0.2)


@pytest.mark.parametrize("eval_halting", ["threshold", "sample"])
def test_expected_state_evaluation_reproduces_the_training_memory(eval_halting):
    """Training sums all N steps; evaluation halts only once the cumulative p exceeds 1 - eps, so the halting step
    takes a remainder below eps and the memory moves by at most eps * max_k |h_halt - h_k| <= 2 eps (tanh states),
    also when ``eval_halting`` says "sample". At the median (0.5) it moves much further."""
    m = make("expected_state")
    assert m.threshold == EXPECTED_STATE_THRESHOLD == 0.999
    with torch.no_grad():
        m.halting.bias.fill_(3.0)  # large lambda: positions reach 0.999 before the last step
    x, mask = inputs()
    with torch.no_grad():
        train = m.train()(x, mask, position_wise).output
        m.eval()
        m.eval_halting = eval_halting
        out = m(x, mask, position_wise)
        assert (out.n_updates[mask] < m.max_steps).any(), "test setup: positions should halt before the last step"
        assert (out.output - train).abs().max().item() <= 2e-3  # eps = 1 - 0.999
        m.threshold = 0.5
        at_median = m(x, mask, position_wise).output
    assert (at_median - train).abs().max().item() > 0.05


def test_gradients_reach_the_halting_unit():
    m = make("expected_state").train()
    x, mask = inputs()
    out = m(x, mask, mixing_step)
    (out.loss + out.output.sum()).backward()
    assert m.halting.weight.grad.abs().sum() > 0 and m.halting.bias.grad.abs() > 0
    m.zero_grad()
    m(x, mask, mixing_step).kl.backward()  # the regulariser alone
    assert m.halting.weight.grad.abs().sum() > 0


def task_loss(out, mask, readout, probe):
    """A task loss of the loop's readout alone (no KL): sum_n p_n c_n with c_n a cost of h_n per position
    (per example: of the row's mean h_n), or a fixed projection of the p-weighted state ("expected_state")."""
    if readout == "expected_state":
        return (out.output * probe).sum()
    cost = torch.stack([(h * probe).sum(-1) ** 2 for h in out.states])  # (N, B, L)
    if readout == "per_example":
        m = mask.double()
        cost = (cost * m).sum(-1) / m.sum(-1)  # (N, B)
        return (out.step_weights * cost).sum()
    return (out.step_weights * cost * mask).sum()


@pytest.mark.parametrize("readout", ["per_position", "per_example", "expected_state"])
def test_the_task_loss_alone_gives_the_halting_unit_its_finite_difference_gradient(readout):
    """The expectation's gradient into the halting unit, through p_n (``step_weights``) or the p-weighted state,
    against float64 central differences of the same loss: a detached p would give 0 here."""
    m = make(readout).train()
    x, mask = inputs()
    probe = torch.randn(L if readout == "expected_state" else 1, D, generator=torch.Generator().manual_seed(5),
                        dtype=torch.float64)
    task_loss(m(x, mask, mixing_step), mask, readout, probe).backward()
    h = 1e-6
    for param in (m.halting.weight, m.halting.bias):
        fd = torch.zeros_like(param)
        with torch.no_grad():
            for i in range(param.numel()):
                value = param.view(-1)[i].item()
                losses = []
                for sign in (1, -1):
                    param.view(-1)[i] = value + sign * h
                    losses.append(task_loss(m(x, mask, mixing_step), mask, readout, probe).item())
                param.view(-1)[i] = value
                fd.view(-1)[i] = (losses[0] - losses[1]) / (2 * h)
        assert fd.abs().max() > 1e-3, "test setup: the loss should depend on the halting unit"
        assert param.grad is not None
        torch.testing.assert_close(param.grad, fd, rtol=1e-5, atol=1e-8)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="lambda_p"):
        PonderNet(4, 3, lambda_p=1.0)
    with pytest.raises(ValueError, match="readout"):
        PonderNet(4, 3, readout="mean")
    m = PonderNet(4, 3).eval()
    m.eval_halting = "coin"
    with pytest.raises(ValueError, match="eval_halting"):
        m(torch.randn(1, 2, 4), None, lambda s, t, r: (s, s))
