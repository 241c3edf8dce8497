"""Mixture of experts: top-k routing, capacity, balancing loss, gradients, padding."""

from __future__ import annotations

import math

import pytest
import torch

from ut.nn.moe import MoEFeedForward

D, F_, E = 8, 16, 4


def expert(moe: MoEFeedForward, e: int, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ moe.w1[e] + moe.b1[e, 0]) @ moe.w2[e] + moe.b2[e, 0]


def reference(moe: MoEFeedForward, x: torch.Tensor, kept: torch.Tensor | None = None) -> torch.Tensor:
    """Loop over tokens: sum over the token's top-k experts of softmax(top-k logits) * expert(x)."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(flat)
    for i, tok in enumerate(flat):
        logits = moe.router(tok)
        top, idx = logits.topk(moe.top_k)
        gates = torch.softmax(top, -1)
        for s in range(moe.top_k):
            if kept is None or kept[i, s]:
                out[i] += gates[s] * expert(moe, int(idx[s]), tok)
    return out.view_as(x)


@pytest.mark.parametrize("top_k", [1, 2])
def test_routing_uses_the_top_k_experts(top_k):
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=top_k).double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    out, aux = moe(x)
    torch.testing.assert_close(out, reference(moe, x), rtol=1e-10, atol=1e-10)
    routed = moe.last_routing["experts"]
    assert routed.shape == (10, top_k)
    assert torch.equal(routed, moe.router(x.reshape(-1, D)).topk(top_k).indices)
    assert bool(moe.last_routing["kept"].all())  # evaluation drops nothing


def test_capacity_is_respected_and_overflow_dropped():
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=1.0).double().train()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 5.0  # tokens with x_0 > 0 crowd onto expert 0
    x = torch.randn(1, 24, D, dtype=torch.float64)
    x[0, :, 0] = x[0, :, 0].abs() + 0.5
    out, _ = moe(x)
    cap = math.ceil(1.0 * 24 * 2 / E)
    experts, kept = moe.last_routing["experts"], moe.last_routing["kept"]
    for e in range(E):
        assert int(((experts == e) & kept).sum()) <= cap
    assert int(((experts == 0) & kept).sum()) == cap  # expert 0 is full ...
    first_choice_kept = kept[:, 0] & (experts[:, 0] == 0)
    assert bool(first_choice_kept[:cap].all()) and not bool(first_choice_kept[cap:].any())  # ... in token order
    torch.testing.assert_close(out, reference(moe, x, kept), rtol=1e-10, atol=1e-10)


def test_balancing_loss_is_minimal_for_a_uniform_router():
    x = torch.randn(3, 7, D)
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, aux_loss_weight=1.0, balance="importance")
    with torch.no_grad():
        moe.router.weight.zero_()  # every expert equally likely for every token
    _, uniform = moe(x)
    assert float(uniform.detach()) == pytest.approx(0.0, abs=1e-7)
    for seed in range(5):
        torch.manual_seed(seed)
        torch.nn.init.normal_(moe.router.weight)
        assert float(moe(x)[1].detach()) > float(uniform.detach()) + 1e-4

    switch = MoEFeedForward(D, F_, n_experts=E, top_k=2, aux_loss_weight=1.0, balance="switch")
    with torch.no_grad():
        switch.router.weight.zero_()
    assert float(switch(x)[1].detach()) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        switch.router.weight[0] = 3.0 * x.reshape(-1, D).mean(0)  # skewed towards expert 0
    assert float(switch(x)[1].detach()) > 1.0


def test_aux_loss_is_weighted_and_has_a_gradient_to_the_router():
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, aux_loss_weight=0.5)
    _, aux = moe(torch.randn(2, 6, D))
    aux.backward()
    assert moe.router.weight.grad is not None and bool(moe.router.weight.grad.abs().sum() > 0)


def test_gradients_reach_every_expert_that_received_tokens():
    moe = MoEFeedForward(D, F_, n_experts=6, top_k=1, capacity_factor=4.0).train()
    with torch.no_grad():
        moe.router.weight[5] = -100.0 * moe.router.weight[5].sign()  # expert 5 loses (almost) every token
    x = torch.randn(2, 9, D)
    out, aux = moe(x)
    (out.square().sum() + aux).backward()
    used = set(moe.last_routing["experts"][moe.last_routing["kept"]].tolist())
    assert used, "no token routed"
    for e in range(6):
        got = bool(moe.w1.grad[e].abs().sum() > 0) and bool(moe.w2.grad[e].abs().sum() > 0)
        assert got == (e in used), (e, used)
    assert moe.router.weight.grad.abs().sum() > 0


def test_padding_is_not_routed():
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2).eval()
    x = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    out, _ = moe(x, mask)
    assert bool((out[1, 4:] == 0).all())
    torch.testing.assert_close(out[0], moe(x[:1])[0][0])
    torch.testing.assert_close(out[1, :4], moe(x[1:, :4])[0][0])
