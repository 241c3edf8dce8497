"""The GPU check: one unattended command, under 5 minutes on one CUDA device, that writes its results file.

    python -m benchmarks.gpu_check --out benchmarks/results/<gpu-kind>/gpu_check.json   # + gpu_check.md beside it

Sections (each timed, each recorded as a result or as an error with its reason; one failing section does not stop
the others):

- ``training``: training tokens/s (forward + backward + Adam, bf16 autocast where the device runs bf16 natively,
  else fp32) of ours vs torch.nn.Transformer, HF BART and x-transformers (encoder-decoder), and of ours vs
  x-transformers (decoder-only), equal dims (:mod:`benchmarks.peers`, :mod:`benchmarks.xtransformers_peers`),
  interleaved; a peer whose package is missing is skipped with the reason.
- ``sdpa_flash_vs_manual``: :class:`ut.nn.attention.MultiHeadAttention`'s SDPA path forced onto the flash kernel
  (``sdpa_kernel(FLASH_ATTENTION)``) against its manual softmax(QK^T)V path (``need_weights=True``): forward
  outputs and input gradients equal within the dtype's tolerance, and the time of each.
- ``attention_dropout``: the same layer with attention dropout 0.1 in training (on CUDA: SDPA's fused dropout):
  the mean output over many dropout draws equals the no-dropout output (the dropout is unbiased and active), and
  peak memory (``torch.cuda.max_memory_allocated``) of a long causal forward + backward with dropout vs without.
- ``tdmca``: one Adam step of the T-DMCA decoder (Liu et al. 2018: "locm/redm/locm/redm", d 256, vocabulary
  32768) on one L = 11000 sequence: seconds and peak memory.
- ``decoding``: cached greedy decoding, ours vs uncached (:class:`benchmarks.decoding_speed.UncachedDecoding`) vs
  x-transformers' cached ``generate``, 256 output tokens.
- ``ddp``: DistributedDataParallel on one device (a 1-process nccl group; gloo on CPU): its gradients equal the
  plain model's after one step on the same batch, and the step time of each.

Without CUDA it writes a results file that says ``skipped`` and why, and exits 0. Every section is a function of
``device`` and sizes, so its body is tested on CPU at tiny sizes (``tests/benchmarks/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.peers import BUILDERS, Seq2SeqDims, make_batch, missing_package, training_step_fn
from benchmarks.timing import sync, time_interleaved
from benchmarks.xtransformers_peers import (
    XT,
    DecoderOnlyDims,
    build_ours_decoder_only,
    build_xtransformer_decoder_only,
    make_lm_batch,
    n_parameters,
)

TIME_BUDGET_S = 270  # the sections' plan fits in this on one current GPU; the whole run must stay under 300 s


def _reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device) -> float | None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return None  # CPU: no allocator statistics (the CPU suite measures RSS in fresh processes instead)


def autocast_dtype_for(device) -> torch.dtype | None:
    """bf16 where the device runs it natively (CUDA compute capability >= 8.0), else None (fp32)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return None


def _to(contender, device):
    contender.model.to(device)
    return contender


def training_section(device, seq2seq: Seq2SeqDims, lm: DecoderOnlyDims, repeats: int, warmup: int = 2) -> dict:
    """Training tokens/s vs the peers, encoder-decoder and decoder-only (see the module docstring)."""
    dtype = autocast_dtype_for(device)
    out = {"autocast": str(dtype).replace("torch.", "") if dtype else "fp32", "rows": []}
    for kind, dims, builders, batch in (
        ("enc-dec", seq2seq, {n: (lambda b=b: b(seq2seq)) for n, b in BUILDERS.items()}, make_batch(seq2seq)),
        ("dec-only", lm, {"ours": lambda: build_ours_decoder_only(lm), XT: lambda: build_xtransformer_decoder_only(lm)},
         make_lm_batch(lm)),
    ):
        skipped = {n: why for n in builders if (why := missing_package(n))}
        torch.manual_seed(0)
        built = {n: _to(b(), device) for n, b in builders.items() if n not in skipped}
        batch = {k: v.to(device) for k, v in batch.items()}
        steps = {n: training_step_fn(c, batch, autocast_dtype=dtype) for n, c in built.items()}
        timings = time_interleaved(steps, repeats=repeats, warmup=warmup, device=device)
        tok = {n: dims.tokens_per_batch / t.median for n, t in timings.items()}
        out["rows"].append({"kind": kind, "config": dims.label(), "tokens_per_s": tok, "skipped": skipped,
                            "parameters": {n: n_parameters(c.model) for n, c in built.items()},
                            "ratios": {f"ours / {n}": tok["ours"] / v for n, v in tok.items() if n != "ours"}})
        del built, steps
    return out


