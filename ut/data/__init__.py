"""Data for the Universal Transformer paper's tasks (Dehghani et al. 2019): algorithmic, bAbI, LAMBADA.

Batch formats and special ids are fixed in CONTRIBUTING.md; `ut.data.vocab` holds the ids.
"""

from ut.data.vocab import BOS_ID, EOS_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID, Vocabulary

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "SEP_ID", "SPECIAL_TOKENS", "UNK_ID", "Vocabulary"]
