"""Every performance path gives the same outputs as the plain one it replaces (no timing assertions here)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ut.nn.dropout import apply_keep_mask, dropout, keep_mask, realised_drop_probability

# ------------------------------------------------------------------------------------------------------------
# fast dropout: the same function and gradient as F.dropout given the mask, and a true Bernoulli(1 - p) mask


def plain_dropout_with_mask(x, keep, p):
    """The textbook definition: x * mask / P(keep)."""
    return x * keep.to(x.dtype) / (1.0 - realised_drop_probability(p))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fast_dropout_equals_plain_dropout_given_the_mask(dtype):
    torch.manual_seed(0)
    x = torch.randn(7, 33, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    keep = keep_mask(x.shape, 0.3)
    y, y_ref = apply_keep_mask(x, keep, 0.3), plain_dropout_with_mask(x_ref, keep, 0.3)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_fast_dropout_output_is_zero_or_scaled_input_and_grad_follows_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 129, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    scale = 1.0 / (1.0 - realised_drop_probability(0.25))
    torch.testing.assert_close(y[kept], x.detach()[kept] * scale)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() * scale)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fast_dropout_keep_rate_is_bernoulli(p):
    torch.manual_seed(2)
    n = 400_000
    keep = keep_mask((n,), p)
    q = 1.0 - realised_drop_probability(p)
    assert abs(realised_drop_probability(p) - p) <= 1 / 65536
    # within 5 binomial standard deviations
    assert abs(keep.float().mean().item() - q) < 5 * math.sqrt(q * (1 - q) / n)
    # the four 16-bit slices of one 64-bit word are independent: neighbours agree as often as chance says
    agree = (keep[:-1] == keep[1:]).float().mean().item()
    assert abs(agree - (q * q + (1 - q) * (1 - q))) < 0.01


def test_fast_dropout_identity_in_eval_and_p0_and_reproducible_under_seed():
    x = torch.randn(5, 6)
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    torch.manual_seed(3)
    a = dropout(x, 0.1)
    torch.manual_seed(3)
    b = dropout(x, 0.1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        dropout(x, 1.0)


def test_fast_dropout_mean_matches_f_dropout_in_expectation():
    torch.manual_seed(4)
    x = torch.full((200_000,), 2.0)
    assert abs(dropout(x, 0.1).mean().item() - F.dropout(x, 0.1).mean().item()) < 0.02


# ------------------------------------------------------------------------------------------------------------
# attention dropout path: query chunks (checkpointed) == one manual softmax(QK^T)V; never the quadratic SDPA path


def _qkv(b=2, h=3, lq=37, lk=37, dh=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, dh, generator=g, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lq,lk", [(37, 37), (5, 37), (1, 37)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_chunked_attention_equals_manual_attention_outputs_and_grads(causal, lq, lk, with_mask):
    from ut.nn.attention import causal_mask, combine_masks, dropout_attention, key_padding_mask, manual_attention

    q, k, v = _qkv(lq=lq, lk=lk)
    mask = None
    if with_mask:
        tokens = torch.ones(2, lk, dtype=torch.bool)
        tokens[1, lk // 2 :] = False
        tokens[0, 0] = False  # with causal and a cache offset: some rows may see no key at all -> zeros
        mask = key_padding_mask(tokens)
    full = combine_masks(mask, causal_mask(lq, lk) if causal else None)
    ref = manual_attention(q, k, v, full)[0]
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    # max_scores small enough for chunks of 2 query rows: many chunks, checkpointed
    out = dropout_attention(q2, k2, v2, mask, causal, 0.0, max_scores=2 * 2 * 3 * lk)
    tol = dict(atol=1e-10, rtol=1e-10)  # float64 throughout: both paths are exact up to summation order
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn_like(ref)
    ref.backward(g)
    out.backward(g)
    for a, b in zip((q, k, v), (q2, k2, v2)):
        torch.testing.assert_close(b.grad, a.grad, **tol)


@pytest.mark.parametrize("causal,with_mask", [(True, False), (False, True), (True, True)])
def test_chunked_attention_with_dropout_backward_is_the_gradient_of_its_forward(causal, with_mask):
    """gradcheck with p > 0: the backward pass regenerates exactly the forward pass's dropout masks."""
    from ut.nn.attention import dropout_attention, key_padding_mask

    q, k, v = _qkv(b=1, h=2, lq=9, lk=9, dh=4)
    mask = None
    if with_mask:
        tokens = torch.ones(1, 9, dtype=torch.bool)
        tokens[0, 6:] = False
        mask = key_padding_mask(tokens)

    def seeded(q, k, v):  # a deterministic function of its inputs: same masks on every call
        torch.manual_seed(5)
        return dropout_attention(q, k, v, mask, causal, 0.3, max_scores=2 * 2 * 9)  # chunks of 2 queries

    no_dropout = dropout_attention(q, k, v, mask, causal, 0.0)
    assert not torch.allclose(seeded(q, k, v), no_dropout), "dropout should change the output"
    assert torch.autograd.gradcheck(seeded, (q, k, v), eps=1e-6, atol=1e-5)


