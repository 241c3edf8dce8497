"""Rows: data pipeline articles/s (the data_prep engineers' own benchmark) and ROUGE time per 1,000 pairs.

- ``data_pipeline_row``: runs ``python -m benchmarks.data_prep_throughput`` (parse + clean + rank on the embedded
  sample dump; owned by data_prep) into a temporary file and reads its JSON; with ``rerun=False`` it reads the
  committed ``benchmarks/results/data_prep_throughput.json`` instead.
- ``rouge_row``: :func:`ut.eval.rouge.rouge_scores` (ROUGE-1/2/L/Lsum with stemming) on synthetic 300-word
  prediction / reference pairs (sentences of 8-24 words over a 3,000-word vocabulary, half the words shared),
  reported as seconds per 1,000 pairs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def data_pipeline_row(rerun: bool, timeout: float = 600) -> dict:
    committed = RESULTS / "data_prep_throughput.json"
    if rerun:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "throughput.json"
            proc = subprocess.run([sys.executable, "-m", "benchmarks.data_prep_throughput", "--num-proc", "1",
                                   "--out", str(out)], capture_output=True, text=True, timeout=timeout)
            if proc.returncode == 0 and out.exists():
                return {"source": "rerun now (--num-proc 1)", **json.loads(out.read_text())}
            error = proc.stderr.strip()[-300:]
    else:
        error = None
    if committed.exists():
        row = {"source": f"committed {committed.name}", **json.loads(committed.read_text())}
        if error:
            row["rerun_error"] = error
        return row
    return {"source": "unavailable", "error": error or "no committed data_prep_throughput.json"}


def synthetic_pairs(n: int, words: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    vocab = [f"w{i}{'s' if i % 7 == 0 else ''}{'ing' if i % 11 == 0 else ''}" for i in range(3000)]

    def text(shared: list[str]) -> str:
        tokens = [w if rng.random() < 0.5 else rng.choice(vocab) for w in shared]
        sentences, i = [], 0
        while i < len(tokens):
            k = rng.randint(8, 24)
            sentences.append(" ".join(tokens[i : i + k]).capitalize() + ".")
            i += k
        return " ".join(sentences)

    preds, refs = [], []
    for _ in range(n):
        shared = [rng.choice(vocab) for _ in range(words)]
        preds.append(text(shared))
        refs.append(text(shared))
    return preds, refs


def rouge_row(n_pairs: int) -> dict:
    from ut.eval.rouge import rouge_scores

    preds, refs = synthetic_pairs(n_pairs)
    rouge_scores(preds[:2], refs[:2])  # warm-up (stemmer, regexes)
    t0 = time.perf_counter()
    scores = rouge_scores(preds, refs)
    seconds = time.perf_counter() - t0
    return {"pairs": n_pairs, "words_per_text": 300, "seconds": seconds,
            "seconds_per_1000_pairs": seconds / n_pairs * 1000, "rougeL": scores["rougeL"]}
