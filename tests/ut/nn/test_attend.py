"""attend() and its three back ends against a float64 loop reference; the empty-row guard; the softmax dtype rule;
which back end attend() picks; gradients of the chunked back end."""

from __future__ import annotations

import math

import pytest
import torch

import ut.nn.attend as attend_module
from ut.nn.attend import attend, manual_attention, sdpa_attention
from ut.nn.chunked_dropout_attention import dropout_attention
from ut.nn.masks import causal_mask, masked_softmax, softmax_dtype

B, H, DH = 2, 3, 4


def reference(q, k, v, allowed):
    """softmax(q k^T / sqrt(Dh)) v over the allowed keys, one query at a time in float64; zeros where none is."""
    out = torch.zeros(q.shape[:3] + (v.shape[-1],), dtype=torch.float64)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for i in range(q.shape[2]):
                ok = allowed[b, h, i]
                if not ok.any():
                    continue
                s = (k[b, h, ok].double() @ q[b, h, i].double()) / math.sqrt(q.shape[-1])
                out[b, h, i] = torch.softmax(s, 0) @ v[b, h, ok].double()
    return out


def allowed_keys(mask_kind: str, causal: bool, lq: int, lk: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(the mask given to attention, Bool[B, H, Lq, Lk] the keys each query may see, built by loops)."""
    mask = None
    allowed = torch.ones(B, H, lq, lk, dtype=torch.bool)
    if mask_kind == "padding":  # row 1 has its last keys padded
        real = torch.ones(B, lk, dtype=torch.bool)
        real[1, lk - 3 :] = False
        mask = real[:, None, None, :]
        allowed &= mask
    elif mask_kind == "empty_rows":  # a per-query mask where some queries see no key at all
        g = torch.Generator().manual_seed(1)
        mask = torch.rand(B, 1, lq, lk, generator=g) < 0.5
        mask[0, 0, 0] = False
        mask[1, 0, lq - 1] = False
        allowed &= mask
    if causal:
        for i in range(lq):
            allowed[:, :, i, i + lk - lq + 1 :] = False  # the queries are the last Lq of the Lk positions
    return mask, allowed


def qkv(lq, lk, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, DH, generator=g, dtype=dtype, requires_grad=True) for n in (lq, lk, lk)]


BACKENDS = {
    "sdpa": lambda q, k, v, mask, causal: sdpa_attention(q, k, v, mask, causal and q.shape[2] > 1, 0.0),
    "manual": lambda q, k, v, mask, causal: attend(q, k, v, mask, causal=causal, need_weights=True)[0],
    # many chunks of 2 query rows (the cap counts B * H * rows * Lk score elements)
    "chunked": lambda q, k, v, mask, causal: dropout_attention(q, k, v, mask, causal and q.shape[2] > 1, 0.0,
                                                               max_scores=2 * B * H * k.shape[2]),
    "attend": lambda q, k, v, mask, causal: attend(q, k, v, mask, causal=causal)[0],
}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("mask_kind", ["none", "padding", "empty_rows"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lq,lk", [(9, 9), (4, 9), (1, 9)])
def test_every_backend_equals_the_float64_reference(backend, mask_kind, causal, lq, lk):
    q, k, v = qkv(lq, lk)
    mask, allowed = allowed_keys(mask_kind, causal, lq, lk)
    out = BACKENDS[backend](q, k, v, mask, causal)
    torch.testing.assert_close(out, reference(q, k, v, allowed), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_gradients_of_every_backend_equal_the_reference_and_empty_rows_get_none(backend):
    q, k, v = qkv(7, 7, seed=2)
    mask, allowed = allowed_keys("empty_rows", True, 7, 7)
    g = torch.randn(B, H, 7, DH, dtype=torch.float64)
    grads = []
    for fn in (lambda: BACKENDS[backend](q, k, v, mask, True), lambda: reference(q, k, v, allowed)):
        for t in (q, k, v):
            t.grad = None
        (fn() * g).sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    empty = ~allowed.any(-1)  # (B, H, Lq)
    assert empty.any() and bool((grads[0][0][empty] == 0).all()), "a query that sees nothing got a gradient"


def test_rows_with_no_allowed_key_give_zeros_and_zero_weights_not_nan():
    q, k, v = (t.detach().float() for t in qkv(5, 6))
    mask = torch.ones(B, 1, 5, 6, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of sequence 0 sees no key
    mask[1] = False  # sequence 1 sees nothing at all
    for need_weights in (False, True):
        out, weights = attend(q, k, v, mask, need_weights=need_weights)
        assert torch.isfinite(out).all()
        assert bool((out[0, :, 2] == 0).all()) and bool((out[1] == 0).all())
        assert bool((out[0, :, :2] != 0).any())
        if need_weights:
            assert bool((weights[0, :, 2] == 0).all()) and bool((weights[1] == 0).all())
            torch.testing.assert_close(weights[0, :, 3].sum(-1), torch.ones(H))
    out = dropout_attention(q, k, v, mask, False, 0.0)
    assert bool((out[1] == 0).all()) and torch.isfinite(out).all()


def test_softmax_dtype_rule_is_at_least_float32_never_below_the_input():
    assert softmax_dtype(torch.bfloat16) == torch.float32
    assert softmax_dtype(torch.float16) == torch.float32
    assert softmax_dtype(torch.float32) == torch.float32
    assert softmax_dtype(torch.float64) == torch.float64
    g = torch.Generator().manual_seed(3)
    scores = (torch.randn(2, 3, 5, 64, generator=g) * 4).bfloat16()
    mask = torch.rand(2, 1, 5, 64, generator=g) < 0.7
    want = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), -1).bfloat16()  # softmax in float32
    assert torch.equal(masked_softmax(scores, mask, torch.bfloat16), want)
    assert torch.equal(masked_softmax(scores.clone(), mask, torch.bfloat16, inplace=True), want)
    s64 = torch.randn(3, 7, dtype=torch.float64, generator=g)
    torch.testing.assert_close(masked_softmax(s64, None, torch.float64), torch.softmax(s64, -1), rtol=0, atol=1e-15)


def test_manual_and_chunked_backends_agree_in_bfloat16():
    """The same softmax dtype rule in both back ends that softmax themselves: their bf16 outputs agree closely."""
    q, k, v = (t.detach().bfloat16() for t in qkv(16, 16, seed=4))
    manual, _ = manual_attention(q, k, v, causal_mask(16))
    chunked = dropout_attention(q, k, v, None, True, 0.0, max_scores=4 * B * H * 16)
    torch.testing.assert_close(chunked.float(), manual.float(), atol=2e-2, rtol=2e-2)
    ref = reference(q, k, v, causal_mask(16).expand(B, H, 16, 16))
    torch.testing.assert_close(manual.double(), ref, atol=2e-2, rtol=2e-2)


def test_attend_rejects_a_mask_of_the_wrong_length_even_when_it_allows_everything():
    q, k, v = qkv(4, 6)
    with pytest.raises(ValueError, match="not broadcastable"):
        attend(q, k, v, torch.ones(B, 1, 1, 5, dtype=torch.bool))


def test_an_all_true_mask_gives_the_same_as_no_mask():
    q, k, v = qkv(6, 6)
    for causal in (False, True):
        torch.testing.assert_close(attend(q, k, v, torch.ones(B, 1, 1, 6, dtype=torch.bool), causal=causal)[0],
                                   attend(q, k, v, None, causal=causal)[0], rtol=0, atol=0)


@pytest.mark.parametrize("need_weights,dropout_p,chunk_dropout,want", [
    (False, 0.0, True, "sdpa"),
    (True, 0.0, True, "manual"),
    (True, 0.1, True, "manual"),
    (False, 0.1, True, "chunked"),
    (False, 0.1, False, "sdpa"),
])
def test_attend_picks_the_backend(monkeypatch, need_weights, dropout_p, chunk_dropout, want):
    called = []
    for name, attr in (("sdpa", "sdpa_attention"), ("manual", "manual_attention"), ("chunked", "dropout_attention")):
        real = getattr(attend_module, attr)
        monkeypatch.setattr(attend_module, attr, lambda *a, _n=name, _r=real, **kw: called.append(_n) or _r(*a, **kw))
    q, k, v = qkv(5, 5)
    out, weights = attend(q, k, v, causal=True, dropout_p=dropout_p, need_weights=need_weights,
                          chunk_dropout=chunk_dropout)
    assert called == [want]
    assert (weights is not None) == need_weights
    assert out.shape == (B, H, 5, DH)
