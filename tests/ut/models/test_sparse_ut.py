"""The sparse Universal Transformer (``transition="moe"``, ut/models/moe_transition.py): one MoE module shared by
every step with gradients from each, a float64 reference of the steps (attention, routing with causal capacity
priority and experts written by hand), causality of the decoder in training and evaluation, cached decoding ==
the full forward and no-cache greedy decoding, padding and halted positions not routed (ACT, PonderNet,
stick-breaking; with and without skipping halted positions), the balancing loss weighted and apart from the
halting loss, the classifier, fact-QA and UT-DMCA models (also a ``"-moe"`` last layer under ACT), learning a copy
batch."""

from __future__ import annotations

import math
import typing

import pytest
import torch
import torch.nn.functional as F

from tests.ut.helpers import copy_batch, overfit_seq2seq, padded
from ut.decoding import greedy_decode, left_align
from ut.models import build_model
from ut.models.config import MoEBalance, Transition, UniversalTransition
from ut.nn.moe import BALANCE_LOSSES, MoEFeedForward
from ut.nn.positions import sinusoid

SMALL = dict(d_model=16, n_heads=2, d_ff=8, dropout=0.0, transition="moe", n_experts=4, moe_top_k=2)
SRC = [[5, 6, 7, 8, 9, 10], [9, 10], [11, 12, 5, 6]]
TGT = torch.tensor([[1, 7, 8, 9, 10, 5, 6], [1, 5, 5, 6, 6, 7, 7], [1, 12, 11, 10, 9, 8, 7]])
HALTING = ["act", "pondernet", "stick_breaking"]


