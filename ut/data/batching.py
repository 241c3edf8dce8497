"""Padding helpers shared by the data modules (masks: True = real token, CONTRIBUTING.md)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ut.data.vocab import PAD_ID


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID, min_len: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into `(ids Long[B, L], mask Bool[B, L])`, L = max(len, min_len)."""
    length = max([min_len, *(len(s) for s in seqs)])
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask
