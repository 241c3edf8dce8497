"""Counted model FLOPs and the machine's measured matmul peak (the two halves of model FLOPs utilisation).

Counting convention (the usual "model FLOPs" of MFU, e.g. PaLM appendix B, nanoGPT ``estimate_mfu``): only matrix
products, 2 FLOPs per multiply-add, the backward pass costs twice the forward (so a training step is 3x forward);
attention scores and weighted sums are counted in full even when causal (no credit for skipped blocks); biases,
norms, softmax, dropout, embedding lookups and the optimizer are not counted. Recomputation is not counted either:
MFU measures useful work, whatever the implementation spends.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EncoderDecoderShape:
    """Everything the FLOP count of a Transformer encoder-decoder step depends on."""

    d_model: int
    d_ff: int
    n_encoder_layers: int
    n_decoder_layers: int
    vocab_size: int
    batch_size: int
    src_len: int
    tgt_len: int


def encoder_layer_macs(d: int, f: int, s: int) -> int:
    """Multiply-adds of one encoder layer over one sequence of ``s`` tokens (forward)."""
    projections = 4 * s * d * d  # q, k, v, o
    attention = 2 * s * s * d  # Q K^T and P V, all heads together
    ffn = 2 * s * d * f
    return projections + attention + ffn


def decoder_layer_macs(d: int, f: int, t: int, s: int) -> int:
    """Multiply-adds of one decoder layer (self-attention, cross-attention over ``s`` memory positions, FFN)."""
    self_attention = 4 * t * d * d + 2 * t * t * d
    cross_attention = 2 * t * d * d + 2 * s * d * d + 2 * t * s * d  # q, o on targets; k, v on memory
    ffn = 2 * t * d * f
    return self_attention + cross_attention + ffn


def encoder_decoder_forward_flops(shape: EncoderDecoderShape) -> int:
    """Forward-pass model FLOPs of one batch (encoder + decoder + output projection)."""
    d, f = shape.d_model, shape.d_ff
    macs = (
        shape.n_encoder_layers * encoder_layer_macs(d, f, shape.src_len)
        + shape.n_decoder_layers * decoder_layer_macs(d, f, shape.tgt_len, shape.src_len)
        + shape.tgt_len * d * shape.vocab_size  # output softmax projection
    )
    return 2 * macs * shape.batch_size


def encoder_decoder_training_flops(shape: EncoderDecoderShape) -> int:
    """Model FLOPs of one training step (forward + backward = 3x forward)."""
    return 3 * encoder_decoder_forward_flops(shape)


@dataclass
class MatmulPeak:
    dtype: str
    gflops: float  # best of the sizes tried (median over repeats at each size)
    by_size: dict[int, float]


def measure_matmul_peak(dtype: torch.dtype, sizes=(1024, 2048), repeats: int = 5, device="cpu") -> MatmulPeak:
    """Measured square-matmul throughput (GFLOP/s): the machine's practical peak for ``dtype``.

    For each size n, an n x n x n product is timed ``repeats`` times after a warm-up; the median counts, and the
    best size is the peak (the largest sizes are not always best on a small cache).
    """
    by_size = {}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        torch.matmul(a, b, out=out)
        inner = max(1, int(2e9 // (2 * n**3)))  # ~2 GFLOP a sample
        samples = []
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(inner):
                torch.matmul(a, b, out=out)
            if device != "cpu":
                torch.cuda.synchronize()
            samples.append((time.perf_counter() - t0) / inner)
        by_size[n] = 2 * n**3 / statistics.median(samples) / 1e9
    return MatmulPeak(str(dtype).replace("torch.", ""), max(by_size.values()), by_size)
