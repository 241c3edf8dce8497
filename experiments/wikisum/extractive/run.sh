#!/usr/bin/env bash
# Extractive-only ROUGE-L F1 (Liu et al. 2018, Figure 2) on the embedded enwiki excerpt, wiki-body source.
# Writes experiments/wikisum/extractive/results/{extractive_rouge.md,.json,.png,data_card.md,machine.txt}.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=$(mktemp -d)/build
.venv/bin/python -m data_prep build --out "$OUT" --eval-lengths 100,500 --num-proc 2
mkdir -p experiments/wikisum/extractive/results
cp "$OUT"/extractive_rouge.{md,json,png} "$OUT"/data_card.md experiments/wikisum/extractive/results/
{ echo "command: experiments/wikisum/extractive/run.sh (python -m data_prep build --out OUT --eval-lengths 100,500 --num-proc 2)";
  echo "machine: $(nproc) CPUs, $(uname -m), $(.venv/bin/python -V)"; } > experiments/wikisum/extractive/results/machine.txt
