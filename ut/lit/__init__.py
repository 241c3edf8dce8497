"""LightningModules for the project's three batch formats (CONTRIBUTING.md) and their training callbacks.

| module                  | trains                                              | file               |
|-------------------------|-----------------------------------------------------|--------------------|
| Seq2SeqModule           | encoder-decoders: Transformer, Universal Transformer | seq2seq.py         |
| LanguageModelModule     | decoder-only LMs: T-D, T-DMCA, UT decoder-only      | language_model.py  |
| ClassificationModule    | encoder-only classifiers (bAbI QA, flat layout)     | classification.py  |
| FactQAModule            | bAbI QA over fact vectors (the UT paper's layout)   | fact_qa.py         |

Shared machinery: base.py (model from the registry, optimiser, epoch metrics), losses.py (label smoothing),
ponder.py (ACT statistics), callbacks/ (resumable data order, attention maps, ponder maps, results table,
non-finite loss guard, prediction writer).
"""

from ut.lit.base import TrainingModule, count_parameters
from ut.lit.classification import ClassificationModule
from ut.lit.fact_qa import FactQAModule
from ut.lit.language_model import LanguageModelModule
from ut.lit.seq2seq import Seq2SeqModule

__all__ = ["ClassificationModule", "FactQAModule", "LanguageModelModule", "Seq2SeqModule", "TrainingModule",
           "count_parameters"]
