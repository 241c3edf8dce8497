"""UT-DMCA: shared-weight recurrence over local / memory-compressed layers; fixed steps and ACT; per-step caches."""

from __future__ import annotations

import pytest
import torch

from tests.ut.helpers import padded
from ut.decoding import beam_search, greedy_decode, left_align
from ut.models import build_model
from ut.models.universal_decoder_only import UniversalDecoderOnlyConfig, UniversalDecoderOnlyLM


def tiny(**kw) -> UniversalDecoderOnlyLM:
    cfg = dict(vocab_size=24, d_model=32, n_heads=4, d_ff=48, n_steps=3, layer_pattern="locm/redm-moe",
               dropout=0.0, block_size=4, compression=3, n_experts=4, moe_top_k=2, max_len=64)
    return UniversalDecoderOnlyLM(UniversalDecoderOnlyConfig(**{**cfg, **kw}))


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_weights_are_shared_across_steps():
    assert n_params(tiny(n_steps=1)) == n_params(tiny(n_steps=6))
    assert len(tiny().layers) == 2  # one shared layer per kind of the pattern


def test_registry_builds_it():
    m = build_model("universal_decoder_only", dict(vocab_size=16, d_model=16, n_heads=2, d_ff=16, n_steps=2,
                                                   layer_pattern="locm_prev/redm_cp", block_size=4))
    assert isinstance(m, UniversalDecoderOnlyLM)
    with pytest.raises(ValueError, match="unknown layer kind"):
        UniversalDecoderOnlyConfig(layer_pattern="locm/warp")


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_forward_backward_and_causality(recurrence):
    m = tiny(recurrence=recurrence).double()
    ids = torch.randint(5, 24, (2, 17))
    out = m(ids)
    assert out.logits.shape == (2, 17, 24) and out.aux_loss is not None
    if recurrence == "act":
        assert out.ponder_time["decoder"].shape == (2, 17)
    (out.logits.logsumexp(-1).mean() + out.aux_loss).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    other = ids.clone()
    other[:, 9:] = torch.randint(5, 24, (2, 8))
    torch.testing.assert_close(m(ids).logits[:, :9], m(other).logits[:, :9], rtol=0, atol=1e-10)


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_cached_decoding_equals_full_forward(recurrence):
    # halting bias -1: p starts near 0.3, so positions halt after different numbers of steps
    m = tiny(recurrence=recurrence, act_halting_bias_init=-1.0, act_max_steps=6).double().eval()
    prefixes = [[5, 6, 7, 8, 9, 10, 11, 3], [9, 3], [10, 11, 12, 13, 3]]
    cont = torch.tensor([[12, 13, 14, 5, 6, 7, 8], [6, 7, 8, 9, 10, 11, 12], [4, 5, 6, 7, 8, 9, 10]])
    ids, mask = padded(prefixes)
    state, tokens = m.start_decoding({"input_ids": ids, "attention_mask": mask})
    left_ids, left_mask = left_align(ids, mask, 0)
    updates = None
    for t in range(cont.shape[1]):
        step_logits = m.decode_step(tokens, state)
        seq = torch.cat([left_ids, cont[:, :t]], dim=1)
        full = m(seq, torch.cat([left_mask, torch.ones(3, t, dtype=torch.bool)], dim=1))
        torch.testing.assert_close(step_logits, full.logits[:, -1], rtol=1e-9, atol=1e-9)
        tokens = cont[:, t]
        updates = full.n_updates.get("decoder")
    if recurrence == "act":  # the test exercised positions halting at different steps (the frozen-state fill)
        assert len(set(updates[torch.cat([left_mask, torch.ones(3, 6, dtype=torch.bool)], 1)].tolist())) > 1
        assert any(key[0][0] == "dec" and key[0][1] >= 3 for key in state.cache.sites if isinstance(key[0], tuple))


def test_greedy_equals_beam_one():
    m = tiny(recurrence="act").eval()
    ids, mask = padded([[5, 6, 7, 3], [8, 3]])
    batch = {"input_ids": ids, "attention_mask": mask}
    g = greedy_decode(m, batch, max_len=5, eos_id=2)
    b = beam_search(m, batch, beam_size=1, alpha=0.6, max_len=5, eos_id=2)
    assert torch.equal(b.sequences[:, 0, : g.sequences.shape[1]], g.sequences)
    beam = beam_search(m, batch, beam_size=3, max_len=4, eos_id=2)  # reorder_ through every step cache
    assert beam.sequences.shape[:2] == (2, 3)


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_moe_and_ponder_losses_are_kept_apart(recurrence):
    torch.manual_seed(4)
    m = tiny(recurrence=recurrence, act_halting_bias_init=0.0).double()
    moe_terms = []  # every application of the MoE transition returns (out, its weighted balancing loss)
    m.layers[1].transition.register_forward_hook(lambda mod, args, out: moe_terms.append(out[1]))
    ids = torch.randint(5, 24, (2, 13))
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[1, 10:] = False
    out = m(ids.masked_fill(~mask, 0), mask)
    assert len(moe_terms) == (3 if recurrence == "fixed" else int(out.n_updates["decoder"].max()))
    torch.testing.assert_close(out.moe_loss, sum(moe_terms))
    if recurrence == "fixed":
        assert out.ponder_loss is None
        torch.testing.assert_close(out.aux_loss, out.moe_loss)
    else:
        ponder = (out.ponder_time["decoder"] * mask).sum() / mask.sum()
        torch.testing.assert_close(out.ponder_loss, 0.01 * ponder)
        torch.testing.assert_close(out.aux_loss, out.moe_loss + out.ponder_loss)
