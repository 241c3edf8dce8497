"""Universal Transformer (fixed and ACT): shared weights, every step counts, timestep signals, causality, padding,
cached decoding == full forward (incl. ACT's frozen-state key filling), beam 1 == greedy, compute skipping, learning."""

import pytest
import torch

import ut.models.universal as universal
from tests.ut.helpers import copy_batch, overfit_seq2seq, padded
from ut.decoding import beam_search, greedy_decode
from ut.models import build_model
from ut.models.universal import (
    UniversalClassifierConfig,
    UniversalTransformerClassifier,
    UniversalTransformerConfig,
    UniversalTransformerEncoderDecoder,
)


def tiny(**kw):
    base = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, n_heads=4, d_ff=64, n_steps=3, dropout=0.0)
    return UniversalTransformerEncoderDecoder(UniversalTransformerConfig(**{**base, **kw}))


def varied_act(m, scale=3.0):
    """Make the halting units position-dependent so that positions halt after different numbers of steps."""
    with torch.no_grad():
        for stack in (m.encoder, m.decoder):
            stack.act.halting.weight.mul_(scale)
    return m


def tiny_act(**kw):
    return varied_act(tiny(recurrence="act", act_halting_bias_init=0.0, **kw))


SRC = [[5, 6, 7, 8, 9], [9, 10], [11, 12, 5]]
TGT = torch.tensor([[1, 7, 8, 9, 10, 5, 6], [1, 5, 5, 6, 6, 7, 7], [1, 12, 11, 10, 9, 8, 7]])


# ---------------------------------------------------------------------------------------------------- weights, steps
@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_parameter_count_does_not_grow_with_steps(recurrence):
    counts = {sum(p.numel() for p in tiny(n_steps=t, recurrence=recurrence).parameters()) for t in (1, 2, 6)}
    assert len(counts) == 1
    # learned timestep tables (encoder, decoder): one D-row per step each, nothing else grows
    a, b = (sum(p.numel() for p in tiny(n_steps=t, timestep="learned").parameters()) for t in (2, 3))
    assert b - a == 2 * 32


def test_output_depends_on_every_step():
    torch.manual_seed(0)
    src, src_mask = padded(SRC)
    ref = tiny(n_steps=3).double().eval()
    outs = {}
    for t in (1, 2, 3, 4):
        m = tiny(n_steps=t).double().eval()
        m.load_state_dict(ref.state_dict())  # same weights, different depth
        enc = m.encode(src, src_mask).output
        outs[t] = (enc, m(src, src_mask, TGT).logits)
    for t in (1, 2, 3):
        assert not torch.allclose(outs[t][0], outs[t + 1][0])
        assert not torch.allclose(outs[t][1], outs[t + 1][1])
    # the final state is not the input embedding (t2t's old bug returned the memory)
    emb = ref.src_embed(src)
    assert not torch.allclose(outs[3][0], emb, atol=1e-2)
    assert not torch.allclose(outs[3][0], ref.encoder.final_norm(emb), atol=1e-2)


@pytest.mark.parametrize("timestep", ["sinusoidal", "learned"])
def test_position_and_timestep_signals_are_added_at_every_step(timestep):
    m = tiny(n_steps=4, timestep=timestep, norm="post").double().eval()
    signals = [m.encoder.timestep(t) for t in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(signals[i], signals[j])
    src, src_mask = padded(SRC)
    inputs, outputs = [], []

    def hook(module, args, out):
        inputs.append(args[0])
        outputs.append(out.x)

    m.encoder.layer.register_forward_hook(hook)
    m.encode(src, src_mask)
    assert len(inputs) == 4
    pos = m.src_embed.positions(torch.arange(5)[None].expand(3, 5)).double()
    torch.testing.assert_close(inputs[0], m.src_embed(src) + pos + signals[0])
    for t in range(1, 4):  # x_t = H^{t-1} + P + S_t
        torch.testing.assert_close(inputs[t], outputs[t - 1] + pos + signals[t])


# ---------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("recurrence,transition", [("fixed", "ffn"), ("fixed", "sepconv"), ("act", "ffn"),
                                                   ("act", "sepconv")])
