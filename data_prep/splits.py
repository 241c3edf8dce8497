"""Deterministic train/validation/test assignment by a hash of the title.

Liu et al. 2018 / t2t split WikiSum by a hash of the article into 800/100/100 shards (~80/10/10). Here:
``int(sha256(title)) % 1000`` against cumulative per-mille bounds, so an article keeps its split whatever
else is in the dump and across machines and Python versions (no ``hash()`` randomisation).
"""

from __future__ import annotations

import hashlib

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def split_of_title(title: str, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> str:
    """The split (``train``/``validation``/``test``) of an article title."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
    bucket = int.from_bytes(hashlib.sha256(title.encode("utf-8")).digest()[:8], "big") % 1000
    bound = 0.0
    for name, fraction in zip(SPLIT_NAMES, fractions):
        bound += fraction * 1000
        if bucket < round(bound):
            return name
    return SPLIT_NAMES[-1]
