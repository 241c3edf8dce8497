"""The UT's per-step random position start index (t2t ``position_start_index="random"``): P_t = sinusoid(p + k_t)
with one k_t in [0, L) per batch drawn at every step, in training and in evaluation; seeded; the cached decoder draws
one k_t per step for the whole decode and equals the full pass under the same start indices."""

import pytest
import torch

import ut.models.universal as universal
from tests.ut.helpers import padded
from ut.models.universal import UniversalTransformerConfig, UniversalTransformerEncoderDecoder
from ut.nn.positions import sinusoid

SRC = [[5, 6, 7, 8, 9], [9, 10], [11, 12, 5]]
TGT = torch.tensor([[1, 7, 8, 9, 10, 5, 6], [1, 5, 5, 6, 6, 7, 7], [1, 12, 11, 10, 9, 8, 7]])


def tiny(**kw):
    base = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, n_heads=4, d_ff=64, n_steps=3, dropout=0.0,
                position_start_index="random")
    return UniversalTransformerEncoderDecoder(UniversalTransformerConfig(**{**base, **kw}))


def layer_inputs_and_outputs(stack):
    """Record the shared layer's input x_t and output H_t at every step."""
    ins, outs = [], []
    stack.layer.register_forward_pre_hook(lambda mod, args: ins.append(args[0].detach().clone()))
    stack.layer.register_forward_hook(lambda mod, args, out: outs.append(out.x.detach().clone()))
    return ins, outs


@pytest.mark.parametrize("training", [True, False])
def test_step_input_is_state_plus_sinusoid_at_positions_plus_drawn_start_plus_timestep(training):
    torch.manual_seed(0)
    m = tiny(n_steps=4).train(training)
    src, src_mask = padded(SRC)
    streams = {"encoder": layer_inputs_and_outputs(m.encoder), "decoder": layer_inputs_and_outputs(m.decoder)}
    m(src, src_mask, TGT)
    for name, (ins, outs), tokens, embed in (("encoder", streams["encoder"], src, m.src_embed),
                                             ("decoder", streams["decoder"], TGT, m.tgt_embed)):
        stack = getattr(m, name)
        length = tokens.shape[1]
        pos = torch.arange(length)[None].expand(tokens.shape[0], -1)
        ks = [int(k) for k in stack.last_start_indices]  # drawn in both modes (t2t)
        assert len(ks) == 4 and all(0 <= k < length for k in ks)
        prev = embed(tokens)  # H^0: the plain embedding
        for t, (x_t, h_t) in enumerate(zip(ins, outs)):
            p_t = x_t - prev - stack.timestep(t)
            torch.testing.assert_close(p_t, sinusoid(pos + ks[t], 32), atol=3e-5, rtol=0)
            prev = h_t


def test_start_index_is_fresh_at_every_step_and_covers_zero_to_length():
    torch.manual_seed(1)
    m = tiny(n_steps=4).train()
    src, src_mask = padded(SRC)  # S = 5
    enc, dec, differ = set(), set(), 0
    for _ in range(60):
        m(src, src_mask, TGT)
        ks = [int(k) for k in m.encoder.last_start_indices]
        enc.update(ks)
        dec.update(int(k) for k in m.decoder.last_start_indices)
        differ += len(set(ks)) > 1
    assert enc == set(range(5)) and dec == set(range(7))  # uniform over [0, L) of each stack's own input
    assert differ > 40  # one draw per step, not one per forward pass


@pytest.mark.parametrize("training", [True, False])
def test_random_start_is_seeded_and_zero_start_is_not_random(training):
    src, src_mask = padded(SRC)
    torch.manual_seed(0)
    m = tiny().train(training)
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outs.append(m(src, src_mask, TGT).logits)
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])
    z = tiny(position_start_index="zero").train(training)
    torch.testing.assert_close(z(src, src_mask, TGT).logits, z(src, src_mask, TGT).logits)
    assert z.encoder.last_start_indices == []


def act_model(**kw):
    m = tiny(recurrence="act", act_halting_bias_init=0.0, act_max_steps=5, **kw).double()
    with torch.no_grad():
        for stack in (m.encoder, m.decoder):
            stack.act.halting.weight.mul_(3.0)  # positions halt after different numbers of steps
    return m


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_cached_decoding_equals_full_forward_under_the_same_start_indices(recurrence, monkeypatch):
    torch.manual_seed(3)
    m = (act_model() if recurrence == "act" else tiny().double()).eval()
    m.encoder.fixed_start_indices = [2, 0, 4, 1, 3]
    m.decoder.fixed_start_indices = [5, 1, 6, 0, 2]
    src, src_mask = padded(SRC)
    full = m(src, src_mask, TGT).logits
    filled = []
    original = universal.UniversalDecoder._fill_from_frozen

    def spy(self, cache, frozen, n_prev, t, *args):
        filled.append(n_prev - len(cache.get((("dec", t), "self"))))
        return original(self, cache, frozen, n_prev, t, *args)

    monkeypatch.setattr(universal.UniversalDecoder, "_fill_from_frozen", spy)
    state, _ = m.start_decoding({"src": src, "src_mask": src_mask})
    for t in range(TGT.shape[1]):
        torch.testing.assert_close(m.decode_step(TGT[:, t], state), full[:, t])
    if recurrence == "act":
        assert max(filled) > 0, "the frozen-state key filling path was not exercised"
    m.decoder.fixed_start_indices = [0, 0, 0, 0, 0]
    assert not torch.allclose(m(src, src_mask, TGT).logits, full)  # the start indices matter


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_decoding_draws_one_start_index_per_step_for_the_whole_decode(recurrence):
    torch.manual_seed(0)
    m = (act_model() if recurrence == "act" else tiny().double()).eval()
    src, src_mask = padded(SRC)  # S = 5
    seen = set()
    for _ in range(20):
        state, tok = m.start_decoding({"src": src, "src_mask": src_mask})
        for t in range(4):
            tok = m.decode_step(tok, state).argmax(-1)
            if t == 0:
                first = dict(state.cache.get(("dec", "start_index")).by_step)
        by_step = state.cache.get(("dec", "start_index")).by_step
        assert all(torch.equal(by_step[t], k) for t, k in first.items())  # drawn once, kept for every position
        seen.update(int(k) for k in by_step.values())
    assert seen == set(range(5))  # uniform in [0, S)


def test_act_draws_one_start_index_per_executed_step():
    torch.manual_seed(0)
    m = tiny(recurrence="act", act_halting_bias_init=-2.0, act_max_steps=6).train()
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    assert len(m.encoder.last_start_indices) == int(out.n_updates["encoder"].max())
    assert len(m.decoder.last_start_indices) == int(out.n_updates["decoder"].max())


def test_random_start_needs_sinusoidal_positions():
    with pytest.raises(ValueError, match="position='sinusoidal'"):
        UniversalTransformerConfig(position="learned", position_start_index="random")
    with pytest.raises(ValueError, match="position_start_index"):
        UniversalTransformerConfig(position_start_index="step")
