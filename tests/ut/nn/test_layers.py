"""Encoder / decoder layers against torch's own nn.TransformerEncoderLayer / nn.TransformerDecoderLayer (pre- and
post-norm), and the separable-convolution transition (causality, padding, decoding cache)."""

import pytest
import torch
from torch import nn

from ut.nn.attention import DecodingCache, key_padding_mask
from ut.nn.layers import ConvCache, DecoderLayer, EncoderLayer, SeparableConvTransition

B, L, S, D, H, F = 2, 6, 5, 16, 4, 32


def copy_attention(ours, theirs):
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.load_state_dict(ours.out_proj.state_dict())


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_encoder_layer_matches_torch(norm):
    ours = EncoderLayer(D, H, F, dropout=0.0, norm=norm).double()
    theirs = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, batch_first=True, norm_first=norm == "pre").double()
    copy_attention(ours.self_attn, theirs.self_attn)
    theirs.linear1.load_state_dict(ours.transition.w1.state_dict())
    theirs.linear2.load_state_dict(ours.transition.w2.state_dict())
    theirs.norm1.load_state_dict(ours.attn_res.norm.state_dict())
    theirs.norm2.load_state_dict(ours.ffn_res.norm.state_dict())
    x = torch.randn(B, L, D, dtype=torch.float64)
    tok = torch.tensor([[True] * L, [True] * 3 + [False] * 3])
    ref = theirs(x, src_key_padding_mask=~tok)
    out = ours(x, tok).x
    torch.testing.assert_close(out[tok], ref[tok])


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_decoder_layer_matches_torch(norm):
    ours = DecoderLayer(D, H, F, dropout=0.0, norm=norm).double()
    theirs = nn.TransformerDecoderLayer(D, H, F, dropout=0.0, batch_first=True, norm_first=norm == "pre").double()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.cross_attn, theirs.multihead_attn)
    theirs.linear1.load_state_dict(ours.transition.w1.state_dict())
    theirs.linear2.load_state_dict(ours.transition.w2.state_dict())
    theirs.norm1.load_state_dict(ours.self_res.norm.state_dict())
    theirs.norm2.load_state_dict(ours.cross_res.norm.state_dict())
    theirs.norm3.load_state_dict(ours.ffn_res.norm.state_dict())
    x = torch.randn(B, L, D, dtype=torch.float64)
    mem = torch.randn(B, S, D, dtype=torch.float64)
    mem_tok = torch.tensor([[True] * S, [True] * 2 + [False] * 3])
    ref = theirs(x, mem, tgt_mask=nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64),
                 memory_key_padding_mask=~mem_tok)
    out = ours(x, mem, memory_mask=key_padding_mask(mem_tok)).x
    torch.testing.assert_close(out, ref)


def test_pre_and_post_norm_differ_and_pre_norm_keeps_the_residual_stream():
    x = torch.randn(B, L, D)
    pre, post = EncoderLayer(D, H, F, 0.0, norm="pre"), EncoderLayer(D, H, F, 0.0, norm="post")
    post.load_state_dict(pre.state_dict())
    y_post = post(x).x
    # post-norm output is layer-normalised (zero mean, unit variance per position, LN affine is identity at init)
    torch.testing.assert_close(y_post.mean(-1), torch.zeros(B, L), atol=1e-5, rtol=0)
    assert not torch.allclose(pre(x).x, y_post)


