"""The output layer + loss of a training step three ways: time (interleaved, one process) and peak memory (a fresh
subprocess per contender).

Contenders, each the projection of the final states onto the vocabulary with the (tied) output matrix, the
next-token cross-entropy, and the backward pass to the states and the matrix:

- ``peers: logits + F.cross_entropy``: what torch.nn.Transformer / HF BART / x-transformers training computes;
- ``ours unfused``: logits + :func:`ut.lit.losses.smoothed_cross_entropy` + token accuracy, what :mod:`ut.lit`'s
  modules compute below ``FUSED_OUTPUT_LOSS_MIN_VOCAB`` (and did at every vocabulary before the fused loss);
- ``ours fused``: :func:`ut.lit.linear_cross_entropy.linear_cross_entropy` (the loss, the NLL and the token
  accuracy in row chunks, never holding the logits), what the modules compute from that vocabulary up.

Shapes: d 128 at V = 256 and 1024 (around the threshold of fusing), LAMBADA's d 128 LM (16 x 90 tokens, 10k
words), the suite's d 512 decoder-only row (4 x 512 tokens, 8192) and WikiSum's T-DMCA (one L = 11000 sequence,
d 256, 32768 subwords: the paper's vocabulary). Label smoothing 0.1. Memory: the peak resident set of the call
(VmHWM reset just before it, minus the resident set then), in a fresh subprocess per contender, as
``benchmarks/long_attention.py`` measures it.

    python -m benchmarks.output_loss --out benchmarks/results/<machine kind>/output_loss.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.long_attention import _peak_mb, _reset_peak, _rss_mb
from benchmarks.timing import time_interleaved
from ut.eval.metrics import token_accuracy
from ut.lit.linear_cross_entropy import linear_cross_entropy
from ut.lit.losses import smoothed_cross_entropy

SHAPES = {  # name -> (tokens, d_model, vocabulary)
    "d128 V256": (16 * 90, 128, 256),  # around the fusing threshold (FUSED_OUTPUT_LOSS_MIN_VOCAB = 1024)
    "d128 V1024": (16 * 90, 128, 1024),
    "LAMBADA d128": (16 * 90, 128, 10_000),
    "dec-only d512": (4 * 512, 512, 8192),
    "WikiSum T-DMCA L11000": (11_000, 256, 32_768),
}
CONTENDERS = ("peers: logits + F.cross_entropy", "ours unfused", "ours fused")
SMOOTHING = 0.1


def make_inputs(tokens: int, d_model: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(tokens, d_model, generator=g).requires_grad_()
    weight = (torch.randn(vocab, d_model, generator=g) * d_model ** -0.5).requires_grad_()  # logits of std ~1
    target = torch.randint(0, vocab, (tokens,), generator=g)
    return states, weight, target


def contender_loss(name: str, states, weight, target):
    """Contender ``name``'s training loss of ``states`` (tokens, d) under the output matrix ``weight`` (V, d)."""
    if name == CONTENDERS[0]:
        return F.cross_entropy(F.linear(states, weight), target, label_smoothing=SMOOTHING)
    if name == CONTENDERS[1]:
        logits = F.linear(states, weight)
        token_accuracy(logits.detach(), target)  # logged by the modules every step
        return smoothed_cross_entropy(logits, target, None, SMOOTHING).loss
    if name == CONTENDERS[2]:
        return linear_cross_entropy(states, weight, target, None, SMOOTHING)[0].loss
    raise ValueError(f"unknown contender {name!r}; known: {CONTENDERS}")


def contender_fn(name: str, states, weight, target):
    """One forward + backward of contender ``name``; the gradients are dropped after each call."""
    def call():
        contender_loss(name, states, weight, target).backward()
        states.grad = weight.grad = None

    return call


def child(shape: str, name: str) -> dict:
    states, weight, target = make_inputs(*SHAPES[shape])
    fn = contender_fn(name, states, weight, target)
    _reset_peak()
    before = _rss_mb()
    t0 = time.perf_counter()
    fn()
    return {"seconds_cold": time.perf_counter() - t0, "peak_increase_mb": _peak_mb() - before}


def run_child(shape: str, name: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.output_loss", "--child", shape, name],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(shapes: list[str], repeats: int) -> dict:
    rows = []
    for shape in shapes:
        tokens, d, vocab = SHAPES[shape]
        states, weight, target = make_inputs(tokens, d, vocab)
        timings = time_interleaved({n: contender_fn(n, states, weight, target) for n in CONTENDERS},
                                   repeats=repeats, warmup=1)
        memory = {n: run_child(shape, n)["peak_increase_mb"] for n in CONTENDERS}
        logits_mb = tokens * vocab * 4 / 2 ** 20
        rows.append({"shape": shape, "tokens": tokens, "d_model": d, "vocab": vocab, "logits_mb": logits_mb,
                     "seconds": {n: t.median for n, t in timings.items()},
                     "spread": {n: t.spread for n, t in timings.items()}, "peak_increase_mb": memory})
    return {"rows": rows, "repeats": repeats, "smoothing": SMOOTHING}


def markdown(result: dict, command: str, machine: dict) -> str:
    lines = ["# Output layer + loss: peers' path, ours unfused, ours fused", "",
             f"Command: `{command}`", "",
             f"Machine: {machine.get('cpu_model')} ({machine.get('machine_kind')}), torch "
             f"{machine.get('torch')}, {torch.get_num_threads()} thread(s). Forward + backward of the projection "
             f"onto the vocabulary and the label-smoothed ({result['smoothing']}) cross-entropy "
             "(`benchmarks/output_loss.py`); time: median of "
             f"{result['repeats']} interleaved repeats in one process; memory: the call's peak RSS increase in a "
             "fresh subprocess.", "",
             "| shape | tokens x d x V | logits (MB) | peers' time | ours unfused | ours fused | fused vs peers | "
             "peers' peak MB | ours unfused MB | ours fused MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        s, m = r["seconds"], r["peak_increase_mb"]
        p, u, f = (s[n] for n in CONTENDERS)
        lines.append(f"| {r['shape']} | {r['tokens']} x {r['d_model']} x {r['vocab']} | {r['logits_mb']:,.0f} | "
                     f"{p * 1e3:,.1f} ms | {u * 1e3:,.1f} ms | {f * 1e3:,.1f} ms | {p / f:.2f}x | "
                     + " | ".join(f"{m[n]:,.0f}" for n in CONTENDERS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="Markdown results file (a .json beside it)")
    p.add_argument("--child", nargs=2, metavar=("SHAPE", "CONTENDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from benchmarks.machine import machine_description

    result = measure(args.shapes, args.repeats)
    machine = machine_description()
    command = "python -m benchmarks.output_loss " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command, machine)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({**result, "machine": machine, "command": command},
                                                            indent=1, default=str))


if __name__ == "__main__":
    main()
