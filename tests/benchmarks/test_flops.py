"""The FLOP count behind MFU, checked by hand and against torch's own FLOP counter on a real training step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flops import (
    EncoderDecoderShape,
    decoder_layer_macs,
    encoder_decoder_forward_flops,
    encoder_decoder_training_flops,
    encoder_layer_macs,
    measure_matmul_peak,
)
from benchmarks.peers import Seq2SeqDims, build_ours, make_batch


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
