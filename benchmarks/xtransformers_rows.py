"""Rows: ours against x-transformers at equal dims -- training tokens/s and cached greedy decoding tokens/s.

- ``seq2seq_training_row``: one encoder-decoder configuration, four contenders interleaved in one process: ours,
  ``XTransformer``, our Universal Transformer (fixed T = depth steps) and ``XTransformer`` with
  ``weight_tie_layers`` (its shared-weight form); ratios ours / x-transformers and UT / tied x-transformers.
- ``decoder_only_training_row``: the same for decoder-only LMs (``DecoderOnlyLM`` and ``UniversalDecoderOnlyLM``
  against ``TransformerWrapper(Decoder)``, dense and tied).
- ``decoding_rows``: cached greedy decoding, ``n`` output tokens per row, EOS disabled: ours
  (:func:`ut.decoding.greedy_decode`, the models' KV cache) against x-transformers' ``generate(temperature=0,
  cache_kv=True)``; encoder-decoder (source encoded once) and decoder-only (a prompt, then ``n`` tokens).

Tokens/s: training counts every input token of the batch (source + target, or the LM sequence); decoding counts
output tokens (batch x ``n``). Parameter counts of every contender are recorded with their relative difference to
ours (:func:`benchmarks.xtransformers_peers.parameter_report`): the dense pairs agree within 0.3% and the tied pairs
within 0.2% at d 128 and d 512 (x-transformers has no attention biases).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.peers import Seq2SeqContender, Seq2SeqDims, build_ours, make_batch, missing_package, training_step_fn
from benchmarks.timing import time_interleaved
from benchmarks.universal_speed import build_universal
from benchmarks.xtransformers_peers import (
    XT,
    XT_TIED,
    DecoderOnlyDims,
    build_ours_decoder_only,
    build_ours_universal_decoder_only,
    build_xtransformer_decoder_only,
    build_xtransformer_seq2seq,
    make_lm_batch,
    parameter_report,
    xtransformer_lm_greedy,
    xtransformer_seq2seq_greedy,
)

UT = "ours UT"
PAIRS = (("ours", XT), (UT, XT_TIED))  # (ours, its x-transformers counterpart)


def _training_row(label: str, dims: dict, tokens: int, builders: dict[str, Callable[[], Seq2SeqContender]],
                  batch: dict, repeats: int, warmup: int) -> dict:
    skipped = {}
    if why := missing_package("x-transformers"):
        skipped = {name: why for name in (XT, XT_TIED)}
    torch.manual_seed(0)
    built = {name: build() for name, build in builders.items() if name not in skipped}
    timings = time_interleaved({name: training_step_fn(c, batch) for name, c in built.items()}, repeats=repeats,
                               warmup=warmup)
    params = parameter_report(built, "ours")
    row = {"config": label, "dims": dims, "skipped": skipped, "contenders": {}, "ratios": {}}
    for name, t in timings.items():
        row["contenders"][name] = {"seconds_median": t.median, "seconds_all": t.seconds, "spread": t.spread,
                                   "tokens_per_s": tokens / t.median, **params[name]}
    for ours, peer in PAIRS:
        if peer in row["contenders"]:
            c = row["contenders"]
            row["ratios"][f"{ours} / {peer}"] = c[ours]["tokens_per_s"] / c[peer]["tokens_per_s"]
            row.setdefault("parameter_mismatch", {})[f"{ours} vs {peer}"] = (
                c[peer]["parameters"] / c[ours]["parameters"] - 1)
    return row


def seq2seq_training_row(dims: Seq2SeqDims, repeats: int, warmup: int = 1) -> dict:
    builders = {"ours": lambda: build_ours(dims), XT: lambda: build_xtransformer_seq2seq(dims),
                UT: lambda: build_universal(dims), XT_TIED: lambda: build_xtransformer_seq2seq(dims, True)}
    return _training_row("enc-dec " + dims.label(), dims.__dict__.copy(), dims.tokens_per_batch, builders,
                         make_batch(dims), repeats, warmup)


def decoder_only_training_row(dims: DecoderOnlyDims, repeats: int, warmup: int = 1) -> dict:
    builders = {"ours": lambda: build_ours_decoder_only(dims), XT: lambda: build_xtransformer_decoder_only(dims),
                UT: lambda: build_ours_universal_decoder_only(dims),
                XT_TIED: lambda: build_xtransformer_decoder_only(dims, True)}
    return _training_row(dims.label(), dims.__dict__.copy(), dims.tokens_per_batch, builders, make_lm_batch(dims),
                         repeats, warmup)


def decoding_rows(seq2seq: Seq2SeqDims, lm: DecoderOnlyDims, prompt_len: int, out_tokens: tuple[int, ...],
                  repeats: int) -> list[dict]:
    """Cached greedy decoding, ours vs x-transformers, for each output length (see the module docstring)."""
    from ut.decoding import greedy_decode

    if why := missing_package("x-transformers"):
        return [{"skipped": why}]
    rows = []
    n_max = max(out_tokens)
    torch.manual_seed(0)
    s2s = Seq2SeqDims(**{**seq2seq.__dict__, "tgt_len": n_max + 2, "dropout": 0.0})
    ours_s2s, xt_s2s = build_ours(s2s).model.eval(), build_xtransformer_seq2seq(s2s).model.eval()
    src_batch = make_batch(s2s)
    src, src_mask = src_batch["src"], src_batch["src_mask"]
    lm_dims = DecoderOnlyDims(**{**lm.__dict__, "seq_len": prompt_len + n_max + 2, "dropout": 0.0})
    ours_lm = build_ours_decoder_only(lm_dims).model.eval()
    xt_lm = build_xtransformer_decoder_only(lm_dims).model.eval()
    prompt = make_lm_batch(lm_dims)["input_ids"][:, :prompt_len]
    for n in out_tokens:
        cases = {
            "enc-dec": {"ours": lambda n=n: greedy_decode(ours_s2s, {"src": src, "src_mask": src_mask}, n, eos_id=-1),
                        XT: lambda n=n: xtransformer_seq2seq_greedy(xt_s2s, src, src_mask, n)},
            "dec-only": {"ours": lambda n=n: greedy_decode(ours_lm, {"input_ids": prompt}, n, eos_id=-1),
                         XT: lambda n=n: xtransformer_lm_greedy(xt_lm, prompt, n)},
        }
        for kind, contenders in cases.items():
            with torch.no_grad():
                lengths = {name: fn().sequences.shape[1] if name == "ours" else fn().shape[1]
                           for name, fn in contenders.items()}
                if set(lengths.values()) != {n}:
                    raise RuntimeError(f"{kind} decoding produced {lengths} tokens per row, expected {n}")
                timings = time_interleaved(contenders, repeats=repeats, warmup=0)
            b = src.shape[0] if kind == "enc-dec" else prompt.shape[0]
            tok = {name: b * n / t.median for name, t in timings.items()}
            dims = s2s if kind == "enc-dec" else lm_dims
            rows.append({"kind": kind, "config": f"{kind} d{dims.d_model} B{b}"
                         + (f" S{s2s.src_len}" if kind == "enc-dec" else f" prompt {prompt_len}"),
                         "out_tokens": n, "tokens_per_s": tok, f"ours / {XT}": tok["ours"] / tok[XT]})
    return rows
