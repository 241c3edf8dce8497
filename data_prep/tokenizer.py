"""Subword tokenizer trained with HF ``tokenizers`` on the training split, saved as ONE self-contained file.

Liu et al. 2018 used one shared subword vocabulary of ~32k (t2t ``SubwordTextEncoder``, 2^15) built from
wiki text and references. Here: byte-pair encoding (``tokenizers.models.BPE``) with a Metaspace pre-tokenizer (so
ids decode back to the text), trained on the training split's targets and inputs only (validation and test never
leak into the vocabulary).
Deviation: BPE instead of t2t's word-piece-like SubwordTextEncoder; the size is 2^15 for a full corpus and
smaller for a small one (:func:`default_vocab_size`), since a 32k vocabulary over a few hundred thousand
words would mostly hold whole words seen once.

Self-contained: the text normalisation of the pipeline (:func:`data_prep.paragraphs.normalize_text`, t2t's
``_normalize_text``: lower-case, a space on both sides of every ASCII punctuation character, whitespace runs
collapsed, ends stripped) is the tokenizer's own normalizer (:func:`normalizer`), so ``tokenizer.json`` alone
(``tokenizers.Tokenizer.from_file`` or transformers' ``PreTrainedTokenizerFast(tokenizer_file=...)``) turns RAW text
into the ids the build stores, and decodes ids to the normalised text. On text that is already normalised the
normalizer changes nothing, so the vocabulary and every stored id are those of a tokenizer without it. The file
declares the special tokens (``added_tokens``, ``special: true``) and pads with ``<pad>`` (batch padding only;
:func:`encode` of one text never pads), which is where ``PreTrainedTokenizerFast`` finds its pad token;
:func:`hf_tokenizer` also names BOS / EOS / SEP / UNK for transformers.

Deviation of the normalizer from Python's ``str.lower``: ``tokenizers`` lower-cases one character at a time; the
one context rule of Python's (final sigma) is rebuilt by a regex, "Σ after a letter and before none" -> "ς"
(Python also skips case-ignorable characters such as apostrophes around the sigma; this regex does not).

Special tokens and their fixed ids (the project's convention, see CONTRIBUTING.md):
``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<sep>`` 3 (between title and ranked paragraphs), ``<unk>`` 4.
"""

from __future__ import annotations

import itertools
import json
import string
import sys
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "sep": "<sep>", "unk": "<unk>"}
FULL_VOCAB_SIZE = 2**15
MIN_VOCAB_SIZE = 512
# every character Python's str.isspace() (hence `\s` of data_prep.paragraphs) calls whitespace
_PY_WHITESPACE = "".join(f"\\x{{{c:x}}}" for c in range(sys.maxunicode + 1) if chr(c).isspace())


def normalizer() -> normalizers.Normalizer:
    """:func:`data_prep.paragraphs.normalize_text` as a ``tokenizers`` normalizer (see the module docstring)."""
    return normalizers.Sequence([
        normalizers.Replace(Regex(r"(?<=\p{L})Σ(?!\p{L})"), "ς"),  # Python's final-sigma rule
        normalizers.Lowercase(),
        *(normalizers.Replace(c, f" {c} ") for c in string.punctuation),  # ASCII punctuation, as normalize_text
        normalizers.Replace(Regex(f"[{_PY_WHITESPACE}]+"), " "),
        normalizers.Strip(),
    ])


def default_vocab_size(n_distinct_words: int) -> int:
    """2^15, or for a small corpus the power of two nearest half its distinct words (at least 512)."""
    size = MIN_VOCAB_SIZE
    while size * 2 <= max(n_distinct_words // 2, MIN_VOCAB_SIZE) and size < FULL_VOCAB_SIZE:
        size *= 2
    return size


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a BPE tokenizer; special tokens get ids 0..4 in the order of :data:`SPECIAL_TOKENS`."""
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.normalizer = normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    pad = SPECIAL_TOKENS["pad"]
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad), pad_token=pad)
    return tokenizer


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """``{"pad_id": 0, "bos_id": 1, "eos_id": 2, "sep_id": 3, "unk_id": 4}`` read back from the tokenizer."""
    return {f"{name}_id": tokenizer.token_to_id(token) for name, token in SPECIAL_TOKENS.items()}


class WordCachedEncoder:
    """``tokenizer.encode(text).ids`` of a :func:`train_tokenizer` tokenizer, with each whitespace-separated
    word encoded once per build and its ids reused.

    Exact because this tokenizer encodes every word on its own: special tokens hold no whitespace and are
    matched on the raw text (``normalized: false``, no lstrip / rstrip); every normalizer step is local to
    a character or a word (lower-casing, the final-sigma rule looks one character to each side, where a
    word's end reads like the space beside it; punctuation gets spaces around it; the whitespace runs that
    separate words collapse to one space, and a word holds none of them since :meth:`str.split` splits on
    every ``str.isspace`` character); Metaspace (``prepend_scheme: always``) gives each word its own
    ``▁``-prefixed pieces, and BPE merges within a piece. So the ids of ``"w1 w2 ..."`` are the ids of
    ``w1`` followed by those of ``w2``... The five ranked inputs of an article hold the same paragraphs in
    another order, so most of their words are found in the cache. The constructor refuses a tokenizer of
    another structure (pre-tokenizer, post-processor adding tokens, truncation).
    """

    def __init__(self, tokenizer: Tokenizer, max_cached_words: int = 2_000_000):
        spec = json.loads(tokenizer.to_str())
        pre = spec.get("pre_tokenizer") or {}
        if not (
            pre.get("type") == "Metaspace"
            and pre.get("prepend_scheme") == "always"
            and pre.get("split", True)
            and spec.get("post_processor") is None
            and spec.get("truncation") is None
            and spec["model"]["type"] == "BPE"
            and not spec["model"].get("dropout")
            and all(
                not (t["normalized"] or t["lstrip"] or t["rstrip"]) and not any(c.isspace() for c in t["content"])
                for t in spec.get("added_tokens", [])
            )
        ):
            raise ValueError("WordCachedEncoder needs a tokenizer made by data_prep.tokenizer.train_tokenizer")
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.max_cached_words = max_cached_words
        self._ids: dict[str, list[int]] = {}

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS), cut at ``max_tokens``: ``tokenizer.encode(text).ids[:max_tokens]``."""
        words = text.split()
        if max_tokens is not None:
            words = words[:max_tokens]  # every word gives at least one id (the normalizer deletes nothing)
        cache = self._ids
        missing = set(words).difference(cache)  # the order does not matter: each word's ids are its own
        if missing:
            if len(cache) + len(missing) > self.max_cached_words:
                cache.clear()  # bounded memory on a large dump; the ids stay the same
                missing = set(words)
            missing = sorted(missing)
            for word, encoding in zip(missing, self.tokenizer.encode_batch(missing), strict=True):
                cache[word] = encoding.ids
        return list(itertools.islice(itertools.chain.from_iterable(map(cache.__getitem__, words)), max_tokens))


def encode(tokenizer: Tokenizer | WordCachedEncoder, text: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of ``text`` (no BOS/EOS added), cut at ``max_tokens``."""
    if isinstance(tokenizer, WordCachedEncoder):
        return tokenizer.encode(text, max_tokens)
    ids = tokenizer.encode(text).ids
    return ids if max_tokens is None else ids[:max_tokens]


def hf_tokenizer(tokenizer: Tokenizer | str | Path):
    """A transformers ``PreTrainedTokenizerFast`` over ``tokenizer`` (an object or a tokenizer.json path) with
    every special token of :data:`SPECIAL_TOKENS` that it holds named (pad, bos, eos, sep, unk). Needs
    ``transformers`` (the ``hub`` extra)."""
    from transformers import PreTrainedTokenizerFast

    if isinstance(tokenizer, str | Path):
        fast = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer))
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    vocab = fast.get_vocab()
    named = {f"{name}_token": tok for name, tok in SPECIAL_TOKENS.items() if tok in vocab}
    fast.add_special_tokens(named)
    return fast
