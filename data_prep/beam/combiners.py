"""The Beam build's global summaries (``CombineGlobally``): exact length counts for the data card's
histograms and the means of the per-example extractive ROUGE-L scores (Liu et al. 2018, Figure 2). Both
are small at any scale: a Counter per quantity, a sum per (ranker, L)."""

from __future__ import annotations

import collections

from data_prep.beam.common import beam
from data_prep.data_card import CARD_HISTOGRAMS, add_length_counts


class SummaryFn(beam.CombineFn):
    """Exact length counts for the data card's histograms (a Counter per quantity: small at any scale)."""

    def create_accumulator(self):
        return {name: collections.Counter() for name in (*CARD_HISTOGRAMS, "articles_with_any_document")}

    def add_input(self, accumulator, row):
        add_length_counts(accumulator, row)
        accumulator["articles_with_any_document"][int(row["n_found_documents"] > 0)] += 1
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for name, counter in accumulator.items():
                merged[name].update(counter)
        return merged

    def extract_output(self, accumulator):
        return {name: {str(k): v for k, v in sorted(c.items())} for name, c in accumulator.items()}


class MeanFn(beam.CombineFn):
    """Mean of each key of per-example score dicts, and their number (extractive ROUGE-L)."""

    def create_accumulator(self):
        return collections.Counter(), 0

    def add_input(self, accumulator, scores):
        sums, n = accumulator
        sums.update(scores)
        return sums, n + 1

    def merge_accumulators(self, accumulators):
        sums, n = collections.Counter(), 0
        for s, k in accumulators:
            sums.update(s)
            n += k
        return sums, n

    def extract_output(self, accumulator):
        sums, n = accumulator
        return {"means": {k: v / n for k, v in sums.items()} if n else {}, "n": n}