def varied(model, seed=6):
    """Large random halting units, so that positions halt after different numbers of steps."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "halting") and isinstance(m.halting, torch.nn.Linear):
                m.halting.weight.normal_(0.0, 2.0)
                m.halting.bias.zero_()
    return model


def seq2seq(recurrence="fixed", **kw):
    torch.manual_seed(0)
    cfg = {**SMALL, "src_vocab_size": 13, "tgt_vocab_size": 13, "n_steps": 2, "act_max_steps": 4,
           "recurrence": recurrence, "act_halting_bias_init": 0.0, "stick_breaking_threshold": 0.9,
           "pondernet_threshold": 0.6, **kw}
    return varied(build_model("universal", cfg)).double()


def moes(model) -> list[MoEFeedForward]:
    return [m for m in model.modules() if isinstance(m, MoEFeedForward)]


def record(moe: MoEFeedForward) -> list[dict]:
    """Every call of ``moe``: the routed token count, the kept flags, the aux loss, the output, the route mask."""
    calls = []

    def hook(mod, args, kwargs, output):
        calls.append({"routed": mod.last_routing["experts"].shape[0], "kept": mod.last_routing["kept"],
                      "aux": output[1], "out": output[0], "x": args[0],
                      "token_mask": args[1] if len(args) > 1 else kwargs.get("token_mask"),
                      "route_mask": kwargs.get("route_mask")})

    moe.register_forward_hook(hook, with_kwargs=True)
    return calls


# ---------------------------------------------------------------------------------------------------- weights
def test_one_moe_module_per_stack_shared_by_every_step_with_gradients_from_each():
    counts = {sum(p.numel() for p in seq2seq(n_steps=t).parameters()) for t in (1, 2, 4)}
    assert len(counts) == 1  # parameters do not grow with depth
    m = seq2seq(n_steps=3).train()
    assert [m.encoder.layer.transition, m.decoder.layer.transition] == moes(m)  # one module per stack
    calls = record(m.encoder.layer.transition)
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    assert len(calls) == 3  # the encoder's one module ran at every step
    loss = out.logits.square().mean()
    moe = m.encoder.layer.transition
    total = torch.autograd.grad(loss, moe.w1, retain_graph=True)[0]
    parts = []
    for call in list(calls):  # each step's direct share: dL/dy_t through that call's weights alone
        upstream = torch.autograd.grad(loss, call["out"], retain_graph=True)[0]
        again = moe(call["x"].detach(), call["token_mask"], route_mask=call["route_mask"])[0]
        torch.testing.assert_close(again, call["out"])
        parts.append(torch.autograd.grad(again, moe.w1, upstream)[0])
    assert all(p.abs().sum() > 0 for p in parts)
    torch.testing.assert_close(sum(parts), total, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- reference
def reference_attention(attn, x, real):
    """Multi-head self-attention by hand over the real keys: (B, L, D) -> (B, L, D)."""
    b, length, d = x.shape
    h = attn.n_heads
    heads = [(x @ p.weight.T + p.bias).view(b, length, h, d // h).transpose(1, 2)
             for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
    scores = heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(d // h)
    scores = scores.masked_fill(~real[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ heads[2]).transpose(1, 2).reshape(b, length, d)
    return out @ attn.out_proj.weight.T + attn.out_proj.bias


def reference_moe(moe, x, real, training):
    """Top-k routing, Shazeer's gates, causal capacity priority (position, then choice, then row) in training,
    the balancing loss, every expert by hand; one token at a time -> (output (B, L, D), weighted loss)."""
    b, length, _ = x.shape
    k, e = moe.top_k, moe.n_experts
    n = int(real.sum())
    cap = math.ceil(moe.capacity_factor * n * k / e) if training else n * k
    logits = x @ moe.router.weight.T  # (B, L, E)
    out, filled, dropped = torch.zeros_like(x), [0] * e, 0
    for i in range(length):
        for c in range(k):
            for r in range(b):
                if not real[r, i]:
                    continue
                top = logits[r, i].topk(k)
                expert = int(top.indices[c])
                if filled[expert] >= cap:
                    dropped += 1
                    continue
                filled[expert] += 1
                hidden = torch.relu(x[r, i] @ moe.w1[expert] + moe.b1[expert, 0])
                out[r, i] += top.values.softmax(-1)[c] * (hidden @ moe.w2[expert] + moe.b2[expert, 0])
    probs = logits[real].softmax(-1)  # (N, E) over the real tokens
    if moe.balance == "importance":
        importance = probs.sum(0)
        loss = importance.var(unbiased=False) / importance.mean() ** 2
    else:
        chosen = logits[real].topk(k).indices
        f = torch.stack([(chosen == j).sum() for j in range(e)]).double() / chosen.numel()
        loss = e * (f * probs.mean(0)).sum()
    return out, moe.aux_loss_weight * loss, dropped


def layer_norm(norm, x):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("balance", ["importance", "switch"])
def test_the_encoder_equals_a_float64_reference_of_its_steps(training, balance):
    """Two steps of x_t = H + P + S_t -> pre-norm attention -> pre-norm MoE, then the final norm; training with a
    capacity that drops assignments (causal priority), evaluation with none dropped."""
    m = seq2seq(moe_capacity_factor=0.6, moe_balance=balance).train(training)
    enc = m.encoder
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 16, generator=g, dtype=torch.float64)
    pos = torch.randn(3, 6, 16, generator=g, dtype=torch.float64)
    _, real = padded(SRC)
    got = enc(x, pos, real)
    state, loss, dropped = x, 0.0, 0
    for t in range(2):
        x_t = state + pos + sinusoid(torch.tensor(t), 16).double()
        h = x_t + reference_attention(enc.layer.self_attn, layer_norm(enc.layer.attn_res.norm, x_t), real)
        f, aux, d = reference_moe(enc.layer.transition, layer_norm(enc.layer.ffn_res.norm, h), real, training)
        state, loss, dropped = h + f, loss + aux, dropped + d
    torch.testing.assert_close(got.output, layer_norm(enc.final_norm, state), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.moe_loss, loss, rtol=1e-10, atol=1e-12)
    assert (dropped > 0) == training, "test setup: the training capacity binds, evaluation drops nothing"


# ---------------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("recurrence", ["fixed", *HALTING])
@pytest.mark.parametrize("training", [False, True])
def test_the_decoder_is_causal(recurrence, training):
    """A change in later target tokens changes no earlier logit, with a capacity that drops assignments in training
    (causal priority; under a halting loop the capacity counts the real tokens, not the running ones)."""
    m = seq2seq(recurrence, moe_capacity_factor=0.6).train(training)
    calls = record(m.decoder.layer.transition)
    src, src_mask = padded(SRC)
    ref = m(src, src_mask, TGT)
    g = torch.Generator().manual_seed(1)
    for t in range(TGT.shape[1] - 1):
        other = TGT.clone()
        other[:, t + 1:] = torch.randint(5, 13, other[:, t + 1:].shape, generator=g)
        torch.testing.assert_close(m(src, src_mask, other).logits[:, :t + 1], ref.logits[:, :t + 1], rtol=0,
                                   atol=1e-12)
    assert any(not bool(c["kept"].all()) for c in calls) == training, "test setup: the capacity binds in training"


def test_the_test_of_causality_can_fail_gshard_priority_is_not_causal_in_training():
    m = seq2seq("act", moe_capacity_factor=0.6, moe_priority="choice").train()
    src, src_mask = padded(SRC)
    ref = m(src, src_mask, TGT).logits
    other = TGT.clone()
    other[:, 3:] = torch.flip(other[:, 3:], [1]) % 8 + 5
    assert (m(src, src_mask, other).logits[:, :3] - ref[:, :3]).abs().max() > 1e-6


# ---------------------------------------------------------------------------------------------------- decoding
def no_cache_greedy(m, src, src_mask, steps):
    tgt = torch.full((src.shape[0], 1), 1)
    for _ in range(steps):
        tgt = torch.cat([tgt, m(src, src_mask, tgt).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return tgt[:, 1:]


@pytest.mark.parametrize("recurrence", ["fixed", *HALTING])
def test_cached_decoding_equals_the_full_forward_and_no_cache_greedy_decoding(recurrence):
    m = seq2seq(recurrence).eval()
    src, src_mask = padded(SRC)
    full = m(src, src_mask, TGT)
    if recurrence != "fixed":
        assert len(set(full.n_updates["decoder"].flatten().tolist())) > 1, "test setup: varied halting"
    state, first = m.start_decoding({"src": src, "src_mask": src_mask})
    for t in range(TGT.shape[1]):
        torch.testing.assert_close(m.decode_step(TGT[:, t], state), full.logits[:, t], rtol=1e-9, atol=1e-9)
    greedy = greedy_decode(m, {"src": src, "src_mask": src_mask}, max_len=6, eos_id=-1)
    assert torch.equal(greedy.sequences, no_cache_greedy(m, src, src_mask, 6))


# ---------------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("training", [False, True])
def test_padding_is_not_routed_and_cannot_change_outputs_or_the_moe_loss(training):
    m = seq2seq(moe_capacity_factor=0.6).train(training)
    calls = record(m.encoder.layer.transition)
    src, src_mask = padded(SRC)
    ref = m(src, src_mask, TGT)
    assert [c["routed"] for c in calls] == [int(src_mask.sum())] * 2
    src2 = torch.cat([src, torch.full((3, 3), 11)], 1)
    mask2 = torch.cat([src_mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    tgt2 = torch.cat([TGT, torch.full((3, 2), 9)], 1)
    tmask2 = torch.cat([torch.ones_like(TGT, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool)], 1)
    out = m(src2, mask2, tgt2, tmask2)
    assert [c["routed"] for c in calls[2:]] == [int(src_mask.sum())] * 2
    torch.testing.assert_close(out.logits[:, :7], ref.logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.moe_loss, ref.moe_loss, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- halting
def running_counts(n_updates, mask, n_calls):
    """Positions running at each executed step t: those whose update count n exceeds t."""
    return [int(((n_updates > t) & mask).sum()) for t in range(n_calls)]


@pytest.mark.parametrize("recurrence", HALTING)
@pytest.mark.parametrize("skip", [None, False])
def test_halted_positions_are_not_routed(recurrence, skip):
    """At every executed step the MoE routes exactly the running positions (a halted one runs no step), with the
    layer on the running positions only (skip None) or on all of them (False)."""
    m = seq2seq(recurrence, act_skip_halted=skip).eval()
    enc_calls, dec_calls = record(m.encoder.layer.transition), record(m.decoder.layer.transition)
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    tgt_mask = torch.ones_like(TGT, dtype=torch.bool)
    for calls, name, mask in ((enc_calls, "encoder", src_mask), (dec_calls, "decoder", tgt_mask)):
        n = out.n_updates[name]
        assert len(set(n[mask].tolist())) > 1, f"test setup: {name} positions halt at different steps"
        assert [c["routed"] for c in calls] == running_counts(n, mask, len(calls)), name
        assert sum(c["routed"] for c in calls) == int(n.sum())


@pytest.mark.parametrize("recurrence", ["act", "stick_breaking"])
def test_skipping_halted_positions_leaves_training_outputs_losses_and_gradients_unchanged(recurrence):
    """In training with a capacity that drops assignments, the layer on the running positions only and the layer on
    every position route the same tokens at the same places: same outputs, MoE loss and gradients."""
    skip, full = seq2seq(recurrence, moe_capacity_factor=0.6), seq2seq(recurrence, moe_capacity_factor=0.6,
                                                                       act_skip_halted=False)
    full.load_state_dict(skip.state_dict())
    calls = record(skip.decoder.layer.transition)
    queries = []
    skip.decoder.layer.register_forward_pre_hook(
        lambda mod, args, kwargs: queries.append(kwargs["queries"].shape[1]) if "queries" in kwargs else None,
        with_kwargs=True)
    src, src_mask = padded(SRC)
    a, b = skip.train()(src, src_mask, TGT), full.train()(src, src_mask, TGT)
    assert queries and min(queries) < TGT.shape[1], "test setup: the skipping path was taken"
    assert any(not bool(c["kept"].all()) for c in calls), "test setup: the capacity binds"
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.moe_loss, b.moe_loss, rtol=1e-10, atol=1e-12)
    (a.logits.square().mean() + a.aux_loss).backward()
    (b.logits.square().mean() + b.aux_loss).backward()
    for (name, p), q in zip(skip.named_parameters(), full.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=name)


# ---------------------------------------------------------------------------------------------------- losses
def test_the_balancing_loss_is_summed_over_steps_weighted_and_kept_apart_from_the_ponder_loss():
    src, src_mask = padded(SRC)
    m = seq2seq("act").train()
    calls = [record(t) for t in moes(m)]
    out = m(src, src_mask, TGT)
    torch.testing.assert_close(out.moe_loss, sum(c["aux"] for stack in calls for c in stack))
    assert len(calls[0]) == out.n_updates["encoder"].max() and len(calls[1]) == out.n_updates["decoder"].max()
    ponder = out.ponder_time["encoder"][src_mask].mean() + out.ponder_time["decoder"].mean()
    torch.testing.assert_close(out.ponder_loss, 0.01 * ponder)
    torch.testing.assert_close(out.aux_loss, out.moe_loss + out.ponder_loss)
    assert out.moe_loss > 0
    for weight in (0.02, 0.0):  # the weight scales the balancing loss alone
        other = seq2seq("act", moe_aux_loss_weight=weight).train()
        o = other(src, src_mask, TGT)
        torch.testing.assert_close(o.moe_loss, out.moe_loss * weight / 0.01)
        torch.testing.assert_close(o.ponder_loss, out.ponder_loss)
        torch.testing.assert_close(o.logits, out.logits)
    fixed = seq2seq("fixed")(src, src_mask, TGT)
    assert fixed.ponder_loss is None and fixed.moe_loss is not None
    dense = seq2seq("act", transition="ffn")(src, src_mask, TGT)
    assert dense.moe_loss is None and dense.ponder_loss is not None


# ---------------------------------------------------------------------------------------------------- other models
def test_the_classifier_and_fact_qa_route_only_running_positions_and_keep_the_losses_apart():
    torch.manual_seed(0)
    common = {**SMALL, "n_steps": 2, "act_max_steps": 4, "recurrence": "act", "act_halting_bias_init": 0.0}
    clf = varied(build_model("universal_classifier", {**common, "vocab_size": 13, "n_classes": 4})).eval()
    qa = varied(build_model("universal_fact_qa", {**common, "vocab_size": 15, "n_classes": 4, "max_words": 5}))
    qa.eval()
    src, src_mask = padded(SRC)
    facts = torch.randint(1, 15, (3, 5, 4), generator=torch.Generator().manual_seed(0))
    facts[1, 3:] = 0
    item_mask = torch.ones(3, 6, dtype=torch.bool)
    item_mask[1, 4:] = False
    for model, run, mask in ((clf, lambda: clf(src, src_mask), src_mask),
                             (qa, lambda: qa(facts, torch.randint(1, 15, (3, 4))), item_mask)):
        calls = record(model.encoder.layer.transition)
        out = run()
        n = out.n_updates["encoder"]
        assert len(set(n[mask].tolist())) > 1, "test setup: varied halting"
        assert [c["routed"] for c in calls] == running_counts(n, mask, len(calls))
        assert out.moe_loss is not None and out.ponder_loss is not None
        torch.testing.assert_close(out.aux_loss, out.moe_loss + out.ponder_loss)


def ut_dmca(recurrence="act", **kw):
    torch.manual_seed(0)
    cfg = {**SMALL, "vocab_size": 16, "n_steps": 2, "act_max_steps": 4, "layer_pattern": "full/locm",
           "block_size": 4, "max_len": 32, "recurrence": recurrence, "act_halting_bias_init": 0.0, **kw}
    return varied(build_model("universal_decoder_only", cfg)).double()


def test_ut_dmca_takes_the_moe_transition_in_every_pattern_layer_and_routes_halted_positions_at_the_last_only():
    """The pattern's earlier layers compute halted positions in full (their states are the keys and values of the
    later layers); the last layer's output at a halted position is never read, so its MoE routes the running ones."""
    m = ut_dmca().eval()
    first, last = (record(layer.transition) for layer in m.layers)
    assert len(moes(m)) == 2
    ids = torch.randint(4, 16, (2, 9), generator=torch.Generator().manual_seed(2))
    out = m(ids)
    mask = torch.ones_like(ids, dtype=torch.bool)
    n = out.n_updates["decoder"]
    assert len(set(n.flatten().tolist())) > 1, "test setup: varied halting"
    assert [c["routed"] for c in first] == [ids.numel()] * len(first)
    assert [c["routed"] for c in last] == running_counts(n, mask, len(last))