def test_decoder_is_causal(recurrence, transition):
    m = tiny(recurrence=recurrence, transition=transition, act_halting_bias_init=0.0).double().eval()
    if recurrence == "act":
        varied_act(m)
    src, src_mask = padded(SRC)
    ref = m(src, src_mask, TGT).logits
    g = torch.Generator().manual_seed(1)
    for t in range(TGT.shape[1] - 1):
        tgt2 = TGT.clone()
        tgt2[:, t + 1:] = torch.randint(5, 13, tgt2[:, t + 1:].shape, generator=g)
        torch.testing.assert_close(m(src, src_mask, tgt2).logits[:, : t + 1], ref[:, : t + 1])


@pytest.mark.parametrize("recurrence,transition", [("fixed", "ffn"), ("act", "ffn"), ("act", "sepconv")])
def test_padding_cannot_change_real_outputs(recurrence, transition):
    m = tiny(recurrence=recurrence, transition=transition, act_halting_bias_init=0.0).double().eval()
    if recurrence == "act":
        varied_act(m)
    src, src_mask = padded(SRC)
    tgt_mask = torch.ones_like(TGT, dtype=torch.bool)
    ref = m(src, src_mask, TGT, tgt_mask)
    # encoder: garbage tokens under longer source padding
    src2 = torch.cat([src, torch.full((3, 3), 11)], 1)
    src2[1, 2:] = 12
    mask2 = torch.cat([src_mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    out = m(src2, mask2, TGT, tgt_mask)
    torch.testing.assert_close(out.logits, ref.logits)
    # row 1 alone, unpadded
    torch.testing.assert_close(m(src[1:2, :2], src_mask[1:2, :2], TGT[1:2]).logits, ref.logits[1:2])
    # decoder: padding after the target (masked) leaves the real positions unchanged
    tgt3 = torch.cat([TGT, torch.full((3, 2), 9)], 1)
    tmask3 = torch.cat([tgt_mask, torch.zeros(3, 2, dtype=torch.bool)], 1)
    out3 = m(src, src_mask, tgt3, tmask3)
    torch.testing.assert_close(out3.logits[:, :7], ref.logits)
    if recurrence == "act":
        torch.testing.assert_close(out.aux_loss, ref.aux_loss)
        torch.testing.assert_close(out3.aux_loss, ref.aux_loss)
        assert (out.ponder_time["encoder"][~mask2] == 0).all()
        assert (out3.ponder_time["decoder"][:, 7:] == 0).all() and (out3.n_updates["decoder"][:, 7:] == 0).all()
        torch.testing.assert_close(out.ponder_time["encoder"][mask2], ref.ponder_time["encoder"][src_mask])


# ---------------------------------------------------------------------------------------------------- decoding
def decode_and_compare(m, src, src_mask, tgt_in):
    full = m(src, src_mask, tgt_in).logits
    state, first = m.start_decoding({"src": src, "src_mask": src_mask})
    assert torch.equal(first, tgt_in[:, 0])
    for t in range(tgt_in.shape[1]):
        torch.testing.assert_close(m.decode_step(tgt_in[:, t], state), full[:, t])
    return state


@pytest.mark.parametrize("norm,transition,timestep", [("pre", "ffn", "sinusoidal"), ("post", "sepconv", "learned")])
def test_fixed_cached_decoding_equals_full_forward_at_every_step(norm, transition, timestep):
    m = tiny(norm=norm, transition=transition, timestep=timestep).double().eval()
    src, src_mask = padded(SRC)
    state = decode_and_compare(m, src, src_mask, TGT)
    # one cache per executed step of the shared layer
    assert {k[0] for k in state.cache.sites} == {("dec", t) for t in range(3)}


@pytest.mark.parametrize("norm,transition,combine", [("pre", "ffn", "basic"), ("post", "ffn", "accumulated"),
                                                     ("pre", "sepconv", "basic")])
def test_act_cached_decoding_equals_full_forward_at_every_step(norm, transition, combine, monkeypatch):
    torch.manual_seed(3)
    m = tiny_act(norm=norm, transition=transition, act_combine=combine, act_max_steps=5).double().eval()
    src, src_mask = padded(SRC)
    n_dec = m(src, src_mask, TGT).n_updates["decoder"]
    assert len(set(n_dec.flatten().tolist())) > 1, "test setup: positions should halt after different steps"
    filled = []
    original = universal.UniversalDecoder._fill_from_frozen

    def spy(self, cache, frozen, n_prev, t, *args):
        filled.append(n_prev - len(cache.get((("dec", t), "self"))))
        return original(self, cache, frozen, n_prev, t, *args)

    monkeypatch.setattr(universal.UniversalDecoder, "_fill_from_frozen", spy)
    decode_and_compare(m, src, src_mask, TGT)
    assert max(filled) > 0, "the frozen-state key filling path was not exercised"


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_beam_one_equals_greedy(recurrence):
    torch.manual_seed(5)
    m = tiny(recurrence=recurrence, act_halting_bias_init=0.0).eval()
    if recurrence == "act":
        varied_act(m)
    src, src_mask = padded(SRC)
    g = greedy_decode(m, {"src": src, "src_mask": src_mask}, max_len=6, eos_id=2)
    b = beam_search(m, {"src": src, "src_mask": src_mask}, beam_size=1, alpha=0.6, max_len=6, eos_id=2)
    for r in range(3):
        n = int(g.lengths[r])
        assert b.sequences[r, 0, :n].tolist() == g.sequences[r, :n].tolist()
        torch.testing.assert_close(b.log_probs[r, 0], g.scores[r], rtol=1e-4, atol=1e-4)


def test_act_beam_search_reorders_the_frozen_states():
    """Beam > 1 reorders every cache site, the ACT frozen states included: the best beam rescored by the full
    forward pass has the log-probability beam search reports."""
    torch.manual_seed(6)
    m = tiny_act(act_max_steps=4).double().eval()
    src, src_mask = padded(SRC)
    b = beam_search(m, {"src": src, "src_mask": src_mask}, beam_size=3, alpha=0.0, max_len=5, eos_id=2)
    for r in range(3):
        n = int(b.lengths[r, 0])
        seq = b.sequences[r, 0, :n]
        tgt_in = torch.cat([torch.tensor([1]), seq[:-1]])[None]
        logp = torch.log_softmax(m(src[r:r + 1], src_mask[r:r + 1], tgt_in).logits[0], -1)
        torch.testing.assert_close(logp.gather(1, seq[:, None]).sum().float(), b.log_probs[r, 0].float())


# ---------------------------------------------------------------------------------------------------- ACT specifics
def test_act_outputs_ponder_loss_and_its_gradient():
    torch.manual_seed(0)
    m = tiny_act(act_max_steps=4)
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    assert out.ponder_time["encoder"].shape == (3, 5) and out.ponder_time["decoder"].shape == (3, 7)
    assert (out.n_updates["encoder"] <= 4).all() and (out.n_updates["encoder"][src_mask] >= 1).all()
    enc = (out.ponder_time["encoder"] * src_mask).sum() / src_mask.sum()
    torch.testing.assert_close(out.aux_loss, 0.01 * (enc + out.ponder_time["decoder"].mean()))
    out.aux_loss.backward()
    for stack in (m.encoder, m.decoder):
        assert stack.act.halting.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_act_compute_skipping_leaves_outputs_and_gradients_unchanged(norm, monkeypatch):
    torch.manual_seed(2)
    skip = tiny_act(norm=norm, act_max_steps=5).double()
    full = tiny_act(norm=norm, act_max_steps=5, act_skip_halted=False).double()
    full.load_state_dict(skip.state_dict())
    src, src_mask = padded(SRC)
    calls = []
    skip.encoder.layer.register_forward_pre_hook(  # the number of query positions the shared layer computes
        lambda mod, args, kwargs: calls.append(kwargs["queries"].shape[1]) if "queries" in kwargs else None,
        with_kwargs=True)
    a, b = skip(src, src_mask, TGT), full(src, src_mask, TGT)
    assert calls and min(calls) < 5, "the skipping path was not taken"
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.aux_loss, b.aux_loss)
    (a.logits.sum() + a.aux_loss).backward()
    (b.logits.sum() + b.aux_loss).backward()
    for (name, p), q in zip(skip.named_parameters(), full.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_attention_maps_per_executed_step():
    m = tiny(n_steps=3).eval()
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT, need_weights=True)
    assert len(out.attentions["encoder"]) == 3 and out.attentions["encoder"][0].shape == (3, 4, 5, 5)
    assert len(out.attentions["decoder_cross"]) == 3 and out.attentions["decoder_cross"][2].shape == (3, 4, 7, 5)
    assert torch.all(out.attentions["decoder_cross"][0][1, :, :, 2:] == 0)
    a = tiny_act(act_max_steps=4).eval()
    out = a(src, src_mask, TGT, need_weights=True)
    n_enc = int(out.n_updates["encoder"].max())
    assert len(out.attentions["encoder"]) == n_enc and len(out.attentions["decoder_self"]) >= 1


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_bf16_autocast_forward_and_backward(recurrence):
    m = tiny(recurrence=recurrence)
    b = copy_batch(batch=2, length=4, vocab=13)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(b["src"], b["src_mask"], b["tgt_in"])
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), b["tgt_out"].flatten())
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------------- config, learning
def test_config_validation_and_registry():
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("universal", {"d_model": 32, "n_heads": 4, "n_layers": 6})
    with pytest.raises(ValueError, match="recurrence"):
        UniversalTransformerConfig(recurrence="dynamic")
    with pytest.raises(ValueError, match="act_combine"):
        UniversalTransformerConfig(act_combine="sum")
    assert UniversalTransformerConfig(recurrence="act", n_steps=6).max_steps == 12
    assert UniversalTransformerConfig(recurrence="act", n_steps=6, act_max_steps=8).max_steps == 8
    m = build_model("universal", {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_steps": 2, "recurrence": "act",
                                  "act_halting_bias_init": -1.0})
    assert m.encoder.act.halting.bias.item() == -1.0 and m.decoder.act.max_steps == 4
    c = build_model("universal_classifier", {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_classes": 5})
    assert isinstance(c, UniversalTransformerClassifier)
    with pytest.raises(ValueError, match="pooling"):
        UniversalClassifierConfig(pooling="max")


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_tiny_ut_overfits_a_copy_batch_and_greedy_decodes_it(recurrence):
    torch.manual_seed(0)
    m = tiny(n_steps=2, recurrence=recurrence)
    b = copy_batch(batch=8, length=5, vocab=13)
    assert overfit_seq2seq(m, b, steps=250) == 1.0
    out = greedy_decode(m, b, max_len=6, eos_id=2)
    assert torch.equal(out.sequences, b["tgt_out"])


def test_position_offsets_reach_every_step_and_the_decoding_cache():
    m = tiny_act(act_max_steps=4).double().eval()
    src, src_mask = padded(SRC)
    off = torch.tensor([3, 0, 7])
    a = m(src, src_mask, TGT).logits
    b = m(src, src_mask, TGT, src_pos_offset=off, tgt_pos_offset=off).logits
    assert not torch.allclose(a, b)
    state, _ = m.start_decoding({"src": src, "src_mask": src_mask, "src_pos_offset": off, "tgt_pos_offset": off})
    for t in range(4):
        torch.testing.assert_close(m.decode_step(TGT[:, t], state), b[:, t])
