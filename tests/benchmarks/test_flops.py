"""The FLOP count behind MFU, checked by hand and against torch's own FLOP counter on a real training step; the
Universal Transformer's active parameters and FLOPs per token, dense and sparse (mixture of experts), by hand and
against torch's counter on a real UT forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flops import (
    EncoderDecoderShape,
    active_parameters,
    decoder_layer_macs,
    encoder_decoder_forward_flops,
    encoder_decoder_training_flops,
    encoder_layer_macs,
    matching_dense_d_ff,
    measure_matmul_peak,
    transition_macs,
    universal_flops_per_token,
    universal_layer_macs,
)
from benchmarks.peers import Seq2SeqDims, build_ours, make_batch
from ut.models import build_model
from ut.models.universal import UniversalTransformerConfig


def test_layer_macs_by_hand():
    # encoder, d=2, f=3, s=5: q,k,v,o 4*5*2*2=80; QK^T and PV 2*5*5*2=100; ffn 2*5*2*3=60
    assert encoder_layer_macs(2, 3, 5) == 80 + 100 + 60
    # decoder, d=2, f=3, t=4, s=5: self 4*4*4=64 + 2*16*2=64; cross q,o 2*4*4=32, k,v 2*5*4=40, attn 2*4*5*2=80;
    # ffn 2*4*2*3=48
    assert decoder_layer_macs(2, 3, 4, 5) == 64 + 64 + 32 + 40 + 80 + 48


def test_training_flops_by_hand():
    shape = EncoderDecoderShape(d_model=2, d_ff=3, n_encoder_layers=1, n_decoder_layers=2, vocab_size=7,
                                batch_size=3, src_len=5, tgt_len=4)
    forward_macs = 240 + 2 * 328 + 4 * 2 * 7  # encoder + 2 decoder layers + output projection
    assert encoder_decoder_forward_flops(shape) == 2 * forward_macs * 3
    assert encoder_decoder_training_flops(shape) == 3 * encoder_decoder_forward_flops(shape)


def test_count_matches_torch_flop_counter_on_our_training_step():
    """torch counts every mm/bmm of the real forward + backward; ours is the same number. SDPA runs its math
    backend here, whose matmuls torch's counter sees (the CPU flash kernel is not in its table); causal
    attention is counted in full by both."""
    dims = Seq2SeqDims(d_model=32, n_heads=4, d_ff=48, n_encoder_layers=2, n_decoder_layers=1, vocab_size=50,
                       dropout=0.0, batch_size=2, src_len=12, tgt_len=7)
    contender = build_ours(dims)
    batch = make_batch(dims)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        contender.loss(batch).backward()
    shape = EncoderDecoderShape(dims.d_model, dims.d_ff, dims.n_encoder_layers, dims.n_decoder_layers,
                                dims.vocab_size, dims.batch_size, dims.src_len, dims.tgt_len)
    assert counter.get_total_flops() == encoder_decoder_training_flops(shape)


def test_matmul_peak_is_positive_and_reports_each_size():
    peak = measure_matmul_peak(torch.float32, sizes=(64, 128), repeats=1)
    assert peak.gflops == max(peak.by_size.values()) > 0
    assert set(peak.by_size) == {64, 128}


def test_cross_entropy_reference_is_what_the_rows_optimise():
    """The rows' loss is plain token cross-entropy (so contenders are compared on the same objective)."""
    dims = Seq2SeqDims(d_model=16, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, vocab_size=20,
                       dropout=0.0, batch_size=2, src_len=5, tgt_len=3)
    contender, batch = build_ours(dims), make_batch(dims)
    logits = contender.model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"]).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten())
    torch.testing.assert_close(contender.loss(batch), expected)


# ---------------------------------------------------------------------------------------------------- the UT
def ut_config(**kw) -> UniversalTransformerConfig:
    return UniversalTransformerConfig(**{"d_model": 2, "n_heads": 1, "d_ff": 3, "n_steps": 2, "transition": "moe",
                                         "n_experts": 4, "moe_top_k": 2, **kw})


def test_transition_macs_by_hand():
    # d=2, f=3: ffn 2*2*3=12; moe router 2*4=8 + 2 experts * 12 = 32; sepconv 3*2 + 2*3 + 5*3 + 3*2 = 33
    assert transition_macs("ffn", 2, 3) == 12
    assert transition_macs("moe", 2, 3, n_experts=4, top_k=2) == 32
    assert transition_macs("sepconv", 2, 3) == 33
    with pytest.raises(ValueError, match="unknown transition 'conv'"):
        transition_macs("conv", 2, 3)


