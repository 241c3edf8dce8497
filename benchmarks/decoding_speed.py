"""Row: cached vs uncached greedy and beam-search decoding, tokens/s at 64 and 256 output tokens.

Cached: the models' own ``start_decoding`` / ``decode_step`` (a KV cache per call site and executed step).
Uncached: :class:`UncachedDecoding` wraps the same model and recomputes the whole decoder over the prefix at every
step (the encoder still runs once: that is what "no cache" means in HF ``use_cache=False`` too). Both drive the
same :func:`ut.decoding.greedy_decode` / :func:`ut.decoding.beam_search`; EOS is disabled (``eos_id=-1``), so every
run generates exactly ``max_len`` tokens per row (per beam). Models are untrained; speed does not depend on it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmarks.timing import time_interleaved
from ut.decoding import DecodeState, beam_search, greedy_decode
from ut.nn.positions import position_ids


class UncachedDecoding(nn.Module):
    """``start_decoding`` / ``decode_step`` that rerun the full decoder over the prefix each step (no KV cache).

    Works for any model whose ``decode(tgt_in, memory, src_mask, positions=...)`` returns the logits first
    (Transformer and Universal Transformer encoder-decoders).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]:
        state, first = self.model.start_decoding(batch)
        state.tensors["prefix"] = first[:, None].new_zeros(first.shape[0], 0)  # reordered with the beams
        return state, first

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        t, e = state.tensors, state.per_example
        prefix = torch.cat([t["prefix"], tokens[:, None]], dim=1)
        t["prefix"] = prefix
        positions = position_ids(prefix.shape[1], prefix.shape[0], e["offset"], prefix.device)
        out = self.model.decode(prefix, e["memory"], e["src_mask"], positions=positions)
        state.step += 1
        return out[0][:, -1]


def decoding_rows(models: dict[str, nn.Module], batch: dict[str, Tensor], out_lengths: tuple[int, ...],
                  beam_size: int, repeats: int) -> list[dict]:
    """For each model and output length: greedy and beam, cached and uncached, interleaved; tokens/s and ratio."""
    rows = []
    for name, model in models.items():
        model.eval()
        uncached = UncachedDecoding(model).eval()
        b = batch["src"].shape[0]
        for n in out_lengths:
            contenders = {
                "greedy cached": lambda m=model, n=n: greedy_decode(m, batch, n, eos_id=-1),
                "greedy uncached": lambda m=uncached, n=n: greedy_decode(m, batch, n, eos_id=-1),
                "beam cached": lambda m=model, n=n: beam_search(m, batch, beam_size, max_len=n, eos_id=-1),
                "beam uncached": lambda m=uncached, n=n: beam_search(m, batch, beam_size, max_len=n, eos_id=-1),
            }
            with torch.no_grad():
                timings = time_interleaved(contenders, repeats=repeats, warmup=1)
            tok = {k: b * n / t.median for k, t in timings.items()}  # output tokens per second (per batch row)
            rows.append({
                "model": name, "out_tokens": n, "batch": b, "beam": beam_size, "tokens_per_s": tok,
                "greedy_cached_over_uncached": tok["greedy cached"] / tok["greedy uncached"],
                "beam_cached_over_uncached": tok["beam cached"] / tok["beam uncached"],
            })
    return rows


MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")


def _profiled_ms(fn) -> tuple[float, dict[str, float]]:
    """(wall ms, self CPU ms by group) of one call of ``fn`` under ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = time_interleaved({"fn": fn}, repeats=1, warmup=0)["fn"].median
    groups = {"matmul": 0.0, "attention": 0.0, "other ops": 0.0}
    for e in prof.key_averages():
        if e.key in MATMUL_OPS:
            groups["matmul"] += e.self_cpu_time_total / 1e3
        elif "scaled_dot_product" in e.key or "flash_attention" in e.key:
            groups["attention"] += e.self_cpu_time_total / 1e3
        elif e.key.startswith("aten::"):
            groups["other ops"] += e.self_cpu_time_total / 1e3
    return wall * 1e3, groups


def per_token_breakdown(model: nn.Module, batch: dict[str, Tensor], n_tokens: int, beam_size: int = 1) -> dict:
    """Where one cached decode step's time goes: ms per step of greedy (``beam_size`` 1) or beam search over
    ``n_tokens`` steps (EOS disabled), split by ``torch.profiler`` self CPU time into matrix products
    (:data:`MATMUL_OPS`: the projections and the softmax layer), attention kernels (SDPA), every other tensor op, and
    the rest of the wall time (Python, module calls, dispatch). The encoder / prefix (``start_decoding``, profiled
    alone) is subtracted. The profiler slows small ops down, so the split is a guide to what dominates, not a timing.
    """

    def run():
        if beam_size == 1:
            return greedy_decode(model, batch, n_tokens, eos_id=-1)
        return beam_search(model, batch, beam_size, max_len=n_tokens, eos_id=-1)

    model.eval()
    with torch.no_grad():
        run()  # warm-up
        for _ in range(2):  # the first profiled call also pays the profiler's own start
            start_wall, start_groups = _profiled_ms(lambda: model.start_decoding(batch))
        wall, groups = _profiled_ms(run)
    ms = {k: max(v - start_groups[k], 0.0) / n_tokens for k, v in groups.items()}
    step_ms = (wall - start_wall) / n_tokens
    ms["python and dispatch"] = max(step_ms - sum(ms.values()), 0.0)
    return {"beam": beam_size, "out_tokens": n_tokens, "start_ms": start_wall, "step_ms": step_ms, "ms_per_step": ms}