def sdpa_flash_vs_manual_section(device, batch: int, length: int, d_model: int, n_heads: int, repeats: int,
                                 dtype: torch.dtype | None = None) -> dict:
    """Our attention layer, SDPA forced onto its flash kernel vs the manual path: outputs, gradients, time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ut.nn.attention import MultiHeadAttention

    dtype = dtype or autocast_dtype_for(device) or torch.float32
    torch.manual_seed(0)
    layer = MultiHeadAttention(d_model, n_heads).to(device=device, dtype=dtype)
    x = torch.randn(batch, length, d_model, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn_like(x)

    def run(manual: bool):
        x.grad = None
        if manual:
            out = layer(x, causal=True, need_weights=True).out
        else:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                out = layer(x, causal=True).out
        out.backward(grad)
        return out.detach(), x.grad.detach().clone()

    (out_f, grad_f), (out_m, grad_m) = run(False), run(True)
    tol = {torch.bfloat16: 2e-2, torch.float16: 2e-3}.get(dtype, 1e-4)  # relative to the outputs' scale
    scale_out, scale_grad = out_m.float().abs().max().item(), grad_m.float().abs().max().item()
    out_err = (out_f.float() - out_m.float()).abs().max().item() / max(scale_out, 1e-12)
    grad_err = (grad_f.float() - grad_m.float()).abs().max().item() / max(scale_grad, 1e-12)
    timings = time_interleaved({"flash": lambda: run(False), "manual": lambda: run(True)}, repeats=repeats,
                               warmup=1, device=device)
    return {"dtype": str(dtype).replace("torch.", ""), "batch": batch, "length": length, "d_model": d_model,
            "heads": n_heads, "max_rel_error_out": out_err, "max_rel_error_grad": grad_err, "tolerance": tol,
            "equal": out_err <= tol and grad_err <= tol,
            "seconds": {k: t.median for k, t in timings.items()},
            "flash_speedup": timings["manual"].median / timings["flash"].median}


def mean_deviation_z(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Median over elements of |mean of the samples - reference| in standard errors of that mean: ~0.67 when the
    samples' expectation is ``reference`` (an unbiased dropout), large when it is off (a missing 1/(1-p) rescale
    shifts the mean by ~p x the output)."""
    n = samples.shape[0]
    standard_error = samples.std(0) / math.sqrt(n)
    return ((samples.mean(0) - reference).abs() / (standard_error + 1e-6)).median().item()


def attention_dropout_section(device, d_model: int, n_heads: int, draws: int, short_len: int, long_len: int,
                              p: float = 0.1) -> dict:
    """Attention dropout in training: unbiased and active (mean over ``draws`` = no-dropout output), and the peak
    memory of a long causal forward + backward with dropout vs without."""
    from ut.nn.attention import MultiHeadAttention

    torch.manual_seed(0)
    layer = MultiHeadAttention(d_model, n_heads, dropout=p).to(device)
    x = torch.randn(2, short_len, d_model, device=device)
    with torch.no_grad():
        layer.eval()
        reference = layer(x, causal=True).out
        layer.train()
        samples = torch.stack([layer(x, causal=True).out for _ in range(draws)])
    z = mean_deviation_z(samples, reference)
    active = (samples[0] - reference).abs().max().item() > 1e-4
    memory = {}
    for label, drop in (("dropout 0", 0.0), (f"dropout {p:g}", p)):
        layer.dropout = drop
        xl = torch.randn(1, long_len, d_model, device=device, requires_grad=True)
        _reset_peak(device)
        t0 = time.perf_counter()
        layer(xl, causal=True).out.sum().backward()
        sync(device)
        memory[label] = {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(device)}
        del xl
    layer.dropout = p
    peaks = [m["peak_mb"] for m in memory.values()]
    return {"p": p, "draws": draws, "median_z_of_mean_vs_reference": z, "unbiased": z < 5.0, "active": active,
            "long_length": long_len, "long": memory,
            "memory_ratio": peaks[1] / peaks[0] if None not in peaks and peaks[0] else None}


