"""Table 3 in shape: T-ED (L=500) by extractor
(identity, tf-idf, TextRank, SumBasic, cheating).

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences". Configs:
configs/table3/*.yaml (one per run, written by
configs/generate.py); results: results/table3/. Options: see :mod:`experiments.wikisum.experiment`.

    python -m experiments.wikisum.table3
"""

from experiments.wikisum.experiment import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("table3"))
