"""Subword tokenizer trained with HF ``tokenizers`` on the training split.

Liu et al. 2018 used one shared subword vocabulary of ~32k (t2t ``SubwordTextEncoder``, 2^15) built from
wiki text and references. Here: byte-pair encoding (``tokenizers.models.BPE``) over the already normalised
text, with a Metaspace pre-tokenizer (so ids decode back to the text) trained on the training split's
targets and inputs only (validation and test never leak into the vocabulary).
Deviation: BPE instead of t2t's word-piece-like SubwordTextEncoder; the size is 2^15 for a full corpus and
smaller for a small one (:func:`default_vocab_size`), since a 32k vocabulary over a few hundred thousand
words would mostly hold whole words seen once.

Special tokens and their fixed ids (the project's convention, see CONTRIBUTING.md):
``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<sep>`` 3 (between title and ranked paragraphs), ``<unk>`` 4.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "sep": "<sep>", "unk": "<unk>"}
FULL_VOCAB_SIZE = 2**15
MIN_VOCAB_SIZE = 512


def default_vocab_size(n_distinct_words: int) -> int:
    """2^15, or for a small corpus the power of two nearest half its distinct words (at least 512)."""
    size = MIN_VOCAB_SIZE
    while size * 2 <= max(n_distinct_words // 2, MIN_VOCAB_SIZE) and size < FULL_VOCAB_SIZE:
        size *= 2
    return size


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a BPE tokenizer; special tokens get ids 0..4 in the order of :data:`SPECIAL_TOKENS`."""
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """``{"pad_id": 0, "bos_id": 1, "eos_id": 2, "sep_id": 3, "unk_id": 4}`` read back from the tokenizer."""
    return {f"{name}_id": tokenizer.token_to_id(token) for name, token in SPECIAL_TOKENS.items()}


def encode(tokenizer: Tokenizer, text: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of ``text`` (no BOS/EOS added), cut at ``max_tokens``."""
    ids = tokenizer.encode(text).ids
    return ids if max_tokens is None else ids[:max_tokens]