def test_ut_dmca_under_act_with_a_moe_suffix_last_layer_gives_halted_positions_no_slot_in_training():
    """A ``"-moe"`` last pattern layer (the rest dense): in training, at every step it routes the running positions
    alone (ut/models/moe_transition.py; the capacity that counts every real token: tests/ut/nn/test_moe.py)."""
    m = ut_dmca(transition="ffn", layer_pattern="full/locm-moe", moe_capacity_factor=0.6).train()
    (moe,) = moes(m)
    assert moe is m.layers[1].transition
    calls = record(moe)
    ids = torch.randint(4, 16, (2, 9), generator=torch.Generator().manual_seed(2))
    n = m(ids).n_updates["decoder"]
    mask = torch.ones_like(ids, dtype=torch.bool)
    assert len(set(n.flatten().tolist())) > 1, "test setup: varied halting"
    assert [c["routed"] for c in calls] == running_counts(n, mask, len(calls))
    assert calls[-1]["routed"] < ids.numel() and all(c["route_mask"] is not None for c in calls)


@pytest.mark.parametrize("training", [False, True])
def test_ut_dmca_with_moe_is_causal_and_decodes_exactly(training):
    m = ut_dmca(moe_capacity_factor=0.6).train(training)
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(4, 16, (2, 9), generator=g)
    ref = m(ids).logits
    other = ids.clone()
    other[:, 5:] = torch.randint(4, 16, (2, 4), generator=g)
    torch.testing.assert_close(m(other).logits[:, :5], ref[:, :5], rtol=0, atol=1e-12)
    if training:
        return
    prefix, mask = padded([[5, 6, 7, 3], [9, 3]])
    cont = torch.tensor([[12, 13, 14, 5], [6, 7, 8, 9]])
    state, tokens = m.start_decoding({"input_ids": prefix, "attention_mask": mask})
    left_ids, left_mask = left_align(prefix, mask, 0)
    for t in range(cont.shape[1]):
        step = m.decode_step(tokens, state)
        full = m(torch.cat([left_ids, cont[:, :t]], 1), torch.cat([left_mask, torch.ones(2, t, dtype=torch.bool)], 1))
        torch.testing.assert_close(step, full.logits[:, -1], rtol=1e-9, atol=1e-9)
        tokens = cont[:, t]


