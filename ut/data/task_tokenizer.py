"""Every task's vocabulary as a Hugging Face ``tokenizers`` tokenizer, so that a trained model carries ONE
self-contained ``tokenizer.json`` that turns raw text into its ids (``ut.load(...).generate(texts)``, prediction).

The character / word vocabularies of :mod:`ut.data` (:class:`ut.data.vocab.Vocabulary`, specials at ids 0..4) become
``WordLevel`` tokenizers whose normalizer and pre-tokenizer reproduce each task's Python tokenisation:

- ``"babi"`` (bAbI words): ``\\w+|[^\\w\\s]`` on lower-cased text (``ut.data.babi.tokenize``): Lowercase, then
  Split keeping the pattern's matches;
- ``"lambada_word"`` (LAMBADA words): ``\\w+(?:'\\w+)*|[^\\w\\s]`` on lower-cased text (``ut.data.lambada.tokenize``);
- ``"lambada_char"`` (LAMBADA characters): whitespace runs become one space, then one piece per character;
- ``"digits"`` (copy / reverse / addition): whitespace dropped, then one piece per character.

Special tokens (``<pad> <bos> <eos> <sep> <unk>``) are declared special, so ``<sep>`` in raw text is the separator id;
word-level ids decode to tokens joined by spaces, character-level ids to the characters (``decoders.Fuse``).
Deviation: ``tokenizers`` lower-cases one character at a time (Python's final-sigma rule is not applied).
"""

from __future__ import annotations

import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from ut.data.vocab import PAD_ID, SPECIAL_TOKENS, UNK_ID, Vocabulary

BABI_PATTERN = r"\w+|[^\w\s]"  # ut.data.babi._TOKEN
LAMBADA_WORD_PATTERN = r"\w+(?:'\w+)*|[^\w\s]"  # ut.data.lambada._WORD
LEVELS = ("babi", "lambada_word", "lambada_char", "digits")
# the characters Python's `\s` matches (str.isspace), for the whitespace rules of the char levels
_WHITESPACE = "[" + "".join(f"\\x{{{c:x}}}" for c in range(sys.maxunicode + 1) if chr(c).isspace()) + "]+"


def vocabulary_tokenizer(vocab: Vocabulary, level: str) -> Tokenizer:
    """A ``WordLevel`` tokenizer over ``vocab`` with the tokenisation rule of ``level`` (table above)."""
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is not one of {LEVELS}")
    ids = {t: i for i, t in enumerate(vocab.tokens)}
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token=SPECIAL_TOKENS[UNK_ID]))
    if level in ("babi", "lambada_word"):
        pattern = BABI_PATTERN if level == "babi" else LAMBADA_WORD_PATTERN
        tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    else:
        tokenizer.normalizer = normalizers.Replace(Regex(_WHITESPACE), " " if level == "lambada_char" else "")
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=SPECIAL_TOKENS[PAD_ID])
    return tokenizer
