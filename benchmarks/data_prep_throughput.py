"""Articles per second of the whole data_prep build (read, parse, wiki-body source, paragraphs, 5 rankers,
tokenizer training, encoding, save; no ROUGE table) on the embedded enwiki excerpt, with 1 and N worker
processes: per wall second, and per CPU second of this process and its workers (what a core gives when
the machine is shared). The per-stage figures are :mod:`benchmarks.data_prep_profile`'s.

    python -m benchmarks.data_prep_throughput [--num-proc 1 2] [--out benchmarks/results/data_prep_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from data_prep.build import build_dataset
from data_prep.dump import iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.page_filter import page_skip_reason


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="benchmarks/results/data_prep_throughput.json")
    args = parser.parse_args()
    dump = embedded_dump_path()
    start = time.perf_counter()
    pages = list(iter_dump_pages(dump))
    read_s = time.perf_counter() - start
    n_articles = sum(page_skip_reason(p) is None for p in pages)
    results = {"dump": dump.name, "pages": len(pages), "articles": n_articles,
               "read_pages_per_s": round(len(pages) / read_s, 1), "builds": [],
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                          f"Python {platform.python_version()}",
               "note": "whole build (read, parse, wiki-body source, paragraphs, 5 rankers, tokenizer training, "
                       "encoding, save), no ROUGE eval; articles_per_cpu_s counts the CPU seconds of this process "
                       "and its workers, the figure to read on a shared machine (see load_average_1min); the "
                       "per-stage profile is benchmarks/results/data_prep_profile.md",
               "command": "python -m benchmarks.data_prep_throughput " + " ".join(
                   ["--num-proc", *map(str, args.num_proc)])}
    for num_proc in args.num_proc:
        folder = Path(tempfile.mkdtemp())
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        out = build_dataset(out=str(folder / "out"), num_proc=num_proc, eval_lengths=())
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        examples = json.loads((out / "data_card.json").read_text())["counts"]["examples"]
        results["builds"].append({"num_proc": num_proc, "seconds": round(seconds, 2), "examples": examples,
                                  "articles_per_s": round(n_articles / seconds, 2),
                                  "cpu_seconds": round(cpu, 2),
                                  "articles_per_cpu_s": round(n_articles / cpu, 2),
                                  "load_average_1min": round(os.getloadavg()[0], 2)})
        shutil.rmtree(folder)
        print(results["builds"][-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
