"""Rows: training-step throughput against the peers, MFU, bf16 autocast, torch.compile.

- ``peer_rows``: tokens/s (source + target tokens, forward + backward + Adam) of ours, ``torch.nn.Transformer``,
  HF BART and x-transformers at equal dims (:mod:`benchmarks.peers`), interleaved in one process; ratios ours /
  peer; MFU of each (counted model FLOPs, :mod:`benchmarks.flops`, over the measured fp32 matmul peak).
- ``bf16_row``: ours under ``torch.autocast(bfloat16)`` vs fp32 (interleaved), MFU against the bf16 peak, and a
  short loss-curve check: the same initial weights trained on the same batches in fp32 and in bf16.
- ``compile_row``: ``torch.compile(model)`` vs eager (compile time reported separately).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from benchmarks.flops import EncoderDecoderShape, encoder_decoder_training_flops
from benchmarks.peers import BUILDERS, Seq2SeqDims, build_ours, make_batch, missing_package, training_step_fn
from benchmarks.timing import time_interleaved, time_once
from benchmarks.xtransformers_peers import n_parameters


def shape_of(dims: Seq2SeqDims) -> EncoderDecoderShape:
    return EncoderDecoderShape(dims.d_model, dims.d_ff, dims.n_encoder_layers, dims.n_decoder_layers,
                               dims.vocab_size, dims.batch_size, dims.src_len, dims.tgt_len)


def peer_rows(dims: Seq2SeqDims, peak_fp32_gflops: float, repeats: int, warmup: int = 2,
              contenders: tuple[str, ...] = tuple(BUILDERS)) -> dict:
    """One configuration: every contender's tokens/s, MFU and parameter count, and ours / peer ratios. A peer
    whose package is missing is left out, its reason under ``skipped``."""
    torch.manual_seed(0)
    batch = make_batch(dims)
    skipped = {name: why for name in contenders if (why := missing_package(name))}
    built = {name: BUILDERS[name](dims) for name in contenders if name not in skipped}
    steps = {name: training_step_fn(c, batch) for name, c in built.items()}
    timings = time_interleaved(steps, repeats=repeats, warmup=warmup)
    flops = encoder_decoder_training_flops(shape_of(dims))
    result = {"config": dims.label(), "dims": dims.__dict__.copy(), "flops_per_step": flops, "contenders": {},
              "skipped": skipped}
    for name, t in timings.items():
        result["contenders"][name] = {
            "seconds_median": t.median, "seconds_all": t.seconds, "spread": t.spread,
            "tokens_per_s": dims.tokens_per_batch / t.median,
            "mfu_fp32": flops / t.median / (peak_fp32_gflops * 1e9) if peak_fp32_gflops else None,
            "parameters": n_parameters(built[name].model),
        }
    ours = result["contenders"]["ours"]["tokens_per_s"]
    result["ratios"] = {f"ours / {name}": ours / c["tokens_per_s"]
                        for name, c in result["contenders"].items() if name != "ours"}
    return result


def loss_curves(dims: Seq2SeqDims, steps: int, n_batches: int = 4, lr: float = 1e-3) -> dict[str, list[float]]:
    """fp32 and bf16-autocast training from the same initial weights on the same cycle of batches."""
    torch.manual_seed(0)
    initial = build_ours(dims).model.state_dict()
    batches = [make_batch(dims, seed=i) for i in range(n_batches)]
    curves = {}
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        contender = build_ours(dims)
        contender.model.load_state_dict(copy.deepcopy(initial))
        torch.manual_seed(1)  # same dropout masks' seed for both runs
        opt = torch.optim.Adam(contender.model.parameters(), lr=lr)
        contender.model.train()
        losses = []
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                loss = contender.loss(batches[i % n_batches])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[label] = losses
    return curves


def bf16_row(dims: Seq2SeqDims, peaks: dict[str, float], repeats: int, warmup: int = 2) -> dict:
    """bf16 autocast vs fp32 throughput of ours (same weights, interleaved) and the MFU of each."""
    torch.manual_seed(0)
    batch = make_batch(dims)
    fp32, bf16 = build_ours(dims), build_ours(dims)
    bf16.model.load_state_dict(fp32.model.state_dict())
    timings = time_interleaved({"fp32": training_step_fn(fp32, batch),
                                "bf16": training_step_fn(bf16, batch, autocast_dtype=torch.bfloat16)},
                               repeats=repeats, warmup=warmup)
    flops = encoder_decoder_training_flops(shape_of(dims))
    return {
        "config": dims.label(),
        "tokens_per_s": {k: dims.tokens_per_batch / t.median for k, t in timings.items()},
        "speedup_bf16_over_fp32": timings["fp32"].median / timings["bf16"].median,
        "mfu": {"fp32": flops / timings["fp32"].median / (peaks["float32"] * 1e9),
                "bf16": flops / timings["bf16"].median / (peaks["bfloat16"] * 1e9)},
    }


def loss_curve_row(dims: Seq2SeqDims, steps: int) -> dict:
    """The short-run check: fp32 and bf16 loss curves from the same start; final losses vs the fp32 noise."""
    curves = loss_curves(dims, steps)
    tail = max(2, steps // 4)
    end_fp32, end_bf16 = statistics.mean(curves["fp32"][-tail:]), statistics.mean(curves["bf16"][-tail:])
    noise = statistics.pstdev(curves["fp32"][-tail:])  # step-to-step variation of the fp32 curve at its end
    per_step = [abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"])]
    return {
        "config": dims.label(), "steps": steps, "loss_curves": curves,
        "start": curves["fp32"][0], "end_fp32": end_fp32, "end_bf16": end_bf16,
        "end_abs_difference": abs(end_fp32 - end_bf16), "fp32_end_noise": noise,
        "max_step_abs_difference": max(per_step),
        "within_noise": abs(end_fp32 - end_bf16) <= max(noise, 0.01 * abs(end_fp32)),
    }


def compile_row(dims: Seq2SeqDims, repeats: int, warmup: int = 2) -> dict:
    """torch.compile vs eager for ours; compile time (first compiled step) separately."""
    torch.manual_seed(0)
    batch = make_batch(dims)
    eager, compiled = build_ours(dims), build_ours(dims)
    compiled.model.load_state_dict(eager.model.state_dict())
    try:
        compiled.model = torch.compile(compiled.model)
        compiled_step = training_step_fn(compiled, batch)
        t0 = time.perf_counter()
        time_once(compiled_step)
        compile_seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - report why compile does not work here, do not fail the suite
        return {"config": dims.label(), "error": f"{type(err).__name__}: {str(err)[:300]}"}
    timings = time_interleaved({"eager": training_step_fn(eager, batch), "compiled": compiled_step},
                               repeats=repeats, warmup=warmup)
    return {
        "config": dims.label(),
        "compile_seconds": compile_seconds,
        "tokens_per_s": {k: dims.tokens_per_batch / t.median for k, t in timings.items()},
        "speedup_compiled_over_eager": timings["eager"].median / timings["compiled"].median,
    }
