"""The Beam build's tokenizer: trained AFTER the join, on one worker, on a deterministic sample of the
train split (the ``tokenizer_sample`` train examples with the smallest sha256 of the title, fed in dump
order), as tensor2tensor built its vocabulary from a sample of the generated data; then a side input of
the encoding step. With a sample at least as large as the train split (any small build) the tokenizer,
hence every token id, is the single-machine build's (:func:`data_prep.build.train_build_tokenizer`)."""

from __future__ import annotations

import hashlib
import json

from data_prep.beam.common import WORK_DIR, beam, write_text
from data_prep.build import example_row, fit_tokenizer
from data_prep.config import SPECIAL_TOKENS_FILE, TOKENIZER_FILE
from data_prep.tokenizer import special_token_ids


def _sample_hash(title: str) -> str:
    return hashlib.sha256(b"tokenizer-sample:" + title.encode("utf-8")).hexdigest()


def tokenizer_sample_row(keyed, first_ranker: str):
    """What the tokenizer sample keeps of an example: sort key (train first, then a hash), order, texts."""
    key, example = keyed
    return (
        (example["split"] != "train", _sample_hash(example["title"])),
        key,
        example["target"],
        example[f"input_{first_ranker}"],
    )


def train_and_save_tokenizer(sample, vocab_size: int | None, work_dir: str):
    """Train the BPE tokenizer on the sample (one worker), write it beside the dataset, return its JSON.

    The texts are the single-machine build's (target and first ranker's input of each train example, in
    dump order; all examples when the train split is empty); the vocabulary size rule is the same too.
    """
    if not sample:
        return ""
    rows = [r for r in sample if not r[0][0]] or list(sample)
    rows.sort(key=lambda r: r[1])
    tokenizer = fit_tokenizer([t for r in rows for t in (r[2], r[3])], vocab_size)
    write_text(f"{work_dir}/{TOKENIZER_FILE}", tokenizer.to_str(pretty=True))
    write_text(
        f"{work_dir}/{SPECIAL_TOKENS_FILE}", json.dumps(special_token_ids(tokenizer), indent=2, sort_keys=True) + "\n"
    )
    info = {
        "sample_examples": len(rows),
        "sample_is_train": not rows[0][0][0],
        "vocab_size": tokenizer.get_vocab_size(),
    }
    write_text(f"{work_dir}/{WORK_DIR}/tokenizer_sample.json", json.dumps(info, sort_keys=True))
    return tokenizer.to_str()


class Encode(beam.DoFn):
    """Token ids of the target and of every ranked input (cut at max L), with the side-input tokenizer."""

    def __init__(self, rankers, max_tokens: int):
        self.rankers, self.max_tokens = tuple(rankers), max_tokens
        self._tokenizer, self._source = None, None

    def process(self, keyed, tokenizer_json):
        from tokenizers import Tokenizer

        from data_prep.tokenizer import WordCachedEncoder

        if tokenizer_json != self._source:
            self._tokenizer = WordCachedEncoder(Tokenizer.from_str(tokenizer_json))
            self._source = tokenizer_json
        _, example = keyed
        row = example_row(example, self._tokenizer, self.rankers, self.max_tokens)
        yield beam.pvalue.TaggedOutput(example["split"], row)
