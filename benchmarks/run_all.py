"""Run the whole benchmark suite and write ``benchmarks/results/suite.{json,md,png}``.

    python -m benchmarks.run_all            # the committed results (~10-15 min on 2 cores)
    python -m benchmarks.run_all --quick    # every row at small sizes (~1-2 min): a smoke run, not for claims

Every row runs its baseline and ours in the SAME process, same dims and batch, after warm-up, contenders
interleaved (A B C A B C ...), and reports the median over repeats and the ratio (see ``benchmarks/timing.py``).
The results file records the command, the machine and each target of issue 7: met or not, and by how much.
Long-input attention rows live in ``benchmarks/long_attention.py`` (their own results file); the data pipeline
row calls ``benchmarks/data_prep_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks.attention_dropout_memory import run as attention_memory_rows
from benchmarks.decoding_speed import decoding_rows
from benchmarks.flops import measure_matmul_peak
from benchmarks.peers import Seq2SeqDims, ours_config
from benchmarks.pipeline_speed import data_pipeline_row, rouge_row
from benchmarks.report import evaluate_targets, write_markdown, write_plot
from benchmarks.timing import machine_description
from benchmarks.training_throughput import bf16_row, compile_row, loss_curve_row, peer_rows
from benchmarks.universal_speed import act_skip_rows, ut_vs_transformer_row

RESULTS = Path(__file__).parent / "results"

D256 = dict(d_model=256, n_heads=4, d_ff=1024)
D512 = dict(d_model=512, n_heads=8, d_ff=2048)


def plan(quick: bool) -> dict:
    """Sizes and repeats of every row (full run, or the ~1-2 minute smoke run)."""
    if quick:
        return {
            "repeats": 3,
            "peak_sizes": (512, 1024), "peak_repeats": 3,
            "peer_configs": [Seq2SeqDims(**D256, batch_size=4, src_len=128, tgt_len=32, dropout=p) for p in (0.1, 0.0)]
            + [Seq2SeqDims(**D512, batch_size=2, src_len=256, tgt_len=64, dropout=0.0)],
            "bf16": Seq2SeqDims(**D512, batch_size=2, src_len=256, tgt_len=64, dropout=0.0),
            "bf16_curve": (Seq2SeqDims(**D256, batch_size=4, src_len=64, tgt_len=16, dropout=0.0), 8),
            "compile": None,
            "decoding": dict(dims=Seq2SeqDims(**D256, batch_size=2, src_len=64), out_lengths=(16, 48), beam=2),
            "ut_vs_transformer": Seq2SeqDims(**D256, batch_size=2, src_len=64, tgt_len=16, dropout=0.0),
            "act": dict(**D256, batch_size=2, length=128, halted_shares=(0.0, 0.5, 0.9)),
            "attention_memory": ([1024, 2048], [1024, 2048]),
            "rerun_data_pipeline": False, "rouge_pairs": 20,
        }
    six = dict(n_encoder_layers=6, n_decoder_layers=6)
    return {
        "repeats": 3,
        "peak_sizes": (1024, 2048), "peak_repeats": 5,
        "peer_configs": [Seq2SeqDims(**D256, **layers, batch_size=16, src_len=256, tgt_len=64, dropout=p)
                         for layers in ({}, six) for p in (0.1, 0.0)]
        + [Seq2SeqDims(**D512, **layers, batch_size=4, src_len=512, tgt_len=128, dropout=p)
           for layers in ({}, six) for p in (0.1, 0.0)],
        "bf16": Seq2SeqDims(**D512, batch_size=4, src_len=512, tgt_len=128, dropout=0.0),
        "bf16_curve": (Seq2SeqDims(**D512, batch_size=4, src_len=128, tgt_len=32, dropout=0.0), 40),
        "compile": Seq2SeqDims(**D256, batch_size=8, src_len=256, tgt_len=64, dropout=0.1),
        "decoding": dict(dims=Seq2SeqDims(**D256, batch_size=2, src_len=256), out_lengths=(64, 256), beam=4),
        "ut_vs_transformer": Seq2SeqDims(**D256, **six, batch_size=8, src_len=256, tgt_len=64, dropout=0.1),
        "act": dict(**D256, batch_size=8, length=256, halted_shares=(0.0, 0.25, 0.5, 0.75, 0.9)),
        "attention_memory": ([2048, 11000], [2048]),
        "rerun_data_pipeline": True, "rouge_pairs": 200,
    }


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_suite(quick: bool, skip: set[str]) -> dict:
    p = plan(quick)
    results: dict = {"quick": quick, "command": "python -m benchmarks.run_all " + " ".join(sys.argv[1:]),
                     "machine": machine_description(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t_start = time.perf_counter()

    _log("matmul peak")
    peaks = {}
    for dtype in (torch.float32, torch.bfloat16):
        peak = measure_matmul_peak(dtype, p["peak_sizes"], p["peak_repeats"])
        peaks[peak.dtype] = peak.gflops
        results.setdefault("matmul_peak", {})[peak.dtype] = {"gflops": peak.gflops, "by_size": peak.by_size}

    if "training" not in skip:
        results["training"] = []
        for dims in p["peer_configs"]:
            _log(f"training step: {dims.label()}")
            results["training"].append(peer_rows(dims, peaks["float32"], p["repeats"], warmup=1))
    if "bf16" not in skip:
        _log("bf16 autocast vs fp32")
        curve_dims, curve_steps = p["bf16_curve"]
        results["bf16"] = bf16_row(p["bf16"], peaks, p["repeats"])
        results["bf16"]["loss_curve_check"] = loss_curve_row(curve_dims, curve_steps)
    if "compile" not in skip and p["compile"] is not None:
        _log("torch.compile vs eager")
        results["compile"] = compile_row(p["compile"], p["repeats"])
    if "decoding" not in skip:
        _log("decoding: cached vs uncached")
        from ut.models.transformer import TransformerEncoderDecoder
        from ut.models.universal import UniversalTransformerConfig, UniversalTransformerEncoderDecoder

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
        results["decoding"] = decoding_rows(models, {"src": src}, p["decoding"]["out_lengths"], p["decoding"]["beam"],
                                            2 if quick else p["repeats"])
    if "universal" not in skip:
        _log("UT step vs Transformer layer; ACT skipping")
        results["ut_vs_transformer"] = ut_vs_transformer_row(p["ut_vs_transformer"], p["repeats"])
        results["act_skip"] = act_skip_rows(**p["act"], repeats=max(p["repeats"], 5))
    if "attention_memory" not in skip:
        _log("attention dropout memory")
        lengths, sdpa_dropout_lengths = p["attention_memory"]
        results["attention_dropout_memory"] = attention_memory_rows(lengths, sdpa_dropout_lengths)
    if "pipeline" not in skip:
        _log("data pipeline and ROUGE")
        results["data_pipeline"] = data_pipeline_row(p["rerun_data_pipeline"])
        results["rouge"] = rouge_row(p["rouge_pairs"])
    results["total_seconds"] = time.perf_counter() - t_start
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = evaluate_targets(results)
    return results


ROW_KEYS = ("training", "bf16", "compile", "decoding", "ut_vs_transformer", "act_skip", "attention_dropout_memory",
            "data_pipeline", "rouge")


def merge_update(previous: dict, update: dict) -> dict:
    """``previous`` with the rows that ``update`` ran replaced; the update's command and time are recorded."""
    merged = dict(previous)
    rows = [k for k in ROW_KEYS if k in update]
    for key in rows:
        merged[key] = update[key]
    merged.setdefault("updates", []).append({"command": update["command"], "started": update["started"],
                                             "rows": rows, "machine": update["machine"],
                                             "seconds": update["total_seconds"]})
    merged["targets"] = evaluate_targets(merged)
    return merged


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, ~1-2 minutes (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write suite.{json,md,png} (default benchmarks/results; --quick: suite_quick.*)")
    parser.add_argument("--update", action="store_true",
                        help="rerun only the rows not skipped and merge them into the existing results file")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["training", "bf16", "compile", "decoding", "universal", "attention_memory",
                                 "pipeline"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_suite(args.quick, set(args.skip))
    out_dir = args.out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "suite_quick" if args.quick else "suite"
    if args.update and (out_dir / f"{stem}.json").exists():
        results = merge_update(json.loads((out_dir / f"{stem}.json").read_text()), results)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    write_plot(results, out_dir / f"{stem}.png")
    write_markdown(results, out_dir / f"{stem}.md", plot_name=f"{stem}.png")
    _log(f"wrote {out_dir / stem}.{{json,md,png}} in {results['total_seconds']:.0f} s")
    for t in results["targets"]:
        print(f"  {'MET ' if t['met'] else 'MISS' if t['met'] is False else 'n/a '} {t['target']}: {t['measured']}")


if __name__ == "__main__":
    main()
