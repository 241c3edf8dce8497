"""Run the whole benchmark suite and write ``benchmarks/results/<machine-kind>/suite.{json,md,png}``.

    python -m benchmarks.run_all            # the committed results (~25-40 min on 2 cores)
    python -m benchmarks.run_all --quick    # every row at small sizes (~3-5 min): a smoke run, not for claims
    python -m benchmarks.run_all --only xtransformers small_models      # just those rows
    python -m benchmarks.run_all --with compile                         # the default rows + the opt-in ones

Every row runs its baseline and ours in the SAME process, same dims and batch, after warm-up, contenders
interleaved (A B C A B C ...), and reports the median over repeats and the ratio (see ``benchmarks/timing.py``).
The rows, their names (``--skip`` / ``--only`` / ``--with``) and the result keys each writes are :data:`ROWS`,
the one list of them. The results file records the command, the machine (CPU model, ISA flags, native bf16:
``benchmarks/machine.py``) and each target: met or not, and by how much. Results go to a folder per machine kind
(``intel-amx``, ``amd-avx2``, ...) so that a run on one kind never overwrites another's; the bf16 rows run only
where bf16 is native (:func:`benchmarks.machine.cpu_bf16_native`), and are recorded as skipped, with the reason,
elsewhere. Long-input attention rows live in ``benchmarks/long_attention.py`` (their own results file); the data
pipeline row calls ``benchmarks/data_prep_throughput.py``; the GPU check is ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.machine import machine_description
from benchmarks.peers import Seq2SeqDims
from benchmarks.xtransformers_peers import DecoderOnlyDims

RESULTS = Path(__file__).parent / "results"

D128 = dict(d_model=128, n_heads=4, d_ff=512)
D256 = dict(d_model=256, n_heads=4, d_ff=1024)
D512 = dict(d_model=512, n_heads=8, d_ff=2048)
SMALL = dict(d_model=64, n_heads=4, d_ff=256, n_encoder_layers=4, n_decoder_layers=4, vocab_size=16,
             batch_size=32, src_len=40, tgt_len=41, dropout=0.1)  # experiments/ut_paper/configs/algorithmic_*.yaml


def plan(quick: bool) -> dict:
    """Sizes and repeats of every row (full run, or the smoke run)."""
    if quick:
        return {
            "repeats": 3,
            "peak_sizes": (512, 1024), "peak_repeats": 3,
            "peer_configs": [Seq2SeqDims(**D256, batch_size=4, src_len=128, tgt_len=32, dropout=p) for p in (0.1, 0.0)]
            + [Seq2SeqDims(**D512, batch_size=2, src_len=256, tgt_len=64, dropout=0.0)],
            "xt_seq2seq": [Seq2SeqDims(**D128, batch_size=4, src_len=64, tgt_len=16)],
            "xt_decoder_only": [DecoderOnlyDims(**D128, n_layers=2, batch_size=4, seq_len=64)],
            "xt_decoding": dict(seq2seq=Seq2SeqDims(**D128, batch_size=2, src_len=64),
                                lm=DecoderOnlyDims(**D128, batch_size=2), prompt_len=16, out_tokens=(16, 48)),
            "bf16": Seq2SeqDims(**D512, batch_size=2, src_len=256, tgt_len=64, dropout=0.0),
            "bf16_curve": (Seq2SeqDims(**D256, batch_size=4, src_len=64, tgt_len=16, dropout=0.0), 8),
            "compile": [Seq2SeqDims(**{**SMALL, "batch_size": 8})],
            "decoding": dict(dims=Seq2SeqDims(**D256, batch_size=2, src_len=64), out_lengths=(16, 48), beam=2),
            "ut_vs_transformer": Seq2SeqDims(**D256, batch_size=2, src_len=64, tgt_len=16, dropout=0.0),
            "act": dict(**D256, batch_size=2, length=128, halted_shares=(0.0, 0.5, 0.9)),
            "small_models": dict(configs=("algorithmic_transformer",), repeats=1, steps=6,
                                 profile="algorithmic_transformer"),
            "attention_memory": ([1024, 2048], [1024, 2048]),
            "rerun_data_pipeline": False, "rouge_pairs": 20,
        }
    six = dict(n_encoder_layers=6, n_decoder_layers=6)
    from benchmarks.small_models import SMALL_CONFIGS

    return {
        "repeats": 3,
        "peak_sizes": (1024, 2048), "peak_repeats": 5,
        "peer_configs": [Seq2SeqDims(**D256, **layers, batch_size=16, src_len=256, tgt_len=64, dropout=p)
                         for layers in ({}, six) for p in (0.1, 0.0)]
        + [Seq2SeqDims(**D512, **layers, batch_size=4, src_len=512, tgt_len=128, dropout=p)
           for layers in ({}, six) for p in (0.1, 0.0)],
        "xt_seq2seq": [Seq2SeqDims(**D128, batch_size=16, src_len=256, tgt_len=64),
                       Seq2SeqDims(**D512, batch_size=4, src_len=512, tgt_len=128)],
        "xt_decoder_only": [DecoderOnlyDims(**D128, n_layers=4, vocab_size=10000, batch_size=16, seq_len=256),
                            DecoderOnlyDims(**D512, n_layers=6, vocab_size=8192, batch_size=4, seq_len=512)],
        "xt_decoding": dict(seq2seq=Seq2SeqDims(**D256, batch_size=2, src_len=256),
                            lm=DecoderOnlyDims(**D128, vocab_size=10000, batch_size=2), prompt_len=64,
                            out_tokens=(64, 256)),
        "bf16": Seq2SeqDims(**D512, batch_size=4, src_len=512, tgt_len=128, dropout=0.0),
        "bf16_curve": (Seq2SeqDims(**D512, batch_size=4, src_len=128, tgt_len=32, dropout=0.0), 40),
        "compile": [Seq2SeqDims(**SMALL), Seq2SeqDims(**D256, batch_size=8, src_len=256, tgt_len=64, dropout=0.1)],
        "decoding": dict(dims=Seq2SeqDims(**D256, batch_size=2, src_len=256), out_lengths=(64, 256), beam=4),
        "ut_vs_transformer": Seq2SeqDims(**D256, **six, batch_size=8, src_len=256, tgt_len=64, dropout=0.1),
        "act": dict(**D256, batch_size=8, length=256, halted_shares=(0.0, 0.25, 0.5, 0.75, 0.9)),
        "small_models": dict(configs=SMALL_CONFIGS, repeats=3, steps=20, profile="algorithmic_transformer"),
        "attention_memory": ([2048, 11000], [2048]),
        "rerun_data_pipeline": True, "rouge_pairs": 200,
    }


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ the rows: one function each


def _training(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.training_throughput import peer_rows

    r["training"] = []
    for dims in p["peer_configs"]:
        _log(f"training step: {dims.label()}")
        r["training"].append(peer_rows(dims, r["matmul_peak"]["float32"]["gflops"], p["repeats"], warmup=1))


def _xtransformers(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.xtransformers_rows import decoder_only_training_row, decoding_rows, seq2seq_training_row

    r["xtransformers_training"] = []
    for dims in p["xt_seq2seq"]:
        _log(f"vs x-transformers: enc-dec {dims.label()}")
        r["xtransformers_training"].append(seq2seq_training_row(dims, p["repeats"]))
    for dims in p["xt_decoder_only"]:
        _log(f"vs x-transformers: {dims.label()}")
        r["xtransformers_training"].append(decoder_only_training_row(dims, p["repeats"]))
    _log("vs x-transformers: cached decoding")
    d = p["xt_decoding"]
    r["xtransformers_decoding"] = decoding_rows(d["seq2seq"], d["lm"], d["prompt_len"], d["out_tokens"],
                                                2 if quick else p["repeats"])


def _bf16(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.flops import measure_matmul_peak
    from benchmarks.training_throughput import bf16_row, loss_curve_row

    m = r["machine"]
    if not m["bf16_native"]:
        r["bf16"] = {"skipped": m["bf16_reason"]}
        _log(f"bf16 rows skipped: {m['bf16_reason']}")
        return
    _log("bf16 matmul peak; bf16 autocast vs fp32")
    peak = measure_matmul_peak(torch.bfloat16, p["peak_sizes"], p["peak_repeats"])
    r["matmul_peak"][peak.dtype] = {"gflops": peak.gflops, "by_size": peak.by_size}
    curve_dims, curve_steps = p["bf16_curve"]
    peaks = {k: v["gflops"] for k, v in r["matmul_peak"].items()}
    r["bf16"] = bf16_row(p["bf16"], peaks, p["repeats"])
    r["bf16"]["loss_curve_check"] = loss_curve_row(curve_dims, curve_steps)


def _compile(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.training_throughput import compile_row

    r["compile"] = []
    for dims in p["compile"]:
        _log(f"torch.compile vs eager: {dims.label()}")
        r["compile"].append(compile_row(dims, p["repeats"]))


def _decoding(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.decoding_speed import decoding_rows
    from benchmarks.peers import ours_config
    from ut.models.transformer import TransformerEncoderDecoder
    from ut.models.universal import UniversalTransformerConfig, UniversalTransformerEncoderDecoder

    _log("decoding: cached vs uncached")
    d = p["decoding"]["dims"]
    torch.manual_seed(0)
    cfg = ours_config(d)
    ut_cfg = UniversalTransformerConfig(
        src_vocab_size=d.vocab_size, tgt_vocab_size=d.vocab_size, d_model=d.d_model, n_heads=d.n_heads,
        d_ff=d.d_ff, n_steps=d.n_encoder_layers, share_embeddings=True, max_len=cfg.max_len + 256)
    models = {
        "Transformer": TransformerEncoderDecoder(cfg.replace(max_len=cfg.max_len + 256)),
        "UT (fixed)": UniversalTransformerEncoderDecoder(ut_cfg),
        "UT (ACT)": UniversalTransformerEncoderDecoder(ut_cfg.replace(recurrence="act")),
    }
    src = torch.randint(5, d.vocab_size, (d.batch_size, d.src_len), generator=torch.Generator().manual_seed(0))
    r["decoding"] = decoding_rows(models, {"src": src}, p["decoding"]["out_lengths"], p["decoding"]["beam"],
                                  2 if quick else p["repeats"])


def _universal(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.universal_speed import act_skip_rows, ut_vs_transformer_row

    _log("UT step vs Transformer layer; ACT skipping")
    r["ut_vs_transformer"] = ut_vs_transformer_row(p["ut_vs_transformer"], p["repeats"])
    r["act_skip"] = act_skip_rows(**p["act"], repeats=max(p["repeats"], 5))


def _small_models(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.small_models import small_model_rows

    s = p["small_models"]
    _log(f"small-model regime: {', '.join(s['configs'])}")
    r["small_models"] = small_model_rows(s["configs"], s["repeats"], s["steps"], s["profile"])


def _attention_memory(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.attention_dropout_memory import run as attention_memory_rows

    _log("attention dropout memory")
    lengths, sdpa_dropout_lengths = p["attention_memory"]
    r["attention_dropout_memory"] = attention_memory_rows(lengths, sdpa_dropout_lengths)


def _pipeline(p: dict, r: dict, quick: bool) -> None:
    from benchmarks.pipeline_speed import data_pipeline_row, rouge_row

    _log("data pipeline and ROUGE")
    r["data_pipeline"] = data_pipeline_row(p["rerun_data_pipeline"])
    r["rouge"] = rouge_row(p["rouge_pairs"])


@dataclass(frozen=True)
class Row:
    """One row family of the suite: its command-line name, the result keys it writes, whether it runs by default
    (opt-in rows run only with ``--only`` / ``--with``), and the function that runs it."""

    name: str
    keys: tuple[str, ...]
    default: bool
    run: Callable[[dict, dict, bool], None]
    what: str


ROWS: tuple[Row, ...] = (
    Row("training", ("training",), True, _training, "training tokens/s vs torch.nn.Transformer, BART, x-transformers"),
    Row("xtransformers", ("xtransformers_training", "xtransformers_decoding"), True, _xtransformers,
        "ours vs x-transformers: enc-dec, decoder-only, tied layers; cached decoding"),
    Row("bf16", ("bf16",), True, _bf16, "bf16 autocast vs fp32 (only where bf16 is native)"),
    Row("compile", ("compile",), False, _compile, "torch.compile vs eager, small and medium configs (opt-in)"),
    Row("decoding", ("decoding",), True, _decoding, "cached vs uncached greedy / beam decoding"),
    Row("universal", ("ut_vs_transformer", "act_skip"), True, _universal, "UT step cost, ACT skipping"),
    Row("small_models", ("small_models",), True, _small_models,
        "UT-paper / bAbI config sizes: peers, Lightning vs bare loop, profile"),
    Row("attention_memory", ("attention_dropout_memory",), True, _attention_memory, "attention dropout memory"),
    Row("pipeline", ("data_pipeline", "rouge"), True, _pipeline, "data pipeline articles/s, ROUGE time"),
)
ROW_NAMES = tuple(row.name for row in ROWS)
ROW_KEYS = tuple(key for row in ROWS for key in row.keys)
OPT_IN_ROWS = tuple(row.name for row in ROWS if not row.default)


def selected_rows(skip=(), only=(), with_=()) -> list[Row]:
    """The rows to run: ``only`` if given (opt-in rows included), else the default rows plus ``with_``; minus
    ``skip``. Unknown names are an error naming the known ones."""
    for name in (*skip, *only, *with_):
        if name not in ROW_NAMES:
            raise ValueError(f"unknown row {name!r}; rows: {', '.join(ROW_NAMES)}")
    chosen = set(only) if only else {r.name for r in ROWS if r.default} | set(with_)
    return [r for r in ROWS if r.name in chosen and r.name not in set(skip)]


def run_suite(quick: bool, rows: list[Row]) -> dict:
    from benchmarks.flops import measure_matmul_peak
    from benchmarks.report import evaluate_targets

    p = plan(quick)
    results: dict = {"quick": quick, "command": "python -m benchmarks.run_all " + " ".join(sys.argv[1:]),
                     "machine": machine_description(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "rows_run": [r.name for r in rows]}
    t_start = time.perf_counter()
    _log(f"machine: {results['machine']['machine_kind']} ({results['machine']['cpu_model']}); bf16: "
         f"{results['machine']['bf16_reason']}")
    _log("fp32 matmul peak")
    peak = measure_matmul_peak(torch.float32, p["peak_sizes"], p["peak_repeats"])
    results["matmul_peak"] = {peak.dtype: {"gflops": peak.gflops, "by_size": peak.by_size}}
    for row in rows:
        row.run(p, results, quick)
    results["total_seconds"] = time.perf_counter() - t_start
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = evaluate_targets(results)
    return results


def merge_update(previous: dict, update: dict) -> dict:
    """``previous`` with the rows that ``update`` ran replaced; the update's command and time are recorded. Results
    of another machine kind are never merged."""
    from benchmarks.report import evaluate_targets

    kinds = previous.get("machine", {}).get("machine_kind"), update["machine"]["machine_kind"]
    if kinds[0] is not None and kinds[0] != kinds[1]:
        raise ValueError(f"--update: the existing results are from machine kind {kinds[0]!r}, this machine is "
                         f"{kinds[1]!r}; write to its own folder (the default) instead of merging")
    merged = dict(previous)
    rows = [k for k in ROW_KEYS if k in update]
    for key in rows:
        merged[key] = update[key]
    merged.setdefault("updates", []).append({"command": update["command"], "started": update["started"],
                                             "rows": rows, "machine": update["machine"],
                                             "seconds": update["total_seconds"]})
    merged["targets"] = evaluate_targets(merged)
    return merged


def parser() -> argparse.ArgumentParser:
    """The command line; every row name in it (choices, the ``--with`` help, the epilog) comes from :data:`ROWS`."""
    rows_help = "; ".join(f"{r.name}: {r.what}" for r in ROWS)
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=f"rows: {rows_help}")
    cli.add_argument("--quick", action="store_true", help="small sizes (smoke run, not for claims)")
    cli.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    cli.add_argument("--out-dir", type=Path, default=None,
                     help="where to write suite.{json,md,png} (default benchmarks/results/<machine-kind>; "
                          "--quick: suite_quick.*)")
    cli.add_argument("--update", action="store_true",
                     help="rerun only the selected rows and merge them into the existing results file")
    cli.add_argument("--skip", nargs="*", default=[], choices=ROW_NAMES, help="rows left out")
    cli.add_argument("--only", nargs="*", default=[], choices=ROW_NAMES, help="run just these rows")
    cli.add_argument("--with", dest="with_", nargs="*", default=[], choices=ROW_NAMES,
                     help=f"opt-in rows to add to the default ones ({', '.join(OPT_IN_ROWS)})")
    return cli


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmarks.machine import machine_kind
    from benchmarks.report import write_markdown, write_plot

    rows = selected_rows(args.skip, args.only, args.with_)
    out_dir = args.out_dir or RESULTS / machine_kind()
    stem = "suite_quick" if args.quick else "suite"
    previous = out_dir / f"{stem}.json"
    results = run_suite(args.quick, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.update and previous.exists():
        results = merge_update(json.loads(previous.read_text()), results)
    previous.write_text(json.dumps(results, indent=1, default=str))
    write_plot(results, out_dir / f"{stem}.png")
    write_markdown(results, out_dir / f"{stem}.md", plot_name=f"{stem}.png")
    _log(f"wrote {out_dir / stem}.{{json,md,png}} in {results['total_seconds']:.0f} s")
    for t in results["targets"]:
        print(f"  {'MET ' if t['met'] else 'MISS' if t['met'] is False else 'n/a '} {t['target']}: {t['measured']}")


if __name__ == "__main__":
    main()
