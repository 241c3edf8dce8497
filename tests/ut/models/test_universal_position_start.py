"""The UT's per-step random position start index (t2t ``position_start_index="random"``): P_t = sinusoid(p + k_t)
with one k_t in [0, L) per batch drawn at every step in training, k_t = 0 in evaluation; seeded; the cached decoder
stays exact under the policy."""

import pytest
import torch

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
        ks = [int(k) for k in stack.last_start_indices] if training else [0] * 4
        assert len(ks) == 4 and all(0 <= k < length for k in ks)
        prev = embed(tokens)  # H^0: the plain embedding
        for t, (x_t, h_t) in enumerate(zip(ins, outs)):
            p_t = x_t - prev - stack.timestep(t)
            torch.testing.assert_close(p_t, sinusoid(pos + ks[t], 32), atol=3e-5, rtol=0)
            prev = h_t
        if not training:
            assert stack.last_start_indices == []


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


def test_random_start_is_seeded_and_zero_start_is_not_random():
    src, src_mask = padded(SRC)
    torch.manual_seed(0)
    m = tiny().train()
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outs.append(m(src, src_mask, TGT).logits)
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])
    z = tiny(position_start_index="zero").train()
    torch.testing.assert_close(z(src, src_mask, TGT).logits, z(src, src_mask, TGT).logits)


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_cached_decoding_equals_full_forward_under_the_random_start_policy(recurrence):
    torch.manual_seed(3)
    m = tiny(recurrence=recurrence, act_halting_bias_init=0.0, act_max_steps=5).double()
    if recurrence == "act":
        with torch.no_grad():
            for stack in (m.encoder, m.decoder):
                stack.act.halting.weight.mul_(3.0)
    src, src_mask = padded(SRC)
    m.train()
    state, _ = m.start_decoding({"src": src, "src_mask": src_mask})
    with pytest.raises(RuntimeError, match="model.eval"):
        m.decode_step(TGT[:, 0], state)
    m.eval()
    full = m(src, src_mask, TGT).logits
    state, _ = m.start_decoding({"src": src, "src_mask": src_mask})
    for t in range(TGT.shape[1]):
        torch.testing.assert_close(m.decode_step(TGT[:, t], state), full[:, t])
    m.train()
    assert not torch.allclose(m(src, src_mask, TGT).logits, full)  # training draws a start index


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