def tdmca_section(device, length: int, vocab: int, d_model: int = 256, n_heads: int = 4, block: int = 256) -> dict:
    """One Adam step of the T-DMCA decoder on one ``length``-token sequence: seconds and peak memory, in fp32 and,
    where the device runs it natively, under bf16 autocast (each mode recorded, or its error)."""
    modes = {"fp32": None} | ({"bf16": dtype} if (dtype := autocast_dtype_for(device)) else {})
    out = {"length": length, "vocab": vocab, "modes": {}}
    for label, mode_dtype in modes.items():
        try:
            out["modes"][label] = _tdmca_step(device, length, vocab, d_model, n_heads, block, mode_dtype)
        except Exception as err:  # noqa: BLE001 - one mode failing (e.g. a kernel without bf16) keeps the other
            out["modes"][label] = {"error": f"{type(err).__name__}: {err}"[:400]}
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    out["finite"] = all(m.get("finite", False) for m in out["modes"].values())
    return out


def _tdmca_step(device, length, vocab, d_model, n_heads, block, dtype) -> dict:
    from ut.models.decoder_only import DecoderOnlyConfig, DecoderOnlyLM

    torch.manual_seed(0)
    cfg = DecoderOnlyConfig(vocab_size=vocab, d_model=d_model, n_heads=n_heads, d_ff=4 * d_model,
                            layer_pattern="locm/redm/locm/redm", dropout=0.1, block_size=block, compression=3,
                            max_len=length)
    model = DecoderOnlyLM(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ids = torch.randint(5, vocab, (1, length), device=device)

    def step() -> float:
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(ids).logits
        loss = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    first = step()  # warm-up: kernels, allocator
    _reset_peak(device)
    t0 = time.perf_counter()
    loss = step()
    sync(device)
    return {"layers": cfg.layer_pattern, "seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(device),
            "loss_first": first, "loss": loss, "finite": math.isfinite(loss), "parameters": n_parameters(model)}


def decoding_section(device, dims: Seq2SeqDims, out_tokens: int, repeats: int) -> dict:
    """Cached greedy vs uncached vs x-transformers' cached generation (encoder-decoder, EOS disabled)."""
    from benchmarks.decoding_speed import UncachedDecoding
    from benchmarks.peers import build_ours
    from benchmarks.xtransformers_peers import build_xtransformer_seq2seq, xtransformer_seq2seq_greedy
    from ut.decoding import greedy_decode

    dims = Seq2SeqDims(**{**dims.__dict__, "tgt_len": out_tokens + 2, "dropout": 0.0})
    torch.manual_seed(0)
    ours = build_ours(dims).model.to(device).eval()
    batch = {k: v.to(device) for k, v in make_batch(dims).items() if k in ("src", "src_mask")}
    contenders = {"ours cached": lambda: greedy_decode(ours, batch, out_tokens, eos_id=-1),
                  "ours uncached": lambda: greedy_decode(UncachedDecoding(ours), batch, out_tokens, eos_id=-1)}
    skipped = {}
    if why := missing_package("x-transformers"):
        skipped[XT] = why
    else:
        xt = build_xtransformer_seq2seq(dims).model.to(device).eval()
        contenders[f"{XT} cached"] = lambda: xtransformer_seq2seq_greedy(xt, batch["src"], batch["src_mask"],
                                                                         out_tokens)
    with torch.no_grad():
        timings = time_interleaved(contenders, repeats=repeats, warmup=1, device=device)
    tok = {k: dims.batch_size * out_tokens / t.median for k, t in timings.items()}
    row = {"config": f"d{dims.d_model} B{dims.batch_size} S{dims.src_len}", "out_tokens": out_tokens,
           "tokens_per_s": tok, "skipped": skipped,
           "cached_over_uncached": tok["ours cached"] / tok["ours uncached"]}
    if f"{XT} cached" in tok:
        row[f"ours / {XT}"] = tok["ours cached"] / tok[f"{XT} cached"]
    return row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_section(device, dims: Seq2SeqDims, repeats: int) -> dict:
    """DDP on one device (1-process nccl group; gloo on CPU): gradients equal the plain model's; step times."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from benchmarks.peers import build_ours

    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dims = Seq2SeqDims(**{**dims.__dict__, "dropout": 0.0})
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        plain, wrapped = build_ours(dims), build_ours(dims)
        wrapped.model.load_state_dict(plain.model.state_dict())
        plain.model.to(device)
        wrapped.model.to(device)
        ids = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else None
        wrapped.model = DDP(wrapped.model, device_ids=ids)
        batch = {k: v.to(device) for k, v in make_batch(dims).items()}
        for c in (plain, wrapped):
            c.model.zero_grad(set_to_none=True)
            c.loss(batch).backward()
        grads = zip(plain.model.parameters(), wrapped.model.module.parameters())
        max_diff = max((a.grad - b.grad).abs().max().item() for a, b in grads)
        timings = time_interleaved({"plain": training_step_fn(plain, batch), "ddp": training_step_fn(wrapped, batch)},
                                   repeats=repeats, warmup=1, device=device)
        return {"backend": backend, "world_size": dist.get_world_size(), "max_grad_difference": max_diff,
                "grads_equal": max_diff <= 1e-5, "seconds": {k: t.median for k, t in timings.items()},
                "ddp_overhead": timings["ddp"].median / timings["plain"].median - 1}
    finally:
        if own_group:
            dist.destroy_process_group()


def plan(device) -> dict:
    """The sections' sizes on a CUDA device (the full check) -- tests call the sections with tiny sizes instead."""
    return {
        "training": dict(seq2seq=Seq2SeqDims(d_model=512, n_heads=8, d_ff=2048, batch_size=32, src_len=512,
                                             tgt_len=128, dropout=0.1),
                         lm=DecoderOnlyDims(d_model=512, n_heads=8, d_ff=2048, n_layers=6, vocab_size=8192,
                                            batch_size=16, seq_len=1024), repeats=10),
        "sdpa_flash_vs_manual": dict(batch=4, length=2048, d_model=512, n_heads=8, repeats=10),
        "attention_dropout": dict(d_model=512, n_heads=8, draws=400, short_len=64, long_len=16384),
        "tdmca": dict(length=11000, vocab=32768),
        "decoding": dict(dims=Seq2SeqDims(d_model=512, n_heads=8, d_ff=2048, batch_size=8, src_len=512),
                         out_tokens=256, repeats=3),
        "ddp": dict(dims=Seq2SeqDims(d_model=512, n_heads=8, d_ff=2048, batch_size=16, src_len=512, tgt_len=128),
                    repeats=10),
    }


SECTIONS = {"training": training_section, "sdpa_flash_vs_manual": sdpa_flash_vs_manual_section,
            "attention_dropout": attention_dropout_section, "tdmca": tdmca_section, "decoding": decoding_section,
            "ddp": ddp_section}


def run_sections(device, sizes: dict, budget_s: float = TIME_BUDGET_S) -> dict:
    """Run every section of ``sizes`` in order; an error is recorded with its traceback tail; sections left when
    the time budget is spent are recorded as skipped (so that the whole check stays under its limit)."""
    out, start = {}, time.perf_counter()
    for name, kwargs in sizes.items():
        elapsed = time.perf_counter() - start
        if elapsed > budget_s:
            out[name] = {"skipped": f"time budget of {budget_s:.0f} s spent ({elapsed:.0f} s)"}
            continue
        t0 = time.perf_counter()
        try:
            out[name] = SECTIONS[name](device, **kwargs)
        except Exception as err:  # noqa: BLE001 - record why this section failed; the others still run
            out[name] = {"error": f"{type(err).__name__}: {err}"[:500],
                         "traceback": traceback.format_exc()[-1500:]}
        out[name]["section_seconds"] = time.perf_counter() - t0
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return out


def skip_reason() -> str | None:
    """Why the check cannot run here (no CUDA), or None."""
    if not torch.cuda.is_available():
        return (f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}); the check needs one "
                "CUDA GPU")
    return None


