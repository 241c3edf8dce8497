"""``make demo``: the WikiSum comparison end to end on the embedded real enwiki sample, on CPU.

Builds the sample dataset (data_prep, embedded dump) when absent, trains small T-ED, T-DMCA and Universal
Transformer (ACT) models for a few minutes each, beam-decodes the test split (beam 4, alpha 0.6), prints the
comparison table (ROUGE-L, log-ppl, parameters, time) and writes the report (Liu et al. 2018, in shape; about
10 minutes on 2 idle cores). W&B logs offline under the results folder. Config: configs/demo.yaml.

    python -m experiments.wikisum.demo [--minutes 3] [--out outputs/wikisum_demo]
"""

import sys

from experiments.wikisum.experiment import run_experiment

DEFAULT_OUT = "outputs/wikisum_demo"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv = ["--out", DEFAULT_OUT, *argv]
    run_experiment("demo", argv)
