"""The one multi-head attention: against torch's nn.MultiheadAttention, a float64 loop reference, path equality,
masks (True = may attend), fully-masked rows, and the KV cache."""

import math

import pytest
import torch
from torch import nn

from ut.nn.attention import (
    DecodingCache,
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    key_padding_mask,
)

B, L, S, D, H = 3, 7, 5, 16, 4


def loop_reference(mha: MultiHeadAttention, x, mem, allowed):
    """softmax(QK^T/sqrt(dh))V written head by head, query by query, in float64: an independent reference."""
    mem = x if mem is None else mem
    q = x @ mha.q_proj.weight.T + mha.q_proj.bias
    k = mem @ mha.k_proj.weight.T + mha.k_proj.bias
    v = mem @ mha.v_proj.weight.T + mha.v_proj.bias
    dh = D // H
    out = torch.zeros_like(q)
    for b in range(x.shape[0]):
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            for i in range(x.shape[1]):
                ok = allowed[b, i]
                if not ok.any():
                    continue
                s = (k[b, :, sl] @ q[b, i, sl]) / math.sqrt(dh)
                s = s.masked_fill(~ok, float("-inf"))
                out[b, i, sl] = torch.softmax(s, 0) @ v[b, :, sl]
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


def ours_and_torch():
    """Our attention and torch's nn.MultiheadAttention with the same weights (float64)."""
    mha = MultiHeadAttention(D, H).double()
    torch_mha = nn.MultiheadAttention(D, H, batch_first=True).double()
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        torch_mha.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        torch_mha.out_proj.load_state_dict(mha.out_proj.state_dict())
    return mha, torch_mha


def padded_mask(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_loop_reference_float64(need_weights, causal):
    mha = MultiHeadAttention(D, H).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    tok = padded_mask([7, 4, 6], L)
    allowed = tok[:, None, :].expand(B, L, L)
    if causal:
        allowed = allowed & causal_mask(L)[None]
    out = mha(x, mask=key_padding_mask(tok), causal=causal, need_weights=need_weights)
    ref = loop_reference(mha, x, None, allowed)
    torch.testing.assert_close(out.out, ref)
    assert (out.weights is not None) == need_weights


def test_cross_attention_matches_torch_multihead_attention():
    mha, torch_mha = ours_and_torch()
    x = torch.randn(B, L, D, dtype=torch.float64)
    mem = torch.randn(B, S, D, dtype=torch.float64)
    mem_tok = padded_mask([5, 2, 3], S)
    ours = mha(x, mem, mask=key_padding_mask(mem_tok), need_weights=True)
    theirs, theirs_w = torch_mha(x, mem, mem, key_padding_mask=~mem_tok, average_attn_weights=False)
    torch.testing.assert_close(ours.out, theirs)
    torch.testing.assert_close(ours.weights, theirs_w)


def test_causal_self_attention_matches_torch_with_attn_mask():
    mha, torch_mha = ours_and_torch()
    x = torch.randn(B, L, D, dtype=torch.float64)
    theirs, _ = torch_mha(x, x, x, attn_mask=~causal_mask(L))  # torch: True = NOT allowed
    torch.testing.assert_close(mha(x, causal=True).out, theirs)


def test_manual_path_keeps_float64_precision():
    """The manual path (attention maps, float64 references) softmaxes in at least float32, never below the input."""
    from ut.nn.attention import manual_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, H, L, D // H, generator=g, dtype=torch.float64) for _ in range(3))
    out, weights = manual_attention(q, k, v, causal_mask(L))
    ref = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(D // H)).masked_fill(~causal_mask(L), float("-inf")), -1)
    torch.testing.assert_close(weights, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, ref @ v, rtol=0, atol=1e-12)


def test_sdpa_path_equals_manual_path_and_weights_are_distributions():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, L, D)
    tok = padded_mask([7, 3, 5], L)
    for causal in (False, True):
        fast = mha(x, mask=key_padding_mask(tok), causal=causal)
        slow = mha(x, mask=key_padding_mask(tok), causal=causal, need_weights=True)
        torch.testing.assert_close(fast.out, slow.out, atol=1e-5, rtol=1e-5)
        w = slow.weights
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
        assert torch.all(w.masked_select(~key_padding_mask(tok).expand_as(w)) == 0), "padding got weight"
        if causal:
            assert torch.all(w.triu(1) == 0), "a query attended to a later key"


def test_rows_with_no_allowed_key_give_zeros_not_nan():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(2, L, D)
    tok = padded_mask([0, 4], L)  # first sequence is all padding
    for need_weights in (False, True):
        out = mha(x, mask=key_padding_mask(tok), need_weights=need_weights).out
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0], mha.out_proj.bias.expand(L, D))  # zero attention -> only the bias


def test_padding_keys_cannot_change_outputs():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, L, D)
    tok = padded_mask([7, 3, 5], L)
    out1 = mha(x, mask=key_padding_mask(tok)).out
    x2 = x.clone()
    x2[~tok] = torch.randn(int((~tok).sum()), D) * 10
    out2 = mha(x2, mask=key_padding_mask(tok)).out
    torch.testing.assert_close(out1[tok], out2[tok])


@pytest.mark.parametrize("chunks", [[1] * L, [3, 1, 2, 1]])
def test_kv_cache_incremental_equals_full_causal(chunks):
    mha = MultiHeadAttention(D, H).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    full = mha(x, causal=True).out
    cache, outs, start = KVCache(), [], 0
    for n in chunks:
        outs.append(mha(x[:, start : start + n], causal=True, cache=cache).out)
        start += n
    assert len(cache) == L
    torch.testing.assert_close(torch.cat(outs, 1), full)


def test_static_cross_attention_cache_is_computed_once_and_reordered():
    mha = MultiHeadAttention(D, H).double()
    mem = torch.randn(B, S, D, dtype=torch.float64)
    x = torch.randn(B, 2, D, dtype=torch.float64)
    cache = KVCache(static=True)
    a = mha(x[:, :1], mem, cache=cache).out
    b = mha(x[:, 1:], torch.zeros_like(mem), cache=cache).out  # memory ignored once cached
    torch.testing.assert_close(torch.cat([a, b], 1), mha(x, mem).out)
    dc = DecodingCache()
    dc.sites["x"] = cache
    dc.reorder_(torch.tensor([2, 2, 0]))
    torch.testing.assert_close(cache.k[0], cache.k[1])


def test_mask_helpers():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert combine_masks(None, None) is None
    m = combine_masks(torch.tensor([True, False]), None, torch.tensor([True, True]))
    assert m.tolist() == [True, False]


def test_bf16_autocast_runs_and_stays_close():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, L, D)
    ref = mha(x, causal=True).out
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, causal=True).out
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


def test_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("shape", [(2, 5, 12), (1, 1, 12), (3, 7, 2, 12)])
def test_split_and_merge_heads_are_the_einops_rearrangements(shape):
    from einops import rearrange

    from ut.nn.attention import HeadProjections

    heads = HeadProjections(12, 3)
    x = torch.randn(*shape)
    split = heads.split_heads(x)
    assert torch.equal(split, rearrange(x, "... l (h d) -> ... h l d", h=3))
    assert torch.equal(heads.merge_heads(split), x)
    strided = torch.randn(*shape[:-1], 24)[..., ::2]  # a non-contiguous input is reshaped, not refused
    assert torch.equal(heads.split_heads(strided), rearrange(strided, "... l (h d) -> ... h l d", h=3))
