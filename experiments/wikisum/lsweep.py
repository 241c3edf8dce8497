"""The L sweep: log-ppl, s/step and peak memory of T-ED, T-D and T-DMCA for L in {100, 500, 2000, 4000, 11000}.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences". Configs:
configs/lsweep/*.yaml (one per run, written by
configs/generate.py); results: results/lsweep/. Options: see :mod:`experiments.wikisum.experiment`.

    python -m experiments.wikisum.lsweep
"""

from experiments.wikisum.experiment import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("lsweep"))