def test_ut_layer_macs_and_flops_per_token_by_hand():
    # encoder, s=5: q,k,v,o 4*5*2*2=80; attention 2*5*5*2=100; moe 5*32=160
    assert universal_layer_macs(ut_config(), 5) == 80 + 100 + 160
    # decoder, t=4 over s=5: self 64 + 64; cross q,o 32, k,v 40, attention 80; moe 4*32=128; ACT halting 4*2=8
    assert universal_layer_macs(ut_config(recurrence="act"), 4, memory_len=5) == 64 + 64 + 32 + 40 + 80 + 128 + 8
    assert universal_flops_per_token(ut_config(), 5) == 2 * 2 * 340 / 5
    assert universal_flops_per_token(ut_config(recurrence="act"), 5, steps=1.5) == 2 * 1.5 * 350 / 5
    with pytest.raises(ValueError, match="recurrence='act': give the executed steps"):
        universal_flops_per_token(ut_config(recurrence="act"), 5)


def test_a_dense_ut_with_k_times_the_expert_width_costs_the_sparse_ut_less_its_router():
    sparse = ut_config(d_model=16, n_heads=2, d_ff=8, n_experts=8, moe_top_k=2)
    dense = sparse.replace(transition="ffn", d_ff=matching_dense_d_ff(sparse))
    assert dense.d_ff == 16
    for memory in (0, 7):
        gap = universal_flops_per_token(sparse, 6, memory) - universal_flops_per_token(dense, 6, memory)
        assert gap == pytest.approx(2 * sparse.n_steps * 16 * 8)  # 2 FLOPs x steps x the router's d E
    with pytest.raises(ValueError, match="needs a transition='moe' config"):
        matching_dense_d_ff(dense)


def test_active_parameters_by_hand():
    d, f, e, k = 16, 8, 8, 2
    cfg = {"src_vocab_size": 11, "tgt_vocab_size": 11, "d_model": d, "n_heads": 2, "d_ff": f, "n_experts": e,
           "moe_top_k": k, "transition": "moe"}
    sparse, dense = build_model("universal", cfg), build_model("universal", {**cfg, "transition": "ffn",
                                                                             "d_ff": k * f})
    counts, dense_counts = active_parameters(sparse), active_parameters(dense)
    unique = {id(p): p.numel() for p in sparse.parameters()}
    assert counts["total"] == sum(unique.values())
    expert = 2 * d * f + f + d  # w1, b1, w2, b2 of one expert
    assert counts["active"] == counts["total"] - 2 * (e - k) * expert  # encoder and decoder: k of E experts each
    assert dense_counts["active"] == dense_counts["total"]
    # per MoE layer the sparse side has the router d E and k - 1 more output biases d
    assert counts["active"] - dense_counts["active"] == 2 * (d * e + (k - 1) * d)


@pytest.mark.parametrize("transition,top_k", [("ffn", 1), ("moe", 4)])
def test_ut_count_matches_torch_flop_counter_on_a_forward(transition, top_k):
    """A fixed-depth UT encoder-decoder forward (evaluation, no padding). With k = E every expert takes every token,
    so the dispatch buffer holds exactly the active work and torch's count of its batched products is ours."""
    cfg = {"src_vocab_size": 11, "tgt_vocab_size": 11, "d_model": 16, "n_heads": 2, "d_ff": 8, "n_steps": 3,
           "transition": transition, "n_experts": 4, "moe_top_k": top_k, "dropout": 0.0}
    m = build_model("universal", cfg).eval()
    src, tgt = torch.randint(3, 11, (2, 6)), torch.randint(3, 11, (2, 5))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, sdpa_kernel([SDPBackend.MATH]):
        m(src, None, tgt)
    per_example = (6 * universal_flops_per_token(m.cfg, 6)  # the encoder's 6 source tokens
                   + 5 * universal_flops_per_token(m.cfg, 5, memory_len=6)  # the decoder's 5 target tokens
                   + 2 * 5 * 16 * 11)  # the output projection
    assert counter.get_total_flops() == 2 * per_example