def test_sepconv_causal_transition_is_causal_and_cache_equals_full():
    conv = SeparableConvTransition(D, F, causal=True).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    full = conv(x)
    x2 = x.clone()
    x2[:, 4:] += 1.0
    torch.testing.assert_close(conv(x2)[:, :4], full[:, :4])  # later inputs cannot change earlier outputs
    cache = ConvCache()
    steps = [conv(x[:, t : t + 1], None, cache) for t in range(L)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    cache.reorder_(torch.tensor([1, 1]))
    assert torch.equal(cache.history["conv1"][0], cache.history["conv1"][1])


def test_sepconv_same_padding_sees_both_sides_and_padding_is_zeroed():
    conv = SeparableConvTransition(D, F, causal=False).double()
    x = torch.randn(1, L, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 4] += 1.0
    assert not torch.allclose(conv(x2)[:, 3], conv(x)[:, 3]), "non-causal conv must see the right context"
    tok = torch.tensor([[True] * 4 + [False] * 2])
    x3 = x.clone()
    x3[:, 4:] = 100.0
    torch.testing.assert_close(conv(x3, tok)[:, :4], conv(x, tok)[:, :4])
    with pytest.raises(ValueError, match="causal"):
        conv(x, tok, ConvCache())


def test_decoder_layer_with_cache_equals_full_for_sepconv():
    layer = DecoderLayer(D, H, F, dropout=0.0, transition="sepconv").double().eval()
    x = torch.randn(B, L, D, dtype=torch.float64)
    mem = torch.randn(B, S, D, dtype=torch.float64)
    full = layer(x, mem).x
    cache = DecodingCache()
    inc = torch.cat([layer(x[:, t : t + 1], mem, cache=cache, cache_key=0).x for t in range(L)], 1)
    torch.testing.assert_close(inc, full)
    assert set(cache.sites) == {(0, "self"), (0, "cross"), (0, "conv")}


def test_decoder_layer_without_memory_is_an_error():
    with pytest.raises(ValueError, match="memory"):
        DecoderLayer(D, H, F)(torch.randn(1, 2, D))


# ---------------------------------------------------------------------------------------------------- query subsets
def some_queries(seed=0, la=3):
    """Distinct positions per row, not sorted, Long[B, la]."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(L, generator=g)[:la] for _ in range(B)])


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("mask_kind", ["none", "key_padding", "full"])
def test_encoder_layer_on_query_subset_equals_the_full_layer_there(norm, mask_kind):
    torch.manual_seed(0)
    layer = EncoderLayer(D, H, F, dropout=0.0, norm=norm).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    tok = torch.tensor([[True] * L, [True] * 4 + [False] * 2])
    kw = {}
    if mask_kind == "key_padding":
        kw = {"token_mask": tok}
    elif mask_kind == "full":  # a per-query mask: the subset must read its own rows of it
        attn = torch.rand(B, 1, L, L, generator=torch.Generator().manual_seed(1)) < 0.6
        kw = {"attn_mask": attn | torch.eye(L, dtype=torch.bool)}
    q = some_queries()
    full = layer(x, **kw).x
    sub = layer(x, queries=q, **kw).x
    rows = torch.arange(B)[:, None]
    torch.testing.assert_close(sub[rows, q], full[rows, q])
    others = torch.ones(B, L, dtype=torch.bool)
    others[rows, q] = False
    assert torch.equal(sub[others], x[others])  # positions not asked for are returned as they came


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("with_self_mask", [False, True])
def test_decoder_layer_on_query_subset_is_causal_and_equals_the_full_layer_there(norm, with_self_mask):
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, F, dropout=0.0, norm=norm).double()
    x, mem = torch.randn(B, L, D, dtype=torch.float64), torch.randn(B, S, D, dtype=torch.float64)
    mem_mask = key_padding_mask(torch.tensor([[True] * S, [True] * 2 + [False] * (S - 2)]))
    self_mask = key_padding_mask(torch.tensor([[True] * L, [False] * 2 + [True] * (L - 2)])) if with_self_mask else None
    q = some_queries(2)
    full = layer(x, mem, memory_mask=mem_mask, self_mask=self_mask).x
    sub = layer(x, mem, memory_mask=mem_mask, self_mask=self_mask, queries=q).x
    rows = torch.arange(B)[:, None]
    ok = torch.ones(B, L, dtype=torch.bool) if self_mask is None else self_mask[:, 0, 0]
    sel = ok[rows, q]  # queries that see at least one key
    torch.testing.assert_close(sub[rows, q][sel], full[rows, q][sel])
    # a query sees no later position: changing the positions after the last query leaves the subset's output
    x2 = x.clone()
    last = int(q.max())
    x2[:, last + 1:] = torch.randn_like(x2[:, last + 1:])
    torch.testing.assert_close(layer(x2, mem, memory_mask=mem_mask, self_mask=self_mask, queries=q).x[rows, q],
                               sub[rows, q])


def test_query_subset_needs_a_position_wise_transition_and_no_cache():
    q = some_queries()
    x = torch.randn(B, L, D)
    with pytest.raises(ValueError, match="position-wise"):
        EncoderLayer(D, H, F, transition="sepconv")(x, queries=q)
    with pytest.raises(ValueError, match="cache"):
        DecoderLayer(D, H, F, cross_attention=False)(x, cache=DecodingCache(), cache_key=0, queries=q)