# ---------------------------------------------------------------------------------------------------- config
def test_config_choices_and_validation():
    assert typing.get_args(MoEBalance) == BALANCE_LOSSES
    assert set(typing.get_args(UniversalTransition)) == set(typing.get_args(Transition)) | {"moe"}
    m = build_model("universal", {**SMALL, "moe_balance": "switch", "moe_priority": "choice",
                                  "moe_capacity_factor": 2.0, "moe_aux_loss_weight": 0.5})
    moe = m.decoder.layer.transition
    assert (moe.balance, moe.priority, moe.capacity_factor, moe.aux_loss_weight, moe.n_experts, moe.top_k,
            moe.w1.shape) == ("switch", "choice", 2.0, 0.5, 4, 2, (4, 16, 8))
    assert build_model("universal", {**SMALL, "recurrence": "act"}).cfg.skips_halted  # position-wise
    assert isinstance(build_model("universal", {**SMALL, "transition": "ffn"}).encoder.layer.transition,
                      torch.nn.Module) and not moes(build_model("universal", {**SMALL, "transition": "ffn"}))
    for bad, message in (({"moe_top_k": 5}, "need 1 <= moe_top_k <= n_experts"),
                         ({"n_experts": 0}, "n_experts must be >= 1"),
                         ({"moe_capacity_factor": 0.0}, "moe_capacity_factor must be > 0"),
                         ({"moe_aux_loss_weight": -1.0}, "moe_aux_loss_weight must be >= 0")):
        with pytest.raises(ValueError, match=f"UniversalTransformerConfig: {message}"):
            build_model("universal", {**SMALL, **bad})


