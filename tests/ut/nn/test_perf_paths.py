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
