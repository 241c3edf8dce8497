"""Counted model FLOPs and the machine's measured matmul peak (the two halves of model FLOPs utilisation); the
active parameters and FLOPs per token of a Universal Transformer config, dense or sparse (mixture of experts), to
compare the two at equal compute (the second section).

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


# ----------------------------------------------------------------------------------------------------------------
# Universal Transformers, dense and sparse: active parameters and FLOPs per token, to compare them at equal compute
#
# The same convention as above (matrix products, 2 FLOPs per multiply-add, attention counted in full). A mixture of
# experts counts its ACTIVE work: the router's d * E multiply-adds and k experts per token (the assignments that
# training drops over capacity, which compute less, are not credited; evaluation drops none). A halting loop's
# halting unit (one d-wide product per position and step) is counted per position. Under a halting loop the caller
# gives the executed steps (e.g. the mean of ``ModelOutput.n_updates`` over the real positions); every cost of a
# step is then charged per executed position-step, which is ``act_skip_halted``'s compute for the queries and the
# transition (the keys and values of halted positions, re-projected at every step the batch runs, are charged to
# the running positions only: an undercount where many positions halted early).


def transition_macs(kind: str, d_model: int, d_ff: int, n_experts: int = 1, top_k: int = 1) -> int:
    """Multiply-adds of one application of a UT transition at ONE token (forward): ``"ffn"`` 2 d f; ``"moe"``
    (:class:`ut.nn.moe.MoEFeedForward`, experts of width ``d_ff``) the router d E plus k experts, d E + 2 k d f;
    ``"sepconv"`` (kernels 3 and 5, ut/nn/layers.py) 3 d + d f + 5 f + f d."""
    d, f = d_model, d_ff
    if kind == "ffn":
        return 2 * d * f
    if kind == "moe":
        return d * n_experts + top_k * 2 * d * f
    if kind == "sepconv":
        return 3 * d + d * f + 5 * f + f * d
    raise ValueError(f"unknown transition {kind!r}; expected 'ffn', 'moe' or 'sepconv'")


def _config_transition_macs(cfg) -> int:
    return transition_macs(cfg.transition, cfg.d_model, cfg.d_ff, getattr(cfg, "n_experts", 1),
                           getattr(cfg, "moe_top_k", 1))


def universal_layer_macs(cfg, length: int, memory_len: int = 0) -> int:
    """Multiply-adds of ONE application of a UT config's shared layer over one sequence of ``length`` tokens
    (forward): self-attention (q, k, v, o; scores and weighted sum in full), cross-attention over ``memory_len``
    positions when > 0 (the decoder: q, o on the targets, k, v on the memory, projected at every step as the full
    pass does), the transition (:func:`transition_macs`) and, under a halting loop, the halting unit."""
    d = cfg.d_model
    macs = 4 * length * d * d + 2 * length * length * d
    if memory_len:
        macs += 2 * length * d * d + 2 * memory_len * d * d + 2 * length * memory_len * d
    macs += length * _config_transition_macs(cfg)
    if getattr(cfg, "recurrence", "fixed") != "fixed":
        macs += length * d
    return macs


def universal_flops_per_token(cfg, length: int, memory_len: int = 0, steps: float | None = None) -> float:
    """Forward model FLOPs per token of one UT stack over ``length`` tokens (the encoder; the decoder with
    ``memory_len`` > 0) at ``steps`` executed steps per position: ``2 * steps * universal_layer_macs / length``.
    ``steps`` None: ``n_steps`` at fixed depth; a halting model needs its executed steps (see above)."""
    if steps is None:
        if getattr(cfg, "recurrence", "fixed") != "fixed":
            raise ValueError(f"recurrence={cfg.recurrence!r}: give the executed steps (e.g. the mean of "
                             "ModelOutput.n_updates over the real positions)")
        steps = cfg.n_steps
    return 2 * steps * universal_layer_macs(cfg, length, memory_len) / length


def active_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameters of a built model: ``total`` (tied weights once) and ``active`` per token, where each
    :class:`ut.nn.moe.MoEFeedForward`'s experts count k / E of their weights (its router in full); a dense model's
    two are equal. Embeddings are included (a lookup; they are "active" in the parameter sense only)."""
    from ut.nn.moe import MoEFeedForward

    seen: set[int] = set()
    total = active = 0.0
    for module in model.modules():
        share = module.top_k / module.n_experts if isinstance(module, MoEFeedForward) else 1.0
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            active += p.numel() * (share if name in ("w1", "b1", "w2", "b2") else 1.0)
    return {"total": int(total), "active": round(active)}


def matching_dense_d_ff(cfg) -> int:
    """The dense ``d_ff`` whose transition costs a sparse config's k experts of width ``d_ff``: ``moe_top_k *
    d_ff`` (the router's d E multiply-adds per token stay on the sparse side: :func:`transition_macs`)."""
    if cfg.transition != "moe":
        raise ValueError(f"matching_dense_d_ff needs a transition='moe' config, got transition={cfg.transition!r}")
    return cfg.moe_top_k * cfg.d_ff
