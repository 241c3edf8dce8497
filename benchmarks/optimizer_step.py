"""One Adam step on the parameters of this repo's models: torch's per-parameter loop (its CPU default), the
``foreach`` multi-tensor path, and the ``fused`` kernel that :func:`ut.optim.build_optimizer` picks where it exists.

At the d 64-128 sizes of the UT-paper configs a training step is a few tens of milliseconds and the per-parameter
loop's Python and kernel-launch cost per tensor is a visible share of it; at d 512 the loop's many passes over
memory are. The three contenders run interleaved in one process (``benchmarks.timing.time_interleaved``) on the
same parameters with the same fixed random gradients, so the ratios hold on a loaded machine; the step time of a
whole training step is beside them for scale (``benchmarks/small_models.py`` measures that step in full).

    python -m benchmarks.optimizer_step --out benchmarks/results/<kind>/optimizer_step.json

The results file records the machine (``benchmarks/machine.py``): CPU model, ISA flags, load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.machine import machine_description, machine_kind
from benchmarks.timing import time_interleaved
from ut.models import build_model

# (label, registered model, config): the dims of the committed configs and of the d 512 suite rows
MODELS = [
    ("bAbI fact-QA UT, d 64 (experiments/ut_paper/configs/babi_1k_ut.yaml)", "universal_fact_qa",
     dict(vocab_size=40, n_classes=6, max_words=7, d_model=64, n_heads=4, d_ff=128, n_steps=4)),
    ("bAbI fact-QA Transformer, d 64, 4 layers (babi_1k_transformer.yaml)", "transformer_fact_qa",
     dict(vocab_size=40, n_classes=6, max_words=7, d_model=64, n_heads=4, d_ff=128, n_layers=4)),
    ("algorithmic Transformer enc-dec, d 64, 4+4 layers (algorithmic_transformer.yaml)", "transformer",
     dict(src_vocab_size=16, tgt_vocab_size=16, d_model=64, n_heads=4, d_ff=256, n_encoder_layers=4,
          n_decoder_layers=4)),
    ("Transformer enc-dec, d 512, 6+6 layers (the suite's base rows)", "transformer",
     dict(src_vocab_size=8000, tgt_vocab_size=8000, d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6,
          n_decoder_layers=6)),
]
MODES = ("loop", "foreach", "fused")


def adam_step_fn(model: torch.nn.Module, mode: str):
    """A zero-argument callable doing one Adam step of ``model``'s parameters with fixed gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    kwargs = {"foreach": False} if mode == "loop" else {mode: True}
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9, **kwargs)
    return opt.step


def measure(repeats: int) -> list[dict]:
    rows = []
    for label, name, cfg in MODELS:
        try:
            model = build_model(name, cfg)
        except (TypeError, ValueError) as e:  # a config field renamed: say so, do not guess
            rows.append({"model": label, "skipped": f"{type(e).__name__}: {e}"})
            continue
        n_params = sum(p.numel() for p in model.parameters())
        n_tensors = sum(1 for _ in model.parameters())
        big = n_params > 5_000_000
        fns = {m: adam_step_fn(build_model(name, cfg), m) for m in MODES}
        t = time_interleaved(fns, repeats=max(3, repeats // 10) if big else repeats, warmup=2,
                             inner=1 if big else 10)
        ms = {m: 1e3 * t[m].median for m in MODES}
        rows.append({"model": label, "params": n_params, "tensors": n_tensors,
                     **{f"{m}_ms": round(ms[m], 4) for m in MODES},
                     "spread": {m: round(t[m].spread, 3) for m in MODES},
                     "fused_vs_loop": round(ms["loop"] / ms["fused"], 2),
                     "fused_vs_foreach": round(ms["foreach"] / ms["fused"], 2)})
        print(f"{label}: {n_params:,} params in {n_tensors} tensors; loop {ms['loop']:.3f} ms, foreach "
              f"{ms['foreach']:.3f} ms, fused {ms['fused']:.3f} ms -> fused {rows[-1]['fused_vs_loop']}x the loop",
              file=sys.stderr)
    return rows


def markdown(result: dict) -> str:
    m = result["machine"]
    title = f"Adam step: loop vs foreach vs fused ({m['cpu_model']}, {m['isa_tier']}, {result['threads']} thread(s))"
    lines = [f"# {title}",
             "", f"Command: `{result['command']}`; load average at start {m['load_average_at_start']}.", "",
             "| model | params (tensors) | loop ms | foreach ms | fused ms | fused vs loop | fused vs foreach |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['model']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['params']:,} ({r['tensors']}) | {r['loop_ms']:.3f} | "
                     f"{r['foreach_ms']:.3f} | {r['fused_ms']:.3f} | {r['fused_vs_loop']:.2f}x | "
                     f"{r['fused_vs_foreach']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="results JSON (a .md table is written beside it); "
                   "default benchmarks/results/<machine kind>/optimizer_step.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out or Path(__file__).parent / "results" / machine_kind() / "optimizer_step.json")
    result = {"machine": machine_description(), "threads": args.threads,
              "command": "python -m benchmarks.optimizer_step " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": measure(args.repeats)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
