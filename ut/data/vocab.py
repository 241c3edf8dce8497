"""Special token ids and a small token <-> id vocabulary for the character / word level tasks.

Ids 0..4 are reserved for PAD, BOS, EOS, SEP, UNK in every vocabulary built here (CONTRIBUTING.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD_ID, BOS_ID, EOS_ID, SEP_ID, UNK_ID = 0, 1, 2, 3, 4
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<sep>", "<unk>")


class Vocabulary:
    """Token <-> id map whose first five ids are `SPECIAL_TOKENS`.

    Args:
        tokens: the regular tokens, in id order (duplicates and special tokens are skipped).
    """

    def __init__(self, tokens: Iterable[str] = ()):
        self._itos: list[str] = list(SPECIAL_TOKENS)
        self._stoi: dict[str, int] = {t: i for i, t in enumerate(self._itos)}
        for tok in tokens:
            if tok not in self._stoi:
                self._stoi[tok] = len(self._itos)
                self._itos.append(tok)

    @classmethod
    def build(
        cls, sequences: Iterable[Iterable[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Build from token sequences: most frequent first (ties alphabetical), `min_freq` and `max_size`
        (regular tokens, specials not counted) applied."""
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls(ranked)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._itos == other._itos

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, specials included."""
        return list(self._itos)

    def token_to_id(self, token: str) -> int:
        return self._stoi.get(token, UNK_ID)

    def id_to_token(self, idx: int) -> str:
        return self._itos[idx]

    def encode(self, tokens: Iterable[str], add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self._stoi.get(t, UNK_ID) for t in tokens]
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> list[str]:
        return [self._itos[int(i)] for i in ids if not (skip_special and int(i) < len(SPECIAL_TOKENS))]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self._itos}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        tokens = json.loads(Path(path).read_text())["tokens"]
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"{path}: a vocabulary file must start with {SPECIAL_TOKENS}, got {tokens[:5]}")
        return cls(tokens[len(SPECIAL_TOKENS) :])