def test_a_dense_transition_is_unchanged_by_the_moe_fields():
    """The MoE fields are inert without transition='moe' (same parameters, same outputs)."""
    torch.manual_seed(0)
    a = build_model("universal", {**SMALL, "transition": "ffn", "src_vocab_size": 13, "tgt_vocab_size": 13})
    torch.manual_seed(0)
    b = build_model("universal", {**SMALL, "transition": "ffn", "src_vocab_size": 13, "tgt_vocab_size": 13,
                                  "n_experts": 8, "moe_top_k": 1})
    src, src_mask = padded(SRC)
    torch.testing.assert_close(a.eval()(src, src_mask, TGT).logits, b.eval()(src, src_mask, TGT).logits)
    assert F.mse_loss(a.encoder.layer.transition.w1.weight, b.encoder.layer.transition.w1.weight) == 0


# ---------------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_a_tiny_sparse_ut_learns_a_copy_batch_and_greedy_decodes_it(recurrence):
    torch.manual_seed(0)
    m = build_model("universal", {**SMALL, "d_model": 32, "n_heads": 4, "d_ff": 32, "src_vocab_size": 13,
                                  "tgt_vocab_size": 13, "n_steps": 2, "recurrence": recurrence})
    b = copy_batch(batch=8, length=5, vocab=13)
    assert overfit_seq2seq(m, b, steps=250) == 1.0
    assert torch.equal(greedy_decode(m, b, max_len=6, eos_id=2).sequences, b["tgt_out"])