def test_chunked_attention_dropout_is_unbiased():
    """Averaged over many dropout draws, attention with dropout approaches attention without it."""
    from ut.nn.attention import dropout_attention, manual_attention

    q, k, v = (t.detach() for t in _qkv(b=1, h=1, lq=6, lk=6))
    torch.manual_seed(6)
    mean = torch.stack([dropout_attention(q, k, v, None, True, 0.2, max_scores=12) for _ in range(4000)]).mean(0)
    from ut.nn.attention import causal_mask

    torch.testing.assert_close(mean, manual_attention(q, k, v, causal_mask(6))[0], atol=0.05, rtol=0)


def test_multihead_attention_with_dropout_uses_the_chunked_path_and_matches_eval_at_p_tiny():
    """Training with attention dropout goes through dropout_attention (not SDPA's math path); at p -> 0 it
    reproduces the eval (SDPA) output, and a memory cap smaller than one (Lq x Lk) matrix still runs."""
    from ut.nn import attend as attend_module  # the dispatcher that picks the back end
    from ut.nn.attention import MultiHeadAttention

    torch.manual_seed(7)
    mha = MultiHeadAttention(16, 4, dropout=1e-6).double()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    calls = []
    original = attend_module.dropout_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, max_scores=64, **kwargs)

    attend_module.dropout_attention = spy
    try:
        train_out = mha.train()(x, causal=True).out
    finally:
        attend_module.dropout_attention = original
    eval_out = mha.eval()(x, causal=True).out
    assert calls, "training with attention dropout must take the chunked dropout path"
    torch.testing.assert_close(train_out, eval_out, atol=1e-5, rtol=1e-5)  # p = 1e-6 still rescales by 1/(1-p)


# ------------------------------------------------------------------------------------------------------------
# mask elision: an all-True mask is dropped (SDPA without mask), a mask without empty rows skips the NaN guard


@pytest.mark.parametrize("mask_kind", ["all_true", "padding_no_empty_rows", "empty_row"])
@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention_mask_fast_paths_equal_the_manual_path(mask_kind, causal):
    from ut.nn.attention import MultiHeadAttention, elide_mask, key_padding_mask

    torch.manual_seed(8)
    mha = MultiHeadAttention(16, 4).double().eval()
    x = torch.randn(3, 11, 16, dtype=torch.float64)
    tokens = torch.ones(3, 11, dtype=torch.bool)
    if mask_kind != "all_true":
        tokens[1, 7:] = False
    if mask_kind == "empty_row":
        tokens[2, :] = False  # an all-padding row: outputs must be zeros, not NaN
    mask = key_padding_mask(tokens)
    assert (elide_mask(mask) is None) == (mask_kind == "all_true")
    fast = mha(x, mask=mask, causal=causal).out
    manual = mha(x, mask=mask, causal=causal, need_weights=True).out  # the plain softmax(QK^T)V path
    torch.testing.assert_close(fast, manual, atol=1e-6, rtol=1e-5)
    assert not fast.isnan().any()
    if mask_kind == "all_true":
        torch.testing.assert_close(fast, mha(x, mask=None, causal=causal).out)
