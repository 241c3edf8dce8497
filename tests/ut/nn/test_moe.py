"""Mixture of experts: top-k routing, capacity, balancing loss, gradients, padding."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


# ---------------------------------------------------------------------------------------------- causal priority
def changed_after(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = x.clone()
    y[:, k:] = torch.randn(y[:, k:].shape, generator=g, dtype=x.dtype)
    return y


@pytest.mark.parametrize("masked", [False, True])
def test_position_priority_is_causal_in_training(masked):
    """Outputs before position k do not move when the tokens at k.. change (train mode, capacity binding)."""
    worst_choice, dropped = 0.0, 0
    for seed in range(6):
        torch.manual_seed(seed)
        moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=1.25).double().train()
        choice = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=1.25, priority="choice").double().train()
        choice.load_state_dict(moe.state_dict())
        x = torch.randn(3, 16, D, dtype=torch.float64)
        mask = None
        if masked:
            mask = torch.ones(3, 16, dtype=torch.bool)
            mask[0, 12:] = False
            mask[2, :3] = False
        y = changed_after(x, 8, seed)
        out_x, out_y = moe(x, mask)[0], moe(y, mask)[0]
        torch.testing.assert_close(out_x[:, :8], out_y[:, :8], rtol=0, atol=0)
        dropped += int((~moe.last_routing["kept"]).sum())
        with torch.no_grad():
            worst_choice = max(worst_choice, float((choice(x, mask)[0][:, :8] - choice(y, mask)[0][:, :8]).abs().max()))
    assert dropped > 0  # the capacity did bind
    assert worst_choice > 1e-3  # GShard's choice priority is not causal: the test can tell


def test_a_later_first_choice_cannot_evict_an_earlier_second_choice():
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=0.5).double().train()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 1.0  # expert 0 scores x_0
        moe.router.weight[1, 1] = 1.0  # expert 1 scores x_1
    x = torch.zeros(1, 8, D, dtype=torch.float64)
    x[0, 0, 1], x[0, 0, 0] = 3.0, 2.0  # token 0: first choice expert 1, second choice expert 0
    x[0, 1:, 0] = 5.0  # every later token: first choice expert 0
    moe(x)
    cap = moe.capacity(8)  # ceil(0.5 * 8 * 2 / 4) = 2
    experts, kept = moe.last_routing["experts"], moe.last_routing["kept"]
    assert experts[0].tolist() == [1, 0] and bool(kept[0, 1])  # token 0's second choice keeps its slot
    assert kept[1:, 0].tolist() == [True] * (cap - 1) + [False] * (8 - cap)  # later first choices fill the rest

    gshard = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=0.5, priority="choice").double().train()
    gshard.load_state_dict(moe.state_dict())
    gshard(x)
    assert not bool(gshard.last_routing["kept"][0, 1])  # GShard: evicted by later tokens' first choices


def test_priority_is_validated():
    from ut.models import build_model

    with pytest.raises(ValueError, match="priority"):
        MoEFeedForward(D, F_, priority="random")
    for name in ("decoder_only", "universal_decoder_only"):
        with pytest.raises(ValueError, match="moe_priority='random' is not one of"):
            build_model(name, {"layer_pattern": "full-moe", "moe_priority": "random"})
        assert build_model(name, {"d_model": 16, "n_heads": 2, "d_ff": 32, "layer_pattern": "full-moe",
                                  "n_experts": 2}).layers[0].transition.priority == "position"  # the default


@pytest.mark.parametrize("name", ["decoder_only", "universal_decoder_only"])
def test_decoder_only_moe_is_causal_in_training(name):
    """``layer_pattern="locm-moe/redm"``, 4 experts, capacity 1.25, train mode with dropout 0: logits before
    position 8 are unchanged when the tokens from 8 on change (GShard's priority moved them by up to ~0.3)."""
    from ut.models import build_model

    for seed in range(4):
        torch.manual_seed(seed)
        cfg = dict(vocab_size=50, d_model=32, n_heads=4, d_ff=64, layer_pattern="locm-moe/redm", n_experts=4,
                   moe_capacity_factor=1.25, block_size=4, compression=2, dropout=0.0)
        if name == "universal_decoder_only":
            cfg["n_steps"] = 2
        m = build_model(name, cfg).train()
        x = torch.randint(5, 50, (2, 16))
        y = x.clone()
        y[:, 8:] = torch.randint(5, 50, (2, 8))
        torch.testing.assert_close(m(x).logits[:, :8], m(y).logits[:, :8], rtol=0, atol=1e-6)


def test_route_mask_routes_a_subset_and_the_capacity_still_counts_every_real_token():
    """A halting loop's running positions: the others get 0 and no slot; the training capacity counts the real
    tokens (``token_mask``), not the routed ones, so it does not move when fewer positions run."""
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2, capacity_factor=0.5).double().train()
    with torch.no_grad():
        moe.router.weight[0].zero_()
        moe.router.weight[0, 0] = 20.0  # every token's first choice: expert 0, which overflows
    x = torch.randn(2, 8, D, dtype=torch.float64)
    x[..., 0] = x[..., 0].abs() + 1.0
    real = torch.ones(2, 8, dtype=torch.bool)
    real[1, 6:] = False
    running = torch.rand(2, 8, generator=torch.Generator().manual_seed(0)) < 0.6
    out, _ = moe(x, real, route_mask=running)
    routed = running & real
    assert moe.last_routing["experts"].shape[0] == int(routed.sum())
    assert bool((out[~routed] == 0).all())
    cap = moe.capacity(int(real.sum()))  # 14 real tokens, not the routed ones
    experts, kept = moe.last_routing["experts"], moe.last_routing["kept"]
    assert all(int(((experts == e) & kept).sum()) <= cap for e in range(E))
    assert int(((experts == 0) & kept).sum()) == cap > moe.capacity(int(routed.sum()))  # expert 0 full at C(real)
    moe.eval()
    out, _ = moe(x, real, route_mask=running)
    flat = out.reshape(-1, D)[routed.reshape(-1)]
    torch.testing.assert_close(flat, reference(moe, x.reshape(-1, D)[routed.reshape(-1)][None])[0])



class MaskCounts(TorchDispatchMode):
    """Counts the reductions of one tensor (``aten.sum`` with it as input): ``int(token_mask.sum())`` is a host sync
    on an accelerator."""

    def __init__(self, watched: torch.Tensor):
        super().__init__()
        self.watched, self.count = watched, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket is torch.ops.aten.sum and args[0] is self.watched
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("training,with_route_mask,counts", [
    (True, False, 0),  # T-DMCA-MoE / a fixed-depth sparse UT in training: the capacity counts the routed tokens
    (True, True, 1),  # a halting loop in training: the capacity counts token_mask's real tokens
    (False, False, 0),  # evaluation: no capacity
    (False, True, 0),
])
def test_the_real_tokens_are_counted_only_for_the_training_capacity_under_a_route_mask(training, with_route_mask,
                                                                                        counts):
    moe = MoEFeedForward(D, F_, n_experts=E, top_k=2).train(training)
    x = torch.randn(2, 6, D)
    real = torch.ones(2, 6, dtype=torch.bool)
    real[1, 4:] = False
    running = torch.tensor([[True, False, True, True, False, True], [True, True, False, True, True, True]])
    probe = MaskCounts(real)
    with probe:
        moe(x, real, route_mask=running if with_route_mask else None)
    assert probe.count == counts
    with MaskCounts(real) as control:
        int(real.sum())
    assert control.count == 1  # the probe sees such a count