def write_results(results: dict, out: Path) -> tuple[Path, Path]:
    """``out`` (JSON) and the Markdown summary beside it (same stem, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    md = out.with_suffix(".md")
    md.write_text(markdown(results))
    return out, md


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"
    return str(v)


def markdown(results: dict) -> str:
    lines = ["# GPU check", "", f"Command: `{results['command']}` (`benchmarks/gpu_check.py`; its docstring "
             "describes every section). Started " + results["started"] + ".", ""]
    m = results["machine"]
    lines += [f"Machine: {m.get('gpu', 'no GPU')}; CPU {m['cpu_model']} ({m['machine_kind']}); torch {m['torch']}.",
              ""]
    if "skipped" in results:
        return "\n".join(lines + [f"**Skipped**: {results['skipped']}.", ""])
    lines += [f"Total {results['total_seconds']:.0f} s.", ""]
    for name, sec in results["sections"].items():
        lines += [f"## {name}", ""]
        if "error" in sec or "skipped" in sec:
            lines += [f"**{'error' if 'error' in sec else 'skipped'}**: {sec.get('error', sec.get('skipped'))}", ""]
            continue
        if name == "training":
            lines += [f"autocast: {sec['autocast']}", "", "| kind | config | tokens/s | ours / peer | skipped |",
                      "|---|---|---|---|---|"]
            for r in sec["rows"]:
                lines.append(f"| {r['kind']} | {r['config']} | "
                             + ", ".join(f"{k} {v:,.0f}" for k, v in r["tokens_per_s"].items()) + " | "
                             + ", ".join(f"{k.split(' / ')[1]} {v:.2f}x" for k, v in r["ratios"].items()) + " | "
                             + "; ".join(f"{k}: {v}" for k, v in r["skipped"].items()) + " |")
        else:
            lines += ["| field | value |", "|---|---|"]
            for k, v in sec.items():
                lines.append(f"| {k} | {json.dumps(v, default=str) if isinstance(v, dict) else _fmt(v)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.machine import cuda_kind, machine_description

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (a .md summary is written beside it); default "
                             "benchmarks/results/<gpu-kind>/gpu_check.json")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=TIME_BUDGET_S, help="seconds before later sections skip")
    args = parser.parse_args(argv)
    results = {"command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_description()}
    reason = skip_reason()
    results_dir = Path(__file__).parent / "results"
    if reason:
        results["skipped"] = reason
        out = args.out or results_dir / "no-gpu" / "gpu_check.json"
        for path in write_results(results, out):
            print(f"skipped ({reason}); wrote {path}")
        return 0
    device = "cuda:0"
    out = args.out or results_dir / cuda_kind(0) / "gpu_check.json"
    results["device"] = {"name": torch.cuda.get_device_name(0),
                         "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                         "memory_gb": torch.cuda.get_device_properties(0).total_memory / 2**30,
                         "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                         "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False)}
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 stays fp32: the bf16 rows are the fast ones
    sizes = {k: v for k, v in plan(device).items() if k in args.sections}
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        results["sections"] = run_sections(device, sizes, args.budget)
    results["total_seconds"] = time.perf_counter() - t0
    results["machine"]["load_average_at_end"] = os.getloadavg()
    for path in write_results(results, out):
        print(f"wrote {path}")
    failed = [k for k, v in results["sections"].items() if "error" in v]
    print(f"{len(sizes) - len(failed)}/{len(sizes)} sections ran; " + (f"errors: {', '.join(failed)}" if failed
                                                                          else "no errors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
