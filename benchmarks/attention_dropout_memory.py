"""Row: attention dropout never forces the quadratic path (memory and time of one attention forward + backward).

Each case runs in a FRESH subprocess; its peak resident memory (``VmHWM``, the high-water mark of the process's
own address space, reset through ``/proc/self/clear_refs`` after a warm-up) minus the resident memory just before
the attention call is that call's own peak (CPU has no allocator statistics to reset). ``ru_maxrss`` would not
do: Linux carries it across ``exec`` from the launching process.

- ``sdpa_p0``: ``F.scaled_dot_product_attention`` with dropout 0 (flash-style kernel, O(L) memory): the reference;
- ``sdpa_dropout``: SDPA with ``dropout_p=0.1`` (on CPU its quadratic math path) -- only run at lengths where the
  L x L matrix fits (it needs ~20 GB at L = 11000);
- ``ours_dropout``: :class:`ut.nn.attention.MultiHeadAttention`'s dropout path (:func:`dropout_attention`:
  checkpointed query chunks), ``dropout_p=0.1``.

Target: at L = 11000 ours with dropout stays within 2x of the dropout-0 run's memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM = 8, 64


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _high_water_mb() -> float:
    """Peak resident memory of this process's address space (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_high_water() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(mode: str, length: int, causal: bool) -> dict:
    from ut.nn.attention import dropout_attention

    def attention(q, k, v):
        if mode == "sdpa_p0":
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if mode == "sdpa_dropout":
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=0.1)
        if mode == "ours_dropout":
            return dropout_attention(q, k, v, None, causal, 0.1)
        raise ValueError(mode)

    def inputs(n):
        return [torch.randn(1, HEADS, n, HEAD_DIM, requires_grad=True) for _ in range(3)]

    torch.manual_seed(0)
    # warm-up on a short input: loads the kernels and thread pools, so the peak below is the call's own memory
    attention(*inputs(600)).sum().backward()
    q, k, v = inputs(length)
    grad = torch.randn(1, HEADS, length, HEAD_DIM)
    reset = _reset_high_water()
    before = _rss_mb()
    t0 = time.perf_counter()
    attention(q, k, v).backward(grad)
    seconds = time.perf_counter() - t0
    return {"mode": mode, "length": length, "causal": causal, "seconds": seconds,
            "peak_mb": _high_water_mb() - before, "high_water_reset": reset}


def measure(mode: str, length: int, causal: bool = True, timeout: float = 900) -> dict:
    """Run one case in a fresh interpreter and return its peak memory (MB above the pre-call RSS) and seconds."""
    cmd = [sys.executable, "-m", "benchmarks.attention_dropout_memory", "--child", mode, str(length)]
    if not causal:
        cmd.append("--full")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"mode": mode, "length": length, "causal": causal, "error": proc.stderr.strip()[-400:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(lengths_all: list[int], lengths_sdpa_dropout: list[int], causal: bool = True) -> list[dict]:
    """Every mode at every length in ``lengths_all``; SDPA-with-dropout only at ``lengths_sdpa_dropout``."""
    rows = []
    for length in lengths_all:
        modes = ["sdpa_p0", "ours_dropout"] + (["sdpa_dropout"] if length in lengths_sdpa_dropout else [])
        for mode in modes:
            rows.append(measure(mode, length, causal))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"))
    parser.add_argument("--full", action="store_true", help="non-causal attention")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 11000])
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), not args.full)))
        return
    for row in run(args.lengths, [n for n in args.lengths if n <= 4096], not args.full):
        print(row)


if __name__ == "__main__":
    main()
