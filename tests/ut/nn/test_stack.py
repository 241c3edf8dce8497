"""run_stack: N distinct layers once and one shared layer T times against hand-written loops; attention maps and
MoE losses kept apart per layer application; cache keys per scheme; ACT compute skipping through the real layer."""

import pytest
import torch
from torch import nn

from ut.nn.act import AdaptiveComputationTime
from ut.nn.attention import DecodingCache
from ut.nn.layers import DecoderLayer, EncoderLayer
from ut.nn.moe import MoEFeedForward
from ut.nn.stack import key_by_layer, key_by_step, key_by_step_and_layer, run_stack

B, L, D, H, F = 2, 7, 16, 4, 32


def moe_layers(n):
    torch.manual_seed(0)
    return nn.ModuleList(
        DecoderLayer(D, H, F, dropout=0.0, cross_attention=False,
                     transition=MoEFeedForward(D, F, n_experts=4, top_k=2, aux_loss_weight=0.1))
        for _ in range(n)
    )


def test_distinct_layers_once_equal_the_hand_loop_with_maps_and_moe_loss_per_layer():
    layers = moe_layers(3).train()
    x = torch.randn(B, L, D)
    tok = torch.tensor([[True] * L, [True] * 5 + [False] * 2])
    norm = nn.LayerNorm(D)
    out = run_stack(layers, x, final_norm=norm, token_mask=tok, need_weights=True)
    h, maps, aux = x, [], []
    for layer in layers:
        o = layer(h, token_mask=tok, need_weights=True)
        h, maps, aux = o.x, maps + [o.self_weights], aux + [o.aux_loss]
    torch.testing.assert_close(out.output, norm(h))
    assert len(out.self_attentions) == 3 and out.cross_attentions == [] and out.act is None
    for a, b in zip(out.self_attentions, maps):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out.moe_loss, aux[0] + aux[1] + aux[2])
    assert out.ponder_cost() is None and out.token_mask is tok


def test_one_shared_layer_T_times_with_step_input_equals_the_hand_loop():
    torch.manual_seed(1)
    layer = EncoderLayer(D, H, F, dropout=0.0).eval()
    x = torch.randn(B, L, D)
    signal = torch.randn(4, D)
    out = run_stack([layer], x, n_steps=4, step_input=lambda s, t: s + signal[t])
    h = x
    for t in range(4):
        h = layer(h + signal[t]).x
    torch.testing.assert_close(out.output, h)
    assert out.moe_loss is None and out.self_attentions == []  # no maps unless asked for


@pytest.mark.parametrize("scheme,expected", [
    (key_by_layer, {("dec", 0), ("dec", 1)}),
    (key_by_step, {("dec", 0), ("dec", 1), ("dec", 2)}),
    (key_by_step_and_layer, {("dec", t, j) for t in range(3) for j in (0, 1)}),
])
def test_cache_keys_follow_the_scheme(scheme, expected):
    layers = moe_layers(2).eval()
    cache = DecodingCache()
    n_steps = 1 if scheme is key_by_layer else 3
    if scheme is key_by_step:
        layers = layers[:1]
    run_stack(layers, torch.randn(B, 3, D), n_steps=n_steps, cache=cache, cache_key=scheme)
    assert {k[0] for k in cache.sites} == expected


def test_act_skipping_halted_positions_runs_the_real_layer_on_fewer_queries_and_changes_nothing():
    torch.manual_seed(2)
    layer = EncoderLayer(D, H, F, dropout=0.0).double()
    act = AdaptiveComputationTime(D, max_steps=5, halting_bias_init=0.0).double()
    with torch.no_grad():
        act.halting.weight.mul_(20.0)  # positions halt after different numbers of steps
    x = torch.randn(B, L, D, dtype=torch.float64)
    tok = torch.tensor([[True] * L, [True] * 5 + [False] * 2])
    seen = []
    layer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("queries")), with_kwargs=True)
    skip = run_stack([layer], x, act=act, skip_halted=True, token_mask=tok, step_input=lambda s, t: s + 0.1 * t)
    n_skip_calls = len(seen)
    full = run_stack([layer], x, act=act, skip_halted=False, token_mask=tok, step_input=lambda s, t: s + 0.1 * t)
    assert any(q is not None and q.shape[1] < L for q in seen[:n_skip_calls]), "the skipping path was not taken"
    assert all(q is None for q in seen[n_skip_calls:])
    torch.testing.assert_close(skip.output, full.output)
    torch.testing.assert_close(skip.act.ponder_time, full.act.ponder_time)
    torch.testing.assert_close(skip.ponder_cost(), full.act.ponder_cost(tok))
    # asking for the maps computes every position (one map per executed step)
    maps = run_stack([layer], x, act=act, skip_halted=True, token_mask=tok, need_weights=True)
    assert len(maps.self_attentions) == maps.act.n_steps
