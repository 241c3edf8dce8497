"""Table 4 in shape: T-ED, T-D, T-DMCA, T-DMCA-MoE, UT (fixed, ACT) and UT-DMCA on the same data and steps.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences". Configs:
configs/table4/*.yaml (one per run, written by
configs/generate.py); results: results/table4/. Options: see :mod:`experiments.wikisum.experiment`.

    python -m experiments.wikisum.table4
"""

from experiments.wikisum.experiment import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("table4"))
